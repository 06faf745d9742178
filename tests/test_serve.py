"""`wavediff serve` without a browser: the views against `wavediff sample`, the HTTP API, its limits and errors."""

import io
import json
import socket
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import FIXTURES, http_get
from wavediff.checkpoints.convert import convert_official_checkpoint, load_any_generator
from wavediff.cli import main
from wavediff.errors import CheckpointError, ConfigError
from wavediff.fastpath import resolve_precision
from wavediff.sampling import to_uint8
from wavediff.serve import Playground, bind, bounded_seeds, resolve_checkpoint, slerp


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny wavelet generator whose samples differ from seed to seed (the authors' tiny fixture, converted)."""
    out = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    convert_official_checkpoint(
        FIXTURES / "tiny_wavelet_netG.pth", out, official_args=FIXTURES / "tiny_wavelet_config.json"
    )
    return out


@pytest.fixture(scope="module")
def playground(checkpoint):
    generator, cfg = load_any_generator(checkpoint)
    return Playground(generator, cfg, "cpu", "fp32", source=checkpoint.name)


@pytest.fixture
def server(playground):
    srv = bind("127.0.0.1", 0, quiet=True)
    srv.playground = playground
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def cli_samples(capsys, checkpoint, tmp_path, seeds):
    out = tmp_path / "ref.npz"
    assert main(["sample", str(checkpoint), "--seeds", seeds, "--precision", "fp32", "--out", str(out)]) == 0
    capsys.readouterr()
    data = np.load(out)
    return dict(zip(data["seeds"].tolist(), data["images"]))


def get(srv, path):
    return http_get(srv, path, timeout=60)


def decode(data_url):
    return np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(data_url.split(",", 1)[1]))))


def same_up_to_rounding(a, b):
    """Batches of other sizes may round a few pixels the other way (CPU kernels differ by ~3e-6 per batch size)."""
    diff = np.abs(a.astype(int) - b.astype(int))
    return diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_views_show_what_wavediff_sample_writes(playground, checkpoint, tmp_path, capsys):
    ref = cli_samples(capsys, checkpoint, tmp_path, "7,3")  # one batch, as the page's grid
    assert not np.array_equal(ref[3], ref[7])
    grid = playground.grid([7, 3])
    assert np.array_equal(grid.images[0], ref[7]) and np.array_equal(grid.images[1], ref[3])
    ref = {s: cli_samples(capsys, checkpoint, tmp_path, str(s))[s] for s in (3, 7)}  # `wavediff sample --seeds s`
    assert np.array_equal(playground.grid([7]).images[0], ref[7])  # the page's large view

    traj = playground.trajectory(7)
    T = playground.cfg.diffusion.num_timesteps
    assert len(traj.images) == (T + 1) + T + 4 and traj.labels[-4:] == ["LL", "LH", "HL", "HH"]
    assert [im.shape for im in traj.images] == [(32, 32, 3)] * (2 * T + 1) + [(16, 16, 3)] * 4
    assert np.array_equal(traj.images[T], ref[7])  # the last state x_0 is the sample
    assert np.array_equal(traj.images[2 * T], ref[7])  # at t = 0 the posterior adds no noise
    assert not np.array_equal(traj.images[0], traj.images[T])  # x_T is noise
    # LL / 2 is the 2x2 block mean of the final image
    pooled = ref[7].astype(np.float64).reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(traj.images[2 * T + 1].astype(np.float64) - pooled).max() <= 1.0

    interp = playground.interpolation(3, 7, 5)
    assert len(interp.images) == 5 and interp.labels == [
        "seed 3",
        "\u03b1 0.25",
        "\u03b1 0.50",
        "\u03b1 0.75",
        "seed 7",
    ]
    assert same_up_to_rounding(interp.images[0], ref[3]) and same_up_to_rounding(interp.images[-1], ref[7])
    middle = interp.images[2]
    assert not np.array_equal(middle, ref[3]) and not np.array_equal(middle, ref[7])


