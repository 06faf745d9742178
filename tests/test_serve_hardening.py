"""`wavediff serve` against hostile or unusual requests: strict numbers, IPv6 hosts, HEAD without generation.

Most tests serve a stand-in playground that records the views asked for (no model), so they show what the
HTTP layer passes on, and that a rejected request never reaches the generator.
"""

import contextlib
import http.client
import json
import socket
import threading

import numpy as np
import pytest

from conftest import FIXTURES, http_get
from wavediff.cli import main
from wavediff.errors import ConfigError
from wavediff.serve import bind
from wavediff.serve.app import PlaygroundServer, family_for_host
from wavediff.serve.generation import MAX_SEED, Result


class RecordingPlayground:
    """Stands in for Playground: records each view's arguments and answers one black tile."""

    def __init__(self):
        self.calls = []
        self.max_images = 64  # the real Playground's for images up to 64 px

    def info(self):
        return {"checkpoint": "stand-in"}

    def _answer(self, *call):
        self.calls.append(call)
        tile = np.zeros((4, 4, 3), np.uint8)
        return Result([tile], ["tile"], [[tile]], 0.0, {})

    def grid(self, seeds):
        return self._answer("grid", seeds)

    def interpolation(self, seed_a, seed_b, frames):
        return self._answer("interpolation", seed_a, seed_b, frames)

    def variations(self, seed, others, vary):
        return self._answer("variations", seed, others, vary)

    def trajectory(self, seed):
        return self._answer("trajectory", seed)


@contextlib.contextmanager
def serving(host):
    """A PlaygroundServer on host, any free port, with a RecordingPlayground (as test_serve's `server`)."""
    srv = bind(host, 0, quiet=True)
    srv.playground = RecordingPlayground()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server():
    with serving("127.0.0.1") as srv:
        yield srv


def get(srv, path):
    return http_get(srv, path, timeout=30)


def ipv6_loopback_or_skip():
    if not socket.has_ipv6:
        pytest.skip("this Python was built without IPv6 (socket.has_ipv6 is False)")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"this machine cannot bind the IPv6 loopback ::1 ({e})")


# --- 1. numbers in the query: ASCII digits only, else a one-line 400 -------------------------------------------

LONG = "1" * 5000  # more digits than int() converts (4300): a ValueError, so a 500, if it ever reached int()


@pytest.mark.parametrize(
    "path,needle",
    [
        ("/api/trajectory?seed=%C2%B2", "bad seed"),  # '²': str.isdigit() is True, int() fails
        ("/api/variations?seed=%C2%B2", "bad seed"),
        ("/api/interpolate?a=%D9%A3", "bad seed a"),  # Arabic-Indic 3: int() would read 3
        ("/api/interpolate?b=%EF%BC%93", "bad seed b"),  # fullwidth 3
        ("/api/interpolate?n=%C2%B2", "2 to 64 frames"),
        ("/api/interpolate?n=%D9%A3", "2 to 64 frames"),
        ("/api/interpolate?n=-3", "2 to 64 frames"),
        ("/api/interpolate?n=" + LONG, "2 to 64 frames"),
        ("/api/trajectory?seed=" + LONG, "bad seed"),
        (f"/api/trajectory?seed={MAX_SEED + 1}", "bad seed"),
        ("/api/trajectory?seed=-1", "bad seed"),
        ("/api/trajectory?seed=%2B5", "bad seed"),  # '+5': int() takes a sign
        ("/api/trajectory?seed=1_0", "bad seed"),  # int() takes underscores
        ("/api/trajectory?seed=%E2%80%837", "bad seed"),  # an em space: str.strip() would drop it
        ("/api/trajectory?seed=", "bad seed"),
        ("/api/grid?seeds=%D9%A3", "bad seed list"),  # the seed-list pattern's \d matches it; int() reads 3
        ("/api/grid?seeds=0-%EF%BC%93", "bad seed list"),
        ("/api/grid?seeds=%C2%B2", "bad seed list"),
        ("/api/variations?seed=0&others=1,%D9%A3", "bad seed list"),
    ],
)
def test_numbers_must_be_ascii_digits_or_the_answer_is_a_one_line_400(server, capsys, path, needle):
    status, ctype, body = get(server, path)
    error = json.loads(body)["error"]
    assert (status, ctype) == (400, "application/json") and needle in error and "\n" not in error, error
    assert server.playground.calls == []  # refused before anything was queued
    assert "Traceback" not in capsys.readouterr().err


