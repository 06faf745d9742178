"""Accelerator checks: parity of every fixture on the device, bf16, torch.compile, CUDA graphs, training, NCCL.

They run on the device named by WAVEDIFF_TEST_DEVICE (default: cuda when available, otherwise
they skip). `benchmarks/gpu_check.sh` runs them on a GPU; `gpu_check.sh --cpu` (run by the test
suite, see test_gpu_check_script_runs_on_the_cpu) runs them on the CPU with a small budget, so a
broken check is caught on machines without a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DISC_FIXTURES, FIXTURES, GENERATOR_FIXTURES
from wavediff.checkpoints.official import official_args_to_config, read_official_state_dict
from wavediff.checkpoints.official_discriminator import convert_discriminator_state
from wavediff.checkpoints.official_generator import convert_generator_state
from wavediff.errors import ConfigError
from wavediff.fastpath import FastPath, SamplerRunner
from wavediff.models.discriminator import build_discriminator
from wavediff.models.generator import build_generator
from wavediff.training.graphs import check_cuda_graphs
from wavediff.wavelets import reorder_bands

REQUESTED = os.environ.get("WAVEDIFF_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
pytestmark = [
    pytest.mark.device,
    pytest.mark.skipif(not REQUESTED, reason="no accelerator (set WAVEDIFF_TEST_DEVICE=cpu to run these on the CPU)"),
]
QUICK = os.environ.get("WAVEDIFF_DEVICE_CHECK_QUICK") == "1"  # gpu_check.sh --cpu: the small budget


@pytest.fixture(scope="module")
def device():
    if REQUESTED.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"WAVEDIFF_TEST_DEVICE={REQUESTED} but torch {torch.__version__} sees no CUDA device")
    # parity at 1e-4 needs true fp32: PyTorch lets cuDNN convolve in TF32 by default (~1e-3 off)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch.device(REQUESTED)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _generator(name):
    cfg = official_args_to_config(FIXTURES / f"{name}_config.json")
    G = build_generator(cfg.generator)
    G.load_state_dict(convert_generator_state(read_official_state_dict(FIXTURES / f"{name}_netG.pth"), cfg.generator))
    return G.eval().requires_grad_(False), cfg


def _canonical(x):
    return reorder_bands(x, "dwt2d", "pywt")  # fixture tensors are in the network's own (DWT_2D) order


@pytest.mark.parametrize("name", GENERATOR_FIXTURES)
def test_generator_fixture_on_device_fp32(name, device):
    G, _ = _generator(name)
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    x, t, z = _canonical(io["x"]).to(device), io["t"].to(device), io["z"].to(device)
    with torch.no_grad():
        out = reorder_bands(G.to(device)(x, t, z), "pywt", "dwt2d").cpu()
    torch.testing.assert_close(out, io["out"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", DISC_FIXTURES)
def test_discriminator_fixture_on_device_fp32(name, device):
    cfg = official_args_to_config(FIXTURES / f"{name}_config.json").discriminator
    D = build_discriminator(cfg)
    D.load_state_dict(convert_discriminator_state(read_official_state_dict(FIXTURES / f"{name}_netD.pth", "D"), cfg))
    D = D.eval().to(device)
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    for b in (2, 8):
        args = (_canonical(io[f"x_t_B{b}"]), io[f"t_B{b}"], _canonical(io[f"x_tp1_B{b}"]))
        with torch.no_grad():
            out = D(*(a.to(device) for a in args)).cpu()
        torch.testing.assert_close(out, io[f"out_B{b}"], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", ["tiny_wavelet", "tiny_normal"])
def test_bf16_sampling_is_finite_and_close(name, device):
    G, cfg = _generator(name)
    G = G.to(device)
    ref = SamplerRunner(G, cfg, device, FastPath(precision="fp32")).sample(range(8))
    bf16 = SamplerRunner(G, cfg, device, FastPath(precision="bf16")).sample(range(8))
    assert torch.isfinite(bf16).all()
    diff = (bf16 - ref).abs()
    # images in [-1, 1]; bf16 keeps ~3 significant digits. The fixtures' randomly perturbed weights amplify the
    # drift more than trained ones (README, Sampling: Precision), so the bounds only catch gross errors.
    assert diff.max() < 0.3 and torch.quantile(diff.flatten(), 0.99) < 0.06, (diff.max(), diff.mean())


def test_fp32_sampling_is_true_fp32_and_tf32_is_close(device):
    G, cfg = _generator("tiny_wavelet")
    cpu = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32"))
    inputs = cpu.draw(range(4))  # the same noise for both devices (per-seed draws differ between devices)
    ref = cpu(*inputs)
    G = G.to(device)
    on_device = [t.to(device) for t in inputs]
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default; the fp32 runner must switch it off itself
    try:
        fp32 = SamplerRunner(G, cfg, device, FastPath(precision="fp32"))(*on_device).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = False
    torch.testing.assert_close(fp32, ref, atol=1e-4, rtol=0)
    if device.type != "cuda":
        with pytest.raises(ConfigError, match="tf32 needs a CUDA device"):
            SamplerRunner(G, cfg, device, FastPath(precision="tf32"))
        return
    tf32 = SamplerRunner(G, cfg, device, FastPath(precision="tf32"))(*on_device).cpu()
    assert torch.isfinite(tf32).all() and (tf32 - ref).abs().max() < 0.1


@pytest.mark.skipif(QUICK, reason="compiling takes minutes on a CPU; gpu_check.sh without --cpu runs it")
def test_compiled_sampler_equals_eager(device):
    G, cfg = _generator("tiny_wavelet")
    G = G.to(device)
    eager = SamplerRunner(G, cfg, device, FastPath(precision="fp32")).sample(range(4))
    compiled = SamplerRunner(G, cfg, device, FastPath(precision="fp32", compile=True)).sample(range(4))
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)


def test_cuda_graphs_replay_the_eager_images(device):
    G, cfg = _generator("tiny_wavelet")
    G = G.to(device)
    if device.type != "cuda":
        with pytest.raises(ConfigError, match="needs a CUDA device"):
            SamplerRunner(G, cfg, device, FastPath(cuda_graphs=True))
        return
    for precision in ("fp32", "bf16"):
        for channels_last in (False, True):  # the same layout on both sides: NHWC kernels round differently in bf16
            fast = FastPath(precision=precision, channels_last=channels_last)
            eager = SamplerRunner(G, cfg, device, fast)
            graphed = SamplerRunner(G, cfg, device, dataclasses.replace(fast, cuda_graphs=True))
            for seeds in (range(4), range(10, 14), range(4)):  # replays with new noise, then the first again
                torch.testing.assert_close(graphed.sample(seeds), eager.sample(seeds), atol=2e-3, rtol=0)


def _images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def _train(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src")])))
    cmd = [sys.executable, "-m", "wavediff", "train", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def test_training_with_bf16_and_compile_then_resume(device, tmp_path):
    data, run = _images(tmp_path / "images"), tmp_path / "run"
    steps = 6 if QUICK else 50
    common = ["--preset", "tiny", "--data", data, "--out", run, "--device", device.type, "--precision", "bf16"]
    common += ["--set", "data.num_workers=0", "--checkpoint-every", steps // 2]
    # compiling training takes minutes on a CPU and over 2 minutes per process on an H100 machine: the first
    # run compiles, the resume runs eager, which also checks that a compiled run's state loads without it
    first = _train(*common, "--steps", steps // 2, *([] if QUICK else ["--compile"]))
    assert first.returncode == 0, first.stderr[-2000:]
    again = _train(*common, "--steps", steps, "--resume", "auto")
    assert again.returncode == 0, again.stderr[-2000:]
    assert Path(again.stdout.strip().splitlines()[-1]).name == "generator_final.safetensors"
    log = [line for line in (run / "log.jsonl").read_text().splitlines() if '"losses"' in line or "loss" in line]
    assert log, "no losses were logged"


# a training run on deterministic kernels (and without cuDNN's autotuning, which may pick other kernels in another
# process), so two runs can be compared weight for weight
_DETERMINISTIC_TRAIN = """
import json, os, sys, torch
import wavediff.training.trainer as trainer
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
torch.use_deterministic_algorithms(True, warn_only=True)
trainer.configure_training_device = lambda device: None
from wavediff.cli import main
sys.exit(max(main(["train", *args]) for args in json.loads(sys.argv[1])))
"""


def test_cuda_graph_replays_equal_eager_iterations(device, tmp_path):
    """12 steps of the tiny preset (R1 every 3rd, a new learning rate every 2 steps, so the graphs are captured
    again and again), eager and from CUDA graphs, in fp32 and bf16: the same weights, and every iteration but the
    warm-up replayed. One process per mode, on deterministic kernels."""
    if device.type != "cuda":
        with pytest.raises(ConfigError, match="needs a CUDA device"):
            check_cuda_graphs(device, 1)
        return
    from safetensors.torch import load_file

    from wavediff.presets import get_preset

    data = _images(tmp_path / "images")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    base = ["--preset", "tiny", "--data", data, "--device", device.type, "--steps", 12]
    base += ["--set", "data.num_workers=0", "--set", "train.lazy_reg=3"]
    for graphs in (False, True):
        runs = [
            [
                *base,
                "--precision",
                p,
                "--out",
                tmp_path / f"{p}_graphs_{graphs}",
                *(["--cuda-graphs"] if graphs else []),
            ]
            for p in ("fp32", "bf16")
        ]
        cmd = [sys.executable, "-c", _DETERMINISTIC_TRAIN, json.dumps([[str(a) for a in r] for r in runs])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for precision in ("fp32", "bf16"):
        eager, graphed = (tmp_path / f"{precision}_graphs_{g}" for g in (False, True))
        log = [json.loads(line) for line in (graphed / "log.jsonl").read_text().splitlines()]
        used = next(r for r in log if r.get("event") == "cuda_graphs")
        assert used["replays"] == 12 - used["eager"] and used["eager"] == 4 and used["captures"] >= 2, used
        final = [load_file(run / "checkpoints" / "generator_final.safetensors") for run in (eager, graphed)]
        worst = max((final[1][k].float() - final[0][k].float()).abs().max().item() for k in final[0])
        # fp32: equal up to float rounding. bf16: its rounding differences, which Adam amplifies on weights whose
        # gradients are near zero, reached 2.45e-5 (H100), 0.15 of one Adam step (lr_g 1.6e-4); a replay that
        # skipped or repeated an iteration would move weights by about a whole step (Adam's first steps are lr
        # in size), so half a step still tells the two apart
        tolerance = 1e-5 if precision == "fp32" else 0.5 * get_preset("tiny").train.lr_g
        assert worst <= tolerance, f"{precision}: graphed training drifted from eager training by {worst:.2e}"


def test_one_process_collective_group(device, tmp_path):
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        x = torch.arange(4.0, device=device)
        dist.all_reduce(x)
        dist.broadcast(x, 0)
        assert x.cpu().tolist() == [0.0, 1.0, 2.0, 3.0]
    finally:
        dist.destroy_process_group()
