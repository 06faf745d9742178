"""The playground's HTTP server: the standard library's ThreadingHTTPServer, one static page, a JSON API.

Routes (GET): `/` the page; `/api/info`; `/api/grid?seeds=0-15`; `/api/interpolate?a=0&b=1&n=8`;
`/api/variations?seed=0&others=1-7&vary=both`; `/api/trajectory?seed=0`. The four views answer JSON (PNG data
URLs, labels, seconds) or, with `&format=png`, one PNG of the whole view for download. HEAD gets the page's
headers, and 405 on the API: a HEAD must never start a generation. Nothing in a request names a file: the page
is read from this package and the checkpoint was chosen on the command line.

Generation runs on a single worker thread behind a bounded queue (`MAX_PENDING` requests), so one
device never runs two generations at once; request threads only parse, wait and encode.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError, WaveDiffError, first_line
from .generation import MAX_SEED, VARY, Playground, Result, bounded_seeds, mosaic, png_bytes

MAX_PENDING = 8  # queued or running generations; more get 503 "busy"
PAGE_PATHS = ("/", "/index.html")
# ASCII digits only: str.isdigit() and int() also take other scripts' digits ('²' passes isdigit() but fails int(),
# int('٣') is 3), and int() refuses more than 4300 digits. 30 digits is past MAX_SEED, so the range check decides.
_DIGITS = re.compile(r"[0-9]{1,30}")
_ASCII_SPACE = " \t\r\n\f\v"  # str.strip() alone would also drop other scripts' spaces


class Busy(Exception):
    pass


class Gone(Exception):
    """The client closed its connection while its request waited: nothing to generate or answer."""


class GenerationQueue:
    """One worker thread (FIFO) and a cap on waiting requests."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wavediff-generate")
        self._lock = threading.Lock()
        self._pending = 0
        self.max_pending = max_pending

    def run(self, fn, *args, alive=None):
        """`fn(*args)` on the worker thread, when its turn comes; skipped (`Gone`) if `alive()` is then False (the
        page asked again, or was closed, while this request waited)."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy(f"the server is busy ({self._pending} generations queued); try again in a moment")
            self._pending += 1

        def turn():
            if alive is not None and not alive():
                raise Gone
            return fn(*args)

        try:
            return self._pool.submit(turn).result()
        finally:
            with self._lock:
                self._pending -= 1

    @property
    def pending(self) -> int:
        return self._pending

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _param(query: dict, name: str, default: str) -> str:
    values = query.get(name)
    return values[0] if values else default


def _integer(query: dict, name: str, default: str, what: str, lo: int, hi: int, hint: str = "") -> int:
    """One integer from lo to hi, written with the ASCII digits 0-9 (no sign: no parameter takes negatives)."""
    text = _param(query, name, default).strip(_ASCII_SPACE)
    if not _DIGITS.fullmatch(text) or not lo <= int(text) <= hi:
        raise ConfigError(f"bad {what} {text[:40]!r}; {hint or f'give one integer from {lo} to {hi}'}")
    return int(text)


def _seed(query: dict, name: str, default: str, what: str = "seed") -> int:
    return _integer(query, name, default, what, 0, MAX_SEED)


def _seed_list(query: dict, name: str, default: str, limit: int, what: str = "images") -> list[int]:
    """`bounded_seeds`, after refusing non-ASCII text: its pattern's digits and spaces include other scripts'."""
    text = _param(query, name, default)
    if not text.isascii():
        raise ConfigError(f"bad seed list {text[:40]!r}; write seeds with the digits 0-9, e.g. 0-15 or 1,5,7-9")
    return bounded_seeds(text, limit, what)


# The views: each validates its query and returns (download name, Playground method, its arguments), so a bad
# request is answered 400 before anything is queued.
def _grid(pg: Playground, query: dict):
    seeds = _seed_list(query, "seeds", "0-15", pg.max_images)
    return f"seeds_{seeds[0]}-{seeds[-1]}", pg.grid, (seeds,)


def _interpolate(pg: Playground, query: dict):
    a, b = _seed(query, "a", "0", "seed a"), _seed(query, "b", "1", "seed b")
    n = _integer(query, "n", "8", "frame count", 2, pg.max_images, f"ask for 2 to {pg.max_images} frames")
    return f"interpolation_{a}_{b}", pg.interpolation, (a, b, n)


def _variations(pg: Playground, query: dict):
    seed = _seed(query, "seed", "0")
    others = _seed_list(query, "others", "1-7", pg.max_images - 1, "other seeds")
    vary = _param(query, "vary", "both")
    if vary not in VARY:
        raise ConfigError(f"bad vary {vary[:20]!r}; use one of {', '.join(VARY)}")
    return f"variations_{seed}_{vary}", pg.variations, (seed, others, vary)


def _trajectory(pg: Playground, query: dict):
    seed = _seed(query, "seed", "0")
    return f"trajectory_{seed}", pg.trajectory, (seed,)


VIEWS = {
    "/api/grid": _grid,
    "/api/interpolate": _interpolate,
    "/api/variations": _variations,
    "/api/trajectory": _trajectory,
}
API_PATHS = ("/api/info", *VIEWS)


def _result_json(result: Result, queued: float) -> dict:
    images = [
        {"label": label, "png": "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")}
        for img, label in zip(result.images, result.labels)
    ]
    return {"images": images, "seconds": round(result.seconds, 4), "queued_seconds": round(queued, 4), **result.extra}


def family_for_host(host: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 host (a literal such as ::1, or a name with IPv6 addresses only), else AF_INET.

    ThreadingHTTPServer's sockets are AF_INET, which cannot bind ::1. A name with an IPv4 address (localhost)
    keeps IPv4, as before; an unknown name raises socket.gaierror here, which `bind` reports in one line.
    """
    if not host:  # '' is every IPv4 interface, which getaddrinfo does not take
        return socket.AF_INET
    families = {info[0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)}
    return socket.AF_INET6 if families == {socket.AF_INET6} else socket.AF_INET


