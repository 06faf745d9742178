import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see wavediff.runtime)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_flush_denormal(True)

REF = Path(__file__).parent / "data" / "reference"
FIXTURES = REF / "fixtures"
# the authors' models in fixtures/ (<name>_netG.pth / _netD.pth, _io.pt, _config.json)
GENERATOR_FIXTURES = [
    "tiny_wavelet",
    "tiny_normal",
    "tiny_wavelet_no_fbn",
    "tiny_wavelet_no_freq",
    "tiny_wavelet_no_residual",
    "tiny_wavelet_patch2",
    "tiny_wavelet_t2",
]
DISC_FIXTURES = ["tiny_disc_small", "tiny_disc_large"]


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The reference outputs were produced with 2 threads; keep runs comparable.
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """16 RGB images of 36x36 (resized to the tiny preset's 32px), left-right asymmetric so that a flip shows."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(16):
        pixels = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
        pixels[:, :18] = i * 15
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return folder


# --- helpers shared by the CLI, training, resume and multi-node tests -------------------------------------------
def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`wavediff ARGV` in this process: (exit code, stdout, stderr)."""
    from wavediff.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def train_cli(capsys, *args) -> tuple[int, str, str]:
    """`wavediff train ARGS` in this process: (exit code, stdout, stderr)."""
    return run_cli(capsys, "train", *args)


TRAIN_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # subprocess training runs


def kill_training_after_checkpoint(args, out: Path, step: int, log: Path, limit: float = 120) -> None:
    """Run `wavediff train ARGS --out OUT` in a new process group and SIGKILL it (data workers too) as soon as
    the state of `step` exists; asserts that the kill, not the run's end, stopped it."""
    import signal
    import subprocess
    import sys
    import time

    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wavediff", "train", *map(str, args), "--out", str(out)],
            env=TRAIN_ENV,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its data workers are killed with it
        )
    first = out / "checkpoints" / f"state_{step:07d}.pt"
    deadline = time.monotonic() + limit
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, f"the run ended before it was killed: {log.read_text()[-2000:]}"
    assert first.exists(), f"no checkpoint within {limit:.0f} s"


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _tensors(obj, prefix=""):
    """Every tensor in a nested state, by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}")


def assert_states_equal(a: dict, b: dict, min_tensors: int = 0) -> None:
    """Every tensor of two training states (at least `min_tensors` of them), and their counters, identical."""
    ta, tb = dict(_tensors(a)), dict(_tensors(b))
    assert ta.keys() == tb.keys() and len(ta) >= min_tensors
    unequal = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not unequal, f"{len(unequal)} tensors differ, first {unequal[:3]}"
    for key in ("step", "epoch", "batch_in_epoch", "sched_g", "sched_d"):
        assert a[key] == b[key]


def http_get(server, path: str, timeout: float = 60) -> tuple[int, str | None, bytes]:
    """GET `path` from a running playground server: (status, Content-Type, body), error statuses included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture(scope="module")
def tiny_sampler_net():
    """(G, cfg): the tiny preset's generator, eval mode, weights perturbed so that they carry into the images (fresh
    NCSN++ outputs are ~0)."""
    from wavediff.models.generator import perturbed_generator
    from wavediff.presets import get_preset

    cfg = get_preset("tiny")
    return perturbed_generator(cfg.generator, 0.05), cfg
