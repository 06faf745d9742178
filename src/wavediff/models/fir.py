"""FIR up/down-sampling (StyleGAN2 / NCSN++ "fir" resampling), pure PyTorch.

`upfirdn2d` upsamples by zero insertion, pads, convolves with a FIR kernel and
downsamples, channel by channel. Two implementations of the same sums:

* separable kernels (1-D, applied along both axes; every kernel the models use)
  on the CPU, per axis: up to 64 samples long, a product with the axis's
  resampling matrix (banded, made once per size), which is one matrix product
  forward and two backward; longer, a few shifted, strided slices, and
  polyphase filtering for upsampling, so no zero-inserted image is ever built.
  oneDNN's single-channel convolutions, and above all their backward pass, are
  slow on small tensors: forward plus backward, the slices are 1.7-4.5x faster
  for downsampling and 1.1-5x for upsampling (benchmarks/bench_layers.py), and
  the matrices another 1.6-2x in fp32 on maps up to 32x32 (about even at
  64x64) and 1.7-4x in bf16 up to 64x64, where strided slices do not vectorise;
* inside torch.compile, on every device: the slices, which inductor fuses into
  the kernels around them (a convolution stays an opaque library call, and a
  single-channel one is a slow one);
* 2-D kernels, and other devices in eager mode: a transposed convolution for
  `up > 1` and a strided convolution for `down > 1`, channels folded into the
  batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A 2-D FIR kernel normalised to sum 1 (a 1-D kernel is made separable)."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.dim() == 1:
        k = torch.outer(k, k)
    return k / k.sum()


def _kernel_1d(k: tuple[float, ...], gain: float) -> tuple[float, ...]:
    """The 1-D factor of the separable kernel `make_kernel(k) * gain`, gain split over both axes (a few float
    operations: not cached, so torch.compile traces it without warning about a cache it would bypass)."""
    total = float(sum(k))
    return tuple(float(v) / total * gain**0.5 for v in k)


@functools.lru_cache(maxsize=64)
def _outer_on(k: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The separable kernel's 2-D form, made once per device: no host-to-device copy per call (which would
    also break CUDA graph capture)."""
    v = torch.tensor(k, dtype=torch.float32)
    return torch.outer(v, v).to(device=device, dtype=dtype)


