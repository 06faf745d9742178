"""Time-conditioned discriminators of WaveDiff (and DDGAN): `D(x_t, t, x_tp1) -> [B, 1]`.

The discriminator judges whether `x_t` (a real or generated, less noisy
sample) is a plausible denoising of `x_tp1` at step `t`. The two images are
concatenated along channels, lifted by a 1x1 stem, and pass through a stack of
residual `DownConvBlock`s that each receive the embedded step index; a
minibatch-stddev channel, a 3x3 conv, a spatial sum and a linear layer give the
logit.

Two variants, chosen by dataset in the paper:

* small (CIFAR-10, STL-10): widths 2, 2, 4, 8 (, 8) x ngf; the first block
  keeps the resolution, the others halve it. 3 or 4 blocks.
* large (CelebA-HQ, LSUN): widths 2, 4, 8, 8, 8, 8 x ngf; every block halves
  the resolution. 3 to 6 blocks.

`num_layers` must lie within the variant's range (the authors' classes
silently cap it; `official_args_to_config` applies that cap when reading their
arguments, so their default `num_disc_layers=6` with a small discriminator is 4).

Inputs are in canonical (pywt) band order; a model whose weights were trained
on the authors' DWT_2D order (`band_order="dwt2d"`) swaps the two mixed bands
of both inputs before the network.

Blocks declare `official_names` (our attribute -> the authors' attribute) for
the checkpoint converter, as the generator blocks do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DiscriminatorConfig
from ..errors import ConfigError, WaveDiffError
from ..wavelets import reorder_bands
from .fir import downsample_2d
from .layers import PositionalEmbedding

NEGATIVE_SLOPE = 0.2
KINDS = ("small", "large")
MAX_BLOCKS = {"small": 4, "large": 6}
MIN_BLOCKS = 3


# --------------------------------------------------------------------------- init
def _init_(layer: nn.Conv2d | nn.Linear, scale: float = 1.0) -> None:
    """The authors' discriminator init: weight ~ U(-a, a), a = sqrt(3 * scale / fan_out), bias 0.

    Their helper asks for "fan_avg" but resolves it to fan_out (out_features x
    kernel area); scale 0 stands for 1e-10 (a layer that starts almost at zero).
    """
    scale = 1e-10 if scale == 0 else scale
    w = layer.weight
    fan_out = w.shape[0] * (math.prod(w.shape[2:]) if w.dim() > 2 else 1)
    bound = math.sqrt(3.0 * scale / max(1.0, fan_out))
    with torch.no_grad():
        w.uniform_(-bound, bound)
        if layer.bias is not None:
            layer.bias.zero_()


def _conv(in_ch: int, out_ch: int, kernel: int, init_scale: float = 1.0, bias: bool = True) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias)
    _init_(conv, init_scale)
    return conv


def _linear(in_dim: int, out_dim: int, init_scale: float = 1.0) -> nn.Linear:
    lin = nn.Linear(in_dim, out_dim)
    _init_(lin, init_scale)
    return lin


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEGATIVE_SLOPE)


# ------------------------------------------------------------------------ blocks
class StepEmbedding(nn.Module):
    """Step index [B] (int) -> [B, dim]: sinusoidal features, Linear, LeakyReLU(0.2), Linear."""

    official_names = {"fc1": "main.0", "fc2": "main.2"}

    def __init__(self, dim: int):
        super().__init__()
        self.features = PositionalEmbedding(dim)
        self.fc1 = _linear(dim, dim)
        self.fc2 = _linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc2(_act(self.fc1(self.features(t))))


class DownConvBlock(nn.Module):
    """Residual block: act, 3x3 conv, + projected step embedding, act, [FIR /2], 3x3 conv (starts at ~0);
    shortcut: [FIR /2], 1x1 conv without bias; sum scaled by 1/sqrt(2)."""

    official_names = {"conv1": "conv1.0", "conv2": "conv2.0", "t_proj": "dense_t1", "skip": "skip.0"}

    def __init__(self, in_ch: int, out_ch: int, t_dim: int, downsample: bool, fir_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        # Construction order = the authors' (same random stream for a given seed).
        self.conv1 = _conv(in_ch, out_ch, 3)
        self.conv2 = _conv(out_ch, out_ch, 3, init_scale=0.0)
        self.t_proj = _linear(t_dim, out_ch)
        self.skip = _conv(in_ch, out_ch, 1, bias=False)
        self.downsample = downsample
        self.fir_kernel = tuple(fir_kernel)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_act(x)) + self.t_proj(temb)[:, :, None, None]
        h = _act(h)
        if self.downsample:
            h = downsample_2d(h, self.fir_kernel, factor=2)
            x = downsample_2d(x, self.fir_kernel, factor=2)
        return (self.conv2(h) + self.skip(x)) * (1.0 / math.sqrt(2.0))


def check_stddev_batch(batch: int, group_size: int = 4) -> None:
    if batch > group_size and batch % group_size:
        raise WaveDiffError(
            f"the discriminator's minibatch-stddev layer needs a batch of at most {group_size} "
            f"or a multiple of {group_size}, got {batch}; change the batch size"
        )


class MinibatchStddev(nn.Module):
    """Append one channel: the std over groups of min(B, 4) samples, averaged over C, H, W.

    Like StyleGAN2 (and the authors), group members are strided: sample b
    belongs to group b % (B / group), so each group spans the whole batch.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor, segments: int = 1) -> torch.Tensor:
        """`segments` > 1: the batch is that many equal, independent batches, each with its own groups."""
        if segments > 1:
            return torch.cat([self(part) for part in x.chunk(segments)])
        b, c, h, w = x.shape
        check_stddev_batch(b, self.group_size)
        g = min(b, self.group_size)
        y = x.reshape(g, b // g, c, h, w)
        # The variance over the group, written out: torch.var over the leading dim is ~100x slower on CPU.
        var = (y - y.mean(dim=0)).square().mean(dim=0)
        std = torch.sqrt(var + 1e-8).mean(dim=(1, 2, 3))  # [B / g]
        std = std.repeat(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, std], dim=1)


