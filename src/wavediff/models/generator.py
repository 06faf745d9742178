"""`build_generator(cfg)`: the generator as callers see it, `G(x, t, z) -> x0`.

`Generator` wraps the network (`NCSNpp` or `WaveletNCSNpp`, in `.net`) with the
boundary adapters, so that callers always pass and receive `[B, C, H, W]` data
in the canonical band order:

* band order: weights trained on the authors' DWT_2D data (`band_order="dwt2d"`)
  see their input with the P and Q bands swapped, and the output is swapped back;
* patch size: `patch_size` p > 1 folds p x p pixel blocks into channels. To
  match released weights this reproduces the authors' layout exactly: the input
  is packed with channel index (p1, p2, c) while the output is read as (c, p1, p2)
  (so the two are not inverse to each other; the network learned around it);
* tanh on the output unless `use_tanh` is False.

`forward(x, t, z)` is `predict(x, conditioning(t, z))`; the sampler calls the two
halves itself to condition all of its T steps in one pass (`models/conditioning.py`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import GeneratorConfig
from ..errors import ConfigError
from ..wavelets import BAND_ORDERS, reorder_bands
from .conditioning import Conditioning
from .ncsnpp import NCSNpp
from .wavelet_ncsnpp import WaveletNCSNpp


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H*p, W*p] -> [B, p*p*C, H, W], channel index (p1 * p + p2) * C + c."""
    if p == 1:
        return x
    b, c, hp, wp = x.shape
    h, w = hp // p, wp // p
    return x.view(b, c, h, p, w, p).permute(0, 3, 5, 1, 2, 4).reshape(b, p * p * c, h, w)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C*p*p, H, W] -> [B, C, H*p, W*p], reading the channel index as c * p*p + p1 * p + p2."""
    if p == 1:
        return x
    b, cpp, h, w = x.shape
    c = cpp // (p * p)
    return x.view(b, c, p, p, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * p, w * p)


class Generator(nn.Module):
    """x [B, C, H, W] (canonical band order), t int64 [B], z [B, nz] -> predicted x0 [B, C, H, W]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        if cfg.band_order not in BAND_ORDERS:
            raise ConfigError(f"generator.band_order={cfg.band_order!r} is unknown; use one of {BAND_ORDERS}")
        if cfg.patch_size < 1 or cfg.resolution % cfg.patch_size:
            raise ConfigError(
                f"generator.patch_size={cfg.patch_size} must be >= 1 and divide the resolution {cfg.resolution}"
            )
        if cfg.band_order != "pywt" and cfg.in_channels % 4:
            raise ConfigError(
                f"generator.band_order={cfg.band_order!r} needs wavelet data (channels divisible by 4), "
                f"got in_channels={cfg.in_channels}; use band_order=pywt for pixel-space models"
            )
        if cfg.net_type == "wavelet":
            self.net: nn.Module = WaveletNCSNpp(cfg)
        elif cfg.net_type == "normal":
            self.net = NCSNpp(cfg)
        else:
            raise ConfigError(f"generator.net_type={cfg.net_type!r} is unknown; use 'wavelet' or 'normal'")
        self.cfg = cfg
        self.swap_bands = cfg.band_order != "pywt"

    def conditioning(self, t: torch.Tensor, z: torch.Tensor, stacked: bool = False) -> Conditioning:
        """The conditioning of steps t (int64 [B]) and latents z [B, nz], for `predict` (`stacked`: in two matrix
        products, for GPUs)."""
        return self.net.conditioning(t, z, stacked)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.predict(x, self.conditioning(t, z))

    def predict(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """x0 predicted from x [B, C, H, W] under `cond` (from `conditioning(t, z)` for the same B samples)."""
        cfg = self.cfg
        if self.swap_bands:
            x = reorder_bands(x, "pywt", cfg.band_order)
        h = unpatchify(self.net.predict(patchify(x, cfg.patch_size), cond), cfg.patch_size)
        if self.swap_bands:
            h = reorder_bands(h, cfg.band_order, "pywt")
        return torch.tanh(h) if cfg.use_tanh else h

    def official_order(self) -> list[nn.Module]:
        return self.net.official_order()


def build_generator(cfg: GeneratorConfig) -> Generator:
    """The generator for `cfg` (NCSN++ or wavelet NCSN++), freshly initialised like the authors'."""
    return Generator(cfg)


def perturbed_generator(cfg: GeneratorConfig, scale: float, seed: int = 0) -> Generator:
    """A fresh generator in eval mode without gradients, every weight perturbed by `scale` x N(0, 1) noise.

    Fresh NCSN++ outputs are about 0 (its last layers start near zero), so images from it say nothing about its
    weights; for tests and benchmarks that compare two ways of running the same network, the noise makes them do.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    G = build_generator(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return G