def _single(kernel: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return kernel.to(device=like.device, dtype=like.dtype)[None, None]


def _pad_axis(x: torch.Tensor, dim: int, left: int, right: int) -> torch.Tensor:
    """Zero-pad (negative: crop) dimension `dim` of a 4-D tensor (2 = H, 3 = W)."""
    if left == 0 and right == 0:
        return x
    return F.pad(x, [left, right] if dim == 3 else [0, 0, left, right])


def _weighted_sum(terms) -> torch.Tensor:
    """sum of weight * tensor over (weight, tensor) pairs, without a zero tensor to start from."""
    out = None
    for weight, t in terms:
        out = t * weight if out is None else out.add(t, alpha=weight)
    return out


def _upfirdn1d(x: torch.Tensor, k: Sequence[float], dim: int, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    """`upfirdn` along one axis with 1-D kernel `k` (correlation with the flipped kernel)."""
    kf, n, (p0, p1) = list(k)[::-1], x.shape[dim], pad
    n_out = (n * up + p0 + p1 - len(kf)) // down + 1
    every = (slice(None),) * dim + (slice(None, None, down),)  # subsampling along `dim`
    if up == 1:
        xp = _pad_axis(x, dim, p0, p1)
        span = down * (n_out - 1) + 1
        return _weighted_sum((kj, xp.narrow(dim, j, span)[every]) for j, kj in enumerate(kf))
    if down > 1:  # rare: upsample then subsample the result
        return _upfirdn1d(x, k, dim, up, 1, pad).narrow(dim, 0, down * (n_out - 1) + 1)[every]
    # Polyphase: output up*i + r only meets the kernel taps j with (r + j - p0) % up == 0,
    # which read input sample i + (r + j - p0) // up.
    count = -(-n_out // up)
    phases = [[(j, (r + j - p0) // up) for j in range(len(kf)) if (r + j - p0) % up == 0] for r in range(up)]
    offsets = [off for ph in phases for _, off in ph] or [0]
    left, right = max(0, -min(offsets)), max(0, max(offsets) + count - n)
    xp = _pad_axis(x, dim, left, right)
    outs = [
        _weighted_sum((kf[j], xp.narrow(dim, off + left, count)) for j, off in ph)
        if ph
        else torch.zeros_like(xp.narrow(dim, 0, count))
        for ph in phases
    ]
    return torch.stack(outs, dim=dim + 1).flatten(dim, dim + 1).narrow(dim, 0, n_out)


class _UpFirDn1d(torch.autograd.Function):
    """`_upfirdn1d` with its adjoint as the backward pass: the gradient of upfirdn(up=u, down=d, pad) is an
    upfirdn(up=d, down=u) of the gradient with the reversed kernel, made of the same shifted slices. Autograd's own
    backward of the slices builds a zero tensor of the input's size per kernel tap and copies into it
    (`slice_backward`): with this backward a digits training step is 1.15x faster on 2 CPU cores (cifar10 batch 8:
    1.02x). The backward is itself this function, so double backward (R1) works, and its backward is the forward
    again."""

    @staticmethod
    def forward(ctx, x, k, dim, up, down, pad):
        ctx.params = (k, dim, up, down, pad, x.shape[dim])
        return _upfirdn1d(x, k, dim, up, down, pad)

    @staticmethod
    def backward(ctx, grad):
        k, dim, up, down, (p0, _), n = ctx.params
        # the forward read padded, zero-inserted sample m = i * down + j (tap j) for output i; the adjoint spreads
        # grad[i] back over those m and keeps m = n' * up + p0: left pad len(k) - 1 - p0, right pad to length n
        q0 = len(k) - 1 - p0
        q1 = (n - 1) * up + len(k) - q0 - grad.shape[dim] * down
        return _UpFirDn1d.apply(grad, k[::-1], dim, down, up, (q0, q1)), None, None, None, None, None


def _upfirdn1d_autograd(x: torch.Tensor, k: tuple[float, ...], dim: int, up: int, down: int, pad) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _UpFirDn1d.apply(x, k, dim, up, down, tuple(pad))
    return _upfirdn1d(x, k, dim, up, down, pad)


# Axes up to this long are resampled by a matrix product (see the module docstring). The product costs 2 * length
# multiply-adds per output instead of len(k), so on longer axes the slices win (fp32: 128 and 256 were slower).
MATMUL_MAX_LENGTH = 64


@functools.lru_cache(maxsize=256)
def _resampling_matrix(
    n: int, k: tuple[float, ...], up: int, down: int, pad: tuple[int, int], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """[n_out, n]: the 1-D upfirdn of a length-n axis as a matrix (column i: the response to sample i)."""
    eye = torch.eye(n, dtype=torch.float64).view(n, 1, 1, n)
    return _upfirdn1d(eye, k, 3, up, down, pad).view(n, -1).t().to(device=device, dtype=dtype).contiguous()


def _upfirdn1d_separable(x: torch.Tensor, k: tuple[float, ...], dim: int, up: int, down: int, pad) -> torch.Tensor:
    """One axis of the separable path (CPU, or compiled): a matrix product on short axes, slices on long ones."""
    n = x.shape[dim]
    # Slices for: long axes; channels-last maps (the bf16 sampler's), which a product would first copy to NCHW
    # (measured 1.04x slower); compiled graphs (inductor fuses the slices).
    if n > MATMUL_MAX_LENGTH or not x.is_contiguous() or torch.compiler.is_compiling():
        return _upfirdn1d_autograd(x, k, dim, up, down, pad)
    m = _resampling_matrix(n, k, up, down, tuple(pad), x.dtype, x.device)
    return x @ m.t() if dim == 3 else m @ x


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor | Sequence[float], up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample (zero insertion) by `up`, pad by `pad` on both axes, FIR-filter, downsample by `down`.

    `kernel` is a 2-D tensor, or a 1-D sequence or tensor for a separable kernel (the
    same factor on both axes). Output size per axis: (size * up + pad[0] + pad[1] - kernel_size) // down + 1.
    """
    if not isinstance(kernel, torch.Tensor) or kernel.dim() == 1:
        k = tuple(float(v) for v in kernel)
        if x.device.type == "cpu" or torch.compiler.is_compiling():
            return _upfirdn1d_separable(_upfirdn1d_separable(x, k, 3, up, down, pad), k, 2, up, down, pad)
        kernel = _outer_on(k, x.device, x.dtype)
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    x = x.reshape(b * c, 1, h, w)  # single-channel convs: much faster than groups=c
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
    kernel = _kernel_1d(tuple(k), gain * factor**2)
    p = len(k) - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2, gain: float = 1) -> torch.Tensor:
    """FIR downsampling by `factor`; constant inputs are scaled by `gain`."""
    kernel = _kernel_1d(tuple(k), gain)
    p = len(k) - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(
    x: torch.Tensor, w: torch.Tensor, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2, gain: float = 1
) -> torch.Tensor:
    """Fused FIR upsampling and convolution with weight `w` [out, in, kh, kw] (StyleGAN2)."""
    kernel = _kernel_1d(tuple(k), gain * factor**2)
    conv_k = w.shape[-1]
    p = (len(k) - factor) - (conv_k - 1)
    # A transposed conv with the spatially flipped, in/out-swapped weight is the "upsample then conv".
    y = F.conv_transpose2d(x, torch.flip(w, [2, 3]).transpose(0, 1), stride=factor)
    return upfirdn2d(y, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(
    x: torch.Tensor, w: torch.Tensor, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2, gain: float = 1
) -> torch.Tensor:
    """Fused FIR downsampling and convolution with weight `w` [out, in, kh, kw] (StyleGAN2)."""
    kernel = _kernel_1d(tuple(k), gain)
    p = (len(k) - factor) + (w.shape[-1] - 1)
    return F.conv2d(upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2)), w, stride=factor)


class FIRConv2d(nn.Module):
    """Convolution with optional fused FIR up- or down-sampling (parameters `weight`, `bias`)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        up: bool = False,
        down: bool = False,
        resample_kernel: Sequence[float] = (1, 3, 3, 1),
        use_bias: bool = True,
        kernel_init=None,
    ):
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