def test_ascii_numbers_with_spaces_still_reach_the_views(server):
    for path in [
        f"/api/interpolate?a=%207&b={MAX_SEED}&n=%0964%20",
        "/api/grid?seeds=%200-2,%205",
        "/api/trajectory?seed=007",
        "/api/variations?seed=3&others=4-5&vary=z",
    ]:
        assert get(server, path)[0] == 200, path
    assert server.playground.calls == [
        ("interpolation", 7, MAX_SEED, 64),
        ("grid", [0, 1, 2, 5]),
        ("trajectory", 7),
        ("variations", 3, [4, 5], "z"),
    ]


def test_an_unparsable_request_target_is_a_400_not_a_dropped_connection(server, capsys):
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(b"GET http://[x/api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and "bad request target" in json.loads(body)["error"]
    assert "Traceback" not in capsys.readouterr().err


# --- 2. IPv6 hosts ----------------------------------------------------------------------------------------------


def test_family_for_host():
    assert family_for_host("127.0.0.1") == socket.AF_INET and family_for_host("") == socket.AF_INET
    assert family_for_host("::1") == socket.AF_INET6 and family_for_host("::") == socket.AF_INET6


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_serves_on_the_ipv6_loopback(host):
    ipv6_loopback_or_skip()
    with serving(host) as srv:
        assert srv.address_family == socket.AF_INET6 and srv.loopback_only
        assert srv.url.startswith("http://[::1]:")
        status, ctype, body = get(srv, "/api/info")
        assert (status, ctype) == (200, "application/json") and json.loads(body)["checkpoint"] == "stand-in"


def test_a_restarted_server_gets_its_port_back_at_once():
    """The port of a stopped server whose connections linger in TIME_WAIT is free again (a listening one is not:
    tests/test_serve.py)."""
    server = bind("127.0.0.1", 0, quiet=True)
    server.playground = RecordingPlayground()
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /api/info HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := client.recv(65536):  # until the server closes first: its side goes to TIME_WAIT
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200")
    finally:
        server.shutdown()
        server.server_close()
    again = bind("127.0.0.1", port, quiet=True)
    assert again.server_address[1] == port
    with pytest.raises(ConfigError, match="already in use"):
        bind("127.0.0.1", port, quiet=True)  # while `again` listens
    again.server_close()


def test_ipv6_errors_stay_one_line():
    ipv6_loopback_or_skip()
    busy = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        busy.bind(("::1", 0))
        busy.listen(1)
        with pytest.raises(ConfigError, match="already in use") as e:
            bind("::1", busy.getsockname()[1])
        assert "\n" not in str(e.value)
    finally:
        busy.close()


def test_unknown_hosts_are_a_one_line_error():
    with pytest.raises(ConfigError, match="cannot listen on") as e:
        bind("a" * 64, 0)  # a DNS label over 63 characters: the resolver refuses it (UnicodeError), offline
    assert "\n" not in str(e.value)


def test_serve_command_on_ipv6_prints_a_bracketed_url_and_no_exposure_note(capsys, monkeypatch):
    ipv6_loopback_or_skip()

    def interrupted(self):
        assert self.address_family == socket.AF_INET6 and self.server_address[0] == "::1"
        raise KeyboardInterrupt

    monkeypatch.setattr(PlaygroundServer, "serve_forever", interrupted)
    argv = ["serve", FIXTURES / "tiny_wavelet_netG.pth", "--official-args", FIXTURES / "tiny_wavelet_config.json"]
    code = main([str(a) for a in argv] + ["--host", "::1", "--port", "0", "--precision", "fp32"])
    out, err = capsys.readouterr()
    assert code == 0 and " at http://[::1]:" in out and err.strip() == "stopped"  # ::1 is local: no note


# --- 3. HEAD never generates ------------------------------------------------------------------------------------


def test_head_answers_headers_only_and_never_generates(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)  # one kept-alive connection for every request
    try:
        conn.request("HEAD", "/")
        r = conn.getresponse()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html") and r.read() == b""
        assert int(r.headers["Content-Length"]) == len(server.page)
        for path in ["/api/grid?seeds=0-63", "/api/grid?seeds=0-3&format=png", "/api/trajectory?seed=1", "/api/info"]:
            conn.request("HEAD", path)
            r = conn.getresponse()
            assert (r.status, r.headers["Allow"], r.read()) == (405, "GET", b""), path
        conn.request("HEAD", "/nope")
        r = conn.getresponse()
        assert r.status == 404 and r.read() == b""
        conn.request("GET", "/api/info")  # the connection still frames responses correctly after the HEADs
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["checkpoint"] == "stand-in"
    finally:
        conn.close()
    assert server.playground.calls == []


def test_a_download_of_what_the_page_shows_is_not_generated_again(server):
    status, _, _ = get(server, "/api/grid?seeds=1-2")
    assert status == 200 and server.playground.calls == [("grid", [1, 2])]
    status, ctype, _ = get(server, "/api/grid?seeds=1-2&format=png")
    assert (status, ctype) == (200, "image/png") and len(server.playground.calls) == 1  # from the cache
    get(server, "/api/grid?seeds=1-3&format=png")  # another view: made
    assert server.playground.calls[-1] == ("grid", [1, 2, 3])


def test_the_request_cap_follows_the_image_size(server):
    from wavediff.serve.generation import chunk_size, max_images

    assert [max_images(s) for s in (32, 64, 128, 256, 512, 1024)] == [64, 64, 16, 16, 4, 4]
    assert [chunk_size(s) for s in (32, 256, 512, 1024)] == [64, 8, 2, 1]
    server.playground.max_images = 4  # a 512 px model's
    status, _, body = get(server, "/api/grid?seeds=0-4")
    assert status == 400 and "asks for more than 4 images" in json.loads(body)["error"]
    status, _, body = get(server, "/api/variations?seed=0&others=1-4")
    assert status == 400 and "asks for more than 3 other seeds" in json.loads(body)["error"]
    status, _, body = get(server, "/api/interpolate?a=0&b=1&n=5")
    assert status == 400 and "ask for 2 to 4 frames" in json.loads(body)["error"]


def test_a_request_whose_client_left_while_it_waited_is_skipped():
    from wavediff.serve.app import GenerationQueue, Gone

    queue, ran = GenerationQueue(), []
    with pytest.raises(Gone):
        queue.run(ran.append, 1, alive=lambda: False)
    assert queue.run(ran.append, 2, alive=lambda: True) is None and ran == [2] and queue.pending == 0
    queue.shutdown()


def test_serving_on_every_interface_prints_a_link_that_opens():
    srv = bind("0.0.0.0", 0, quiet=True)
    try:
        assert srv.url == f"http://127.0.0.1:{srv.server_address[1]}/" and not srv.loopback_only
    finally:
        srv.server_close()


SLOW_SERVE = """
import sys, time
from wavediff.serve import generation
generation.Playground.grid = lambda self, seeds: time.sleep(120)  # a generation that would take minutes
from wavediff.cli import main
sys.exit(main(["serve", sys.argv[1], "--port", "0", "--quiet", "--device", "cpu"]))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stopping_the_server_during_a_generation_is_prompt_and_quiet(tmp_path, sig):
    import os
    import signal
    import subprocess
    import sys
    import time

    from wavediff.checkpoints.convert import convert_official_checkpoint

    ckpt = tmp_path / "tiny.safetensors"
    convert_official_checkpoint(
        FIXTURES / "tiny_wavelet_netG.pth", ckpt, official_args=FIXTURES / "tiny_wavelet_config.json"
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVE, str(ckpt)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # held open: the page is still waiting
        conn.request("GET", "/api/grid?seeds=0")
        time.sleep(3)  # the generation is running
        start = time.perf_counter()
        proc.send_signal(getattr(signal, sig))
        rc = proc.wait(timeout=20)
        took = time.perf_counter() - start
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert rc == 0 and took < 10, (rc, took, err)
    assert "stopped (1 generations cut short)" in err and "Traceback" not in err, err


def test_the_request_log_has_the_time_of_day_and_how_long_each_took(capsys):
    import re

    srv = bind("127.0.0.1", 0, quiet=False)
    srv.playground = RecordingPlayground()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        assert get(srv, "/api/grid?seeds=0")[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r'\d\d:\d\d:\d\d 127\.0\.0\.1 "GET /api/grid\?seeds=0 HTTP/1\.1" 200 - \d+\.\d\d s', line), line
