"""Training: the step against the authors' formulation, EMA, the `wavediff train` CLI,
checkpoints, exact resume after kill -9, errors, and two-process DDP."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TRAIN_ENV, assert_states_equal, kill_training_after_checkpoint, read_log, train_cli
from wavediff.checkpoints.io import load_generator
from wavediff.diffusion import VPDiffusion, randn
from wavediff.models.discriminator import build_discriminator
from wavediff.models.generator import build_generator
from wavediff.presets import get_preset
from wavediff.training.ema import EMA
from wavediff.training.state import config_differences
from wavediff.training.step import Nets, TrainStep

ENV = TRAIN_ENV


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain little from a second thread, and two OpenMP threads slow down
    # 20-50x when another process competes for the 2 cores; subprocesses match (ENV).
    torch.set_num_threads(1)
    yield


# --- the training step ----------------------------------------------------------------


def _reference_iteration(G, D, opt_g, opt_d, diffusion, x0, rng, r1_gamma, nz, r1=True):
    """The authors' train_wddgan.py iteration, written out step by step (separate backward passes)."""
    b, T = x0.shape[0], diffusion.num_timesteps
    D.requires_grad_(True)
    opt_d.zero_grad()
    t = torch.randint(0, T, (b,), generator=rng)
    x_t, x_tp1 = diffusion.q_sample_pairs(x0, t, rng)
    x_t.requires_grad = True
    d_real = D(x_t, t, x_tp1).view(-1)
    F.softplus(-d_real).mean().backward(retain_graph=True)
    if r1:
        grad = torch.autograd.grad(d_real.sum(), x_t, create_graph=True)[0]
        (r1_gamma / 2 * (grad.view(b, -1).norm(2, dim=1) ** 2).mean()).backward()
    x0_pred = G(x_tp1, t, randn((b, nz), rng))
    x_pos = diffusion.posterior_sample(x0_pred, x_tp1, t, randn(x_tp1.shape, rng))
    F.softplus(D(x_pos.detach(), t, x_tp1).view(-1)).mean().backward()
    opt_d.step()
    D.requires_grad_(False)
    opt_g.zero_grad()
    t = torch.randint(0, T, (b,), generator=rng)
    _, x_tp1 = diffusion.q_sample_pairs(x0, t, rng)
    x0_pred = G(x_tp1, t, randn((b, nz), rng))
    x_pos = diffusion.posterior_sample(x0_pred, x_tp1, t, randn(x_tp1.shape, rng))
    (F.softplus(-D(x_pos, t, x_tp1).view(-1)).mean() + F.l1_loss(x0_pred, x0)).backward()
    opt_g.step()


@pytest.mark.parametrize("r1", [True, False])  # without R1 our D step judges real and fake pairs in one pass
def test_step_matches_the_authors_formulation(r1):
    cfg = get_preset("tiny")
    cfg.train.r1_gamma = 0.5  # large enough that a wrong penalty would show
    torch.manual_seed(0)
    G, D = build_generator(cfg.generator), build_discriminator(cfg.discriminator)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    diffusion = VPDiffusion(cfg.diffusion)
    x0 = torch.rand(8, 12, 16, 16, generator=torch.Generator().manual_seed(1)) - 0.5

    def adam(m):
        return torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.9))

    step = TrainStep(
        Nets(G, D, G, D, G, D), adam(G), adam(D), diffusion, cfg, torch.Generator().manual_seed(3), torch.device("cpu")
    )
    step.d_step(x0, r1=r1)
    step.g_step(x0)
    _reference_iteration(
        G2,
        D2,
        adam(G2),
        adam(D2),
        diffusion,
        x0,
        torch.Generator().manual_seed(3),
        cfg.train.r1_gamma,
        cfg.generator.nz,
        r1,
    )
    for ours, ref in ((D, D2), (G, G2)):
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            # Adam divides by sqrt(v): for a weight whose gradient is ~0, summing the gradient in another order (the
            # joint D pass) moves its first update by up to ~1e-6 of lr 1e-3; a wrong loss moves it by ~1e-3
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6 if r1 else 1e-5, msg=lambda m, n=name: f"{n}: {m}")


def _train_step(cfg, G, D, opt_g=None) -> TrainStep:
    """A TrainStep over one process's G and D, randomness seeded with 0."""
    nets = Nets(G, D, G, D, G, D)
    return TrainStep(nets, opt_g, None, VPDiffusion(cfg.diffusion), cfg, torch.Generator().manual_seed(0), "cpu")


