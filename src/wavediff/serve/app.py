"""The playground's HTTP server: the standard library's ThreadingHTTPServer, one static page, a JSON API.

Routes (GET only): `/` the page; `/api/info`; `/api/grid?seeds=0-15`; `/api/interpolate?a=0&b=1&n=8`;
`/api/variations?seed=0&others=1-7&vary=both`; `/api/trajectory?seed=0`. The four views answer JSON (PNG data
URLs, labels, seconds) or, with
`&format=png`, one PNG of the whole view for download. Nothing in a request names a file: the page
is read from this package and the checkpoint was chosen on the command line.

Generation runs on a single worker thread behind a bounded queue (`MAX_PENDING` requests), so one
device never runs two generations at once; request threads only parse, wait and encode.
"""

from __future__ import annotations

import base64
import errno
import json
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError, WaveDiffError
from .generation import MAX_IMAGES, VARY, Playground, Result, bounded_seeds, mosaic, one_seed, png_bytes

MAX_PENDING = 8  # queued or running generations; more get 503 "busy"


class Busy(Exception):
    pass


class GenerationQueue:
    """One worker thread (FIFO) and a cap on waiting requests."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wavediff-generate")
        self._lock = threading.Lock()
        self._pending = 0
        self.max_pending = max_pending

    def run(self, fn, *args):
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy(f"the server is busy ({self._pending} generations queued); try again in a moment")
            self._pending += 1
        try:
            return self._pool.submit(fn, *args).result()
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _param(query: dict, name: str, default: str) -> str:
    values = query.get(name)
    return values[0] if values else default


def _result_json(result: Result, queued: float) -> dict:
    images = [
        {"label": label, "png": "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")}
        for img, label in zip(result.images, result.labels)
    ]
    return {"images": images, "seconds": round(result.seconds, 4), "queued_seconds": round(queued, 4), **result.extra}


class PlaygroundServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a busy port must fail, not be shared

    def __init__(self, address: tuple[str, int], playground: Playground | None = None, quiet: bool = False):
        self.playground = playground
        self.queue = GenerationQueue()
        self.quiet = quiet
        self.page = resources.files(__package__).joinpath("page.html").read_bytes()
        super().__init__(address, Handler)  # binds; closes the socket (server_close) if that fails

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        self.queue.shutdown()
        super().server_close()


def bind(host: str, port: int, quiet: bool = False) -> PlaygroundServer:
    """Listen on host:port (0: any free port), with a one-line error when that is impossible."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad port {port}; use 1-65535, or 0 for any free port")
    try:
        return PlaygroundServer((host, port), quiet=quiet)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use; pass another --port (or 0 for any)") from None
        if e.errno == errno.EACCES:
            raise ConfigError(f"no permission to listen on {host}:{port}; use a port above 1023") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); check --host and --port") from None


class Handler(BaseHTTPRequestHandler):
    server: PlaygroundServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

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

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            if url.path in ("/", "/index.html"):
                return self._send(200, self.server.page, "text/html; charset=utf-8")
            if url.path == "/api/info":
                return self._json(200, self.server.playground.info())
            view = self._view(url.path, query)
            if view is None:
                return self._json(404, {"error": f"no page {url.path[:60]!r}; open / for the playground"})
            name, fn, args = view
            fmt = _param(query, "format", "json")
            if fmt not in ("json", "png"):
                raise ConfigError(f"bad format {fmt[:20]!r}; use json or png")
            start = time.perf_counter()
            result = self.server.queue.run(fn, *args)
            queued = time.perf_counter() - start - result.seconds
            if fmt == "png":
                body = png_bytes(mosaic(result.rows))
                disposition = f'attachment; filename="wavediff_{name}.png"'
                return self._send(200, body, "image/png", {"Content-Disposition": disposition})
            return self._json(200, _result_json(result, max(queued, 0.0)))
        except WaveDiffError as e:
            return self._json(400, {"error": str(e)})
        except Busy as e:
            return self._json(503, {"error": str(e)})
        except Exception as e:  # keep serving; the traceback goes to the server's log
            traceback.print_exc()
            return self._json(500, {"error": f"internal error ({type(e).__name__}: {str(e)[:200]}); see the log"})

    def _view(self, path: str, query: dict):
        """(name, callable, args) for a view route, after validating its parameters; None if unknown."""
        pg = self.server.playground
        if path == "/api/grid":
            seeds = bounded_seeds(_param(query, "seeds", "0-15"))
            return f"seeds_{seeds[0]}-{seeds[-1]}", pg.grid, (seeds,)
        if path == "/api/interpolate":
            a, b = one_seed(_param(query, "a", "0"), "seed a"), one_seed(_param(query, "b", "1"), "seed b")
            n_text = _param(query, "n", "8")
            if not n_text.strip().isdigit() or not 2 <= int(n_text) <= MAX_IMAGES:
                raise ConfigError(f"bad frame count {n_text[:20]!r}; ask for 2 to {MAX_IMAGES} frames")
            return f"interpolation_{a}_{b}", pg.interpolation, (a, b, int(n_text))
        if path == "/api/variations":
            seed = one_seed(_param(query, "seed", "0"))
            others = bounded_seeds(_param(query, "others", "1-7"), limit=MAX_IMAGES - 1)
            vary = _param(query, "vary", "both")
            if vary not in VARY:
                raise ConfigError(f"bad vary {vary[:20]!r}; use one of {', '.join(VARY)}")
            return f"variations_{seed}_{vary}", pg.variations, (seed, others, vary)
        if path == "/api/trajectory":
            seed = one_seed(_param(query, "seed", "0"))
            return f"trajectory_{seed}", pg.trajectory, (seed,)
        return None
