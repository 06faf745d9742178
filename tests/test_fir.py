import pytest
import torch
import torch.nn.functional as F

from wavediff.models import fir
from wavediff.models.fir import FIRConv2d, conv_downsample_2d, downsample_2d, make_kernel, upfirdn2d, upsample_2d


def naive_upfirdn2d(x, k, up, down, pad):
    """Definition: zero-insert, pad (negative = crop), correlate with the flipped kernel, subsample."""
    b, c, h, w = x.shape
    z = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    z[:, :, ::up, ::up] = x
    z = F.pad(z, [pad[0], pad[1], pad[0], pad[1]])
    kf = torch.flip(k, [0, 1])
    kh, kw = k.shape
    out = torch.zeros(b, c, z.shape[2] - kh + 1, z.shape[3] - kw + 1, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out += kf[i, j] * z[:, :, i : i + out.shape[2], j : j + out.shape[3]]
    return out[:, :, ::down, ::down]


# (up, down, pad, kernel size): up/down-sampling, both, pure filtering and cropping
CASES = [
    (2, 1, (2, 1), 4),
    (1, 2, (1, 1), 4),
    (1, 1, (3, 3), 4),
    (2, 1, (3, 2), 4),
    (1, 2, (2, 2), 3),
    (2, 2, (1, 1), 4),
    (1, 1, (-1, -1), 2),
]


@pytest.mark.parametrize("up,down,pad,ks", CASES)
def test_upfirdn2d_matches_definition(up, down, pad, ks):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    k = torch.rand(ks, ks, dtype=torch.float64)
    torch.testing.assert_close(upfirdn2d(x, k, up, down, pad), naive_upfirdn2d(x, k, up, down, pad))


@pytest.fixture(params=["slices", "matrix"])
def cpu_path(request, monkeypatch):
    """Each CPU path for separable kernels: strided slices (long axes) or the resampling matrix (short axes)."""
    monkeypatch.setattr(fir, "MATMUL_MAX_LENGTH", 0 if request.param == "slices" else 1 << 20)
    return request.param


@pytest.mark.parametrize("up,down,pad,ks", [*CASES, (3, 1, (1, 4), 5), (2, 1, (-1, 0), 4), (4, 1, (0, 0), 2)])
def test_separable_upfirdn2d_matches_definition(up, down, pad, ks, cpu_path):
    """Both CPU paths for 1-D kernels equal the 2-D definition, values and gradients."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    k = torch.rand(ks, dtype=torch.float64)
    ours, naive = upfirdn2d(x, k, up, down, pad), naive_upfirdn2d(x, torch.outer(k, k), up, down, pad)
    torch.testing.assert_close(ours, naive)
    g = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(naive, x, g)[0])


@pytest.mark.parametrize(
    "up,down,pad,ks", [(2, 1, (2, 1), 4), (1, 2, (1, 1), 4), (1, 1, (-1, 2), 3), (2, 2, (1, 1), 4)]
)
def test_separable_upfirdn2d_gradient_is_its_adjoint_twice_over(up, down, pad, ks, cpu_path):
    """The hand-written backward of the slices (the adjoint resampling) and the matrix product pass numerical
    gradient and double-backward checks, as the R1 penalty needs; a non-symmetric kernel catches a kernel not
    reversed in the adjoint."""
    torch.manual_seed(2)
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    k = tuple(torch.rand(ks, dtype=torch.float64).tolist())
    assert k != k[::-1]
    fn = lambda x: upfirdn2d(x, k, up, down, pad)  # noqa: E731
    assert (fn(x).grad_fn.name() == "_UpFirDn1dBackward") == (cpu_path == "slices")
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_short_axes_take_the_matrix_and_long_axes_the_slices():
    """Up to MATMUL_MAX_LENGTH samples an axis is resampled by a cached matrix; both paths give the same image."""
    k = (1.0, 3.0, 3.0, 1.0)
    for w, slices in ((fir.MATMUL_MAX_LENGTH, False), (fir.MATMUL_MAX_LENGTH + 2, True)):
        x = torch.randn(1, 2, 4, w, dtype=torch.float64, requires_grad=True)
        y = fir._upfirdn1d_separable(x, k, 3, 1, 2, (1, 1))
        assert (y.grad_fn.name() == "_UpFirDn1dBackward") == slices
        torch.testing.assert_close(y, fir._upfirdn1d(x, k, 3, 1, 2, (1, 1)))
    bf16 = fir._resampling_matrix(8, k, 2, 1, (2, 1), torch.bfloat16, torch.device("cpu"))
    assert bf16 is fir._resampling_matrix(8, k, 2, 1, (2, 1), torch.bfloat16, torch.device("cpu"))  # made once
    assert bf16.shape == (16, 8) and bf16.dtype == torch.bfloat16


def test_resampling_preserves_constants_and_shapes():
    x = torch.full((1, 2, 8, 8), 3.0)
    assert downsample_2d(x).shape == (1, 2, 4, 4)
    assert upsample_2d(x).shape == (1, 2, 16, 16)
    torch.testing.assert_close(downsample_2d(x)[..., 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0))
    torch.testing.assert_close(upsample_2d(x)[..., 2:-2, 2:-2], torch.full((1, 2, 12, 12), 3.0))
    assert make_kernel([1, 3, 3, 1]).sum().item() == pytest.approx(1.0)


def test_fused_down_conv_equals_filter_then_strided_conv():
    x, w = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(5, 4, 3, 3, dtype=torch.float64)
    k = make_kernel([1, 3, 3, 1]).double()
    expected = F.conv2d(upfirdn2d(x, k, pad=(2, 2)), w, stride=2)
    torch.testing.assert_close(conv_downsample_2d(x, w), expected)


def test_fir_conv_module_shapes():
    x = torch.randn(2, 4, 8, 8)
    assert FIRConv2d(4, 6, 3)(x).shape == (2, 6, 8, 8)
    assert FIRConv2d(4, 6, 3, down=True)(x).shape == (2, 6, 4, 4)
    assert FIRConv2d(4, 6, 3, up=True)(x).shape == (2, 6, 16, 16)
    with pytest.raises(ValueError):
        FIRConv2d(4, 6, 2)


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2)])
def test_compiled_graphs_resample_with_slices_on_every_device(up, down, monkeypatch):
    """Inside torch.compile, GPUs take the separable slices too (inductor fuses them; a single-channel convolution
    would stay a library call): on a non-CPU tensor (meta) no convolution runs while compiling, one runs in eager."""
    calls = []
    for name in ("conv2d", "conv_transpose2d"):
        real = getattr(fir.F, name)
        monkeypatch.setattr(fir.F, name, lambda *a, _real=real, **kw: calls.append(1) or _real(*a, **kw))
    x = torch.empty(2, 3, 8, 8, device="meta")
    pad = (2, 1) if up > 1 else (1, 1)
    eager = upfirdn2d(x, (1.0, 3.0, 3.0, 1.0), up, down, pad)
    assert calls == [1]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    compiled = upfirdn2d(x, (1.0, 3.0, 3.0, 1.0), up, down, pad)
    assert calls == [1] and compiled.shape == eager.shape
