"""Exact orthonormal 1-level 2D Haar transform, forward and inverse, differentiable.

For each 2x2 block [a b; c d] of every channel:

    LL = (a + b + c + d) / 2        P  = (a + b - c - d) / 2
    Q  = (a - b + c - d) / 2        HH = (a - b - c + d) / 2

Canonical band order is PyWavelets' (LL, P, Q, HH) and a transformed tensor is
band-major: `[B, 4*C, H/2, W/2]` holds the C channels of LL, then of P, Q, HH.
The authors' `DWT_2D` backend orders the details (LL, Q, P, HH) ("dwt2d");
`reorder_bands` converts between the two.

Implementation: one stride-2 convolution with four fixed 2x2 filters (channels
folded into the batch) and its transpose for the inverse. On CPU this beat
slicing arithmetic and pytorch_wavelets (which is unmaintained and no longer
imports with current setuptools), forward and backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import WaveDiffError

BAND_ORDERS = ("pywt", "dwt2d")

_FILTERS = torch.tensor([
    [[1.0, 1.0], [1.0, 1.0]],  # LL
    [[1.0, 1.0], [-1.0, -1.0]],  # P: top minus bottom
    [[1.0, -1.0], [1.0, -1.0]],  # Q: left minus right
    [[1.0, -1.0], [-1.0, 1.0]],  # HH
]).unsqueeze(1) * 0.5  # [4, 1, 2, 2]

_cache: dict[tuple, torch.Tensor] = {}


def _filters(like: torch.Tensor) -> torch.Tensor:
    key = (like.device, like.dtype)
    w = _cache.get(key)
    if w is None:
        w = _cache[key] = _FILTERS.to(device=like.device, dtype=like.dtype)
    return w


def dwt(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, 4C, H/2, W/2], bands (LL, P, Q, HH), band-major."""
    if x.dim() != 4:
        raise WaveDiffError(f"dwt expects a 4-D tensor [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise WaveDiffError(f"the Haar transform needs even height and width, got {h}x{w}; "
                            f"resize or crop the images to an even size")
    y = F.conv2d(x.reshape(b * c, 1, h, w), _filters(x), stride=2)  # [B*C, 4, h/2, w/2]
    return y.view(b, c, 4, h // 2, w // 2).transpose(1, 2).reshape(b, 4 * c, h // 2, w // 2)


def idwt(y: torch.Tensor) -> torch.Tensor:
    """Inverse of `dwt`: [B, 4C, h, w] -> [B, C, 2h, 2w]."""
    if y.dim() != 4 or y.shape[1] % 4:
        raise WaveDiffError(f"idwt expects [B, 4*C, h, w], got shape {tuple(y.shape)}")
    b, c4, h, w = y.shape
    c = c4 // 4
    y = y.view(b, 4, c, h, w).transpose(1, 2).reshape(b * c, 4, h, w)
    return F.conv_transpose2d(y, _filters(y), stride=2).view(b, c, 2 * h, 2 * w)


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
