"""What the playground draws: sample grids, seed interpolations, latent variations and denoising trajectories.

Every view draws its noise exactly as `wavediff.sampling.sample` does (one `torch.Generator`
per seed: the initial noise, then z and the posterior noise at each step), so seed s shows
the image that `wavediff sample --seeds s` writes at the same precision.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..checkpoints.io import run_generator
from ..config import ExperimentConfig
from ..diffusion import randn
from ..errors import CheckpointError, ConfigError
from ..fastpath import FastPath, SamplerRunner
from ..sampling import MAX_SEED, parse_seeds, resolve_precision, sample, to_uint8
from ..wavelets import dwt_bands, wavelet_to_image

MAX_IMAGES = 64  # per request, for images up to 64 px (`max_images`: fewer for larger ones)
CHUNK_PIXELS = 8 * 256 * 256  # images per generator batch: at most this many pixels (memory: 8 at 256 px, 1 at 1024)


def max_images(image_size: int) -> int:
    """Images one request may ask for: 64 up to 64 px, 16 up to 256 px, 4 above (each takes seconds on a CPU)."""
    return MAX_IMAGES if image_size <= 64 else 16 if image_size <= 256 else 4


def chunk_size(image_size: int) -> int:
    """Images per generator batch: memory stays that of a few images whatever the request asks for (celeba_1024 on
    a CPU takes about 0.55 GB per image in flight)."""
    return max(1, min(MAX_IMAGES, CHUNK_PIXELS // (image_size * image_size)))


BAND_NAMES = ("LL", "LH", "HL", "HH")
MAX_DETAIL_GAIN = 20.0  # detail bands are stretched to fill [-1, 1], by at most this factor
VARY = ("both", "z", "noise")  # what latent variations take from the other seeds
_SEEDS_RE = re.compile(r"^\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*$", re.ASCII)


def bounded_seeds(text: str, limit: int = MAX_IMAGES, what: str = "images") -> list[int]:
    """`parse_seeds` for untrusted text: checks the syntax and the count before expanding any range."""
    text = (text or "").strip()
    if len(text) > 400 or not _SEEDS_RE.match(text):
        raise ConfigError(f"bad seed list {text[:40]!r}; write e.g. 0-15 or 1,5,7-9 (seeds are integers >= 0)")
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
        if hi_i < lo_i:
            raise ConfigError(f"bad seed range {part.strip()!r}; the first seed must not exceed the last")
        if hi_i > MAX_SEED:
            raise ConfigError(f"seed {hi_i} is too large; seeds go from 0 to {MAX_SEED}")
        count += hi_i - lo_i + 1
        if count > limit:
            raise ConfigError(f"seed list {text[:40]!r} asks for more than {limit} {what}; ask for at most {limit}")
    return parse_seeds(text)


def resolve_checkpoint(arg: str | None, default_run: str = "runs/demo") -> Path:
    """A checkpoint file, or a run directory's final (else latest) EMA generator; None: the demo's run."""
    if arg is None:
        if not Path(default_run).is_dir():
            raise ConfigError(
                f"no checkpoint given and {default_run} does not exist; pass a .safetensors checkpoint or a run "
                f"directory (wavediff serve runs/NAME), or train one first with `wavediff demo`"
            )
        arg = default_run
    path = Path(arg)
    if path.is_dir():
        return run_generator(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass a .safetensors checkpoint or a run directory")
    return path


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors of one sample (exactly a at 0 and b at 1)."""
    if alpha <= 0.0:
        return a.clone()
    if alpha >= 1.0:
        return b.clone()
    af, bf = a.flatten().double(), b.flatten().double()
    cos = torch.dot(af, bf) / (af.norm() * bf.norm()).clamp(min=1e-12)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    if theta < 1e-4:
        return ((1 - alpha) * a.double() + alpha * b.double()).to(a.dtype)
    out = (torch.sin((1 - alpha) * theta) * a.double() + torch.sin(alpha * theta) * b.double()) / torch.sin(theta)
    return out.to(a.dtype)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def mosaic(rows: Sequence[Sequence[np.ndarray]], gap: int = 2, columns: int | None = None) -> np.ndarray:
    """Rows of equally sized uint8 images on a white canvas (`columns` per row, default the longest row)."""
    size = max(img.shape[0] for row in rows for img in row)
    cols = columns or max(len(row) for row in rows)
    canvas = np.full((len(rows) * (size + gap) - gap, cols * (size + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            h, w = img.shape[:2]
            y, x = r * (size + gap), c * (size + gap)
            canvas[y : y + h, x : x + w] = img
    return canvas


def grid_rows(images: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    cols = math.ceil(math.sqrt(len(images)))
    return [list(images[i : i + cols]) for i in range(0, len(images), cols)]


@dataclass
class Result:
    """A view's images (uint8 [H, W, 3]) with labels, the rows of its download PNG, and its generation time."""

    images: list[np.ndarray]
    labels: list[str]
    rows: list[list[np.ndarray]]
    seconds: float
    extra: dict


class Playground:
    """One loaded generator and the views the page asks for (callers serialise access: one at a time)."""

    def __init__(self, generator: nn.Module, cfg: ExperimentConfig, device, precision: str = "fp32", source: str = ""):
        self.generator, self.cfg, self.device = generator, cfg, torch.device(device)
        self.precision = resolve_precision(precision, self.device)  # "auto" -> what it means here; validates
        # the sampler's own view of the generator (at bf16: a bf16 copy), so every view matches `wavediff sample`
        self.runner = SamplerRunner(generator, cfg, self.device, FastPath(precision=self.precision))
        self.source = source
        self.diffusion = self.runner.diffusion
        self.max_images = max_images(cfg.image_size)
        self.chunk = chunk_size(cfg.image_size)

    def info(self) -> dict:
        g, cfg = self.cfg.generator, self.cfg
        return {
            "checkpoint": self.source,
            "preset": cfg.name,
            "space": cfg.space,
            "image_size": cfg.image_size,
            "steps": cfg.diffusion.num_timesteps,
            "nz": g.nz,
            "network": f"{g.net_type}, nf {g.nf}, ch_mult {','.join(map(str, g.ch_mult))}",
            "parameters": sum(p.numel() for p in self.generator.parameters()),
            "device": str(self.device),
            "precision": self.precision,
            "max_images": self.max_images,
        }

    # ------------------------------------------------------------------ helpers
    def _to_image(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return wavelet_to_image(x) if self.cfg.space == "wavelet" else x.clamp(-1.0, 1.0)

    def _state_shape(self, n: int) -> tuple[int, ...]:
        return (n, self.cfg.data_channels, self.cfg.data_resolution, self.cfg.data_resolution)

    def _draws(self, seed: int) -> list[torch.Tensor]:
        """Seed's noise in `sample`'s order: x_T, then (z, posterior noise) for each step."""
        gens = [torch.Generator(self.device).manual_seed(seed)]
        draws = [randn(self._state_shape(1), gens, self.device)]
        for _ in range(self.diffusion.num_timesteps):
            draws.append(randn((1, self.cfg.generator.nz), gens, self.device))
            draws.append(randn(self._state_shape(1), gens, self.device))
        return draws

    def _run(self, draws: Sequence[torch.Tensor]) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """The sampler's steps (t, x_0 predicted, x_t) from draws in `_draws`' order: x_T, then z, noise, z, ...;
        run `self.chunk` samples at a time (on the CPU, the chunk's results as they come), so memory stays bounded."""
        zs, noises = torch.stack(draws[1::2]), torch.stack(draws[2::2])
        chunks = []
        with torch.no_grad(), self.runner.precision_context():
            for i in range(0, draws[0].shape[0], self.chunk):
                part = slice(i, i + self.chunk)
                steps = self.runner.steps(draws[0][part], zs[:, part], noises[:, part])
                chunks.append([(t, x0.cpu(), x.cpu()) for t, x0, x in steps])
        return [
            (t, torch.cat([c[k][1] for c in chunks]), torch.cat([c[k][2] for c in chunks]))
            for k, (t, _, _) in enumerate(chunks[0])
        ]

    # ------------------------------------------------------------------ views
    def grid(self, seeds: Sequence[int]) -> Result:
        self._check_count(len(seeds), "seeds")
        start = time.perf_counter()
        images = []
        for i in range(0, len(seeds), self.chunk):  # as `wavediff sample --batch CHUNK` would
            images += list(to_uint8(sample(self.generator, seeds[i : i + self.chunk], runner=self.runner)))
        seconds = time.perf_counter() - start
        # seeds as text: JSON numbers lose integers above 2^53 in a browser
        return Result(
            images, [f"seed {s}" for s in seeds], grid_rows(images), seconds, {"seeds": list(map(str, seeds))}
        )

    def _check_count(self, n: int, what: str) -> None:
        if n > self.max_images:
            raise ConfigError(
                f"{n} {what} is more than the {self.max_images} one request may ask for at {self.cfg.image_size} px"
            )

    def interpolation(self, seed_a: int, seed_b: int, frames: int) -> Result:
        if not 2 <= frames <= self.max_images:
            raise ConfigError(f"bad frame count {frames}; ask for 2 to {self.max_images} frames")
        start = time.perf_counter()
        a, b = self._draws(seed_a), self._draws(seed_b)
        alphas = [i / (frames - 1) for i in range(frames)]
        mixed = [torch.cat([slerp(da[0], db[0], t)[None] for t in alphas]) for da, db in zip(a, b)]
        steps = self._run(mixed)
        images = list(to_uint8(self._to_image(steps[-1][2])))
        seconds = time.perf_counter() - start
        labels = [f"seed {seed_a}" if t == 0 else f"seed {seed_b}" if t == 1 else f"\u03b1 {t:.2f}" for t in alphas]
        return Result(images, labels, [images], seconds, {"alphas": alphas})

    def variations(self, seed: int, others: Sequence[int], vary: str = "both") -> Result:
        """Seed's initial noise x_T with the step latents of other seeds: every step's z and posterior noise
        (`vary="both"`), only z (the GAN's latent), or only the posterior noise. The first image is seed's own."""
        if vary not in VARY:
            raise ConfigError(f"bad vary {vary[:20]!r}; use one of {', '.join(VARY)}")
        if not 1 <= len(others) < self.max_images:
            raise ConfigError(f"ask for 1 to {self.max_images - 1} other seeds, not {len(others)}")
        start = time.perf_counter()
        own = self._draws(seed)
        draws = [own] + [self._draws(o) for o in others]

        def varied(i: int) -> bool:  # position i of `_draws`: 0 is x_T (always the seed's), then z, noise, z, ...
            return vary == "both" or (vary == "z") == (i % 2 == 1)

        mixed = [torch.cat([d[i] if varied(i) else own[i] for d in draws]) for i in range(1, len(own))]
        steps = self._run([torch.cat([own[0]] * len(draws))] + mixed)
        images = list(to_uint8(self._to_image(steps[-1][2])))
        seconds = time.perf_counter() - start
        what = {"both": "latents", "z": "z", "noise": "noise"}[vary]
        labels = [f"seed {seed}"] + [f"{what} of {o}" for o in others]
        return Result(images, labels, [images], seconds, {"seed": seed, "others": list(others), "vary": vary})

    def trajectory(self, seed: int) -> Result:
        start = time.perf_counter()
        draws = self._draws(seed)
        x_T = draws[0]
        steps = self._run(draws)
        T = self.diffusion.num_timesteps
        states = [to_uint8(self._to_image(x_T))[0]] + [to_uint8(self._to_image(x))[0] for _, _, x in steps]
        preds = [to_uint8(self._to_image(x0))[0] for _, x0, _ in steps]
        final = self._to_image(steps[-1][2])
        ll, *details = dwt_bands(final)
        gain = min(1.0 / max(float(torch.cat(details).abs().max()), 1e-6), MAX_DETAIL_GAIN)
        bands = [to_uint8((ll / 2).clamp(-1, 1))[0]] + [to_uint8((d * gain).clamp(-1, 1))[0] for d in details]
        seconds = time.perf_counter() - start
        labels = [f"x_{t}" for t in range(T, -1, -1)] + [f"from x_{t + 1}" for t in range(T - 1, -1, -1)]
        labels += list(BAND_NAMES)
        rows = [states, [np.full_like(states[0], 255)] + preds, bands]
        return Result(states + preds + bands, labels, rows, seconds, {"steps": T, "detail_gain": gain, "seed": seed})