def test_views_generated_in_chunks_are_the_same_images(playground, monkeypatch):
    """Large images go through the generator a few at a time (bounded memory); the images do not change beyond the
    float rounding of another batch size."""
    whole = [playground.grid([0, 1, 2]), playground.interpolation(0, 1, 3), playground.variations(0, [1, 2])]
    monkeypatch.setattr(playground, "chunk", 1)
    chunked = [playground.grid([0, 1, 2]), playground.interpolation(0, 1, 3), playground.variations(0, [1, 2])]
    for a, b in zip(whole, chunked, strict=True):
        assert a.labels == b.labels and all(same_up_to_rounding(x, y) for x, y in zip(a.images, b.images, strict=True))
    traj = playground.trajectory(5)  # one seed: one chunk
    assert len(traj.images) == 2 * playground.cfg.diffusion.num_timesteps + 5


def test_seeds_above_two_to_the_53_come_back_as_exact_text(server):
    big = 2**53 + 1  # a JavaScript number would make it 2**53
    status, _, body = get(server, f"/api/grid?seeds={big}")
    j = json.loads(body)
    assert status == 200 and j["seeds"] == [str(big)] and j["images"][0]["label"] == f"seed {big}"


def test_variations_keep_the_start_and_take_the_chosen_latents(playground):
    """x_T from the seed; z, posterior noise or both from the other seeds, drawn as `_draws` orders them."""
    own, other = playground._draws(3), playground._draws(8)
    T = playground.cfg.diffusion.num_timesteps

    def expected(vary):  # by hand: x_T of 3, then per step (z, noise) from 8 where `vary` says so
        picks = [
            (other if vary in ("both", "z") else own)[1 + 2 * i] if j == 0 else
            (other if vary in ("both", "noise") else own)[2 + 2 * i]
            for i in range(T) for j in (0, 1)
        ]  # fmt: skip
        steps = playground._run([own[0], *picks])
        return to_uint8(playground._to_image(steps[-1][2]))[0]

    alone = playground.grid([3]).images[0]
    results = {}
    for vary in ("both", "z", "noise"):
        res = playground.variations(3, [8, 3], vary)
        assert res.labels[0] == "seed 3" and len(res.images) == 3 and res.extra["vary"] == vary
        assert same_up_to_rounding(res.images[0], alone) and same_up_to_rounding(res.images[2], alone)
        assert same_up_to_rounding(res.images[1], expected(vary))
        results[vary] = res.images[1]
    assert not same_up_to_rounding(results["z"], results["noise"]) and not same_up_to_rounding(results["z"], alone)
    assert not same_up_to_rounding(results["both"], playground.grid([8]).images[0])  # the start is seed 3's
    with pytest.raises(ConfigError, match="bad vary"):
        playground.variations(3, [1], "x")


def test_slerp_keeps_the_endpoints_and_the_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 8, 8, generator=g), torch.randn(3, 8, 8, generator=g)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    # nearly orthogonal Gaussian vectors: slerp keeps the norm where linear interpolation shrinks it by ~1/sqrt(2)
    assert abs(mid.norm() / a.norm() - 1) < 0.1 and ((a + b) / 2).norm() / a.norm() < 0.8
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-6)


@pytest.mark.parametrize(
    "text,needle",
    [("abc", "bad seed list"), ("5-2", "must not exceed"), ("0-64", "at most 64"), ("-3", "bad seed list"),
     ("0-99999999999999", "at most 64"), ("99999999999999999999", "too large"), ("1,,2", "bad seed list")],
)  # fmt: skip
def test_bounded_seeds_rejects_bad_or_large_lists_before_expanding(text, needle):
    with pytest.raises(ConfigError, match=needle):
        bounded_seeds(text)


def test_bounded_seeds_accepts_lists():
    assert bounded_seeds(" 0-3, 9 ") == [0, 1, 2, 3, 9]
    assert len(bounded_seeds("0-63")) == 64


