"""Inference convolutions with oneDNN-prepacked weights, for the CPU sampler (its bf16 copy, or in fp32 a copy of
the generator's structure sharing its weights).

`F.conv2d` on the CPU hands oneDNN a plain weight tensor, which oneDNN reorders into its blocked layout at
every call. At batch 1 that reorder costs more than the arithmetic: on a 2-core AVX512-BF16 CPU a bf16
[1, 256, 4, 4] 3x3 convolution took 123 us through `F.conv2d` and 39 us with the weight packed once (the
same numbers, bit for bit); [1, 256, 8, 8]: 171 against 88 us. Whole samplers gain less as the batch grows
(cifar10: 1.17x at batch 1, 1.07x at 4; at 8, 1.02x alone, and without packing the side-by-side runs were 0.91x
for cifar10 and celeba_256) and lose above (0.9-0.95x for cifar10 at 16-100), so only batches up to `MAX_BATCH`
take the packed path. In fp32 packing changes results only by float rounding (images within 4e-6 of the unpacked
sampler's) and gains about as much (cifar10 1.43x at batch 1, 1.10x at 8; stl10 1.37x / 1.05x; celeba_256 1.30x at
batch 1, none at 8). PyTorch's inductor packs weights the same way when it freezes a model; `PackedConv2d` does
it in eager mode, per input shape, with PyTorch's own oneDNN operators. It serves only inference on the CPU:
with autograd on, on other devices, or where PyTorch lacks those operators it is a plain `nn.Conv2d`. Layers that
convolve with `F.conv2d` themselves (the attention's 1x1 NIN projections, the wavelet input pyramid) call
`conv2d` here instead and are packed the same way (stl10 sampling at batch 1: 1.15x).
"""

from __future__ import annotations

import collections

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from . import winograd

MAX_BATCH = 8  # larger batches run nn.Conv2d's own path
MAX_SHAPES = 4  # packed weights kept per convolution (batch sizes x layouts), least recently used dropped


def packing_available() -> bool:
    """Whether this PyTorch build has the oneDNN operators `PackedConv2d` uses."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_convolution_weight")
        and hasattr(mkldnn, "_convolution_pointwise")
    )


def version(t: torch.Tensor) -> int:
    """`t`'s in-place update counter, which the caches here compare: -1 for an inference tensor (made under
    `torch.inference_mode()`), which has none and which nothing outside inference mode may change in place."""
    return -1 if t.is_inference() else t._version


class _PackCache(collections.OrderedDict):
    """Input signature -> packed weight. Never copied: a deep copy (another layout's model) starts empty."""

    def __deepcopy__(self, memo):
        return _PackCache()


def conv2d(
    owner: nn.Module,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """`F.conv2d`, through a weight packed once per input shape and cached on `owner` where that serves: CPU
    inference at batches up to `MAX_BATCH`, in the weight's dtype, on a module `pack_convolutions` prepared."""
    cache = owner.__dict__.get("_packed")
    plain = cache is None or torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != weight.dtype
    if plain:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if owner.__dict__.get("_winograd", False) and winograd.applies(x, weight, stride, padding, dilation, groups):
        tile = winograd.tile_for(x, weight)
        if tile:
            return winograd.conv3x3(x, _winograd_weight(owner, weight, tile), bias)
    if x.shape[0] > MAX_BATCH or owner.__dict__.get("_unpackable", False):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    key = (tuple(x.shape), x.is_contiguous(), weight.data_ptr(), version(weight), weight.stride())
    packed = cache.get(key)
    if packed is None:
        try:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight.contiguous(), list(padding), list(stride), list(dilation), groups, list(x.shape)
            )
        except RuntimeError:  # a configuration oneDNN cannot pack (a speed-up only: same results without)
            owner._unpackable = True
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        for stale in [k for k in cache if k[2:] != key[2:]]:  # packed from weights since changed in place
            del cache[stale]
        cache[key] = packed
        while len(cache) > MAX_SHAPES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, bias, list(padding), list(stride), list(dilation), groups, "none", [], ""
    )


def _winograd_weight(owner: nn.Module, weight: torch.Tensor, tile: int) -> torch.Tensor:
    """`weight` in the Winograd domain of F(tile x tile, 3x3), made once per variant and cached on `owner` (made
    again after an in-place update)."""
    key = (weight.data_ptr(), version(weight))
    cached = owner.__dict__.get("_winograd_weight")
    if cached is None or cached[0] != key:
        cached = owner._winograd_weight = (key, {})
    if tile not in cached[1]:
        cached[1][tile] = winograd.transform_weight(weight, tile)
    return cached[1][tile]


class PackedConv2d(nn.Conv2d):
    """`nn.Conv2d` whose CPU inference packs its weight once per input shape (`conv2d` above).

    Made from an `nn.Conv2d` by `pack_convolutions`, which gives it its (empty) cache.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(self, x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def pack_convolutions(module: nn.Module, use_winograd: bool = False) -> int:
    """Prepare `module`'s convolutions for packed inference in place; returns how many.

    Every zero-padded `nn.Conv2d` becomes a `PackedConv2d`; modules whose class sets `packable = True` and
    convolves through `conv2d(self, ...)` (1x1 NIN layers, the wavelet input pyramid) get their cache. With
    `use_winograd`, fp32 3x3 convolutions run as Winograd F(4x4, 3x3) or F(2x2, 3x3) wherever
    `winograd.tile_for` finds one that pays (any batch size).
    """
    count = 0
    for m in module.modules():
        if type(m) is nn.Conv2d and m.padding_mode == "zeros" and isinstance(m.padding, tuple):
            m.__class__ = PackedConv2d
        elif not getattr(type(m), "packable", False):
            continue
        m._packed = _PackCache()
        m._winograd = use_winograd
        if not packing_available():
            m._unpackable = True
        count += 1
    return count
