"""The sampler's fast path: same images as the plain sampler, precision resolution, option errors."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from wavediff.diffusion import VPDiffusion, randn
from wavediff.errors import ConfigError
from wavediff.fastpath import (
    FastPath,
    SamplerRunner,
    autocast,
    cpu_has_native_bf16,
    low_precision_copy,
    resolve_precision,
)
from wavediff.models.layers import ConditioningLinear
from wavediff.wavelets import wavelet_to_image


@pytest.fixture(scope="module")
def tiny(tiny_sampler_net):
    return tiny_sampler_net


def test_runner_fp32_equals_the_step_by_step_sampler(tiny):
    G, cfg = tiny
    seeds = [3, 11, 5]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    diffusion = VPDiffusion(cfg.diffusion)
    shape = (3, cfg.data_channels, cfg.data_resolution, cfg.data_resolution)
    with torch.no_grad():
        x = diffusion.sample(G, randn(shape, gens), cfg.generator.nz, gens)
    expected = wavelet_to_image(x)
    got = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32")).sample(seeds)
    # the runner conditions the T steps in one pass: its matrix products round like a batch T times larger
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert got.abs().max() > 0.05


def test_conditioning_all_steps_at_once_equals_each_step_s(tiny):
    """The sampler's one conditioning pass over the T steps gives every res block, at each step, what that
    step's own pass gives (up to matrix-product rounding); `predict` under it is the generator's forward."""
    G, cfg = tiny
    T, B, nz = cfg.diffusion.num_timesteps, 3, cfg.generator.nz
    zs, t = torch.randn(T, B, nz), torch.arange(T - 1, -1, -1).repeat_interleave(B)
    x = torch.randn(B, cfg.data_channels, cfg.data_resolution, cfg.data_resolution)
    with torch.no_grad():
        together = G.conditioning(t, zs.flatten(0, 1)).chunk(T)
        for k in range(T):
            t_k = torch.full((B,), T - 1 - k)
            alone = G.conditioning(t_k, zs[k])
            assert alone.blocks.keys() == together[k].blocks.keys() and len(alone.blocks) > 4
            for block, c in alone.blocks.items():
                for name in ("bias", "style_in", "style_out"):
                    torch.testing.assert_close(getattr(together[k][block], name), getattr(c, name), atol=1e-6, rtol=0)
            assert torch.equal(G.predict(x, alone), G(x, t_k, zs[k]))
    with pytest.raises(ValueError, match="equal parts"):
        G.conditioning(t[:5], zs.flatten(0, 1)[:5]).chunk(T)


def test_bf16_runs_a_bf16_copy_with_fp32_conditioning(tiny):
    G, cfg = tiny
    runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="bf16"))
    got = runner.sample(range(4))
    copy = low_precision_copy(G, torch.bfloat16, pack=True)
    for module in copy.modules():  # conditioning linears stay fp32, every other weight is bf16
        want = torch.float32 if isinstance(module, ConditioningLinear) else torch.bfloat16
        assert all(p.dtype == want for p in module.parameters(recurse=False)), type(module).__name__
    with torch.no_grad():
        x = runner.diffusion.denoise(lambda x, t, z: copy(x.bfloat16(), t, z), *runner.draw(range(4)))
    assert torch.equal(got, wavelet_to_image(x.float()))
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in G.parameters())  # G itself untouched
    fp32 = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32")).sample(range(4))
    assert 0 < (got - fp32).abs().max() < 0.1  # bf16 arithmetic: close to fp32, not equal


def test_fp16_autocast_casts_each_weight_once_with_the_same_numbers(tiny):
    G, cfg = tiny
    runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp16"))
    got = runner.sample(range(4))
    with torch.no_grad(), autocast(torch.device("cpu"), "fp16"):  # plain autocast: a cast per weight per step
        x = runner.diffusion.denoise(G, *runner.draw(range(4)))
    assert torch.equal(got, wavelet_to_image(x.float()))
    assert not any(p.requires_grad for p in G.parameters())  # the weights' flags are restored


def test_precision_resolution_and_option_errors(tiny):
    G, cfg = tiny
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "meta") == "bf16"
    assert resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ConfigError, match="--cuda-graphs needs a CUDA device"):
        SamplerRunner(G, cfg, "cpu", FastPath(cuda_graphs=True))


def test_channels_last_is_opt_in_and_leaves_the_model_alone(tiny):
    G, cfg = tiny
    assert FastPath(precision="bf16").describe("cpu") == "bf16"
    assert FastPath(precision="fp32", channels_last=True).describe("cpu") == "fp32, channels_last, winograd"
    for precision in ("bf16", "fp32"):
        runner = SamplerRunner(G, cfg, "cpu", FastPath(precision=precision, channels_last=True))
        assert _nhwc(runner.generator)
        nhwc = runner.sample(range(3))
        nchw = SamplerRunner(G, cfg, "cpu", FastPath(precision=precision)).sample(range(3))
        assert all(p.is_contiguous() for p in G.parameters())  # the runner converted a copy
        assert (nhwc - nchw).abs().max() < (0.05 if precision == "bf16" else 1e-5)  # other kernels, same arithmetic


def test_cpu_sampler_runs_large_batches_with_nhwc_activations(tiny, monkeypatch):
    """channels_last None (the default): per batch, NHWC activations where `nhwc_pays_on_cpu` says so, NCHW
    weights untouched, the same images as NCHW up to float rounding; False keeps NCHW."""
    from wavediff.fastpath import nhwc_pays_on_cpu

    G, cfg = tiny
    res = cfg.data_resolution
    assert not nhwc_pays_on_cpu(torch.zeros(1, 12, 128, 128))  # batch 1: NCHW at any size
    assert nhwc_pays_on_cpu(torch.zeros(2, 12, 64, 64)) and not nhwc_pays_on_cpu(torch.zeros(4, 12, 32, 32))
    big = -(-8192 // (res * res))  # the smallest batch that qualifies for this preset
    layouts = []

    def run(batch: int, **fast):
        runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32", **fast))
        predict = runner.generator.predict
        monkeypatch.setattr(
            runner.generator, "predict", lambda x, c: layouts.append(_channels_last(x)) or predict(x, c)
        )
        return runner.sample(range(batch))

    auto = run(big)
    assert layouts and all(layouts) and all(p.is_contiguous() for p in G.parameters())
    layouts.clear()
    run(big - 1)
    assert layouts and not any(layouts)
    layouts.clear()
    nchw = run(big, channels_last=False)
    assert layouts and not any(layouts)
    assert (auto - nchw).abs().max() < 1e-5  # other kernels, same arithmetic


def test_cpu_fp32_sampler_packs_a_copy_that_shares_the_weights(tiny):
    """fp32 on the CPU packs the convolutions of a structural copy: the caller's modules keep their classes,
    images match the unpacked sampler up to float rounding, and in-place weight updates (EMA) reach it."""
    from wavediff.models.packed import PackedConv2d, packing_available

    if not packing_available():
        pytest.skip("this PyTorch build has no oneDNN packing operators")
    G, cfg = tiny
    runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32"))
    assert any(type(m) is PackedConv2d for m in runner.generator.modules())
    assert not any(type(m) is PackedConv2d for m in G.modules())
    assert {p.data_ptr() for p in runner.generator.parameters()} == {p.data_ptr() for p in G.parameters()}
    unpacked = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32"))
    unpacked.generator = G  # the plain modules
    seeds = range(2)
    torch.testing.assert_close(runner.sample(seeds), unpacked.sample(seeds), atol=1e-5, rtol=0)
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(0.9)
    torch.testing.assert_close(runner.sample(seeds), unpacked.sample(seeds), atol=1e-5, rtol=0)


def _channels_last(x) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _nhwc(module) -> bool:
    convs = [p for p in module.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    return all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)


def test_stacked_conditioning_samples_the_same_images(tiny):
    """The GPU sampler's stacked conditioning (two matrix products, each block's share a view of them), run here on
    the CPU through the whole sampler: the images of the per-block projections, up to float rounding."""
    G, cfg = tiny
    plain = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32"))
    stacked = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32"))
    assert not plain.stacked_conditioning  # on by default on CUDA devices only
    stacked.stacked_conditioning = True
    torch.testing.assert_close(stacked.sample([2, 7, 11]), plain.sample([2, 7, 11]), atol=1e-5, rtol=0)


def test_compiled_gpu_sampling_defaults_to_nhwc():
    """Layout by default: NHWC throughout when compiled on a GPU (1.09-1.8x faster there than NCHW on an H100), NCHW
    eager on a GPU, and on CPUs per batch (not throughout); an explicit --channels-last / --no-channels-last wins."""
    compiled = FastPath(precision="bf16", compile=True)
    assert compiled.nhwc_on("cuda") and compiled.describe("cuda") == "bf16, compile, channels_last"
    assert not compiled.nhwc_on("cpu") and not FastPath(precision="bf16").nhwc_on("cuda")
    assert not dataclasses.replace(compiled, channels_last=False).nhwc_on("cuda")
    assert FastPath(precision="fp32", channels_last=True).nhwc_on("cpu")


def test_cuda_graphs_are_on_by_default_for_cuda_devices_only(tiny):
    from wavediff.cli import build_parser

    args = build_parser().parse_args(["bench", "--preset", "tiny"])
    assert args.cuda_graphs is None  # the CLI default: decided by the device
    assert build_parser().parse_args(["bench", "--preset", "tiny", "--no-cuda-graphs"]).cuda_graphs is False
    auto = FastPath(precision="fp32", cuda_graphs=None)
    assert auto.graphs_on("cuda") and not auto.graphs_on("cpu") and not FastPath().graphs_on("cuda")
    assert auto.describe("cpu") == "fp32, winograd" and auto.describe("cuda:0") == "fp32, cuda_graphs"
    G, cfg = tiny
    assert SamplerRunner(G, cfg, "cpu", auto).cuda_graphs is False  # eager on the CPU, no error


def test_a_failed_cuda_graph_capture_names_the_flag_that_avoids_it(tiny, monkeypatch):
    G, cfg = tiny
    runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32"))
    runner.cuda_graphs = True  # what a CUDA device gets; the capture itself fails here, as it might on a GPU

    def fail(*example):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(runner, "_capture", fail)
    with pytest.raises(
        RuntimeError,
        match=r"^CUDA graph capture failed \(operation not permitted when stream is "
        r"capturing\); rerun with --no-cuda-graphs$",
    ):
        runner.sample(range(2))


def test_compile_traces_the_generator_once_for_all_t_steps(tiny, monkeypatch):
    """--compile compiles the network the T steps share, not T unrolled copies of it (inductor then compiles one
    network: 38 s instead of 252 s for the tiny preset on a 2-core CPU), with the eager sampler's images."""
    from torch._dynamo.testing import CompileCounter

    G, cfg = tiny
    counters, compile_ = [], torch.compile

    def counting_compile(fn, options=None, **kwargs):  # dynamo's tracing with a counting backend, not inductor
        counters.append(CompileCounter())
        return compile_(fn, backend=counters[-1], **kwargs)

    torch._dynamo.reset()
    monkeypatch.setattr("wavediff.fastpath.torch.compile", counting_compile)
    runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32", compile=True))
    got = runner.sample([4, 9])
    expected = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32")).sample([4, 9])
    # the eager CPU sampler packs its convolutions (oneDNN), the compiled one does not: float rounding apart
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert cfg.diffusion.num_timesteps > 1 and len(counters) == 1
    # one graph, traced once and reused by every step: as many operators as one forward of the network alone
    single = CompileCounter()
    x = torch.randn(2, cfg.data_channels, cfg.data_resolution, cfg.data_resolution)
    with torch.no_grad():
        compile_(G.predict, backend=single, dynamic=False)(
            x, G.conditioning(torch.ones(2).long(), torch.randn(2, cfg.generator.nz))
        )
    assert counters[0].frame_count == 1 and counters[0].op_count == single.op_count > 0
    # on the CPU the compiled kernels hold the weights as constants: a later change of them is refused
    with torch.no_grad():
        runner.generator.net.official_order()[0].weight.mul_(1.0)
    with pytest.raises(RuntimeError, match="weights changed after a compiled CPU sampler froze them"):
        runner.sample([4])


