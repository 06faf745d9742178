"""Building blocks shared by the NCSN++ generators.

Initialisation follows the authors' (DDPM / score_sde) conventions so that a
freshly built model behaves like theirs: "variance scaling, fan_avg, uniform"
with a scale, where scale 0 means 1e-10 (layers that start almost at zero).

Every block that is loaded from the authors' checkpoints declares
`official_names`: our attribute name -> the authors' attribute name. The
checkpoint converter reads it; nothing else depends on it.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..wavelets import is_channels_last
from .conditioning import BlockConditioning
from .fir import FIRConv2d, downsample_2d, upsample_2d
from .packed import conv2d as packed_conv2d

SQRT_HALF = 1.0 / math.sqrt(2.0)


# --------------------------------------------------------------------------- init
def variance_scaling_(tensor: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """DDPM default init in place: U(-a, a), a = sqrt(3 * scale / mean(fan_in, fan_out)); scale 0 -> 1e-10."""
    scale = 1e-10 if scale == 0 else scale
    shape = tensor.shape
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


def conv3x3(in_ch: int, out_ch: int, init_scale: float = 1.0, groups: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, groups=groups)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, 1)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


class ConditioningLinear(nn.Linear):
    """A linear layer of the conditioning path: time and latent embeddings and their per-block projections.

    It always computes in fp32, also under autocast: its FLOPs are negligible, its outputs scale and shift
    whole feature maps, and on CPUs bf16 products of a few rows are slower than fp32 ones (measured 4x for
    the cifar10 generator at batch 1, where they took 14% of bf16 sampling).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), self.weight, self.bias)


def like_activations(cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A conditioning output (fp32) in the activations' dtype.

    Low-precision activations (the sampler's bf16 copy, or autocast's outputs) then stay low precision through
    the scale, shift and bias they receive: an fp32 operand would promote every feature map to fp32 and cost a
    cast before each convolution (bf16 autocast training on a 2-core CPU: 0.45 -> 0.41 s per cifar10 iteration
    at batch 8).
    """
    return cond.to(x.dtype)


def linear(in_dim: int, out_dim: int, init_scale: float = 1.0) -> nn.Linear:
    """Linear layer with the DDPM default init (time embedding, time projections)."""
    lin = ConditioningLinear(in_dim, out_dim)
    variance_scaling_(lin.weight, init_scale)
    nn.init.zeros_(lin.bias)
    return lin


def style_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """Linear layer of the z path (mapping network, AdaGN styles), initialised like the authors'.

    Their "fan_avg" here resolves to fan_out: U(-a, a), a = sqrt(3 / out_dim).
    """
    lin = ConditioningLinear(in_dim, out_dim)
    bound = math.sqrt(3.0 / max(1.0, out_dim))
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound)
    nn.init.zeros_(lin.bias)
    return lin


def group_count(channels: int) -> int:
    return min(channels // 4, 32)


# PyTorch's CPU GroupNorm kernel, for channels-last maps of fewer than 1024 positions (smaller than 32x32), reduces
# each group column by column over its few adjacent channels (4-16 here), which it cannot vectorise in bf16: 2-5x
# slower than the same kernel on fp32 input (2 cores: [8, 128, 16, 16] 801 against 161 us with the casts). The bf16
# sampler's packed convolutions return channels-last maps, so there it normalises an fp32 view and casts back: the
# same numbers bit for bit (the kernel computes in fp32 either way), cifar10 sampling 1.16x faster at batch 8.
_CL_SMALL_MAP = 1024


# Compiled NHWC maps (the GPU's compiled sampler; a CPU one with channels_last): inductor reduces each group of a
# channels-last map in NCHW order, so consecutive loads of a reduction lie a whole pixel (C values) apart.
# `channelwise_group_norm` reduces each channel over the positions instead (neighbouring channels in neighbouring
# lanes), then combines a group's channels.
# H100, bf16, CUDA graphs, batch 100: celeba_256 71.1 -> 61.3 ms, cifar10 8.16 -> 7.44 ms (docs/gpu_runs.md).
# WAVEDIFF_CHANNELWISE_GN=0 turns it off, to compare.
CHANNELWISE_GN = os.environ.get("WAVEDIFF_CHANNELWISE_GN", "1") != "0"


def channelwise_group_norm(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """`F.group_norm` of a 4-D map from per-channel statistics: each channel's mean and variance over the
    positions, then each group's as their combination (the mean of the means; the mean of the variances plus the
    variance of the means: exact, no E[x^2] - E[x]^2 cancellation). At least fp32 arithmetic, output in x's dtype."""
    b, c = x.shape[:2]
    acc = torch.promote_types(x.dtype, torch.float32)
    var_c, mean_c = torch.var_mean(x.to(acc), dim=(2, 3), correction=0)  # [B, C]
    mean_c, var_c = mean_c.view(b, groups, -1), var_c.view(b, groups, -1)
    mean_g = mean_c.mean(-1, keepdim=True)
    var_g = (var_c + (mean_c - mean_g).square()).mean(-1, keepdim=True)
    rstd = torch.rsqrt(var_g + eps)
    scale = rstd.expand_as(mean_c).reshape(b, c)
    shift = (-mean_g * rstd).expand_as(mean_c).reshape(b, c)
    if weight is not None:
        scale, shift = scale * weight.to(acc), shift * weight.to(acc)
    if bias is not None:
        shift = shift + bias.to(acc)
    return (x.to(acc) * scale[:, :, None, None] + shift[:, :, None, None]).to(x.dtype)


