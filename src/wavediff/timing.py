"""The paper's sampler timing protocol, shared by `wavediff bench` and benchmarks/."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from .config import ExperimentConfig
from .fastpath import FastPath, SamplerRunner


def sampler_pass(
    generator: nn.Module, cfg: ExperimentConfig, batch: int, device: torch.device, fast: FastPath | str = "fp32"
):
    """A function running one full sampling pass from fixed x_T: the paper's timed region (its noise drawn inside)."""
    runner = SamplerRunner(generator, cfg, device, fast if isinstance(fast, FastPath) else FastPath(precision=fast))
    rng = torch.Generator(device).manual_seed(0)
    x_T = runner.draw_batch(batch, rng)[0]

    def once():
        return runner(x_T, *runner.diffusion.draw_noise(x_T.shape, cfg.generator.nz, rng, device))

    return once


def time_passes(once: Callable[[], object], device: torch.device, runs: int) -> list[float]:
    """Seconds of each of `runs` calls of `once`: CUDA events around each on a GPU, perf_counter elsewhere."""
    times = []
    for _ in range(runs):
        if device.type == "cuda":
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
    return times


@torch.no_grad()
def time_sampler(
    generator: nn.Module,
    cfg: ExperimentConfig,
    batch: int,
    device: torch.device,
    fast: FastPath | str = "fp32",
    warmup: int = 10,
    runs: int = 300,
    on_ready: Callable[[], None] | None = None,
) -> dict:
    """Mean/std seconds of one full sampling pass (T generator calls + posterior + x2 + inverse DWT).
    `on_ready` is called once the sampler is built (its options accepted), before the first pass."""
    once = sampler_pass(generator, cfg, batch, device, fast)
    if on_ready is not None:
        on_ready()

    for _ in range(warmup):
        once()
    times = time_passes(once, device, runs)
    cuda = device.type == "cuda"
    return {
        "mean": statistics.fmean(times),
        "std": statistics.pstdev(times),
        "median": statistics.median(times),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "clock": "CUDA events" if cuda else "perf_counter",
    }