def test_http_api_answers_errors_in_one_line_and_keeps_serving(server, checkpoint, tmp_path, capsys):
    ref = cli_samples(capsys, checkpoint, tmp_path, "0-3")
    status, ctype, body = get(server, "/")
    assert status == 200 and ctype.startswith("text/html") and b"wavediff playground" in body
    info = json.loads(get(server, "/api/info")[2])
    assert info["image_size"] == 32 and info["steps"] == 4 and info["parameters"] == 419_276
    assert info["checkpoint"] == "tiny.safetensors" and info["precision"] == "fp32"
    for path, code, needle in [
        ("/api/grid?seeds=0-64", 400, "at most 64"),
        ("/api/grid?seeds=1-x", 400, "bad seed list"),
        ("/api/grid?seeds=0-999999999999", 400, "at most 64"),
        ("/api/interpolate?a=0&b=1&n=65", 400, "2 to 64 frames"),
        ("/api/interpolate?a=-1&b=1", 400, "bad seed a"),
        ("/api/trajectory?seed=1.5", 400, "bad seed"),
        ("/api/variations?seed=0&others=0-63", 400, "at most 63"),
        ("/api/variations?seed=0&vary=all", 400, "bad vary"),
        ("/api/grid?seeds=1&format=gif", 400, "bad format"),
        ("/../../etc/passwd", 404, "no page"),
        ("/page.html", 404, "no page"),
        ("/api/grid/../../../etc/hostname", 404, "no page"),
    ]:
        status, ctype, body = get(server, path)
        error = json.loads(body)["error"]
        assert (status, ctype) == (code, "application/json") and needle in error and "\n" not in error, path
    status, _, body = get(server, "/api/grid?seeds=0-3")
    j = json.loads(body)
    assert status == 200 and j["seeds"] == ["0", "1", "2", "3"] and j["seconds"] > 0  # text: a browser's numbers
    for seed, im in zip(map(int, j["seeds"]), j["images"]):  # lose seeds above 2^53
        assert np.array_equal(decode(im["png"]), ref[seed])
    status, ctype, body = get(server, "/api/grid?seeds=0-3&format=png")
    assert status == 200 and ctype == "image/png"
    grid = np.asarray(Image.open(io.BytesIO(body)))
    assert grid.shape == (66, 66, 3) and np.array_equal(grid[34:66, 34:66], ref[3])  # 2x2 tiles, 2 px gaps
    status, _, body = get(server, "/api/trajectory?seed=2&format=png")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (5 * 34 - 2, 3 * 34 - 2)
    status, _, body = get(server, "/api/variations?seed=1&others=2,1&vary=z")
    j = json.loads(body)
    assert status == 200 and [im["label"] for im in j["images"]] == ["seed 1", "z of 2", "z of 1"]
    tiles = [decode(im["png"]) for im in j["images"]]
    assert same_up_to_rounding(tiles[0], ref[1]) and same_up_to_rounding(tiles[2], ref[1])
    assert not same_up_to_rounding(tiles[1], ref[1]) and not same_up_to_rounding(tiles[1], ref[2])
    status, _, body = get(server, "/api/interpolate?a=0&b=2&n=3")
    frames = [decode(im["png"]) for im in json.loads(body)["images"]]
    assert status == 200 and same_up_to_rounding(frames[0], ref[0]) and same_up_to_rounding(frames[2], ref[2])
    assert not same_up_to_rounding(frames[1], ref[0]) and not same_up_to_rounding(frames[1], ref[2])


