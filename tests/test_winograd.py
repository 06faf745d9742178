"""Winograd F(4x4, 3x3) and F(2x2, 3x3) convolutions of the CPU fp32 sampler: the transforms are exact, the
convolution equals F.conv2d up to fp32 rounding, the rule picks the variant that pays per layer, and the sampler uses
them only where they apply."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import run_cli
from wavediff.cli.fastopts import add_fast_arguments, fast_from_args
from wavediff.errors import ConfigError
from wavediff.fastpath import FastPath, SamplerRunner
from wavediff.models import packed, winograd
from wavediff.models.generator import build_generator
from wavediff.presets import get_preset


@pytest.mark.parametrize("variant", [winograd.F4, winograd.F2], ids=["F4", "F2"])
def test_the_transforms_compute_a_1d_correlation_exactly(variant):
    """A^T [(G g) * (B^T d)] is the correlation of an (m + 2)-sample input with a 3-tap filter, in float64 to 1e-12."""
    gen = torch.Generator().manual_seed(0)
    m = variant.tile
    for _ in range(5):
        d = torch.randn(m + 2, dtype=torch.float64, generator=gen)
        g = torch.randn(3, dtype=torch.float64, generator=gen)
        got = variant.at64 @ ((variant.g64 @ g) * (variant.bt64 @ d))
        want = torch.stack([(d[i : i + 3] * g).sum() for i in range(m)])
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("tile", [4, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "shape, c_out, channels_last",
    [((2, 128, 8, 8), 128, True), ((2, 64, 7, 9), 130, False), ((1, 3, 5, 6), 4, False), ((3, 16, 16, 12), 8, True)],
)
def test_conv3x3_equals_a_float64_convolution_up_to_fp32_rounding(shape, c_out, channels_last, bias, tile):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    w = torch.randn(c_out, shape[1], 3, 3, generator=gen)
    b = torch.randn(c_out, generator=gen) if bias else None
    want = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)
    got = winograd.conv3x3(x, winograd.transform_weight(w, tile), b)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)  # the layout oneDNN's convolutions give too
    error = (got.double() - want).abs().max() / want.abs().max()
    # measured: F(4x4) 1e-6 to 4e-6, F(2x2) 2e-7 to 5e-7; oneDNN's direct fp32 convolution: about 6e-7
    assert error < (1e-5 if tile == 4 else 1.5e-6)


@pytest.mark.parametrize("image_chunk, max_chunk", [(1, 1 << 40), (1 << 40, 3 * 36 * 4 * 16 * 4)])
def test_conv3x3_in_chunks_of_images_equals_the_whole_batch(monkeypatch, image_chunk, max_chunk):
    """Chunks of one image (large maps), or of at most 3 images (the memory bound), write the same output."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(7, 16, 7, 8, generator=gen)  # 2 x 2 tiles of 4x4, 16 channels: 36 x 4 x 16 x 4 bytes per image
    u = winograd.transform_weight(torch.randn(12, 16, 3, 3, generator=gen))
    b = torch.randn(12, generator=gen)
    whole = winograd.conv3x3(x, u, b)
    chunks = []
    real = winograd._tiles_into
    monkeypatch.setattr(winograd, "_tiles_into", lambda v, x, *a: chunks.append(x.shape[0]) or real(v, x, *a))
    monkeypatch.setattr(winograd, "IMAGE_CHUNK_BYTES", image_chunk)
    monkeypatch.setattr(winograd, "MAX_CHUNK_BYTES", max_chunk)
    got = winograd.conv3x3(x, u, b)
    assert chunks == ([1] * 7 if image_chunk == 1 else [3, 3, 1])
    torch.testing.assert_close(got, whole, atol=1e-5, rtol=0)


