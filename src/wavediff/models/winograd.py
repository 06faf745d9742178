"""Winograd convolutions for the CPU fp32 sampler: the same 3x3 convolution in 2.25-4x fewer multiplications.

On a CPU both our fp32 sampler and the authors' spend most of their time in the same oneDNN direct convolutions,
already at about the CPU's peak (README, Performance), so without native bf16 only cheaper arithmetic makes
sampling faster. Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016) computes each m x m output tile of a 3x3 convolution from an (m + 2) x (m + 2) input tile:

    Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise, summed over input channels)

F(4x4, 3x3) takes 36 multiplications per tile and channel pair instead of 144, F(2x2, 3x3) 16 instead of 36. Here
either is one batched matrix product: for each position of the transformed tile, [tiles, C_in] @ [C_in, C_out]. The
input transform (B^T d B for every overlapping tile) and the output transform (A^T m A) are a gather plus two small
matrix products over all tiles and channels; the weight transform (G g G^T) is made once per weight and cached.

Which one, if any, is decided per layer and input shape (`tile_for`). F(4x4) saves the most arithmetic but its
transformed weight is 4x the plain one and its tiles are few on small maps; F(2x2)'s weight is 1.8x and it has 4x
as many tiles, so it wins on small maps and batches. Measured per layer on a 2-core Intel Xeon (AVX-512, no bf16),
fp32, 2 threads, cold weights, against oneDNN's direct convolution with a prepacked weight (`packed.py`):
F(4x4) [8, 256, 8, 8] -> 256: 1.7x; [8, 256, 16, 16] -> 256: 2.0x; [1, 256, 32, 32] -> 256: 2.1x; F(2x2)
[8, 256, 4, 4] -> 256: 1.5x; [8, 512, 4, 4] -> 256: 1.7x; [1, 256, 16, 16] -> 256: 1.35x (F(4x4): 1.2x). Both lose
where the transforms, which are passes over memory, outweigh the saved arithmetic: few channels ([8, 64, 64, 64]
-> 64: F(4x4) 0.9x, F(2x2) 0.5x), and few tiles, where streaming the larger transformed weight dominates
([1, 256, 8, 8]: 0.55x and 0.87x; [1, 256, 4, 4]: 0.4x and 0.65x). Whole fp32 samplers there, against direct
convolutions in the same process: cifar10 at batch 8 1.25-1.28x with F(4x4) alone and another 1.09x with F(2x2)
(about 1.0x at batch 1: its maps hold too few tiles), stl10 1.1x at batch 1 and 1.35x at 8, celeba_256 1.1x at 1
and 8 (its largest maps have 64 channels).

Numbers: against a float64 convolution, the largest error of F(4x4) is about 5e-6 of the output's largest
magnitude at 256 input channels, F(2x2)'s about 5e-7 (oneDNN's direct fp32 convolution: about 6e-7). Sampled images
move by 1/255 in about 0.02% of their pixel values (README, Sampling); `--no-winograd` keeps the direct convolution.

Training keeps oneDNN's direct convolutions: a Winograd forward and backward (the adjoint transforms, col2im for
the overlapping tiles, the weight transform every step) measured 0.95-1.2x per layer at cifar10's training shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Each variant wants at least this many channels in and out and this many output tiles in the batch: with fewer,
# the transforms (passes over memory) and streaming the transformed weight (F(4x4, 3x3): 4x the plain one; F(2x2, 3x3):
# 1.8x) cost more than the saved arithmetic. F(4x4) is tried first; on small maps and batches, where it has too few
# tiles, F(2x2) has 4x as many. Per layer, cold weights, 2-core Intel Xeon, against the direct convolution, F(4x4) /
# F(2x2): [8, 256, 8, 8] -> 256 (32 tiles of 4x4) 1.70x / 1.45x; [8, 128, 8, 8] -> 128 1.08x / 1.01x; [1, 128, 32, 32]
# -> 128 (64) 1.47x / 1.10x; [1, 256, 16, 16] -> 256 (16 tiles of 4x4, 64 of 2x2) 1.20x / 1.35x; [8, 256, 4, 4] ->
# 256 (32 of 2x2) 1.06x / 1.51x; [8, 512, 4, 4] -> 256 1.20x / 1.69x. Below the thresholds: [1, 256, 8, 8] -> 256
# (16 of 2x2) 0.55x / 0.87x; [1, 512, 8, 8] -> 256 0.64x / 0.97x; [1, 128, 16, 16] -> 128 (128 channels, 16 and 64
# tiles) 0.80x / 0.92x; [8, 64, 64, 64] -> 64 0.91x / 0.51x. Whole samplers (same process, against the rule with
# F(4x4) alone): cifar10 1.09x at batch 8; at batch 1 cifar10, stl10 and celeba_256 within 0.98-1.01x (noise).
MIN_CHANNELS = 128
MIN_TILES_4 = 32
MIN_CHANNELS_2 = 256
MIN_TILES_2 = 32

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
# F(2, 3) at the points 0, 1, -1 and infinity (Lavin & Gray's): its coefficients are 0, +-1 and 1/2, so it rounds
# no more than the direct convolution (about 5e-7 of the largest output at 256 input channels)
_BT2 = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
_G2 = [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]]
_AT2 = [[1, 1, 1, 0], [0, 1, -1, -1]]


class Variant:
    """One F(m x m, 3 x 3): its tile sides and both sides of each transform at once, over a tile flattened
    row-major, (B^T kron B^T) vec(d) = vec(B^T d B)."""

    def __init__(self, bt, g, at):
        self.bt64, self.g64, self.at64 = (torch.tensor(m, dtype=torch.float64) for m in (bt, g, at))
        self.tile = self.at64.shape[0]  # output tile side (m)
        self.span = self.tile + 2  # input tile side (m + r - 1)
        self.input = torch.kron(self.bt64, self.bt64).float()  # [span^2, span^2]
        self.output = torch.kron(self.at64, self.at64).float()  # [m^2, span^2]
        self.filter = torch.kron(self.g64, self.g64)  # [span^2, 9]


F4 = Variant(_BT, _G, _AT)
F2 = Variant(_BT2, _G2, _AT2)
_BY_TILE = {v.tile: v for v in (F4, F2)}
_BY_SPAN = {v.span**2: v for v in (F4, F2)}  # a transformed weight's first dimension names its variant


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


def has_candidates(module: torch.nn.Module) -> bool:
    """Whether `module` holds a 3x3 convolution wide enough for either variant (at least `MIN_CHANNELS` in and
    out, stride 1, padding 1): a narrower model (the tiny and digits presets) never runs Winograd, whatever the
    batch."""
    return any(
        isinstance(m, torch.nn.Conv2d)
        and tuple(m.kernel_size) == (3, 3)
        and tuple(m.stride) == (1, 1)
        and tuple(m.padding) == (1, 1)
        and tuple(m.dilation) == (1, 1)
        and m.groups == 1
        and min(m.in_channels, m.out_channels) >= MIN_CHANNELS
        for m in module.modules()
    )


def tiles(x: torch.Tensor, tile: int) -> int:
    """Output tiles of side `tile` in the batch (0 where the maps are smaller than one tile)."""
    n, _, h, w = x.shape
    return n * -(-h // tile) * -(-w // tile) if min(h, w) >= tile else 0


def tile_for(x: torch.Tensor, weight: torch.Tensor) -> int:
    """The output tile side of the Winograd variant that beats the direct convolution on this input (the
    measurements above), or 0 for the direct convolution: F(4x4, 3x3) with at least `MIN_CHANNELS` channels in and
    out and `MIN_TILES_4` output tiles in the batch, else F(2x2, 3x3) with `MIN_CHANNELS_2` and `MIN_TILES_2`."""
    channels = min(weight.shape[:2])
    if channels >= MIN_CHANNELS and tiles(x, F4.tile) >= MIN_TILES_4:
        return F4.tile
    if channels >= MIN_CHANNELS_2 and tiles(x, F2.tile) >= MIN_TILES_2:
        return F2.tile
    return 0


def transform_weight(weight: torch.Tensor, tile: int = 4) -> torch.Tensor:
    """[C_out, C_in, 3, 3] -> [span^2, C_in, C_out]: G g G^T for every channel pair, as one matrix product with
    G kron G (in the weight's dtype: in fp32 within 1.5e-7 of float64, and 3x faster). `tile`: 4 for F(4x4, 3x3),
    2 for F(2x2, 3x3)."""
    variant = _BY_TILE[tile]
    c_out, c_in = weight.shape[:2]
    pairs = weight.detach().transpose(0, 1).reshape(c_in * c_out, 9)  # input-channel-major, as the result
    u = variant.filter.to(weight.device, weight.dtype) @ pairs.t()
    return u.view(variant.span**2, c_in, c_out)


def conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` with `u = transform_weight(weight, tile)`; returns channels-last memory
    (the layout oneDNN's convolutions give the sampler too).

    The batch runs in chunks of images: one image at a time where an image's transformed tiles take at least
    `IMAGE_CHUNK_BYTES` (they then stay in the CPU's cache between the transforms and the products), and at most
    `MAX_CHUNK_BYTES` of them at once (the transient buffers, 2.25x the input and output, stay bounded for large
    batches of large maps).
    """
    variant = _BY_SPAN[u.shape[0]]
    m = variant.tile
    n, c, h, w = x.shape
    c_out = u.shape[2]
    th, tw = -(-h // m), -(-w // m)
    out = torch.empty((n, th * m, tw * m, c_out), dtype=x.dtype, device=x.device)
    grid = out.view(n, th, m, tw, m, c_out)
    per_image = variant.span**2 * th * tw * max(c, c_out) * x.element_size()
    step = 1 if per_image >= IMAGE_CHUNK_BYTES else max(1, MAX_CHUNK_BYTES // per_image)
    for i in range(0, n, step):
        _tiles_into(variant, x[i : i + step], u, bias, grid[i : i + step])
    if th * m != h or tw * m != w:
        out = out[:, :h, :w].contiguous()
    return out.permute(0, 3, 1, 2)


def _tiles_into(variant: Variant, x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, grid: torch.Tensor):
    """The convolution of the images `x` written into `grid` ([n, th, m, tw, m, C_out]: whole output tiles)."""
    n, c, h, w = x.shape
    _, th, m, tw, _, c_out = grid.shape
    span = variant.span
    # NHWC, zero-padded by 1 on the top/left and up to whole tiles plus 1 on the bottom/right
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, tw * m + 1 - w, 1, th * m + 1 - h)).contiguous()
    s_n, s_h, s_w, _ = xp.stride()
    # every overlapping input tile, tile position first: [span^2, n * th * tw * c]
    patches = xp.as_strided((span, span, n, th, tw, c), (s_h, s_w, s_n, m * s_h, m * s_w, 1)).reshape(span**2, -1)
    v = (variant.input @ patches).view(span**2, n * th * tw, c)
    prod = torch.bmm(v, u)  # [span^2, tiles, c_out]: the whole arithmetic of the convolution
    y = (variant.output @ prod.view(span**2, -1)).view(m, m, n, th, tw, c_out)
    y = y.permute(2, 3, 0, 4, 1, 5)  # [n, th, m, tw, m, c_out]
    if bias is None:
        grid.copy_(y)
    else:
        torch.add(y, bias, out=grid)