# ------------------------------------------------------------------ discriminator
class TimeConditionedDiscriminator(nn.Module):
    """Shared body of the two variants (see the module docstring)."""

    kind = ""
    head_init_scale = 1.0

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.config = dataclasses.replace(cfg)  # our own copy: the caller may edit theirs
        widths, downs = self.plan(cfg)
        self.in_channels = cfg.in_channels
        self.patch_size = cfg.patch_size
        self.band_order = cfg.band_order
        self.num_down = sum(downs)
        ngf, t_dim = cfg.ngf, cfg.t_emb_dim
        in_ch = 2 * cfg.in_channels * cfg.patch_size**2
        # Construction order = the authors' (same random stream for a given seed).
        self.t_embed = StepEmbedding(t_dim)
        self.stem = _conv(in_ch, widths[0], 1)
        self.blocks = nn.ModuleList(
            DownConvBlock(widths[i], widths[i + 1], t_dim, downsample=downs[i]) for i in range(len(downs))
        )
        self.stddev = MinibatchStddev(4)
        self.head_conv = _conv(8 * ngf + 1, 8 * ngf, 3, init_scale=self.head_init_scale)
        self.head_linear = _linear(8 * ngf, 1)

    @staticmethod
    def plan(cfg: DiscriminatorConfig) -> tuple[list[int], list[bool]]:
        """Channel widths (stem output, then each block's) and which blocks downsample."""
        raise NotImplementedError

    @property
    def min_size(self) -> int:
        """Smallest accepted height/width (each downsampling block needs a side of at least 2)."""
        return 2**self.num_down * self.patch_size

    def official_parts(self) -> list[tuple[str, nn.Module]]:
        """(the authors' attribute name, our module) in the authors' key order."""
        return (
            [("t_embed", self.t_embed), ("start_conv", self.stem)]
            + [(f"conv{i + 1}", blk) for i, blk in enumerate(self.blocks)]
            + [("final_conv", self.head_conv), ("end_linear", self.head_linear)]
        )

    def _check(self, x_t: torch.Tensor, t: torch.Tensor, x_tp1: torch.Tensor, segments: int = 1) -> None:
        if x_t.dim() != 4 or x_t.shape != x_tp1.shape:
            raise WaveDiffError(
                f"discriminator expects x_t and x_tp1 of the same shape [B, C, H, W], got "
                f"{tuple(x_t.shape)} and {tuple(x_tp1.shape)}"
            )
        b, c, h, w = x_t.shape
        if c != self.in_channels:
            raise WaveDiffError(f"discriminator was built for {self.in_channels}-channel images, got {c} channels")
        if t.shape != (b,):
            raise WaveDiffError(
                f"discriminator expects t of shape [{b}] (one step index per sample), got {tuple(t.shape)}"
            )
        if segments < 1 or b % segments:
            raise WaveDiffError(f"a batch of {b} cannot be split into {segments} equal segments")
        check_stddev_batch(b // segments)
        if h < self.min_size or w < self.min_size:
            raise WaveDiffError(
                f"the {self.kind} discriminator with {self.num_down} downsampling blocks needs "
                f"inputs of at least {self.min_size}x{self.min_size}, got {h}x{w}; use fewer "
                f"layers (num_layers) or larger images"
            )
        if h % self.patch_size or w % self.patch_size:
            raise WaveDiffError(
                f"input size {h}x{w} is not divisible by the discriminator's patch size {self.patch_size}"
            )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.band_order != "pywt":
            x = reorder_bands(x, "pywt", self.band_order)
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)  # channels packed (c p1 p2), like the authors'
        return x

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_tp1: torch.Tensor, segments: int = 1) -> torch.Tensor:
        """Logit [B, 1] that `x_t` is a real denoising of `x_tp1` at step `t` (int64 [B]).

        `segments` = k judges k equal batches stacked along the batch dimension in one pass, with the same
        result as k calls: only the minibatch-stddev layer looks across samples, and it keeps them apart.
        """
        self._check(x_t, t, x_tp1, segments)
        temb = _act(self.t_embed(t))
        h = self.stem(torch.cat([self._prepare(x_t), self._prepare(x_tp1)], dim=1))
        for block in self.blocks:
            h = block(h, temb)
        h = _act(self.head_conv(self.stddev(h, segments)))
        return self.head_linear(h.sum(dim=(2, 3)))