def test_the_rule_picks_the_variant_that_pays_per_layer():
    w, wide = torch.empty(128, 128, 3, 3), torch.empty(256, 256, 3, 3)
    assert winograd.tile_for(torch.empty(8, 128, 8, 8), w) == 4  # 32 tiles of 4x4
    assert winograd.tile_for(torch.empty(1, 128, 32, 32), w) == 4  # 64 tiles
    assert winograd.tile_for(torch.empty(1, 128, 16, 16), w) == 0  # 16 tiles, 128 channels: streaming dominates
    assert winograd.tile_for(torch.empty(1, 256, 16, 16), wide) == 2  # 16 tiles of 4x4, 64 of 2x2
    assert winograd.tile_for(torch.empty(8, 256, 4, 4), wide) == 2  # 32 tiles of 2x2
    assert winograd.tile_for(torch.empty(8, 512, 4, 4), torch.empty(256, 512, 3, 3)) == 2
    assert winograd.tile_for(torch.empty(1, 128, 16, 16), torch.empty(256, 128, 3, 3)) == 0  # F(2x2): 256 channels
    assert winograd.tile_for(torch.empty(8, 128, 4, 4), w) == 0
    assert winograd.tile_for(torch.empty(1, 256, 8, 8), wide) == 0  # 16 tiles of 2x2: too few
    assert winograd.tile_for(torch.empty(4, 256, 2, 2), wide) == 0  # maps too small for F(4x4), few 2x2 tiles
    assert winograd.tile_for(torch.empty(8, 64, 32, 32), torch.empty(128, 64, 3, 3)) == 0  # 64 channels in
    assert winograd.tile_for(torch.empty(8, 128, 32, 32), torch.empty(64, 128, 3, 3)) == 0  # 64 out
    x, w = torch.empty(2, 8, 4, 4), torch.empty(8, 8, 3, 3)
    assert winograd.applies(x, w, (1, 1), (1, 1), (1, 1), 1)
    assert not winograd.applies(x, w, (2, 2), (1, 1), (1, 1), 1)
    assert not winograd.applies(x, w, (1, 1), (0, 0), (1, 1), 1)
    assert not winograd.applies(x, torch.empty(8, 2, 3, 3), (1, 1), (1, 1), (1, 1), 4)
    assert not winograd.applies(x.bfloat16(), w.bfloat16(), (1, 1), (1, 1), (1, 1), 1)
    assert not winograd.applies(x, torch.empty(8, 8, 1, 1), (1, 1), (1, 1), (1, 1), 1)


def test_packed_convolutions_use_it_where_it_pays_and_follow_weight_updates(monkeypatch):
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a: calls.append(a[0].shape) or real(*a))
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 128, 3, padding=1).eval()
    packed.pack_convolutions(conv, use_winograd=True)
    x = torch.randn(1, 128, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-4, rtol=0)
        assert calls == [x.shape]
        conv(torch.randn(1, 128, 8, 8))  # 4 tiles: the direct convolution
        assert len(calls) == 1
        conv.weight.mul_(-0.5)  # an in-place update (an EMA): transformed again
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-4, rtol=0)
    x.requires_grad_(True)
    conv(x).sum().backward()  # autograd: nn.Conv2d's differentiable path
    assert len(calls) == 2 and x.grad is not None
    plain = nn.Conv2d(128, 128, 3, padding=1).eval()
    packed.pack_convolutions(plain)  # without use_winograd
    with torch.no_grad():
        plain(x)
    assert len(calls) == 2


def test_one_layer_runs_the_variant_its_input_calls_for_and_keeps_both_weights(monkeypatch):
    """Small maps take F(2x2, 3x3), large ones F(4x4, 3x3), on the same layer; each transformed weight is made once
    and both are made again after an in-place update."""
    spans, made = [], []
    real_conv, real_transform = winograd.conv3x3, winograd.transform_weight
    monkeypatch.setattr(winograd, "conv3x3", lambda x, u, b: spans.append(u.shape[0]) or real_conv(x, u, b))
    monkeypatch.setattr(winograd, "transform_weight", lambda w, tile: made.append(tile) or real_transform(w, tile))
    torch.manual_seed(0)
    conv = nn.Conv2d(256, 256, 3, padding=1).eval()
    packed.pack_convolutions(conv, use_winograd=True)
    small, large = torch.randn(8, 256, 4, 4), torch.randn(2, 256, 16, 16)
    with torch.no_grad():
        for x in (small, large, small, large):
            torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-4, rtol=0)
        assert spans == [16, 36, 16, 36] and made == [2, 4]
        conv.weight.mul_(0.5)
        for x in (small, large):
            torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-4, rtol=0)
    assert made == [2, 4, 2, 4]