def test_compiled_channels_last_sampler_is_one_graph(tiny, monkeypatch):
    """--compile --channels-last traces the generator as one graph: the channels-last inverse wavelet transform
    writes through `out=` views in eager mode, which dynamo cannot trace (each one broke the graph, and celeba_256
    on an H100 hit dynamo's recompile limit); compiled, it takes a traceable form with the same images."""
    from torch._dynamo.testing import CompileCounter

    G, cfg = tiny
    counters, compile_ = [], torch.compile

    def counting_compile(fn, options=None, **kwargs):
        counters.append(CompileCounter())
        return compile_(fn, backend=counters[-1], **kwargs)

    torch._dynamo.reset()
    monkeypatch.setattr("wavediff.fastpath.torch.compile", counting_compile)
    fast = FastPath(precision="fp32", channels_last=True)
    got = SamplerRunner(G, cfg, "cpu", dataclasses.replace(fast, compile=True)).sample([3, 5])
    assert cfg.space == "wavelet" and len(counters) == 1 and counters[0].frame_count == 1
    torch.testing.assert_close(got, SamplerRunner(G, cfg, "cpu", fast).sample([3, 5]), atol=1e-5, rtol=0)


def test_compile_mode_reaches_torch_compile_and_bad_modes_are_refused(tiny, monkeypatch):
    """--compile-mode max-autotune asks inductor to autotune without its own CUDA graphs (the sampler replays
    its own); an unknown mode is a one-line error naming the modes."""
    from wavediff.cli.fastopts import add_fast_arguments, fast_from_args

    G, cfg = tiny
    seen = []
    monkeypatch.setattr("wavediff.fastpath.torch.compile", lambda fn, **kw: seen.append(kw) or fn)
    p = argparse.ArgumentParser()
    add_fast_arguments(p)
    fast = fast_from_args(p.parse_args(["--compile-mode", "max-autotune"]))
    assert fast.compile and fast.describe("cpu").endswith("compile (max-autotune)")
    SamplerRunner(G, cfg, "cpu", fast)
    assert seen[-1]["options"] == {"max_autotune": True, "coordinate_descent_tuning": True}
    plain = fast_from_args(p.parse_args(["--compile"]))
    SamplerRunner(G, cfg, "cpu", plain)
    assert plain.compile_mode == "default" and seen[-1]["options"] == {}
    assert not fast_from_args(p.parse_args([])).compile
    with pytest.raises(ConfigError, match="unknown compile mode 'fastest'; use one of default, max-autotune"):
        SamplerRunner(G, cfg, "cpu", FastPath(compile=True, compile_mode="fastest"))
    with pytest.raises(SystemExit):
        p.parse_args(["--compile-mode", "fastest"])
    # inductor settings to experiment with, from the environment, on top of the mode's
    monkeypatch.setenv("WAVEDIFF_INDUCTOR_OPTIONS", '{"combo_kernels": true}')
    SamplerRunner(G, cfg, "cpu", fast)
    assert seen[-1]["options"] == {"max_autotune": True, "coordinate_descent_tuning": True, "combo_kernels": True}
    for text, error in (
        ("{combo", "is not JSON"),
        ("[1]", "must be a JSON object"),
        ('{"combo_kernel": true}', r"names unknown inductor options \(combo_kernel\)"),
    ):
        monkeypatch.setenv("WAVEDIFF_INDUCTOR_OPTIONS", text)
        with pytest.raises(ConfigError, match=f"WAVEDIFF_INDUCTOR_OPTIONS {error}"):
            SamplerRunner(G, cfg, "cpu", plain)


