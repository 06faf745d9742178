"""Generator modules: calling convention, boundary adapters, structure of the ablations, errors."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wavediff.config import GeneratorConfig
from wavediff.errors import ConfigError
from wavediff.models.generator import Generator, build_generator, patchify, unpatchify
from wavediff.models.layers import FIRDownsample, ResnetBlock
from wavediff.models.wavelet_blocks import FrequencyBottleneck, WaveletDownBlock, WaveletInputPyramid, WaveletUpBlock
from wavediff.presets import get_preset
from wavediff.wavelets import reorder_bands

FIXTURES = Path(__file__).parent / "data" / "reference" / "fixtures"


def tiny(**changes) -> GeneratorConfig:
    cfg = get_preset("tiny").generator
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cfg


def inputs(cfg: GeneratorConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_channels, cfg.resolution, cfg.resolution, generator=g)
    t = torch.tensor([1, 3] * (batch // 2) + [0] * (batch % 2), dtype=torch.int64)
    z = torch.randn(batch, cfg.nz, generator=g)
    return x, t, z


def perturbed(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Fresh models output ~0 (zero-ish init of the last layers); perturb to test real behaviour."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.mark.parametrize("preset", ["tiny", "tiny_pixel"])
def test_call_convention_and_shapes(preset):
    cfg = get_preset(preset).generator
    torch.manual_seed(0)
    G = build_generator(cfg).eval()
    x, t, z = inputs(cfg)
    with torch.no_grad():
        out = G(x, t, z)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.abs().max() < 1e-3  # the authors' near-zero init of the output layers


def test_tanh_switch_and_gradients():
    cfg = tiny()
    torch.manual_seed(0)
    G = perturbed(build_generator(cfg))
    x, t, z = inputs(cfg)
    with torch.no_grad():
        out = G(x, t, z)
    G_raw = copy.deepcopy(G)
    G_raw.cfg = copy.deepcopy(cfg)
    G_raw.cfg.use_tanh = False
    with torch.no_grad():
        raw = G_raw(x, t, z)
    assert raw.abs().max() > 1.0
    torch.testing.assert_close(out, torch.tanh(raw))
    G.train()
    G(x, t, z).square().mean().backward()
    grads = [p.grad for p in G.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_batch_items_are_independent():
    cfg = tiny()
    torch.manual_seed(0)
    G = perturbed(build_generator(cfg))
    x, t, z = inputs(cfg, batch=3)
    with torch.no_grad():
        full = G(x, t, z)
        single = G(x[1:2], t[1:2], z[1:2])
    torch.testing.assert_close(full[1:2], single, atol=1e-5, rtol=1e-5)


def test_dwt2d_band_order_adapter():
    cfg = tiny(band_order="dwt2d")
    torch.manual_seed(0)
    G = perturbed(build_generator(cfg))
    x, t, z = inputs(cfg)
    with torch.no_grad():
        expected = torch.tanh(reorder_bands(G.net(reorder_bands(x, "pywt", "dwt2d"), t, z), "dwt2d", "pywt"))
        torch.testing.assert_close(G(x, t, z), expected)


def test_patchify_layout_matches_reference():
    io = torch.load(FIXTURES / "tiny_wavelet_patch2_io.pt", weights_only=True)
    torch.testing.assert_close(patchify(io["x"], 2), io["x_patchified"], atol=0, rtol=0)
    torch.testing.assert_close(unpatchify(io["pre_unpatchify"], 2), io["pre_tanh"], atol=0, rtol=0)
    # Packing is (p1, p2, c) but unpacking reads (c, p1, p2): deliberately not inverse.
    assert not torch.equal(unpatchify(patchify(io["x"], 2), 2), io["x"])


def test_patch_size_2_runs():
    cfg = tiny(patch_size=2, resolution=32, attn_resolutions=(0,))
    torch.manual_seed(0)
    G = perturbed(build_generator(cfg))
    x, t, z = inputs(cfg)
    with torch.no_grad():
        assert G(x, t, z).shape == x.shape
    assert G.net.conv_in.weight.shape[1] == 48


def _types(model):
    return {type(m) for m in model.modules()}


def test_ablation_switches_change_the_named_blocks():
    full = build_generator(tiny())
    assert {WaveletDownBlock, WaveletUpBlock, WaveletInputPyramid, FrequencyBottleneck} <= _types(full)
    assert full.net.middle.use_fbn
    no_freq = build_generator(tiny(use_freq=False))
    assert WaveletDownBlock not in _types(no_freq) and WaveletUpBlock not in _types(no_freq)
    assert all(type(lv.resample) is ResnetBlock for lv in no_freq.net.encoder if lv.resample is not None)
    no_res = build_generator(tiny(use_residual=False))
    assert WaveletInputPyramid not in _types(no_res) and FIRDownsample in _types(no_res)
    assert not build_generator(tiny(use_fbn=False)).net.middle.use_fbn
    plain = build_generator(tiny(net_type="normal"))
    assert not {WaveletDownBlock, WaveletUpBlock, WaveletInputPyramid} & _types(plain)


@pytest.mark.parametrize(
    "changes",
    [
        dict(use_fbn=False),
        dict(use_freq=False),
        dict(use_residual=False),
        dict(progressive_input="none"),
        dict(embedding_type="fourier"),
        dict(centered=False),
        dict(conditional=False),
        dict(net_type="normal"),
    ],
)
def test_variants_run(changes):
    cfg = tiny(**changes)
    torch.manual_seed(0)
    G = perturbed(build_generator(cfg))
    x, t, z = inputs(cfg)
    with torch.no_grad():
        out = G(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "field,value",
    [
        ("progressive", "output_skip"),
        ("progressive_input", "input_skip"),
        ("resblock_type", "ddpm"),
        ("embedding_type", "learned"),
        ("net_type", "unet"),
        ("band_order", "haar"),
    ],
)
def test_unsupported_settings_raise_config_error(field, value):
    with pytest.raises(ConfigError, match=field):
        build_generator(tiny(**{field: value}))


def test_fir_off_rejected_only_where_fir_is_used():
    build_generator(tiny(fir=False))  # the full wavelet model never uses FIR resampling
    with pytest.raises(ConfigError, match="fir"):
        build_generator(tiny(fir=False, net_type="normal"))


def test_time_embedding_depends_on_t_and_z():
    cfg = tiny()
    torch.manual_seed(0)
    G = perturbed(build_generator(cfg))
    x, t, z = inputs(cfg)
    with torch.no_grad():
        base = G(x, t, z)
        assert not torch.allclose(base, G(x, t.flip(0), z))
        assert not torch.allclose(base, G(x, t, z + 1))


def test_generator_is_a_module_with_plain_state_dict():
    G = build_generator(tiny())
    assert isinstance(G, Generator)
    assert all(k.startswith("net.") for k in G.state_dict())
    assert "net.time_embed.features.freqs" not in G.state_dict()  # constant table, not saved


def test_bf16_autocast_keeps_block_activations_in_bf16():
    """Under autocast the AdaGN scale/shift and the time bias follow the activations: a ResnetBlock fed bf16
    returns bf16 (fp32 conditioning would promote every feature map to fp32 and cost a cast per convolution)."""
    torch.manual_seed(0)
    block = ResnetBlock(16, 32, temb_dim=8, zemb_dim=4)
    x, temb, zemb = torch.randn(2, 16, 8, 8), torch.randn(2, 8), torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cond = block.conditioning(temb, zemb)
        assert cond.style_in.dtype == torch.float32  # the conditioning linears compute in fp32
        assert block.norm_in(x.bfloat16(), cond.style_in).dtype == torch.bfloat16  # scale and shift did not promote it
        out = block(x.bfloat16(), cond)
        out.float().square().mean().backward()
    assert out.dtype == torch.bfloat16
    assert block.temb_proj.weight.grad.dtype == torch.float32 and block.norm_in.style.weight.grad.abs().sum() > 0
    with torch.no_grad():
        ref = block(x, block.conditioning(temb, zemb))
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


@pytest.mark.parametrize("batch", [1, 3])
def test_adaptive_group_norm_paths_agree(batch):
    """AdaGN's one-GroupNorm form (NCHW maps, and any batch of 1) equals the plain scale-and-shift formula,
    forward and backward, in the input's layout; channels-last batches take the plain form."""
    from wavediff.models.layers import AdaptiveGroupNorm

    torch.manual_seed(0)
    norm = AdaptiveGroupNorm(16, 8)
    x = torch.randn(batch, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    style = torch.randn(batch, 32, dtype=torch.float64, requires_grad=True)
    gamma, beta = style[:, :16, None, None], style[:, 16:, None, None]
    expected = torch.nn.functional.group_norm(x, norm.groups, eps=1e-6) * gamma + beta
    go = torch.randn_like(expected)
    want = torch.autograd.grad(expected, (x, style), go)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.detach().to(memory_format=layout).requires_grad_(True)
        out = norm(xl, style)
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
        assert out.is_contiguous(memory_format=layout)  # no layout change for the next convolution to undo
        for a, b in zip(torch.autograd.grad(out, (xl, style), go), want):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("changes", [{}, dict(conditional=False), dict(net_type="normal")])
def test_stacked_conditioning_equals_the_per_block_projections(changes):
    """The GPU sampler's conditioning, two matrix products over every block's weights, holds each block's time bias
    and AdaGN styles as the per-block projections do, and the generator predicts the same from it."""
    cfg = tiny(**changes)
    torch.manual_seed(0)
    G = perturbed(build_generator(cfg))
    x, t, z = inputs(cfg, batch=3)
    with torch.no_grad():
        plain, stacked = G.conditioning(t, z), G.conditioning(t, z, stacked=True)
        blocks = [m for m in G.modules() if isinstance(m, ResnetBlock)]
        assert set(plain.blocks) == set(stacked.blocks) == set(blocks) and len(blocks) > 4
        for m in blocks:
            for field in ("bias", "style_in", "style_out"):
                a, b = getattr(plain[m], field), getattr(stacked[m], field)
                assert (a is None) == (b is None) == (field == "bias" and not cfg.conditional)
                if a is not None:
                    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
        torch.testing.assert_close(G.predict(x, stacked), G.predict(x, plain), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_channelwise_group_norm_equals_group_norm(dtype):
    """The per-channel-statistics GroupNorm (compiled NHWC maps) is GroupNorm: with and without
    affine parameters, on maps whose mean dwarfs their spread (where E[x^2] - E[x]^2 would cancel)."""
    from wavediff.models.layers import channelwise_group_norm

    torch.manual_seed(0)
    x = (torch.randn(3, 32, 5, 7, dtype=torch.float64) * 0.1 + torch.linspace(-50, 50, 32)[None, :, None, None]).to(
        dtype
    )
    weight, bias = torch.randn(32, dtype=torch.float64), torch.randn(32, dtype=torch.float64)
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 3e-2}[dtype]
    for affine in ((None, None), (weight.to(dtype), bias.to(dtype))):
        expected = torch.nn.functional.group_norm(x.double(), 8, *(p if p is None else p.double() for p in affine))
        got = channelwise_group_norm(x.to(memory_format=torch.channels_last), 8, *affine, eps=1e-5)
        assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got.double(), expected, atol=tol, rtol=tol)


def test_channelwise_group_norm_is_used_only_in_compiled_nhwc(monkeypatch):
    from wavediff.models import layers

    calls = []
    monkeypatch.setattr(layers, "channelwise_group_norm", lambda *a: calls.append(a) or a[0])
    x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last)
    compiled = torch.compile(lambda x: layers.group_norm(x, 2), backend="eager", fullgraph=True)
    for flag in (False, True):
        monkeypatch.setattr(layers, "CHANNELWISE_GN", flag)
        torch._dynamo.reset()
        compiled(x), layers.group_norm(x, 2), compiled(x.contiguous())
        assert len(calls) == int(flag)  # compiled, NHWC, switched on: nothing else
    # on unless the environment says 0 (what benchmarks/gpu_check.py sets to compare)
    code = "import wavediff.models.layers as m; print(m.CHANNELWISE_GN)"
    for value, expected in (("1", "True"), ("0", "False"), (None, "True")):
        env = {k: v for k, v in os.environ.items() if k != "WAVEDIFF_CHANNELWISE_GN"}
        if value is not None:
            env["WAVEDIFF_CHANNELWISE_GN"] = value
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == expected