def _host_port(host: str, port: int) -> str:
    """host:port as a URL writes it: IPv6 addresses in brackets, their zone's '%' escaped."""
    return f"[{host.replace('%', '%25')}]:{port}" if ":" in host else f"{host}:{port}"


class ResultCache:
    """The last few views made, by request: a download (`format=png`) of what the page shows is not made again."""

    def __init__(self, size: int = 8):
        self._items: dict[tuple, Result] = {}
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: tuple) -> Result | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple, result: Result) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = result
            while len(self._items) > self.size:
                self._items.pop(next(iter(self._items)))


class PlaygroundServer(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR, as every server sets it: a restarted playground gets its port back at once, although the
    # last connections still hold it in TIME_WAIT for a minute; a port another socket listens on still fails
    # (EADDRINUSE, on Linux and macOS). On Windows the option would let two servers share a port.
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, address: tuple[str, int], playground: Playground | None = None, quiet: bool = False):
        self.address_family = family_for_host(address[0])  # read by TCPServer.__init__ when it makes the socket
        self.playground = playground
        self.queue = GenerationQueue()
        self.cache = ResultCache()
        self.quiet = quiet
        self.page = resources.files(__package__).joinpath("page.html").read_bytes()
        super().__init__(address, Handler)  # binds; closes the socket (server_close) if that fails

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):  # every interface: a browser here reaches it through the loopback address
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://{_host_port(host, port)}/"

    @property
    def loopback_only(self) -> bool:
        """Whether only this machine can connect (the bound address, so 'localhost' and ::1 count too)."""
        try:
            return ipaddress.ip_address(self.server_address[0]).is_loopback
        except ValueError:
            return False

    def server_close(self) -> None:
        self.queue.shutdown()
        super().server_close()


