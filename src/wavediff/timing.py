"""The paper's sampler timing protocol, shared by `wavediff bench` and benchmarks/."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn

from .config import ExperimentConfig
from .diffusion import VPDiffusion
from .sampling import autocast
from .wavelets import idwt


@torch.no_grad()
def time_sampler(
    generator: nn.Module,
    cfg: ExperimentConfig,
    batch: int,
    device: torch.device,
    precision: str = "fp32",
    warmup: int = 10,
    runs: int = 300,
) -> dict:
    """Mean/std seconds of one full sampling pass (T generator calls + posterior + x2 + inverse DWT)."""
    diffusion = VPDiffusion(cfg.diffusion, device)
    shape = (batch, cfg.data_channels, cfg.data_resolution, cfg.data_resolution)
    rng = torch.Generator(device).manual_seed(0)
    x_T = torch.randn(shape, generator=rng, device=device)

    def once():
        with autocast(device, precision):
            x = diffusion.sample(generator, x_T, cfg.generator.nz, rng)
            return idwt(x * 2.0) if cfg.space == "wavelet" else x

    for _ in range(warmup):
        once()
    times = []
    cuda = device.type == "cuda"
    for _ in range(runs):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            once()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
    return {
        "mean": statistics.fmean(times),
        "std": statistics.pstdev(times),
        "median": statistics.median(times),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "clock": "CUDA events" if cuda else "perf_counter",
    }
