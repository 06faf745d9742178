"""Resuming under stress: bit-exact with DataLoader workers after kill -9, past a corrupt newest
state, after a full disk, and after Ctrl-C; flips that depend only on (seed, epoch, index)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TRAIN_ENV, assert_states_equal, kill_training_after_checkpoint, read_log, train_cli
from wavediff.cli import main
from wavediff.config import DataConfig
from wavediff.data import build_dataloader, build_dataset
from wavediff.data.transforms import flip_for
from wavediff.training.step import TrainStep

ENV = TRAIN_ENV


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def _state(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"state_{step:07d}.pt", weights_only=True)


# --- flips from (seed, epoch, index) ----------------------------------------------------------


def test_flip_depends_only_on_seed_epoch_and_index():
    draws = [flip_for(3, e, i) for e in range(4) for i in range(500)]
    assert 0.45 < np.mean(draws) < 0.55  # a fair coin
    assert draws == [flip_for(3, e, i) for e in range(4) for i in range(500)]
    assert draws[:500] != draws[500:1000]  # another epoch mirrors other images
    assert draws[:500] != [flip_for(4, 0, i) for i in range(500)]  # and another seed


def _batches(loader, epochs) -> list[torch.Tensor]:
    out = []
    for e in epochs:
        loader.sampler.set_epoch(e)
        out += list(loader)
    return out


@pytest.mark.slow  # starts DataLoader workers
def test_flips_are_the_same_with_any_workers_and_after_a_mid_epoch_resume(images):
    ds = build_dataset(DataConfig(dataset="folder", path=str(images), image_size=32, hflip=True))
    plain = build_dataset(DataConfig(dataset="folder", path=str(images), image_size=32, hflip=False))
    reference = _batches(build_dataloader(ds, 4, num_workers=0, seed=5), range(3))
    for persistent in (True, False):
        loader = build_dataloader(ds, 4, num_workers=2, seed=5, persistent_workers=persistent)
        assert all(torch.equal(a, b) for a, b in zip(reference, _batches(loader, range(3)), strict=True))
        resumed = build_dataloader(ds, 4, num_workers=2, seed=5, start_epoch=1, start_batch=2)
        got = _batches(resumed, range(1, 3))
        assert all(torch.equal(a, b) for a, b in zip(reference[4 + 2 :], got, strict=True))
    # the flips are the ones flip_for names, and some images are mirrored, some not
    keys = list(build_dataloader(plain, 4, num_workers=0, seed=5).sampler)
    assert {(k.seed, k.epoch) for k in keys} == {(5, 0)}
    order = [k.index for k in keys]
    flips = [flip_for(5, 0, i) for i in order]
    assert any(flips) and not all(flips)
    for k, (i, f) in enumerate(zip(order, flips, strict=True)):
        x = reference[k // 4][k % 4]
        assert torch.equal(x, plain[i].flip(-1) if f else plain[i])


# --- exact resume with data workers after kill -9 ------------------------------------------------


@pytest.mark.slow
def test_resume_with_two_data_workers_after_sigkill_is_bit_exact(images, tmp_path, capsys):
    common = [
        "--preset",
        "tiny",
        "--data",
        images,
        "--steps",
        "10",
        "--checkpoint-every",
        "3",
        "--set",
        "data.num_workers=2",
        "--set",
        "train.lazy_reg=2",
        "--set",
        "train.keep_last=10",
        "--set",
        "train.sample_every=0",
    ]
    killed = tmp_path / "killed"
    kill_training_after_checkpoint(common, killed, 3, tmp_path / "stderr.txt")
    assert not (killed / "checkpoints" / "state_0000010.pt").exists()

    # resumed without persistent workers (the killed and the straight run keep theirs): no difference either
    rc, out, _ = train_cli(
        capsys, *common, "--out", killed, "--resume", "auto", "--set", "data.persistent_workers=false"
    )
    assert rc == 0 and out.strip().splitlines()[-1].endswith("generator_final.safetensors")
    resumed_at = next(r for r in read_log(killed) if r["event"] == "resume")["step"]
    assert 3 <= resumed_at < 10 and resumed_at % 3 == 0  # mid-epoch: 16 images, batch 8 -> 2 per epoch
    straight = tmp_path / "straight"
    assert train_cli(capsys, *common, "--out", straight)[0] == 0
    assert_states_equal(_state(killed, 10), _state(straight, 10), min_tensors=101)


# --- a corrupt newest state ---------------------------------------------------------------------


def _short_run(images, run: Path, steps: int = 6) -> list[str]:
    return [
        "--preset",
        "tiny",
        "--data",
        str(images),
        "--out",
        str(run),
        "--steps",
        str(steps),
        "--checkpoint-every",
        "2",
        "--set",
        "train.keep_last=5",
        "--set",
        "train.sample_every=0",
    ]


def _corrupt(path: Path, how: str) -> bytes:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a bad sector: 4 KiB of zeros in the middle
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(4096) + data[mid + 4096 :])
    return path.read_bytes()


@pytest.fixture(scope="module")
def four_steps(images, tmp_path_factory) -> Path:
    """A finished 4-step run with states at steps 2 and 4 (copied by the tests that damage it)."""
    run = tmp_path_factory.mktemp("four") / "run"
    assert main(["train", *_short_run(images, run, 4)]) == 0
    return run


@pytest.mark.parametrize("how", ["truncated", "empty", "bad_sector"])
def test_resume_auto_skips_a_corrupt_newest_state_and_keeps_it(how, images, four_steps, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(four_steps, run)
    straight = _state(run, 4)
    bad = run / "checkpoints" / "state_0000004.pt"
    damaged = _corrupt(bad, how)
    rc, out, err = train_cli(capsys, *_short_run(images, run, 4), "--resume", "auto")
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "state_0000004.pt" in warnings[0] and "state_0000002.pt" in warnings[0]
    assert "Traceback" not in err
    kept = run / "checkpoints" / "state_0000004.pt.corrupt"
    assert kept.read_bytes() == damaged  # never deleted, never overwritten
    assert next(r for r in read_log(run) if r["event"] == "resume")["step"] == 2
    assert_states_equal(_state(run, 4), straight, min_tensors=101)  # continued exactly from step 2


def test_resume_auto_with_only_corrupt_states_is_one_line(images, four_steps, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(four_steps, run)
    for p in (run / "checkpoints").glob("state_*.pt"):
        _corrupt(p, "truncated")
    for args in (_short_run(images, run, 4), ["--out", str(run)]):  # with and without the preset
        rc, _, err = train_cli(capsys, *args, "--resume", "auto")
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "no training state" in err and "can be read" in err
    assert sorted(p.name for p in (run / "checkpoints").glob("state_*")) == ["state_0000002.pt", "state_0000004.pt"]


# --- a full disk and Ctrl-C during training -------------------------------------------------------


def test_disk_full_while_checkpointing_keeps_the_previous_state(images, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real_save = torch.save
    calls = []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the second training state: the disk is full half-way
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    rc, _, err = train_cli(capsys, *_short_run(images, run, 6))
    message = err.strip().splitlines()[-1]
    assert rc == 2 and message.startswith("error: ") and "Traceback" not in err
    assert "no space left on the device" in message and "training stopped at step 4" in message
    assert "state_0000002.pt is intact" in message and "--resume auto" in message
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["generator_0000002.safetensors", "state_0000002.pt"]  # no temporary file left
    torch.load(run / "checkpoints" / "state_0000002.pt", weights_only=True)
    monkeypatch.setattr(torch, "save", real_save)
    rc, _, _ = train_cli(capsys, *_short_run(images, run, 6), "--resume", "auto")
    assert rc == 0 and (run / "checkpoints" / "state_0000006.pt").exists()


def test_ctrl_c_during_training_keeps_the_checkpoint_and_says_how_to_resume(images, tmp_path, capsys, monkeypatch):
    g_step = TrainStep.g_step
    calls = []

    def interrupted(self, x0):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return g_step(self, x0)

    monkeypatch.setattr(TrainStep, "g_step", interrupted)
    run = tmp_path / "run"
    rc, _, err = train_cli(capsys, *_short_run(images, run, 6))
    lines = err.strip().splitlines()
    assert rc == 130 and lines[-1].startswith("interrupted: ") and "Traceback" not in err
    assert "state_0000002.pt is intact" in lines[-1] and f"--resume auto (--out {run})" in lines[-1]
    assert sorted(p.name for p in (run / "checkpoints").glob("state_*")) == ["state_0000002.pt"]
    assert read_log(run)[-1]["event"] == "interrupted"
    monkeypatch.setattr(TrainStep, "g_step", g_step)
    assert train_cli(capsys, *_short_run(images, run, 6), "--resume", "auto")[0] == 0


def _start_training(args, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wavediff", "train", *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def _stop_training(proc: subprocess.Popen, signum: int) -> tuple[str, str]:
    """Send `signum` to the run's process group; returns (the `interrupted: ...` line, stderr). Before it, stderr
    may hold only the notice of a signal that arrived during an iteration."""
    assert proc.poll() is None, "the run ended before it could be stopped"
    os.killpg(proc.pid, signum)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"still running 60 s after signal {signum}")
    lines = [line for line in err.strip().splitlines() if line.strip() and "%|" not in line]
    assert proc.returncode == 128 + signum and "Traceback" not in err, err[-3000:]
    assert lines[-1].startswith("interrupted: training stopped at step "), err[-3000:]
    assert all("stopping after this step to save the run" in line for line in lines[:-1]), err[-3000:]
    return lines[-1], err


@pytest.mark.slow
def test_a_real_ctrl_c_with_data_workers_is_one_line(images, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it (data workers included)."""
    run = tmp_path / "run"
    args = _short_run(images, run, 400) + ["--set", "data.num_workers=2"]
    # a terminal's Ctrl-C reaches a process whose SIGINT is at its default; a shell's background job (how CI
    # may start pytest) inherits it ignored, and Python then never raises KeyboardInterrupt
    proc = _start_training(args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def past_step_4() -> bool:  # any kept state from step 4 on (keep_last prunes each one again within ~10 steps)
        return any(int(p.stem.split("_")[1]) >= 4 for p in (run / "checkpoints").glob("state_*.pt"))

    deadline = time.monotonic() + 120
    while not past_step_4() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    line, _ = _stop_training(proc, signal.SIGINT)
    assert "(Ctrl-C); its state there is saved as" in line and "--resume auto" in line
    states = sorted((run / "checkpoints").glob("state_*.pt"))
    assert states and not list((run / "checkpoints").glob(".*.tmp"))
    step = int(line.split("at step ")[1].split()[0])
    assert torch.load(states[-1], weights_only=True)["step"] == step  # saved at the stop, and whole
    assert states[-1].name in line


@pytest.mark.slow
def test_sigterm_stops_at_a_whole_step_saves_it_and_resumes_from_it(images, tmp_path):
    """SIGTERM to every process of the run (as Slurm sends it; `timeout` and `docker stop` signal the main one)."""
    run = tmp_path / "run"
    args = _short_run(images, run, 5000) + ["--checkpoint-every", "5000", "--set", "data.num_workers=2"]
    proc = _start_training(args)
    deadline = time.monotonic() + 120
    while not (run / "log.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(2.0)  # some steps, and no checkpoint: the one saved is the stop's
    line, _ = _stop_training(proc, signal.SIGTERM)
    assert "(SIGTERM)" in line
    step = int(line.split("at step ")[1].split()[0])
    assert 0 < step < 5000 and f"state_{step:07d}.pt" in line
    assert [p.name for p in (run / "checkpoints").glob("state_*.pt")] == [f"state_{step:07d}.pt"]
    assert torch.load(run / "checkpoints" / f"state_{step:07d}.pt", weights_only=True)["step"] == step
    last = read_log(run)[-1]
    assert (last["event"], last["signal"], last["step"]) == ("interrupted", "SIGTERM", step)

    resumed = subprocess.run(
        [sys.executable, "-m", "wavediff", "train", *args, "--steps", str(step + 2), "--resume", "auto"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["step"] for r in read_log(run) if r["event"] == "resume"] == [step]


def test_resuming_another_process_count_says_the_global_batch_changed(images, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli(capsys, *_short_run(images, run, 2))[0] == 0
    path = run / "checkpoints" / "state_0000002.pt"
    state = torch.load(path, weights_only=True)
    state["rng"] = state["rng"] * 2  # as two processes save it
    torch.save(state, path)
    (run / "checkpoints" / "generator_final.safetensors").unlink()
    rc, out, _ = train_cli(capsys, *_short_run(images, run, 3), "--resume", "auto")
    assert rc == 0 and "saved by 2 process(es), this run has 1" in out
    assert "the global batch is now 8 instead of 16" in out