def group_norm(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """`F.group_norm`, routed through fp32 where PyTorch's bf16 CPU kernel is slow, and through per-channel
    statistics for compiled NHWC maps (see above)."""
    if CHANNELWISE_GN and x.dim() == 4 and torch.compiler.is_compiling() and is_channels_last(x):
        return channelwise_group_norm(x, groups, weight, bias, eps)
    if (
        x.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.shape[2] * x.shape[3] < _CL_SMALL_MAP
        and is_channels_last(x)
    ):
        weight, bias = (None if p is None else p.float() for p in (weight, bias))
        return F.group_norm(x.float(), groups, weight, bias, eps).to(x.dtype)
    return F.group_norm(x, groups, weight, bias, eps)


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` (same parameters and state-dict keys) through `group_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


# ------------------------------------------------------------------- embeddings
class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of the (integer) step index: [sin(t f), cos(t f)], f geometric 1 .. 1/10000."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(max_positions) / (half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.float()[:, None] * self.freqs[None, :]
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
        return F.pad(emb, (0, 1)) if self.dim % 2 else emb


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of log(t); `W` is fixed (not trained) but stored in checkpoints.

    As in the authors' code this expects a positive (continuous) noise level: t = 0 gives NaN.
    """

    def __init__(self, size: int, scale: float = 16.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        proj = torch.log(t.float())[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class TimeEmbedding(nn.Module):
    """Step index -> temb [B, 4 nf]: positional or Fourier features, then Linear, SiLU, Linear."""

    def __init__(self, nf: int, kind: str = "positional", fourier_scale: float = 16.0, conditional: bool = True):
        super().__init__()
        if kind == "fourier":
            self.features: nn.Module = GaussianFourierEmbedding(nf, fourier_scale)
            dim = 2 * nf
        else:
            self.features = PositionalEmbedding(nf)
            dim = nf
        self.conditional = conditional
        if conditional:
            self.dense0 = linear(dim, 4 * nf)
            self.dense1 = linear(4 * nf, 4 * nf)

    def forward(self, t: torch.Tensor) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return self.dense1(F.silu(self.dense0(self.features(t))))

    def official_order(self) -> list[nn.Module]:
        """Our parts in the order the authors list them first in `all_modules`."""
        mods: list[nn.Module] = [self.features] if isinstance(self.features, GaussianFourierEmbedding) else []
        return mods + ([self.dense0, self.dense1] if self.conditional else [])


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class ZMapping(nn.Module):
    """The latent mapping network: PixelNorm, then (1 + n_mlp) x (Linear, SiLU)."""

    def __init__(self, nz: int, z_emb_dim: int, n_mlp: int):
        super().__init__()
        self.norm = PixelNorm()
        self.layers = nn.ModuleList(
            [style_linear(nz, z_emb_dim)] + [style_linear(z_emb_dim, z_emb_dim) for _ in range(n_mlp)]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.norm(z)
        for layer in self.layers:
            h = F.silu(layer(h))
        return h

    def official_layers(self) -> list[tuple[str, nn.Module]]:
        """(the authors' `z_transform.<j>` name, layer): their Sequential interleaves norm and activations."""
        return [(f"z_transform.{2 * j + 1}", layer) for j, layer in enumerate(self.layers)]


# ----------------------------------------------------------------------- layers
class NIN(nn.Module):
    """Per-pixel linear map over channels (`W` [in, out], `b` [out]), as a 1x1 convolution."""

    packable = True  # the CPU sampler's bf16 copy packs its weight (models/packed.py)

    def __init__(self, in_dim: int, out_dim: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(variance_scaling_(torch.empty(in_dim, out_dim), init_scale))
        self.b = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_conv2d(self, x, self.W.t()[:, :, None, None], self.b)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine parameters, then a per-channel scale and shift predicted from the z embedding.

    `style` (a Linear) makes the scale and shift from the z embedding; `forward(x, style)` takes its output
    (the generator computes every block's before the body runs: models/conditioning.py).
    """

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.groups = group_count(channels)
        self.style = style_linear(style_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0
            self.style.bias[channels:] = 0.0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = like_activations(style, x).chunk(2, dim=1)
        # The scale and shift as GroupNorm's own affine weight and bias: the normalisation and the per-sample affine
        # in one kernel and, above all, one backward. PyTorch's CPU addcmul with [B, C, 1, 1] operands (the plain
        # form, last) is slow forward and much slower backward (2 cores, [8, 256, 16, 16] fp32: 1.5 ms against
        # 0.16 ms forward and backward; bf16 0.83 against 0.20 ms). The same numbers up to float rounding.
        if x.shape[0] == 1:  # the map as it is, of any memory format (a reshape would restride a channels-last
            # map's batch dimension, GroupNorm would return NCHW, and the next convolution would copy it back)
            return group_norm(x, self.groups, gamma.reshape(-1), beta.reshape(-1))
        if x.is_contiguous():  # NCHW: every sample's C channels as channels of one [1, B*C, H, W] map
            b, c = x.shape[:2]
            flat = x.reshape(1, b * c, *x.shape[2:])
            return group_norm(flat, b * self.groups, gamma.reshape(-1), beta.reshape(-1)).view_as(x)
        # channels-last batches (the bf16 sampler's packed convolutions) have no such view
        return torch.addcmul(beta[:, :, None, None], group_norm(x, self.groups, eps=1e-6), gamma[:, :, None, None])


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, residual, rescaled by 1/sqrt(2)."""

    official_names = {"norm": "GroupNorm_0", "q": "NIN_0", "k": "NIN_1", "v": "NIN_2", "proj": "NIN_3"}

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.norm = GroupNorm(group_count(channels), channels, eps=1e-6)
        self.q, self.k, self.v = NIN(channels, channels), NIN(channels, channels), NIN(channels, channels)
        self.proj = NIN(channels, channels, init_scale=0.0)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.norm(x)
        q, k, v = (m(h).flatten(2).transpose(1, 2) for m in (self.q, self.k, self.v))  # [B, HW, C]
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c, hgt, wid)
        h = self.proj(h)
        return (x + h) * SQRT_HALF if self.skip_rescale else x + h


class ResnetBlock(nn.Module):
    """BigGAN++ residual block with AdaGN, optional FIR up/down-sampling of both paths.

    h = Conv1(act(AdaGN1(Conv0(resample(act(AdaGN0(x)))) + Dense(act(temb)))));
    out = (skip(resample(x)) + h) / sqrt(2).
    `conditioning(temb, zemb)` computes Dense(act(temb)) and the two AdaGN styles; `forward(x, cond)` takes them.
    """

    official_names = {
        "norm_in": "GroupNorm_0",
        "conv_in": "Conv_0",
        "temb_proj": "Dense_0",
        "norm_out": "GroupNorm_1",
        "conv_out": "Conv_1",
        "skip": "Conv_2",
    }

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        temb_dim: int,
        zemb_dim: int,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.0,
        fir_kernel=(1, 3, 3, 1),
        skip_rescale: bool = True,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.norm_in = AdaptiveGroupNorm(in_ch, zemb_dim)
        self.conv_in = conv3x3(in_ch, out_ch)
        self.temb_proj = linear(temb_dim, out_ch)
        self.norm_out = AdaptiveGroupNorm(out_ch, zemb_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv_out = conv3x3(out_ch, out_ch, init_scale=0.0)
        self.skip = conv1x1(in_ch, out_ch) if (in_ch != out_ch or up or down) else None
        self.up, self.down, self.fir_kernel = up, down, tuple(fir_kernel)
        self.skip_rescale = skip_rescale

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return upsample_2d(x, self.fir_kernel)
        if self.down:
            return downsample_2d(x, self.fir_kernel)
        return x

    def conditioning(self, temb: torch.Tensor | None, zemb: torch.Tensor) -> BlockConditioning:
        """This block's time bias (None without a step embedding) and its two AdaGN styles."""
        bias = None if temb is None else self.temb_proj(F.silu(temb))
        return BlockConditioning(bias, self.norm_in.style(zemb), self.norm_out.style(zemb))

    def _finish(self, x: torch.Tensor, h: torch.Tensor, cond: BlockConditioning) -> torch.Tensor:
        """Shared second half: add the time bias, AdaGN, act, dropout, Conv_1, residual sum."""
        if cond.bias is not None:
            h = h + like_activations(cond.bias, h)[:, :, None, None]
        h = self.conv_out(self.dropout(F.silu(self.norm_out(h, cond.style_out))))
        return (x + h) * SQRT_HALF if self.skip_rescale else x + h

    def forward(self, x: torch.Tensor, cond: BlockConditioning) -> torch.Tensor:
        h = self.conv_in(self._resample(F.silu(self.norm_in(x, cond.style_in))))
        x = self._resample(x)
        if self.skip is not None:
            x = self.skip(x)
        return self._finish(x, h, cond)


class FIRDownsample(nn.Module):
    """3x3 convolution fused with FIR down-sampling (the plain NCSN++ input pyramid)."""

    official_names = {"conv": "Conv2d_0"}

    def __init__(self, in_ch: int, out_ch: int, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = FIRConv2d(in_ch, out_ch, 3, down=True, resample_kernel=fir_kernel)
        variance_scaling_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class OutputHead(nn.Module):
    """GroupNorm, SiLU, 3x3 convolution to the data channels (starts near zero)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm = GroupNorm(group_count(in_ch), in_ch, eps=1e-6)
        self.conv = conv3x3(in_ch, out_ch, init_scale=0.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(h)))

    def official_order(self) -> list[nn.Module]:
        return [self.norm, self.conv]
