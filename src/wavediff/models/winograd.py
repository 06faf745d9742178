"""Winograd F(4x4, 3x3) convolutions for the CPU fp32 sampler: the same 3x3 convolution in 4x fewer multiplications.

On a CPU both our fp32 sampler and the authors' spend most of their time in the same oneDNN direct convolutions,
already at about the CPU's peak (README, Performance), so without native bf16 only cheaper arithmetic makes
sampling faster. Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016) computes each 4x4 output tile of a 3x3 convolution from a 6x6 input tile with 36 multiplications per
channel pair instead of 144:

    Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise, summed over input channels)

Here that is one batched matrix product: for each of the 36 positions of the transformed tile, [tiles, C_in] @
[C_in, C_out]. The input transform (B^T d B for every overlapping 6x6 tile) and the output transform (A^T m A)
are a gather plus a [36, 36] and a [16, 36] matrix product over all tiles and channels; the weight transform
(G g G^T) is made once per weight and cached.

Measured per layer on a 2-core Intel Xeon (AVX-512, no bf16), fp32, 2 threads, against oneDNN's direct
convolution with a prepacked weight (`packed.py`): [8, 256, 8, 8] -> 256: 1.7-2.2x; [8, 256, 16, 16] -> 256:
2.0-2.1x; [8, 512, 8, 8] -> 256: 1.7-2.0x; [8, 128, 16, 16] -> 128: 1.2-1.75x; [1, 256, 32, 32] -> 256: 2.2x;
[1, 128, 32, 32] -> 128: 1.6x. It loses where the transforms, which are passes over memory, outweigh the
saved arithmetic: few channels ([8, 64, 64, 64] -> 64: 0.78x), and where there are few tiles, since the
transformed weight is 4x the size of the plain one and streaming it dominates ([1, 256, 8, 8]: 0.7x; [1, 256, 4,
4]: 0.4x). `pays` encodes that, from whole samplers rather than layers alone (where the weights stay in cache).
Whole fp32 samplers there, against direct convolutions in the same process: cifar10 1.25-1.28x at batch 8 (about
1.0x at 1: its maps hold too few tiles), stl10 1.1x at 1 and 1.35x at 8, celeba_256 1.1x at 1 and 8 (its largest
maps have 64 channels).

Numbers: against a float64 convolution, the largest error is about 5e-6 of the output's largest magnitude at 256
input channels (oneDNN's direct fp32 convolution: about 6e-7). Sampled images move by 1/255 in about 0.02% of
their pixel values (README, Sampling); `--no-winograd` keeps the direct convolution.

Training keeps oneDNN's direct convolutions: a Winograd forward and backward (the adjoint transforms, col2im for
the overlapping tiles, the weight transform every step) measured 0.95-1.2x per layer at cifar10's training shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TILE = 4  # output tile side (m)
SPAN = TILE + 2  # input tile side (m + r - 1)
MIN_CHANNELS = 128  # fewer input or output channels: the transforms cost more than the saved arithmetic
# output tiles in the batch x the narrower channel count: below it, fixed costs (streaming the 4x larger transformed
# weight, the transforms' operator calls) outweigh the saved arithmetic. Whole samplers at batch 1, 2-core Intel
# Xeon, against direct convolutions: cifar10 0.92-0.95x with Winograd also on its [1, 128, 16, 16] -> 128 layers
# (16 tiles x 128), about 1.0x without; stl10 1.11x with this rule, 1.09x with a product of tiles x C_in x C_out
# >= 2^19 instead (which takes the [1, 256, 16, 16] -> 128 layers too; cifar10 0.93x with it).
MIN_WORK = 4096

# chunks of the batch (`conv3x3`): an image alone where its transformed tiles take at least this (a layer of
# [8, 128, 64, 64] -> 128, celeba_256's, per image: 1.44x the direct convolution, against 1.2x for the whole batch
# at once; [8, 256, 16, 16] -> 256 lost with chunks: 1.5x against 2.0x), and at most this many bytes of them at once
IMAGE_CHUNK_BYTES = 2 << 20
MAX_CHUNK_BYTES = 64 << 20

# B^T (input), G (filter) and A^T (output) for F(4, 3) at the points 0, 1, -1, 2, -1/2 and infinity. These points
# round less than the textbook 0, +-1, +-2: in fp32 at 256 input channels, the largest error of the output is 4.4e-6
# of its largest magnitude, against 1.2e-5 (measured over all pairs from +-{1/3, 1/2, 2/3, 3/4, 4/3, 3/2, 2, 3}
# beside 0, +-1; the choice agrees with Barabasz et al., "Error analysis and improving the accuracy of Winograd
# convolution for deep neural networks", ACM TOMS 2020)
_BT = [
    [1, 3 / 2, -2, -3 / 2, 1, 0],
    [0, -1, -5 / 2, -1 / 2, 1, 0],
    [0, 1, 1 / 2, -5 / 2, 1, 0],
    [0, -1 / 2, -1, 1 / 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 1, 3 / 2, -2, -3 / 2, 1],
]
_G = [
    [1, 0, 0],
    [-1 / 3, -1 / 3, -1 / 3],
    [1 / 3, -1 / 3, 1 / 3],
    [1 / 15, 2 / 15, 4 / 15],
    [-16 / 15, 8 / 15, -4 / 15],
    [0, 0, 1],
]
_AT = [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -1 / 2, 0],
    [0, 1, 1, 4, 1 / 4, 0],
    [0, 1, -1, 8, -1 / 8, 1],
]
_BT64, _G64, _AT64 = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _G, _AT))
# both sides of each transform at once, over a tile flattened row-major: (B^T kron B^T) vec(d) = vec(B^T d B)
_INPUT = torch.kron(_BT64, _BT64).float()  # [36, 36]
_OUTPUT = torch.kron(_AT64, _AT64).float()  # [16, 36]
_FILTER = torch.kron(_G64, _G64)  # [36, 9]


def applies(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> bool:
    """Whether this convolution is one `conv3x3` computes: fp32 on a CPU, 3x3, stride 1, zero padding 1, no
    dilation or groups (stride, padding and dilation as pairs)."""
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.dim() == 4
        and tuple(weight.shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(padding) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
    )


def pays(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether Winograd beats the direct convolution on this input (the measurements above): at least
    `MIN_CHANNELS` channels in and out, maps of at least 4x4, and output tiles in the batch x the narrower channel
    count at least `MIN_WORK`."""
    n, _, h, w = x.shape
    channels = min(weight.shape[:2])
    tiles = n * -(-h // TILE) * -(-w // TILE)
    return channels >= MIN_CHANNELS and min(h, w) >= TILE and tiles * channels >= MIN_WORK


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """[C_out, C_in, 3, 3] -> [36, C_in, C_out]: G g G^T for every channel pair, as one matrix product with
    G kron G (in the weight's dtype: in fp32 within 1.5e-7 of float64, and 3x faster)."""
    c_out, c_in = weight.shape[:2]
    pairs = weight.detach().transpose(0, 1).reshape(c_in * c_out, 9)  # input-channel-major, as the result
    u = _FILTER.to(weight.device, weight.dtype) @ pairs.t()
    return u.view(SPAN * SPAN, c_in, c_out)


def conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` with `u = transform_weight(weight)`; returns channels-last memory
    (the layout oneDNN's convolutions give the sampler too).

    The batch runs in chunks of images: one image at a time where an image's transformed tiles take at least
    `IMAGE_CHUNK_BYTES` (they then stay in the CPU's cache between the transforms and the products), and at most
    `MAX_CHUNK_BYTES` of them at once (the transient buffers, 2.25x the input and output, stay bounded for large
    batches of large maps).
    """
    n, c, h, w = x.shape
    c_out = u.shape[2]
    th, tw = -(-h // TILE), -(-w // TILE)
    out = torch.empty((n, th * TILE, tw * TILE, c_out), dtype=x.dtype, device=x.device)
    grid = out.view(n, th, TILE, tw, TILE, c_out)
    per_image = SPAN**2 * th * tw * max(c, c_out) * x.element_size()
    step = 1 if per_image >= IMAGE_CHUNK_BYTES else max(1, MAX_CHUNK_BYTES // per_image)
    for i in range(0, n, step):
        _tiles_into(x[i : i + step], u, bias, grid[i : i + step])
    if th * TILE != h or tw * TILE != w:
        out = out[:, :h, :w].contiguous()
    return out.permute(0, 3, 1, 2)


def _tiles_into(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, grid: torch.Tensor) -> None:
    """The convolution of the images `x` written into `grid` ([n, th, 4, tw, 4, C_out]: whole output tiles)."""
    n, c, h, w = x.shape
    _, th, _, tw, _, c_out = grid.shape
    # NHWC, zero-padded by 1 on the top/left and up to whole tiles plus 1 on the bottom/right
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, tw * TILE + 1 - w, 1, th * TILE + 1 - h)).contiguous()
    s_n, s_h, s_w, _ = xp.stride()
    # every overlapping 6x6 tile, tile position first: [36, n * th * tw * c]
    tiles = xp.as_strided((SPAN, SPAN, n, th, tw, c), (s_h, s_w, s_n, TILE * s_h, TILE * s_w, 1)).reshape(SPAN**2, -1)
    v = (_INPUT @ tiles).view(SPAN**2, n * th * tw, c)
    m = torch.bmm(v, u)  # [36, tiles, c_out]: the whole arithmetic of the convolution
    y = (_OUTPUT @ m.view(SPAN**2, -1)).view(TILE, TILE, n, th, tw, c_out)
    y = y.permute(2, 3, 0, 4, 1, 5)  # [n, th, 4, tw, 4, c_out]
    if bias is None:
        grid.copy_(y)
    else:
        torch.add(y, bias, out=grid)
