"""Exact orthonormal 1-level 2D Haar transform, forward and inverse, differentiable.

For each 2x2 block [a b; c d] of every channel:

    LL = (a + b + c + d) / 2        P  = (a + b - c - d) / 2
    Q  = (a - b + c - d) / 2        HH = (a - b - c + d) / 2

Canonical band order is PyWavelets' (LL, P, Q, HH) and a transformed tensor is
band-major: `[B, 4*C, H/2, W/2]` holds the C channels of LL, then of P, Q, HH.
The authors' `DWT_2D` backend orders the details (LL, Q, P, HH) ("dwt2d");
`reorder_bands` converts between the two.

Implementation: `pixel_unshuffle` gathers each 2x2 block (a, b, c, d) into
channels and a two-stage butterfly of sums and differences makes the bands;
the inverse runs the butterfly backwards and `pixel_shuffle`s (channels-last maps
read and, without autograd, write strided views of the 2x2 block corners instead,
which keeps their layout). On CPU this is
1.3-5x faster, forward plus backward (benchmarks/bench_layers.py), than a stride-2 convolution with four
fixed 2x2 filters (our first version) and needs no filter tensors;
pytorch_wavelets is unmaintained and no longer imports with current setuptools.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import WaveDiffError

BAND_ORDERS = ("pywt", "dwt2d")


def dwt(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, 4C, H/2, W/2], bands (LL, P, Q, HH), band-major."""
    if x.dim() != 4:
        raise WaveDiffError(f"dwt expects a 4-D tensor [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise WaveDiffError(
            f"the Haar transform needs even height and width, got {h}x{w}; resize or crop the images to an even size"
        )
    if is_channels_last(x):
        # Strided views of the block corners keep the channels-last layout (the bf16 sampler's maps): 2-5x
        # faster than gathering through pixel_unshuffle, which returns NCHW and costs every next convolution a
        # layout copy. The same arithmetic, bit for bit.
        a, b_, c_, d = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
        return torch.cat(_butterfly(a, b_, c_, d), 1).mul_(0.5)
    a, b_, c_, d = F.pixel_unshuffle(x, 2).reshape(b, c, 4, h // 2, w // 2).unbind(2)  # block [a b; c d]
    return torch.stack(_butterfly(a, b_, c_, d), 1).mul_(0.5).reshape(b, 4 * c, h // 2, w // 2)


def _butterfly(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The bands (LL, P, Q, HH), times 2, of the 2x2 blocks [a b; c d]."""
    top, bottom, top_diff, bottom_diff = a + b, c + d, a - b, c - d
    return top + bottom, top - bottom, top_diff + bottom_diff, top_diff - bottom_diff


def idwt(y: torch.Tensor) -> torch.Tensor:
    """Inverse of `dwt`: [B, 4C, h, w] -> [B, C, 2h, 2w]."""
    if y.dim() != 4 or y.shape[1] % 4:
        raise WaveDiffError(f"idwt expects [B, 4*C, h, w], got shape {tuple(y.shape)}")
    b, c4, h, w = y.shape
    ll, p, q, hh = y.reshape(b, 4, c4 // 4, h, w).unbind(1)
    top, bottom, top_diff, bottom_diff = ll + p, ll - p, q + hh, q - hh
    channels_last = is_channels_last(y)
    if channels_last and not (y.requires_grad and torch.is_grad_enabled()) and not torch.compiler.is_compiling():
        # Without autograd the four block corners are written straight into strided views of a channels-last
        # output: 2-5x faster than stack + pixel_shuffle, which return NCHW and cost every next convolution a
        # layout copy. The same arithmetic, bit for bit.
        out = torch.empty((b, c4 // 4, 2 * h, 2 * w), dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
        torch.add(top, top_diff, out=out[:, :, 0::2, 0::2])
        torch.sub(top, top_diff, out=out[:, :, 0::2, 1::2])
        torch.add(bottom, bottom_diff, out=out[:, :, 1::2, 0::2])
        torch.sub(bottom, bottom_diff, out=out[:, :, 1::2, 1::2])
        return out.mul_(0.5)
    block = torch.stack((top + top_diff, top - top_diff, bottom + bottom_diff, bottom - bottom_diff), 2)  # a b c d
    out = F.pixel_shuffle(block.mul_(0.5).reshape(b, c4, h, w), 2)
    # compiled: dynamo cannot trace the `out=` views above (each broke the graph: celeba_256 compiled NHWC ran as
    # dozens of graphs and hit dynamo's recompile limit); inductor fuses this form and the layout change into one kernel
    return out.contiguous(memory_format=torch.channels_last) if channels_last and torch.compiler.is_compiling() else out


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a channels-last map that is not also NCHW-contiguous (as any map with 1 channel or 1 pixel is)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def dwt_bands(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four sub-bands (LL, P, Q, HH) of `x`, each [B, C, H/2, W/2]."""
    return tuple(dwt(x).chunk(4, dim=1))  # type: ignore[return-value]


def idwt_bands(ll: torch.Tensor, p: torch.Tensor, q: torch.Tensor, hh: torch.Tensor) -> torch.Tensor:
    return idwt(torch.cat((ll, p, q, hh), dim=1))


def reorder_bands(y: torch.Tensor, src: str, dst: str, dim: int = 1) -> torch.Tensor:
    """Convert a band-major tensor between the "pywt" and "dwt2d" orders (swaps P and Q)."""
    for order in (src, dst):
        if order not in BAND_ORDERS:
            raise WaveDiffError(f"unknown band order {order!r}; use one of {BAND_ORDERS}")
    if src == dst:
        return y
    ll, b1, b2, hh = y.chunk(4, dim=dim)
    return torch.cat((ll, b2, b1, hh), dim=dim)


def image_to_wavelet(img: torch.Tensor) -> torch.Tensor:
    """RGB image in [-1, 1] -> 12-channel wavelet tensor divided by 2 (stays in [-1, 1])."""
    return dwt(img) * 0.5


def wavelet_to_image(wav: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Inverse of `image_to_wavelet` (x2, inverse Haar), clamped to [-1, 1] by default."""
    img = idwt(wav * 2.0)
    return img.clamp(-1.0, 1.0) if clamp else img