def test_the_cpu_fp32_sampler_runs_winograd_by_default_within_float_rounding(tiny_sampler_net, monkeypatch):
    """The tiny preset is narrower than MIN_CHANNELS: lowered here so that every 3x3 convolution qualifies."""
    G, cfg = tiny_sampler_net
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_TILES_4", 1)
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a: calls.append(1) or real(*a))
    seeds = range(3)
    direct = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32", winograd=False)).sample(seeds)
    assert not calls
    runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32"))
    assert runner.winograd
    images = runner.sample(seeds)
    assert len(calls) >= cfg.diffusion.num_timesteps * 8
    torch.testing.assert_close(images, direct, atol=1e-4, rtol=0)
    assert not torch.equal(images, direct)  # a different algorithm, not the direct one again


def test_where_winograd_applies_and_the_flag(tiny_sampler_net):
    G, cfg = tiny_sampler_net
    assert FastPath(precision="fp32").winograd_on("cpu")
    assert not FastPath(precision="bf16").winograd_on("cpu")
    assert not FastPath(precision="fp32", compile=True).winograd_on("cpu")
    assert not FastPath(precision="fp32").winograd_on("meta")
    assert not FastPath(precision="fp32", winograd=False).winograd_on("cpu")
    assert "winograd" in FastPath(precision="fp32").describe("cpu")
    # named only where the model has a layer wide enough for it: cifar10's has, the tiny preset's has not
    with torch.device("meta"):
        wide = build_generator(get_preset("cifar10").generator)
    assert winograd.has_candidates(wide) and FastPath(precision="fp32").describe("cpu", wide) == "fp32, winograd"
    assert not winograd.has_candidates(G) and FastPath(precision="fp32").describe("cpu", G) == "fp32"
    for fast, device in [
        (FastPath(precision="bf16", winograd=True), "cpu"),
        (FastPath(precision="fp32", compile=True, winograd=True), "cpu"),
        (FastPath(precision="fp32", winograd=True), "meta"),
    ]:
        with pytest.raises(ConfigError, match="--winograd applies to eager fp32 sampling on a CPU"):
            SamplerRunner(G, cfg, device, fast)
    p = argparse.ArgumentParser()
    add_fast_arguments(p)
    assert fast_from_args(p.parse_args([])).winograd is None
    assert fast_from_args(p.parse_args(["--no-winograd"])).winograd is False
    assert fast_from_args(p.parse_args(["--winograd"])).winograd is True


def test_models_made_under_inference_mode_sample_too():
    """Inference tensors have no version counter: the caches of packed and Winograd weights work without one."""
    from wavediff.models.generator import perturbed_generator
    from wavediff.presets import get_preset

    cfg = get_preset("tiny")
    with torch.inference_mode():
        conv = nn.Conv2d(128, 128, 3, padding=1).eval()
        packed.pack_convolutions(conv, use_winograd=True)
        for shape in ((1, 128, 32, 32), (1, 128, 8, 8)):  # Winograd, then a packed direct convolution
            x = torch.randn(shape)
            torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-4, rtol=0)
        G = perturbed_generator(cfg.generator, 0.05)
        assert all(p.is_inference() for p in G.parameters())
        images = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32")).sample(range(2))
    assert images.shape == (2, 3, cfg.image_size, cfg.image_size) and torch.isfinite(images).all()


def test_the_cli_times_both_and_refuses_winograd_where_it_cannot_apply(capsys):
    code, out, _ = run_cli(
        capsys, "bench", "--preset", "tiny", "--batch", 2, "--runs", 1, "--warmup", 0, "--precision", "fp32"
    )
    assert code == 0 and "batch 2, fp32, device cpu" in out  # the tiny preset is too narrow for it: not named
    code, out, _ = run_cli(
        capsys,
        "bench",
        "--preset",
        "tiny",
        "--batch",
        2,
        "--runs",
        1,
        "--warmup",
        0,
        "--precision",
        "fp32",
        "--no-winograd",
    )
    assert code == 0 and "batch 2, fp32, device cpu" in out
    code, _, err = run_cli(capsys, "bench", "--preset", "tiny", "--runs", 1, "--precision", "bf16", "--winograd")
    assert code == 2 and "--winograd applies to eager fp32 sampling on a CPU only" in err
    assert len(err.strip().splitlines()) == 1