def test_gpu_compile_options_and_cudnn_search(monkeypatch):
    """On a GPU --compile also turns 1x1 convolutions into matrix products (whatever the mode; the environment's
    options still win), and sampling lets cuDNN's autotuner try all its algorithms; both measured on an H100
    (docs/gpu_runs.md). Neither needs a GPU to check: the options are a dict, the flags process-wide settings."""
    from wavediff.fastpath import compile_options, cuda_sampling_mode

    monkeypatch.delenv("WAVEDIFF_INDUCTOR_OPTIONS", raising=False)
    assert compile_options("cuda") == {"conv_1x1_as_mm": True}
    assert compile_options("cuda:1", "max-autotune") == {
        "conv_1x1_as_mm": True,
        "max_autotune": True,
        "coordinate_descent_tuning": True,
    }
    assert compile_options("cpu") == {}  # measured on a GPU only
    monkeypatch.setenv("WAVEDIFF_INDUCTOR_OPTIONS", '{"conv_1x1_as_mm": false}')
    assert compile_options("cuda") == {"conv_1x1_as_mm": False}
    with pytest.raises(ConfigError, match="unknown compile mode 'fast'"):
        compile_options("cuda", "fast")

    cudnn = torch.backends.cudnn
    before = cudnn.benchmark, cudnn.benchmark_limit, cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with cuda_sampling_mode(torch.device("cuda"), tf32=False):
        assert cudnn.benchmark and cudnn.benchmark_limit == 0
        assert not cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (cudnn.benchmark, cudnn.benchmark_limit, cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    with cuda_sampling_mode(torch.device("cpu"), tf32=False):  # nothing changes off CUDA
        assert (cudnn.benchmark, cudnn.benchmark_limit) == before[:2]


def test_compiled_cpu_sampler_freezes_and_packs_its_weights(tiny):
    """Compiled for the CPU, the sampler has inductor freeze the weights (only on while it compiles), so its
    convolutions run on oneDNN-packed weights as the eager sampler's do; the images are the eager ones."""
    import torch._inductor.config as inductor_config
    from torch.profiler import profile

    G, cfg = tiny
    torch._dynamo.reset()
    runner = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32", compile=True))
    expected = SamplerRunner(G, cfg, "cpu", FastPath(precision="fp32")).sample([1, 2])
    torch.testing.assert_close(runner.sample([1, 2]), expected, atol=1e-5, rtol=0)
    assert inductor_config.freezing is False
    with profile() as prof:
        runner.sample([1, 2])
    names = {e.name for e in prof.events()}
    assert "mkldnn::_convolution_pointwise" in names
    assert not names & {"aten::mkldnn_convolution", "aten::_slow_conv2d_forward"}


def test_compiled_sampling_pads_a_short_last_batch_instead_of_compiling_again(tiny, monkeypatch):
    """generate() with a compiled sampler runs every batch at the full size (a short last batch padded, its extra
    rows dropped), so inductor compiles once; the images are the full batch's. The eager sampler does not pad."""
    from wavediff.sampling import generate

    G, cfg = tiny
    monkeypatch.setattr("wavediff.fastpath.torch.compile", lambda fn, **kw: fn)  # the shapes, not inductor, matter
    shapes = []
    real = SamplerRunner._pure
    monkeypatch.setattr(SamplerRunner, "_pure", lambda self, x, *a: shapes.append(x.shape[0]) or real(self, x, *a))
    seeds = list(range(7))
    compiled = list(generate(G, seeds, 3, cfg, "cpu", fast=FastPath(precision="fp32", compile=True)))
    assert shapes == [3, 3, 3] and [len(b) for b in compiled] == [3, 3, 1]
    shapes.clear()
    eager = list(generate(G, seeds, 3, cfg, "cpu", fast=FastPath(precision="fp32")))
    assert shapes == [3, 3, 1]
    full = next(generate(G, [6, 7, 8], 3, cfg, "cpu", fast=FastPath(precision="fp32")))
    assert (compiled[2][0] == full[0]).all()  # the padded batch's row is the full batch's, bit for bit
    assert abs(compiled[2][0].astype(int) - eager[2][0].astype(int)).max() <= 1
    shapes.clear()
    list(generate(G, [0, 1], 3, cfg, "cpu", fast=FastPath(precision="fp32", compile=True)))
    assert shapes == [2]  # a job smaller than one batch runs at its own size
