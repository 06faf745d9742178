"""Multi-node training with torchrun's c10d rendezvous: two "nodes" on this machine (gloo on
127.0.0.1 only) give exactly the result of one node with two processes; when one node is
killed the other exits with one line within a bounded time, and `--resume auto` on both
continues exactly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import assert_states_equal

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo"}
STEPS = 10
TRAIN = [
    "-m",
    "wavediff",
    "train",
    "--preset",
    "tiny",
    "--steps",
    str(STEPS),
    "--checkpoint-every",
    "2",
    "--set",
    "train.lazy_reg=2",
    "--set",
    "train.keep_last=10",
    "--set",
    "train.sample_every=0",
    "--device",
    "cpu",
]
LIMIT_S = 150  # no wait in this file is longer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(launcher: list[str], images: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, *TRAIN, "--data", str(images), "--out", str(out)]
    with open(log.with_suffix(".out"), "w") as o, open(log.with_suffix(".err"), "w") as e:
        return subprocess.Popen([*cmd, *extra], env=ENV, stdout=o, stderr=e, start_new_session=True)


def _node(rank: int, port: int, images: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    launcher = ["--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank)]
    launcher += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    return _launch(launcher, images, out, log, *extra)


def _listening(port: int) -> bool:
    """Whether a socket on this machine listens on `port` (read from /proc: no probe connection)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            _, local, _, state = row.split()[:4]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _two_nodes(port: int, images: Path, out: Path, logs: list[Path], *extra: str) -> list[subprocess.Popen]:
    """Node 0, then node 1 once node 0's agent listens on the rendezvous port, so that node 0 hosts the store
    (both "nodes" share 127.0.0.1: whichever agent binds the port first would host it, and a test that kills
    node 1 must not kill the store with it)."""
    first = _node(0, port, images, out, logs[0], *extra)
    deadline = time.monotonic() + 60
    while not _listening(port) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _listening(port), logs[0].with_suffix(".err").read_text()[-3000:]
    return [first, _node(1, port, images, out, logs[1], *extra)]


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants (torchrun starts its workers in their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    for pid in _tree(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def _wait_all(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + LIMIT_S
    try:
        for p in procs:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        for p in procs:
            _kill_tree(p)
        pytest.fail(f"torchrun did not finish within {LIMIT_S} s")
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log.with_suffix(".err").read_text()[-3000:]


def _state(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"state_{step:07d}.pt", weights_only=True)


@pytest.fixture(scope="module")
def one_node(images, tmp_path_factory) -> Path:
    """The reference: one node, two processes."""
    tmp = tmp_path_factory.mktemp("one_node")
    run = tmp / "run"
    proc = _launch(["--standalone", "--nproc_per_node", "2"], images, run, tmp / "log")
    _wait_all([proc], [tmp / "log"])
    return run


@pytest.mark.slow
def test_two_nodes_give_exactly_one_node_with_two_processes(images, one_node, tmp_path):
    run, port = tmp_path / "run", _free_port()
    logs = [tmp_path / f"node{r}" for r in (0, 1)]
    _wait_all(_two_nodes(port, images, run, logs), logs)
    last_lines = [(log.with_suffix(".out").read_text().strip().splitlines() or [""])[-1] for log in logs]
    assert str(run / "checkpoints" / "generator_final.safetensors") in last_lines  # printed by rank 0's node
    assert_states_equal(_state(run, STEPS), _state(one_node, STEPS), min_tensors=101)


@pytest.mark.slow
def test_a_killed_node_stops_the_other_with_one_line_and_both_resume_exactly(images, one_node, tmp_path):
    run, port = tmp_path / "run", _free_port()
    logs = [tmp_path / f"node{r}" for r in (0, 1)]
    nodes = _two_nodes(port, images, run, logs)
    first = run / "checkpoints" / "state_0000004.pt"
    deadline = time.monotonic() + LIMIT_S
    while not first.exists() and all(n.poll() is None for n in nodes) and time.monotonic() < deadline:
        time.sleep(0.02)
    _kill_tree(nodes[1])  # the whole node: its torchrun agent and its worker
    killed_at = time.monotonic()
    try:
        rc = nodes[0].wait(timeout=60)
    except subprocess.TimeoutExpired:
        _kill_tree(nodes[0])
        pytest.fail("the surviving node still runs 60 s after the other one was killed")
    took = time.monotonic() - killed_at
    assert first.exists(), logs[0].with_suffix(".err").read_text()[-3000:]
    assert rc != 0 and not (run / "checkpoints" / f"state_{STEPS:07d}.pt").exists()
    err = logs[0].with_suffix(".err").read_text()
    ours = [line for line in err.splitlines() if line.startswith("error")]
    assert len(ours) == 1, err[-3000:]
    assert re.match(r"error( \(rank 1\))?: lost contact with another training process at step \d+", ours[0])
    assert "is intact" in ours[0] and "--resume auto" in ours[0]
    print(f"surviving node exited {took:.1f} s after the other was killed")

    port = _free_port()
    logs = [tmp_path / f"resume{r}" for r in (0, 1)]
    _wait_all(_two_nodes(port, images, run, logs, "--resume", "auto"), logs)
    assert_states_equal(_state(run, STEPS), _state(one_node, STEPS), min_tensors=101)


@pytest.mark.slow
def test_an_unresponsive_node_is_given_up_after_dist_timeout(images, tmp_path):
    """A node that stops answering without closing its connections (SIGSTOP: a hung machine, a
    network partition) is detected by the collective timeout, --dist-timeout: the training
    process on the other node stops with one line. (torchrun's own agent may then wait on its
    rendezvous store for longer when the frozen node hosts it; that part is torchrun's.)"""
    run, port = tmp_path / "run", _free_port()
    logs = [tmp_path / f"node{r}" for r in (0, 1)]
    nodes = _two_nodes(port, images, run, logs, "--dist-timeout", "5")
    first = run / "checkpoints" / "state_0000002.pt"
    deadline = time.monotonic() + LIMIT_S
    while not first.exists() and all(n.poll() is None for n in nodes) and time.monotonic() < deadline:
        time.sleep(0.02)
    frozen = _tree(nodes[1].pid)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    stopped_at, ours, err = time.monotonic(), [], ""
    try:
        while not ours and time.monotonic() - stopped_at < 60:
            time.sleep(0.1)
            err = logs[0].with_suffix(".err").read_text()
            ours = [line for line in err.splitlines() if line.startswith("error")]
        took = time.monotonic() - stopped_at
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGKILL)
        nodes[1].wait(timeout=30)
        _kill_tree(nodes[0])
    assert len(ours) == 1 and "lost contact" in ours[0] and "--dist-timeout" in ours[0], err[-3000:]
    assert took < 30, f"the surviving training process took {took:.0f} s to give up"
    print(f"the surviving training process gave up {took:.1f} s after the other node froze (--dist-timeout 5)")