def test_t_weights_set_how_often_each_step_is_trained():
    cfg = get_preset("tiny")  # T = 4
    G, D = build_generator(cfg.generator), build_discriminator(cfg.discriminator)
    x0 = torch.zeros(64, 12, 16, 16)

    def draws(weights):
        cfg.train.t_weights = weights
        step = _train_step(cfg, G, D)
        return torch.cat([step._pair(x0)[0] for _ in range(50)])

    assert set(draws((0.0, 0.0, 1.0, 0.0)).tolist()) == {2}
    counts = torch.bincount(draws((1.0, 3.0, 0.0, 0.0)), minlength=4).tolist()
    assert counts[2] == counts[3] == 0 and 2.6 < counts[1] / counts[0] < 3.4  # 3,200 draws: 3:1 within ~3 sd
    assert set(draws(()).tolist()) == {0, 1, 2, 3}  # empty: the paper's uniform draw


def test_rec_weight_scales_the_l1_term_of_the_generator_loss():
    cfg = get_preset("tiny")
    torch.manual_seed(0)
    G = build_generator(cfg.generator)
    x0 = torch.rand(8, 12, 16, 16) * 2 - 1

    class LinearCritic(torch.nn.Module):  # a fresh D outputs ~0 everywhere: too little adversarial gradient here
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(0.01 * torch.randn(x0.shape[1:]))

        def forward(self, x_t, t, x_tp1, segments=1):
            return (x_t * self.w).flatten(1).sum(1, keepdim=True)

    D = LinearCritic()

    def grads(rec_loss, weight):
        cfg.train.rec_loss, cfg.train.rec_weight = rec_loss, weight
        frozen = torch.optim.SGD(G.parameters(), lr=0.0)  # keeps G as it is and its gradients readable
        losses = _train_step(cfg, G, D, frozen).g_step(x0)
        return torch.cat([p.grad.flatten() for p in G.parameters()]), losses["g_rec"]

    adv, zero = grads(False, 1.0)
    one, l1 = grads(True, 1.0)
    three, l1_again = grads(True, 3.0)
    assert zero == 0 and l1 > 0 and l1_again == l1  # the log keeps the unweighted L1
    rec = one - adv
    assert adv.abs().max() > 0.01 * rec.abs().max() and rec.abs().max() > 0.01 * adv.abs().max()
    torch.testing.assert_close(three, adv + 3 * rec, rtol=1e-4, atol=1e-6)


def test_ema_follows_the_authors_or_the_rampup():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert ema.update(model, 8, 8) == 0.0  # the authors start from the first updated weights
    assert torch.equal(ema.module.weight, model.weight)
    assert ema.update(model, 16, 8) == 0.9
    ramp = EMA(model, decay=0.999, rampup=0.05)
    assert ramp.beta(8, 8) < 1e-5  # first updates ~copy the weights
    assert ramp.beta(800, 8) == pytest.approx(0.5 ** (8 / 40))
    assert ramp.beta(10**9, 8) == 0.999


