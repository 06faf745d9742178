"""Sampling: seeds -> images. Sample i depends only on seed i.

Each sample draws its initial noise, its latents z and its posterior noise from
its own `torch.Generator` seeded with its seed, so splitting the seeds across
batches, processes or GPUs gives the same images: bit for bit at the same batch
size, and up to float rounding across batch sizes (CPU kernels sum in an order
that depends on the batch size: about 4e-6, which moves a rare pixel by 1/255).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from .config import ExperimentConfig
from .errors import ConfigError
from .fastpath import PRECISIONS, FastPath, SamplerRunner, autocast, resolve_precision  # noqa: F401 (re-exported)

MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes without wrapping around
MAX_SEEDS = 10_000_000  # per command: 200x the paper's 50k samples, still a small list in memory


def parse_seeds(text: str) -> list[int]:
    """'0-99' -> 0..99 inclusive; '1,5,7-9' -> [1, 5, 7, 8, 9]. Seeds are integers 0 .. 2^63 - 1."""
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = (x.strip() for x in part.partition("-"))
        if not (lo.isascii() and lo.isdigit() and (not sep or (hi.isascii() and hi.isdigit()))):
            raise ConfigError(
                f"bad seed list {text!r} at {part!r}; seeds are integers >= 0: write e.g. 0-49999 or 1,5,7-9"
            )
        first, last = int(lo), int(hi if sep else lo)
        if last < first or last > MAX_SEED:
            why = f"{first}-{last} runs backwards" if last < first else f"{last} is above 2^63 - 1"
            raise ConfigError(f"bad seed list {text!r}: {why}; write e.g. 0-49999 or 1,5,7-9")
        ranges.append((first, last))
    count = sum(last - first + 1 for first, last in ranges)
    if count > MAX_SEEDS:
        raise ConfigError(f"seed list {text!r} has {count:,} seeds; at most {MAX_SEEDS:,} per command")
    if not count:
        raise ConfigError(f"empty seed list {text!r}")
    return [s for first, last in ranges for s in range(first, last + 1)]


def as_seed_list(seeds) -> list[int]:
    """`seeds` (any iterable of integers: a list, a range, a NumPy or integer tensor array) as a list of ints; a
    string, a lone number, floats or booleans are refused in one line rather than misread ("12" is not [1, 2])."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(
            f"seeds must be a list or range of integers, not {type(seeds).__name__} {seeds!r}; e.g. seeds=range(16) "
            f"or [3] (a string like '0-99': wavediff.sampling.parse_seeds)"
        )
    if torch.is_tensor(seeds):
        seeds = seeds.tolist() if seeds.dim() == 1 else seeds
    out = []
    for s in seeds:
        if torch.is_tensor(s) and s.dim() == 0:
            s = s.item()
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise ConfigError(f"seed {s!r} is not an integer; seeds are integers from 0 to 2^63 - 1")
        out.append(int(s))
    return out


@torch.no_grad()
def sample(
    generator: nn.Module,
    seeds: Iterable[int],
    config: ExperimentConfig | None = None,
    device: torch.device | str | None = None,
    precision: str = "auto",
    runner: SamplerRunner | None = None,
) -> torch.Tensor:
    """Images [N, 3, S, S] in [-1, 1] for the given seeds (one batch), from `generator`.

    `config` defaults to `generator.config` (set by the loaders). `runner` (a `SamplerRunner`
    built once for many batches) replaces generator/config/device/precision.
    """
    if runner is None:
        cfg, device = _config_and_device(generator, config, device, "sample")
        runner = SamplerRunner(generator, cfg, device, FastPath(precision=precision))
    return runner.sample(seeds)


def _config_and_device(
    generator: nn.Module, config: ExperimentConfig | None, device, caller: str
) -> tuple[ExperimentConfig, torch.device]:
    """The config to sample `generator` with (given, else its own, checked against each other) and the device (given
    and checked, else where its weights are)."""
    from .devices import resolve_device

    own = getattr(generator, "config", None)
    cfg = config or own
    if cfg is None:
        raise ConfigError(
            f"{caller}() needs the experiment config: pass config= or load the generator with wavediff.load_generator"
        )
    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(
            f"config must be an ExperimentConfig (e.g. wavediff.get_preset('cifar10')), not {type(cfg).__name__}"
        )
    built = getattr(generator, "cfg", None)  # the GeneratorConfig the network was built from
    if (own is not None and config is not None and _sampled_part(config) != _sampled_part(own)) or (
        built is not None and built != cfg.generator
    ):
        raise ConfigError(
            "config= describes another model than this generator's (image size, space, T or network differ); "
            "drop config= to use the generator's own (generator.config)"
        )
    if device is None:
        return cfg, next(generator.parameters()).device
    return cfg, resolve_device(str(device))


def _sampled_part(cfg: ExperimentConfig) -> tuple:
    """What sampling reads from a config."""
    return cfg.image_size, cfg.space, cfg.diffusion, cfg.generator


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [N, 3, H, W] -> uint8 [N, H, W, 3] (as torchvision's save_image rounds)."""
    x = ((images + 1) * 0.5 * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def generate(
    generator: nn.Module,
    seeds: Sequence[int],
    batch_size: int,
    config: ExperimentConfig | None = None,
    device: torch.device | str | None = None,
    precision: str = "auto",
    fast: FastPath | None = None,
) -> Iterator[np.ndarray]:
    """uint8 batches [b, H, W, 3] for `seeds`, in order. `fast` (if given) overrides `precision`. Options the
    device cannot run are refused here, when it is called, before the first batch is asked for."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    cfg, device = _config_and_device(generator, config, device, "generate")
    runner = SamplerRunner(generator, cfg, device, fast or FastPath(precision=precision))
    # A compiled or graph-replayed sampler compiles or captures once per batch size: a short last batch is padded to
    # the full size (the extra rows are dropped) rather than paying a second compile (a CPU: 30-40 s for cifar10)
    # or capture. Its images are then also the full batch's, bit for bit.
    pad = (runner.fast.compile or runner.cuda_graphs) and len(seeds) > batch_size

    def batches() -> Iterator[np.ndarray]:
        for i in range(0, len(seeds), batch_size):
            chunk = list(seeds[i : i + batch_size])
            short = batch_size - len(chunk) if pad else 0
            yield to_uint8(runner.sample(chunk + chunk[-1:] * short)[: len(chunk)])

    return batches()


def generate_uint8(
    checkpoint: str,
    seeds: Sequence[int],
    batch_size: int = 100,
    device: str | None = None,
    precision: str = "auto",
    *,
    preset: str | None = None,
    official_args=None,
    fast: FastPath | None = None,
) -> Iterator[np.ndarray]:
    """Load a checkpoint (ours, or the authors' with preset/official_args) and yield uint8 batches."""
    from .checkpoints.convert import load_any_generator

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    generator, cfg = load_any_generator(checkpoint, preset=preset, official_args=official_args, device=dev)
    return generate(generator, list(seeds), batch_size, cfg, dev, precision, fast)
