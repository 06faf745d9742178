import numpy as np
import pytest
import pywt
import torch

from conftest import FIXTURES
from wavediff.errors import WaveDiffError
from wavediff.wavelets import dwt, dwt_bands, idwt, idwt_bands, image_to_wavelet, reorder_bands, wavelet_to_image


def test_matches_pywavelets_band_order():
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    ll, p, q, hh = dwt_bands(x)
    ca, (ch, cv, cd) = pywt.dwt2(x.numpy(), "haar")
    for ours, theirs in ((ll, ca), (p, ch), (q, cv), (hh, cd)):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)


def test_matches_reference_conventions():
    ref = torch.load(FIXTURES / "wavelet_conventions.pt", weights_only=True)
    ll, p, q, hh = dwt_bands(ref["x"])
    torch.testing.assert_close(ll, ref["dwt2d_LL"], atol=1e-6, rtol=0)
    torch.testing.assert_close(q, ref["dwt2d_LH"], atol=1e-6, rtol=0)  # DWT_2D order: LL, Q, P, HH
    torch.testing.assert_close(p, ref["dwt2d_HL"], atol=1e-6, rtol=0)
    torch.testing.assert_close(hh, ref["dwt2d_HH"], atol=1e-6, rtol=0)
    # pytorch_wavelets order is canonical: (P, Q, HH)
    torch.testing.assert_close(torch.stack((p, q, hh), 2), ref["ptw_yh0"], atol=1e-6, rtol=0)


def test_explicit_block_formula():
    a, b, c, d = 1.0, 2.0, 5.0, 11.0
    x = torch.tensor([[[[a, b], [c, d]]]])
    out = dwt(x).flatten().tolist()
    assert out == pytest.approx([(a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2])


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (3, 5, 16, 8), (2, 12, 32, 32)])
def test_round_trip_and_orthonormal(shape):
    x = torch.randn(shape, dtype=torch.float64)
    y = dwt(x)
    assert y.shape == (shape[0], 4 * shape[1], shape[2] // 2, shape[3] // 2)
    torch.testing.assert_close(idwt(y), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(y.square().sum(), x.square().sum())  # energy preserved
    torch.testing.assert_close(idwt_bands(*dwt_bands(x)), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (3, 8, 2, 2), (1, 4, 4, 6)])
def test_strided_and_channels_last_inputs(shape):
    """Band slices, channels-last activations and tiny maps are valid inputs, not only fresh tensors."""
    x = torch.randn(shape, dtype=torch.float64)
    expected = dwt(x)
    torch.testing.assert_close(dwt(x.to(memory_format=torch.channels_last)), expected)
    wide = torch.randn(shape[0], 4 * shape[1] + 5, shape[2] // 2, shape[3] // 2, dtype=torch.float64)
    sliced = wide[:, 5:]  # a non-contiguous view, as when the high bands are split off
    torch.testing.assert_close(idwt(sliced), idwt(sliced.contiguous()))
    torch.testing.assert_close(idwt(expected.to(memory_format=torch.channels_last)), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_maps_stay_channels_last_with_the_same_bits(dtype):
    """The sampler's NHWC maps take strided paths that keep their layout (no copy before the next convolution)
    and compute the same numbers bit for bit; with autograd, idwt takes the NCHW path."""
    cl = torch.channels_last
    x = torch.randn(2, 8, 6, 10).to(dtype)
    y = dwt(x)
    y_cl = dwt(x.to(memory_format=cl))
    assert torch.equal(y_cl, y) and y_cl.is_contiguous(memory_format=cl) and not y_cl.is_contiguous()
    with torch.no_grad():
        back = idwt(y_cl)
    assert torch.equal(back, idwt(y)) and back.is_contiguous(memory_format=cl) and not back.is_contiguous()
    weights = torch.randn(back.shape).to(dtype)
    grads = []
    for start in (y_cl, y):
        leaf = start.clone().requires_grad_(True)
        grads.append(torch.autograd.grad((idwt(leaf) * weights).sum(), leaf)[0])
    assert torch.equal(*grads)


def test_gradients_flow_and_are_exact():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(dwt, (x,))
    y = torch.randn(2, 12, 2, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(idwt, (y,))


def test_odd_size_is_a_clear_error():
    with pytest.raises(WaveDiffError, match="even height and width"):
        dwt(torch.zeros(1, 3, 7, 8))
    with pytest.raises(WaveDiffError, match=r"\[B, C, H, W\]"):
        dwt(torch.zeros(3, 8, 8))
    with pytest.raises(WaveDiffError):
        idwt(torch.zeros(1, 6, 4, 4))


def test_image_helpers_scale_and_clamp():
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    w = image_to_wavelet(img)
    assert w.shape == (2, 12, 4, 4) and w.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(w[:, :3], dwt(img)[:, :3] / 2)
    torch.testing.assert_close(wavelet_to_image(w), img, atol=1e-6, rtol=0)
    assert wavelet_to_image(torch.full((1, 12, 2, 2), 3.0)).abs().max() == 1.0


def test_reorder_bands_swaps_mixed_bands_only():
    y = torch.arange(12.0).view(1, 12, 1, 1)
    z = reorder_bands(y, "pywt", "dwt2d").flatten().tolist()
    assert z == [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]
    torch.testing.assert_close(reorder_bands(reorder_bands(y, "pywt", "dwt2d"), "dwt2d", "pywt"), y)
    assert reorder_bands(y, "pywt", "pywt") is y
    with pytest.raises(WaveDiffError, match="unknown band order"):
        reorder_bands(y, "pywt", "haar")