def test_training_turns_on_cudnn_autotuning_only_on_cuda(monkeypatch):
    from wavediff.runtime import configure_training_device

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_training_device(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    configure_training_device("cuda:0")  # only sets the flag: no GPU needed
    assert torch.backends.cudnn.benchmark is True


def test_resumable_config_changes():
    a = get_preset("tiny").to_dict()
    b = get_preset("tiny").override(["train.steps=9", "train.checkpoint_every=3", "train.beta1=0.6"]).to_dict()
    assert config_differences(a, b) == ["train.beta1: 0.5 -> 0.6"]
    # what a diverged run is resumed with: lower learning rates, another precision
    c = get_preset("tiny").override(["train.lr_g=1e-5", "train.lr_d=1e-5", "train.precision=bf16"]).to_dict()
    assert config_differences(a, c) == []
    # how the iterations run on the device is not part of the run
    d = get_preset("tiny").override(["train.compile=true", "train.cuda_graphs=true"]).to_dict()
    assert config_differences(a, d) == []
    # a run saved before a field existed resumes when the field keeps its default, not when it is set
    older = copy.deepcopy(a)
    del older["train"]["t_weights"]
    assert config_differences(older, a) == []
    weighted = get_preset("tiny").override(["train.t_weights=1,2,2,1"]).to_dict()
    assert config_differences(older, weighted) == ["train.t_weights: [] -> [1.0, 2.0, 2.0, 1.0]"]


# --- the CLI end to end ----------------------------------------------------------------


def test_train_writes_the_run_directory(images, tmp_path, capsys):
    run = tmp_path / "run"
    rc, out, _ = train_cli(
        capsys,
        "--preset",
        "tiny",
        "--data",
        str(images),
        "--out",
        str(run),
        "--steps",
        "6",
        "--checkpoint-every",
        "2",
        "--set",
        "train.keep_last=2",
        "--set",
        "train.log_every=3",
    )
    assert rc == 0
    final = run / "checkpoints" / "generator_final.safetensors"
    assert out.strip().splitlines()[-1] == str(final)
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 6
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [
        "generator_0000004.safetensors",
        "generator_0000006.safetensors",
        "generator_final.safetensors",
        "state_0000004.pt",
        "state_0000006.pt",
    ]
    assert (run / "samples" / "step_0000006.png").is_file()
    log = read_log(run)
    start = log[0]
    assert start["event"] == "start" and start["batch_per_process"] == 8 and start["global_batch"] == 8
    train = [r for r in log if r["event"] == "train"]
    assert [r["step"] for r in train] == [3, 6]
    assert all(np.isfinite(r["loss_d"]) and r["images_per_s"] > 0 for r in train)
    G = load_generator(final)
    assert G.config.name == "tiny" and G.config.train.steps == 6
    state = torch.load(run / "checkpoints" / "state_0000006.pt", weights_only=True)
    torch.testing.assert_close(G.state_dict(), state["ema"]["module"])
    assert state["epoch"] == 3 and state["batch_in_epoch"] == 0  # 2 batches per epoch

    # continue the finished run for 2 more steps, config taken from the run
    rc, out, _ = train_cli(capsys, "--out", str(run), "--resume", "auto", "--steps", "8")
    assert rc == 0 and out.strip().splitlines()[-1] == str(final)
    assert (run / "checkpoints" / "state_0000008.pt").is_file()
    assert read_log(run)[-1]["step"] == 8


def test_time_budget_stops_early_and_still_exports(images, tmp_path, capsys):
    run = tmp_path / "run"
    rc, out, _ = train_cli(
        capsys,
        "--preset",
        "tiny",
        "--data",
        str(images),
        "--out",
        str(run),
        "--steps",
        "50",
        "--set",
        "train.max_minutes=1e-6",
    )
    assert rc == 0 and Path(out.strip().splitlines()[-1]).is_file()
    assert [r["step"] for r in read_log(run) if r["event"] == "time_limit"] == [1]
    assert (run / "checkpoints" / "state_0000001.pt").is_file()


def test_pixel_space_bf16(images, tmp_path, capsys):
    rc, out, _ = train_cli(
        capsys,
        "--preset",
        "tiny_pixel",
        "--data",
        str(images),
        "--out",
        str(tmp_path / "r"),
        "--steps",
        "2",
        "--precision",
        "bf16",
    )
    assert rc == 0 and out.strip().endswith("generator_final.safetensors")
    assert load_generator(out.strip().splitlines()[-1]).config.space == "pixel"


def test_unreadable_images_are_skipped_and_counted(images, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for file in sorted(images.iterdir())[:8]:
        shutil.copy(file, folder)
    (folder / "broken.png").write_bytes(b"not a png")
    run = tmp_path / "run"
    rc, _, _ = train_cli(capsys, "--preset", "tiny", "--data", str(folder), "--out", str(run), "--steps", "1")
    assert rc == 0 and read_log(run)[0]["dataset"] == {"images": 8, "skipped_unreadable": 1}


def test_dry_run_prints_the_resolved_config(capsys, tmp_path):
    rc, out, _ = train_cli(
        capsys,
        "--preset",
        "cifar10",
        "--out",
        str(tmp_path / "r"),
        "--dry-run",
        "--compile",
        "--set",
        "train.lr_g=2e-4",
        "--batch-size",
        "16",
        "--seed",
        "7",
    )
    cfg = json.loads(out)
    assert rc == 0 and cfg["train"]["compile"] is True and cfg["train"]["lr_g"] == 2e-4
    assert cfg["train"]["batch_size"] == 16 and cfg["train"]["seed"] == 7
    assert not (tmp_path / "r").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(images, tmp_path, capsys, monkeypatch):
    g_step = TrainStep.g_step
    calls = []

    def poisoned(self, x0):
        calls.append(1)
        losses = g_step(self, x0)
        return {**losses, "g_adv": torch.tensor(float("nan"))} if len(calls) == 4 else losses

    monkeypatch.setattr(TrainStep, "g_step", poisoned)
    run = tmp_path / "run"
    rc, _, err = train_cli(
        capsys,
        "--preset",
        "tiny",
        "--data",
        str(images),
        "--out",
        str(run),
        "--steps",
        "8",
        "--checkpoint-every",
        "2",
        "--set",
        "train.log_every=5",
    )
    message = err.strip().splitlines()[-1]  # (the progress bar shares stderr)
    assert rc == 2 and message.startswith("error: ")
    assert "NaN or inf at step 4" in message and "state_0000002.pt is kept" in message
    assert sorted(p.name for p in (run / "checkpoints").glob("state_*")) == ["state_0000002.pt"]
    assert read_log(run)[-1]["event"] == "error"


@pytest.mark.parametrize(
    "case",
    [
        "existing_run",
        "other_config",
        "missing_data",
        "empty_data",
        "unknown_preset",
        "no_preset",
        "corrupt_state",
        "bad_t_weights",
        "bad_rec_weight",
        "cuda_graphs_on_cpu",
    ],
)
def test_bad_input_is_one_line(case, images, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--preset", "tiny", "--data", str(images), "--out", str(run), "--steps", "2"]
    if case in ("existing_run", "other_config"):
        assert train_cli(capsys, *base)[0] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    args = {
        "existing_run": base,
        "other_config": base + ["--resume", "auto", "--set", "train.beta2=0.95", "--seed", "5"],
        "missing_data": ["--preset", "tiny", "--data", str(tmp_path / "nope"), "--out", str(run)],
        "empty_data": ["--preset", "tiny", "--data", str(empty), "--out", str(run)],
        "unknown_preset": ["--preset", "cifar11", "--out", str(run)],
        "no_preset": ["--out", str(run)],
        "corrupt_state": base + ["--resume", str(images / "00.png")],
        "bad_t_weights": base + ["--set", "train.t_weights=1,2,3"],
        "bad_rec_weight": base + ["--set", "train.rec_weight=0"],
        "cuda_graphs_on_cpu": base + ["--cuda-graphs", "--device", "cpu"],
    }[case]
    rc, _, err = train_cli(capsys, *args)
    expected = {
        "existing_run": "already holds a run.*--resume auto",
        "other_config": "different config.*train.beta2: 0.9 -> 0.95; train.seed: 1024 -> 5",
        "missing_data": "does not exist",
        "empty_data": "no image files",
        "unknown_preset": "unknown preset",
        "no_preset": "pass --preset",
        "corrupt_state": "cannot read training state",
        "bad_t_weights": r"train.t_weights=1.0,2.0,3.0 must give 4 non-negative weights.*t_weights=1,1,1,1",
        "bad_rec_weight": r"train.rec_weight=0 must be > 0.*train.rec_loss=false",
        "cuda_graphs_on_cpu": "train.cuda_graphs needs a CUDA device, not cpu; drop --cuda-graphs",
    }[case]
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert re.search(expected, err), err


# --- exact resume after kill -9 -------------------------------------------------------------


def test_resume_after_sigkill_is_bit_exact(images, tmp_path, capsys):
    common = [
        "--preset",
        "tiny",
        "--data",
        str(images),
        "--steps",
        "24",
        "--checkpoint-every",
        "4",
        "--set",
        "train.lazy_reg=3",
        "--set",
        "train.keep_last=10",
    ]
    killed = tmp_path / "killed"
    kill_training_after_checkpoint(common, killed, 4, tmp_path / "stderr.txt")
    assert not (killed / "checkpoints" / "state_0000024.pt").exists()

    rc, out, _ = train_cli(capsys, *common, "--out", str(killed), "--resume", "auto")
    assert rc == 0 and out.strip().splitlines()[-1].endswith("generator_final.safetensors")
    assert any(r["event"] == "resume" for r in read_log(killed))
    straight = tmp_path / "straight"
    assert train_cli(capsys, *common, "--out", str(straight))[0] == 0
    load = lambda run: torch.load(run / "checkpoints" / "state_0000024.pt", weights_only=True)  # noqa: E731
    assert_states_equal(load(killed), load(straight))


# --- two processes (gloo) -----------------------------------------------------------------------


def test_two_process_ddp_keeps_ranks_identical(images, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "wavediff",
        "train",
        "--preset",
        "tiny",
        "--data",
        str(images),
        "--out",
        str(run),
        "--steps",
        "3",
        "--checkpoint-every",
        "2",
        "--set",
        "train.lazy_reg=2",
        "--device",
        "cpu",
    ]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == str(run / "checkpoints" / "generator_final.safetensors")
    log = read_log(run)
    assert log[0]["world_size"] == 2 and log[0]["batch_per_process"] == 8 and log[0]["global_batch"] == 16
    weights = next(r for r in log if r["event"] == "weights")
    assert len(weights["sha256_per_rank"]) == 2 and weights["identical"]
    state = torch.load(run / "checkpoints" / "state_0000003.pt", weights_only=True)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["train"], state["rng"][1]["train"])


def test_progress_in_a_log_file_is_one_line_per_refresh(tmp_path, monkeypatch, capsys):
    """stderr not a terminal (nohup, a cluster job): the bar writes whole lines, at most one per LOG_INTERVAL_S,
    instead of a carriage-return redraw every second that a log file keeps as one ever longer line."""
    from wavediff.training import logging as run_logging

    monkeypatch.setattr(run_logging, "LOG_INTERVAL_S", 0.0)
    clock = iter(float(t) for t in range(100, 200, 10))
    monkeypatch.setattr(run_logging, "_clock", lambda: next(clock))
    log = run_logging.RunLog(tmp_path, total_steps=1000, initial_step=0, time_budget_s=120.0)
    for _ in range(3):
        log.advance(25)
    log.write("a message")
    log.close()
    captured = capsys.readouterr()
    assert "\r" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) >= 3 and all("of 2 min" in line for line in lines)
    assert lines[-1].startswith(" 25%") and lines[-1].endswith("step=75")  # 30 s of the 120 s budget
    assert "a message" in captured.out
    monkeypatch.setattr(run_logging, "LOG_INTERVAL_S", 3600.0)  # the real interval: no line between the first
    quiet = run_logging.RunLog(tmp_path, total_steps=300, initial_step=0)  # and the last within a short run
    for _ in range(50):
        quiet.advance(1)
    quiet.close()
    assert len(capsys.readouterr().err.splitlines()) <= 2


def test_time_budget_progress_bar_counts_minutes_not_unreachable_steps(tmp_path, monkeypatch):
    from wavediff.training import logging as run_logging

    clock = iter([100.0, 130.0, 190.0, 400.0, 500.0])
    monkeypatch.setattr(run_logging, "_clock", lambda: next(clock))
    log = run_logging.RunLog(tmp_path, total_steps=56_000, initial_step=0, time_budget_s=120.0)
    assert log.bar.total == 120.0
    log.advance(25)
    log.advance(25)
    assert log.bar.n == pytest.approx(90.0) and log.bar.postfix.startswith("step=50")
    log.advance(25)  # past the budget: the bar stops full instead of overflowing
    assert log.bar.n == pytest.approx(120.0)
    log.close()
    plain = run_logging.RunLog(tmp_path, total_steps=300, initial_step=10)
    plain.advance(5)
    assert (plain.bar.total, plain.bar.n) == (300, 15)
    plain.close()


def test_cuda_graphs_are_refused_where_they_cannot_run():
    """Training from CUDA graphs needs a CUDA device and one process: anything else is one line naming the fix."""
    from wavediff.errors import ConfigError
    from wavediff.training.graphs import check_cuda_graphs

    check_cuda_graphs(torch.device("cuda", 0), 1)  # checks the setting only: nothing runs on the device
    with pytest.raises(ConfigError, match="needs a CUDA device, not cpu; drop --cuda-graphs"):
        check_cuda_graphs(torch.device("cpu"), 1)
    with pytest.raises(ConfigError, match="one process only, not 2; drop --cuda-graphs for multi-GPU training"):
        check_cuda_graphs(torch.device("cuda"), 2)