def test_one_generation_at_a_time_and_a_bounded_queue(server, monkeypatch):
    active, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()
    original = server.playground.grid

    def slow_grid(seeds):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        release.wait(10)
        try:
            return original(seeds)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(server.playground, "grid", slow_grid)
    server.queue.max_pending = 3
    results = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(get(server, f"/api/grid?seeds={s}"))) for s in range(3)
    ]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    while server.queue._pending < 3 and time.time() < deadline:
        time.sleep(0.01)
    status, _, body = get(server, "/api/grid?seeds=9")  # a fourth request while three are queued
    assert status == 503 and "busy" in json.loads(body)["error"]
    release.set()
    for t in threads:
        t.join(30)
    assert sorted(r[0] for r in results) == [200, 200, 200] and peak[0] == 1
    assert get(server, "/api/grid?seeds=9")[0] == 200


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_serve_command_errors_are_one_line(tmp_path, capsys, monkeypatch, checkpoint):
    monkeypatch.chdir(tmp_path)
    cases = [
        ((), "no checkpoint given and runs/demo does not exist"),
        (("missing.safetensors", "--port", 0), "not found"),
        ((tmp_path,), "holds no generator checkpoint"),
        ((FIXTURES / "tiny_wavelet_netG.pth", "--port", 0), "--preset NAME or --official-args"),
        ((checkpoint, "--port", 70000), "bad port"),
        ((checkpoint, "--port", 0, "--precision", "fp32", "--device", "nope"), "device"),
    ]
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    cases.append((("foreign.safetensors", "--port", 0), "not a wavediff generator"))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    cases.append(((checkpoint, "--port", busy.getsockname()[1]), "already in use"))
    try:
        for argv, needle in cases:
            code, out, err = run_cli(capsys, "serve", *argv)
            assert code == 2 and err.startswith("error: ") and needle in err, (argv, err)
            assert len(err.strip().splitlines()) == 1 and out == "", argv
    finally:
        busy.close()


def test_run_directory_picks_the_final_then_the_latest_generator(tmp_path, checkpoint, monkeypatch):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    for step in (50, 100, 1000):
        (ckpts / f"generator_{step:07d}.safetensors").write_bytes(checkpoint.read_bytes())
    assert resolve_checkpoint(str(tmp_path / "run")).name == "generator_0001000.safetensors"
    (ckpts / "generator_final.safetensors").write_bytes(checkpoint.read_bytes())
    assert resolve_checkpoint(str(tmp_path / "run")).name == "generator_final.safetensors"
    assert resolve_checkpoint(str(ckpts)).name == "generator_final.safetensors"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "run").rename(tmp_path / "runs" / "demo")
    assert (
        resolve_checkpoint(None).resolve() == tmp_path / "runs" / "demo" / "checkpoints" / "generator_final.safetensors"
    )
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint("nope/ckpt.pth")


def test_unexpected_errors_answer_500_in_one_line_and_the_server_goes_on(server, monkeypatch, capsys):
    def broken(seed):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(server.playground, "trajectory", broken)
    status, _, body = get(server, "/api/trajectory?seed=1")
    error = json.loads(body)["error"]
    assert status == 500 and error.startswith("internal error (RuntimeError: out of memory") and "see the log" in error
    assert "Traceback" in capsys.readouterr().err  # the details go to the server's log
    assert get(server, "/api/grid?seeds=1")[0] == 200


def test_serve_command_loads_the_authors_checkpoint_and_stops_on_ctrl_c(capsys, monkeypatch):
    from wavediff.serve.app import PlaygroundServer

    def interrupted(self):
        assert self.playground.cfg.name == "official_cifar10" and self.server_address[0] == "127.0.0.1"
        raise KeyboardInterrupt

    monkeypatch.setattr(PlaygroundServer, "serve_forever", interrupted)
    argv = ["serve", FIXTURES / "tiny_wavelet_netG.pth", "--official-args", FIXTURES / "tiny_wavelet_config.json"]
    code, out, err = run_cli(capsys, *argv, "--port", 0)
    auto = resolve_precision("auto", "cpu")  # the default: bf16 where the CPU has native bf16
    assert code == 0 and out.startswith("serving ") and f"(official_cifar10, 32px, T=4, cpu, {auto})" in out
    assert "http://127.0.0.1:" in out and err.strip() == "stopped"


def test_pixel_space_models_get_the_same_views():
    import wavediff
    from wavediff.presets import get_preset
    from wavediff.sampling import sample, to_uint8

    cfg = get_preset("tiny_pixel")
    torch.manual_seed(0)
    G = wavediff.build_generator(cfg.generator).eval()
    pg = Playground(G, cfg, "cpu")
    traj = pg.trajectory(5)
    assert [im.shape for im in traj.images] == [(32, 32, 3)] * 9 + [(16, 16, 3)] * 4
    assert np.array_equal(traj.images[4], to_uint8(sample(G, [5], cfg, precision="fp32"))[0])
    assert pg.info()["space"] == "pixel" and len(pg.interpolation(0, 1, 3).images) == 3
