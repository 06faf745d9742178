"""Packed oneDNN convolutions of the CPU sampler (bf16 copy, fp32 shared weights): same results as nn.Conv2d,
bounded cache, fallbacks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from wavediff.models import packed
from wavediff.models.packed import PackedConv2d, pack_convolutions, packing_available

pytestmark = pytest.mark.skipif(not packing_available(), reason="this PyTorch build has no oneDNN packing operators")


def _convs(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 16, 1), nn.Conv2d(16, 12, 3, padding=1, groups=4, bias=False)
    )
    return net.to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 8, 4, 4), (3, 8, 8, 8)])
def test_packed_convolutions_match_nn_conv2d(dtype, shape):
    plain = _convs(dtype)
    fast = copy.deepcopy(plain)
    assert pack_convolutions(fast) == 3 and all(type(m) is PackedConv2d for m in fast)
    x = torch.randn(shape).to(dtype)
    with torch.no_grad():
        want, got = plain(x), fast(x)
        again = fast(x)  # from the cached packed weights
    tol = 1e-5 if dtype == torch.float32 else 2e-2 * want.abs().max().item()
    assert got.dtype == dtype and got.shape == want.shape
    assert (got.float() - want.float()).abs().max() <= tol and torch.equal(got, again)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert (fast(nhwc).float() - want.float()).abs().max() <= tol


def test_the_cache_is_bounded_private_to_a_copy_and_follows_weight_changes(monkeypatch):
    monkeypatch.setattr(packed, "MAX_SHAPES", 2)
    monkeypatch.setattr(packed, "MAX_BATCH", 3)
    conv = nn.Conv2d(4, 4, 3, padding=1).bfloat16().eval()
    pack_convolutions(conv)
    with torch.no_grad():
        for b in (1, 2, 3):
            conv(torch.randn(b, 4, 5, 5).bfloat16())
        assert [k[0][0] for k in conv._packed] == [2, 3]  # the least recently used shape was dropped
        conv(torch.randn(4, 4, 5, 5).bfloat16())  # above MAX_BATCH: nn.Conv2d's path, nothing packed
        assert [k[0][0] for k in conv._packed] == [2, 3]
        assert len(copy.deepcopy(conv)._packed) == 0
        x = torch.randn(1, 4, 5, 5).bfloat16()
        before = conv(x)
        conv.weight.mul_(2)  # an in-place change bumps the version: the weight is packed again
        assert torch.allclose(
            conv(x).float() - conv.bias.float().view(1, -1, 1, 1),
            2 * (before.float() - conv.bias.float().view(1, -1, 1, 1)),
            rtol=2e-2,
            atol=2e-2,
        )
        assert len(conv._packed) == 1  # what was packed from the old weights went (no stale copies kept)


def test_autograd_and_mismatched_dtypes_take_the_plain_path():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    pack_convolutions(conv)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    conv(x).sum().backward()  # grad mode: nn.Conv2d's differentiable path
    assert x.grad is not None and not conv.__dict__.get("_packed")
    with torch.no_grad():
        assert conv(x.double().float()).dtype == torch.float32


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape", [(8, 128, 16, 16), (1, 64, 3, 5), (2, 32, 32, 32)])
def test_group_norm_on_channels_last_bf16_equals_pytorch_bit_for_bit(monkeypatch, shape, affine):
    """Packed convolutions return channels-last maps; below 32x32 their GroupNorm runs on an fp32 view."""
    from wavediff.models import layers

    torch.manual_seed(0)
    x = (torch.randn(shape) * 3 + 1).bfloat16().contiguous(memory_format=torch.channels_last)
    norm = layers.GroupNorm(32, shape[1], eps=1e-6).bfloat16()
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    weight, bias = (norm.weight, norm.bias) if affine else (None, None)
    want = torch.nn.functional.group_norm(x, 32, weight, bias, 1e-6)
    seen = []
    real = layers.F.group_norm
    monkeypatch.setattr(layers.F, "group_norm", lambda t, *a: seen.append(t.dtype) or real(t, *a))
    got = norm(x) if affine else layers.group_norm(x, 32)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, want)
    assert seen == [torch.float32 if shape[2] * shape[3] < 1024 else torch.bfloat16]
    assert layers.group_norm(x.contiguous(), 32).dtype == torch.bfloat16 and seen[-1] == torch.bfloat16  # NCHW: as is


def test_nin_and_the_wavelet_pyramid_pack_their_convolutions_too():
    """Modules that convolve through `packed.conv2d` (1x1 NIN layers with their transposed [in, out] weight, the
    wavelet input pyramid) get a cache from `pack_convolutions` and give the plain convolution's bf16 numbers."""
    from wavediff.models.layers import NIN
    from wavediff.models.wavelet_blocks import WaveletInputPyramid

    torch.manual_seed(0)
    for module, shape in ((NIN(16, 24, init_scale=1.0), (2, 16, 6, 6)), (WaveletInputPyramid(3, 8), (1, 3, 8, 8))):
        module = module.bfloat16().eval()
        with torch.no_grad():
            for p in module.parameters():
                p.normal_()
        fast = copy.deepcopy(module)
        assert pack_convolutions(fast) == 1 and len(fast._packed) == 0 and "_packed" not in module.__dict__
        x = torch.randn(shape).bfloat16()
        with torch.no_grad():
            want, got = module(x), fast(x)
        assert len(fast._packed) == 1  # packed once for this input shape
        assert got.dtype == torch.bfloat16 and torch.equal(got, want)