class SmallDiscriminator(TimeConditionedDiscriminator):
    """CIFAR-10 / STL-10 discriminator: 3 or 4 blocks, the first without downsampling."""

    kind = "small"
    head_init_scale = 0.0  # the authors start the small head conv at ~zero

    @staticmethod
    def plan(cfg: DiscriminatorConfig) -> tuple[list[int], list[bool]]:
        n, g = _num_blocks(cfg), cfg.ngf
        return [2 * g, 2 * g, 4 * g, 8 * g, 8 * g][: n + 1], [False, True, True, True][:n]


class LargeDiscriminator(TimeConditionedDiscriminator):
    """CelebA-HQ / LSUN discriminator: 3 to 6 blocks, all downsampling."""

    kind = "large"
    head_init_scale = 1.0

    @staticmethod
    def plan(cfg: DiscriminatorConfig) -> tuple[list[int], list[bool]]:
        n, g = _num_blocks(cfg), cfg.ngf
        return [2 * g, 4 * g, 8 * g, 8 * g, 8 * g, 8 * g, 8 * g][: n + 1], [True] * n


def _num_blocks(cfg: DiscriminatorConfig) -> int:
    if cfg.kind not in KINDS:
        raise ConfigError(f"unknown discriminator kind {cfg.kind!r}; use one of {KINDS}")
    if not MIN_BLOCKS <= cfg.num_layers <= MAX_BLOCKS[cfg.kind]:
        raise ConfigError(
            f"discriminator.num_layers must be {MIN_BLOCKS} to {MAX_BLOCKS[cfg.kind]} for the "
            f"{cfg.kind} discriminator, got {cfg.num_layers}"
        )
    return cfg.num_layers


def build_discriminator(cfg: DiscriminatorConfig) -> TimeConditionedDiscriminator:
    """The discriminator described by `cfg` (fresh weights, initialised like the authors')."""
    for name in ("in_channels", "ngf", "t_emb_dim", "patch_size"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"discriminator.{name} must be positive, got {getattr(cfg, name)}")
    if cfg.t_emb_dim < 4:
        raise ConfigError(f"discriminator.t_emb_dim must be at least 4 (sinusoidal features), got {cfg.t_emb_dim}")
    if cfg.band_order not in ("pywt", "dwt2d"):
        raise ConfigError(f"unknown discriminator.band_order {cfg.band_order!r}; use 'pywt' or 'dwt2d'")
    if cfg.band_order != "pywt" and cfg.in_channels % 4:
        raise ConfigError(
            f"band_order {cfg.band_order!r} needs wavelet inputs (channels a multiple of 4), "
            f"got in_channels={cfg.in_channels}"
        )
    _num_blocks(cfg)
    return (SmallDiscriminator if cfg.kind == "small" else LargeDiscriminator)(cfg)
