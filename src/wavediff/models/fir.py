"""FIR up/down-sampling (StyleGAN2 / NCSN++ "fir" resampling), pure PyTorch.

`upfirdn2d` upsamples by zero insertion, pads, convolves with a 2-D FIR kernel
and downsamples, channel by channel. Instead of materialising the zero-inserted
image we use a transposed convolution for `up > 1` and a strided convolution for
`down > 1` (channels folded into the batch): the same sums, less work.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A 2-D FIR kernel normalised to sum 1 (a 1-D kernel is made separable)."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.dim() == 1:
        k = torch.outer(k, k)
    return k / k.sum()


def _single(kernel: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return kernel.to(device=like.device, dtype=like.dtype)[None, None]


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion) by `up`, pad by `pad` on both axes, FIR-filter, downsample by `down`.

    Output size per axis: (size * up + pad[0] + pad[1] - kernel_size) // down + 1.
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    x = x.reshape(b * c, 1, h, w)  # single-channel convs: much faster on CPU than groups=c
    if up > 1:
        # Transposed conv == full correlation of the zero-inserted input with the flipped kernel,
        # i.e. of the input padded by (k - 1); shift that window onto the requested padding.
        y = F.conv_transpose2d(x, _single(kernel, x), stride=up)
        full_h, full_w = y.shape[2:]
        out_h, out_w = h * up + p0 + p1 - kh + 1, w * up + p0 + p1 - kw + 1
        left_h, left_w = p0 - (kh - 1), p0 - (kw - 1)
        y = F.pad(y, [left_w, out_w - full_w - left_w, left_h, out_h - full_h - left_h])
        y = y[:, :, ::down, ::down] if down > 1 else y
    else:
        y = F.conv2d(F.pad(x, [p0, p1, p0, p1]), _single(torch.flip(kernel, [0, 1]), x), stride=down)
    return y.reshape(b, c, *y.shape[2:])


def upsample_2d(x: torch.Tensor, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2, gain: float = 1) -> torch.Tensor:
    """FIR upsampling by `factor`; constant inputs are scaled by `gain`."""
    kernel = make_kernel(k) * (gain * factor ** 2)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2,
                  gain: float = 1) -> torch.Tensor:
    """FIR downsampling by `factor`; constant inputs are scaled by `gain`."""
    kernel = make_kernel(k) * gain
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: torch.Tensor, w: torch.Tensor, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2,
                     gain: float = 1) -> torch.Tensor:
    """Fused FIR upsampling and convolution with weight `w` [out, in, kh, kw] (StyleGAN2)."""
    kernel = make_kernel(k) * (gain * factor ** 2)
    conv_k = w.shape[-1]
    p = (kernel.shape[0] - factor) - (conv_k - 1)
    # A transposed conv with the spatially flipped, in/out-swapped weight is the "upsample then conv".
    y = F.conv_transpose2d(x, torch.flip(w, [2, 3]).transpose(0, 1), stride=factor)
    return upfirdn2d(y, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: torch.Tensor, w: torch.Tensor, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2,
                       gain: float = 1) -> torch.Tensor:
    """Fused FIR downsampling and convolution with weight `w` [out, in, kh, kw] (StyleGAN2)."""
    kernel = make_kernel(k) * gain
    p = (kernel.shape[0] - factor) + (w.shape[-1] - 1)
    return F.conv2d(upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2)), w, stride=factor)


class FIRConv2d(nn.Module):
    """Convolution with optional fused FIR up- or down-sampling (parameters `weight`, `bias`)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, up: bool = False, down: bool = False,
                 resample_kernel: Sequence[float] = (1, 3, 3, 1), use_bias: bool = True, kernel_init=None):
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d cannot both upsample and downsample")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"FIRConv2d needs an odd kernel size, got {kernel}")
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel, kernel))
        if kernel_init is not None:
            self.weight.data = kernel_init(self.weight.shape)
        self.bias = nn.Parameter(torch.zeros(out_ch)) if use_bias else None
        self.up, self.down, self.resample_kernel = up, down, tuple(resample_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample_conv_2d(x, self.weight, k=self.resample_kernel)
        elif self.down:
            x = conv_downsample_2d(x, self.weight, k=self.resample_kernel)
        else:
            x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
        return x if self.bias is None else x + self.bias.view(1, -1, 1, 1)