def bind(host: str, port: int, quiet: bool = False) -> PlaygroundServer:
    """Listen on host:port (0: any free port), with a one-line error when that is impossible."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad port {port}; use 1-65535, or 0 for any free port")
    if host.startswith("[") and host.endswith("]"):  # [::1], as URLs write IPv6 addresses
        host = host[1:-1]
    where = _host_port(host, port)
    try:
        return PlaygroundServer((host, port), quiet=quiet)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use; pass another --port (or 0 for any)") from None
        if e.errno == errno.EACCES:
            raise ConfigError(f"no permission to listen on {where}; use a port above 1023") from None
        raise ConfigError(f"cannot listen on {where} ({e.strerror or e}); check --host and --port") from None
    except ValueError as e:  # names the resolver cannot even encode: a NUL, an over-long label (UnicodeError)
        raise ConfigError(f"cannot listen on {where} (not a host name: {e}); check --host") from None


class Handler(BaseHTTPRequestHandler):
    server: PlaygroundServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if not self.server.quiet:
            t0 = getattr(self, "_started", None)
            took = f" {time.perf_counter() - t0:.2f} s" if t0 is not None else ""
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.address_string()} {format % args}{took}\n")

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the page was closed or asked again: nothing to answer
            pass

    def _client_alive(self) -> bool:
        """Whether the client still holds its connection open (a closed one reads as end-of-file at once)."""
        import select

        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return not readable or self.connection.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict, extra: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", extra)

    def _not_found(self, path: str) -> None:
        self._json(404, {"error": f"no page {path[:60]!r}; open / for the playground"})

    def _target(self) -> tuple[str, dict]:
        """The request's path and query. urlsplit raises ValueError on targets such as 'http://[x/'."""
        try:
            url = urlsplit(self.path)
        except ValueError:
            raise ConfigError(f"bad request target {self.path[:60]!r}") from None
        return url.path, parse_qs(url.query, keep_blank_values=True)

    def do_HEAD(self):
        """Headers only, and never a generation: the page as GET sends it; the API answers 405 (GET only)."""
        self._started = time.perf_counter()
        try:
            path, _ = self._target()
        except WaveDiffError as e:
            return self._json(400, {"error": str(e)})
        if path in PAGE_PATHS:
            return self._send(200, self.server.page, "text/html; charset=utf-8")
        if path in API_PATHS:
            return self._json(405, {"error": f"{path} answers GET only"}, {"Allow": "GET"})
        return self._not_found(path)

    def do_GET(self):
        self._started = time.perf_counter()  # the log line gives each request's time, queue and generation included
        try:
            path, query = self._target()
            if path in PAGE_PATHS:
                return self._send(200, self.server.page, "text/html; charset=utf-8")
            if path == "/api/info":
                return self._json(200, self.server.playground.info())
            if path not in VIEWS:
                return self._not_found(path)
            name, fn, args = VIEWS[path](self.server.playground, query)
            fmt = _param(query, "format", "json")
            if fmt not in ("json", "png"):
                raise ConfigError(f"bad format {fmt[:20]!r}; use json or png")
            start = time.perf_counter()
            key = (path, fn.__name__, repr(args))
            cached = self.server.cache.get(key) if fmt == "png" else None
            result = cached or self.server.queue.run(fn, *args, alive=self._client_alive)
            self.server.cache.put(key, result)
            queued = 0.0 if cached else time.perf_counter() - start - result.seconds
            if fmt == "png":
                body = png_bytes(mosaic(result.rows))
                disposition = f'attachment; filename="wavediff_{name}.png"'
                return self._send(200, body, "image/png", {"Content-Disposition": disposition})
            return self._json(200, _result_json(result, max(queued, 0.0)))
        except WaveDiffError as e:
            return self._json(400, {"error": str(e)})
        except Busy as e:
            return self._json(503, {"error": str(e)})
        except Gone:
            self.close_connection = True
            return None
        except Exception as e:  # keep serving; the traceback goes to the server's log
            traceback.print_exc()
            return self._json(500, {"error": f"internal error ({type(e).__name__}: {first_line(e, 200)}); see the log"})
