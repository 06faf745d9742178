"""The sampler's fast path: precision, channels_last, torch.compile and CUDA graphs.

All the randomness of a sampling pass is drawn before its T steps
(`VPDiffusion.draw_noise`, per seed), so the steps are a pure function of
(x_T, zs, noises). That is what makes them safe to compile and to capture in a
CUDA graph, and why sample i still depends only on seed i with every option.

Precision "auto" picks bf16 where bf16 arithmetic is native: CPUs with
AVX512-BF16 or AMX (1.5x faster sampling measured on such a CPU) and GPUs that
support it; elsewhere fp32. bf16 changes images slightly against fp32, so fp32
is one flag away for bit-reproducible images.

fp32 on a CPU runs its wide 3x3 convolutions as Winograd F(4x4, 3x3) or
F(2x2, 3x3) (models/winograd.py: 4x or 2.25x fewer multiplications, images
within 1/255 of the direct convolutions'); `winograd=False` (`--no-winograd`)
keeps them direct.

bf16 sampling runs a bf16 copy of the generator (weights and activations),
not autocast over fp32 weights: under autocast every GroupNorm computes in
fp32, so activations are cast to fp32 and back around each of them, and the
additions and SiLUs between convolutions run in fp32. Profiled on an H100
(stl10, batch 100), those casts were 35% of the kernel time and the
convolutions only 13%; on a 2-core CPU the bf16 copy is 3-10% faster than
autocast, with the same drift against fp32. Only the conditioning linears
(time and latent embeddings and their projections) keep fp32 weights and
compute in fp32 (`ConditioningLinear`). fp16 keeps autocast: a pure fp16
network could overflow.

On CUDA, "fp32" means true fp32: TF32 tensor cores are switched off while the
sampler runs (PyTorch lets cuDNN use TF32 for convolutions by default, which
changes images by ~1e-3 against the CPU). "tf32" asks for them explicitly:
fp32 storage, TF32 convolutions and matrix products, what the authors' code
gets from PyTorch's defaults on Ampere and newer GPUs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from dataclasses import dataclass

import torch
import torch.nn as nn

from .config import ExperimentConfig
from .diffusion import Generators, VPDiffusion, randn
from .errors import ConfigError
from .models import winograd
from .models.packed import pack_convolutions, packing_available, version
from .wavelets import wavelet_to_image

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_CHOICES = ("auto", "fp32", "tf32", "bf16", "fp16")
# --compile's modes -> inductor's options: torch.compile's modes of those names without inductor's CUDA graphs
# (the sampler captures its own)
COMPILE_MODES = {"default": {}, "max-autotune": {"max_autotune": True, "coordinate_descent_tuning": True}}
# inductor's options for a compiled generator on a GPU, whatever the mode: 1x1 convolutions (the skip projections and
# attention's NIN layers) as matrix products that inductor fuses with their neighbours instead of cuDNN calls.
# H100, bf16, CUDA graphs, batch 100: celeba_256 71.1 -> 70.1 ms on its own (docs/gpu_runs.md, 2026-11-28)
CUDA_COMPILE_OPTIONS = {"conv_1x1_as_mm": True}


def compile_options(device: torch.device | str, mode: str = "default") -> dict:
    """The inductor options `--compile` uses on `device` in `mode`, with $WAVEDIFF_INDUCTOR_OPTIONS over them."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"unknown compile mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    device_options = CUDA_COMPILE_OPTIONS if torch.device(device).type == "cuda" else {}
    return {**device_options, **COMPILE_MODES[mode], **extra_inductor_options()}


def extra_inductor_options() -> dict:
    """Inductor options from $WAVEDIFF_INDUCTOR_OPTIONS (a JSON object, e.g. '{"combo_kernels": true}') added to
    --compile's: for experiments with inductor's settings (benchmarks/gpu_check.py tries some) without a new flag.
    """
    import json

    text = os.environ.get("WAVEDIFF_INDUCTOR_OPTIONS", "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"WAVEDIFF_INDUCTOR_OPTIONS is not JSON ({e}); give an object or unset it") from None
    if not isinstance(options, dict):
        raise ConfigError("WAVEDIFF_INDUCTOR_OPTIONS must be a JSON object of inductor options; fix it or unset it")
    import torch._inductor.config as inductor_config

    known = inductor_config.get_config_copy()
    unknown = [key for key in options if key not in known]
    if unknown:
        raise ConfigError(
            f"WAVEDIFF_INDUCTOR_OPTIONS names unknown inductor options ({', '.join(unknown)}); "
            "see torch/_inductor/config.py for their names"
        )
    return options


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16), so bf16 beats fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """ "auto" -> "bf16" where bf16 is native and fast on `device`, else "fp32"; other names pass through."""
    if precision not in PRECISION_CHOICES:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}")
    device = torch.device(device)
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError(f"precision tf32 needs a CUDA device, not {device}; use fp32 (or bf16) there")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str, cache: bool = True):
    """Autocast context for `precision` ("fp32" is a no-op; "auto" as `resolve_precision`). `cache=False` for code
    captured in a CUDA graph: autocast's cache of weight casts must not outlive a capture (PyTorch's graph notes)."""
    precision = resolve_precision(precision, device)
    if precision in ("fp32", "tf32"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision], cache_enabled=cache)


@contextlib.contextmanager
def cuda_sampling_mode(device: torch.device, tf32: bool):
    """On CUDA, for the block: TF32 convolutions and matrix products on (`tf32`) or off, and cuDNN's autotuner on
    (the sampler's shapes repeat, so the first pass of each batch size picks the fastest kernels) over all of its
    algorithms, not only the 10 its heuristics rank first (`benchmark_limit` 0: H100, compiled bf16 celeba_256 at
    batch 100, 71.1 -> 69.6 ms; the longer search runs on the first pass of each batch size); elsewhere nothing.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark, cudnn.benchmark_limit
    cudnn.allow_tf32 = matmul.allow_tf32 = tf32
    cudnn.benchmark, cudnn.benchmark_limit = True, 0
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark, cudnn.benchmark_limit = saved


@contextlib.contextmanager
def _cast_weights_once(module: nn.Module, enabled: bool):
    """Let autocast cast each weight once per sampling pass instead of once per step.

    Autocast keeps its low-precision copy of a weight for the rest of the autocast region only for leaf
    tensors that require grad. Under no_grad, flagging the (frozen) weights builds no graph, so the T steps
    share one cast: 1.13x faster bf16 sampling at batch 1 for cifar10 on a 2-core CPU. Same numbers.
    """
    frozen = [p for p in module.parameters() if not p.requires_grad] if enabled else []
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


@dataclass(frozen=True)
class FastPath:
    """How to run the sampler. The defaults are what `wavediff sample` does without flags, but for `cuda_graphs`,
    which the CLI sets to None (on for CUDA devices)."""

    precision: str = "auto"
    compile: bool = False  # torch.compile the generator (inductor) that the T steps run; each batch size compiles once
    # "default", or "max-autotune": inductor benchmarks Triton templates against cuDNN / cuBLAS for every convolution
    # and matrix product while compiling (minutes), as torch.compile's mode "max-autotune-no-cudagraphs" (the sampler
    # replays CUDA graphs of its own)
    compile_mode: str = "default"
    # Capture the T steps of each batch size in a CUDA graph and replay it. None: on for CUDA devices (what the CLI
    # asks for by default). On an H100 at batch 100, bf16: cifar10 90.8 -> 22.5 ms per batch; at batch 1 the eager
    # sampler is bound by kernel launches and graphs make it 10x faster (docs/gpu_runs.md).
    cuda_graphs: bool | None = False
    # NHWC weights and activations: True always, False never. None (the default): on GPUs NHWC when compiled and NCHW
    # eager. Eager NHWC was slower (H100, bf16, CUDA graphs, batch 100: cifar10 25.8 against 22.5 ms NCHW, stl10 83.5
    # / 67.0, celeba_256 249 / 178, lsun 495 / 355: layout copies around the ops that lack NHWC kernels); compiled,
    # inductor writes every fused kernel in NHWC and cuDNN skips its own layout transposes (24 of eager celeba_256's
    # 48 ms of convolution): cifar10 9.1 against 9.9 ms NCHW; stl10 30.2, celeba_256 72.0, lsun 142.5 ms against
    # NCHW's 35.8, 127.1, 252.6 at an earlier commit (docs/gpu_runs.md). On CPUs NHWC activations for the batches
    # where oneDNN's NHWC convolutions pay (`nhwc_pays_on_cpu`), with the weights left as they are.
    channels_last: bool | None = None
    # Winograd F(4x4, 3x3) or F(2x2, 3x3) for the fp32 3x3 convolutions of eager CPU sampling (models/winograd.py):
    # the same convolutions in 4x or 2.25x fewer multiplications, images within float rounding of the direct ones
    # (at most 1.3e-5 in [-1, 1]: a rare pixel value moves by 1/255). None: on where it applies (fp32 on a CPU, not
    # compiled).
    winograd: bool | None = None

    def winograd_on(self, device: torch.device | str) -> bool:
        """Whether the sampler runs its fp32 3x3 convolutions as Winograd on `device` (None: wherever it can)."""
        applies = torch.device(device).type == "cpu" and resolve_precision(self.precision, device) == "fp32"
        applies = applies and not self.compile
        if self.winograd and not applies:
            raise ConfigError(
                "--winograd applies to eager fp32 sampling on a CPU only; drop it, or pass --device cpu "
                "--precision fp32 without --compile"
            )
        return applies if self.winograd is None else self.winograd

    def nhwc_on(self, device: torch.device | str) -> bool:
        """Whether the sampler runs NHWC weights and activations throughout (channels_last None: compiled on a GPU;
        eager CPU sampling then picks NHWC activations per batch instead)."""
        if self.channels_last is not None:
            return self.channels_last
        return torch.device(device).type == "cuda" and self.compile

    def graphs_on(self, device: torch.device | str) -> bool:
        """Whether the sampler replays CUDA graphs on `device` (cuda_graphs None: on CUDA devices)."""
        return torch.device(device).type == "cuda" if self.cuda_graphs is None else self.cuda_graphs

    def describe(self, device: torch.device | str, generator: nn.Module | None = None) -> str:
        """e.g. "bf16" or "fp32, compile, cuda_graphs, channels_last" ("winograd" only where `generator`, when
        given, has a layer wide enough for it)."""
        compiled = "compile" if self.compile_mode == "default" else f"compile ({self.compile_mode})"
        on = [
            (compiled, self.compile),
            ("cuda_graphs", self.graphs_on(device)),
            ("channels_last", self.nhwc_on(device)),
        ]
        wide = generator is None or winograd.has_candidates(generator)
        on.append(("winograd", self.winograd_on(device) and wide))
        return ", ".join([resolve_precision(self.precision, device), *(name for name, flag in on if flag)])


def nhwc_pays_on_cpu(x: torch.Tensor) -> bool:
    """Whether the CPU sampler should run this generator input's batch with NHWC (channels-last) activations.

    oneDNN's NHWC convolutions beat NCHW ones on large maps (they skip the per-call conversion to its blocked
    layout; 1x1 convolutions on [8, 128, 128, 128] run 2.5x faster), and lose on small ones. Measured on a 2-core
    AVX512-BF16 CPU, full fp32 sampling, NHWC against NCHW: celeba_256 1.10-1.15x at batch 2 to 8 but 0.95x at
    batch 1, stl10 1.05-1.09x at batch 8 and 16 (1.02x at 4, 0.93x at 1), cifar10 1.04x at batch 32 (0.95x at
    8); bf16 beyond the packed batches: stl10 1.06x at batch 16, cifar10 0.97x at 32. Hence: at least 2 samples
    and 8192 positions (batch x height x width) in the input map.
    """
    b, _, h, w = x.shape
    return x.device.type == "cpu" and b >= 2 and b * h * w >= 8192


def shared_weights_copy(module: nn.Module) -> nn.Module:
    """A copy of `module`'s structure that shares its parameters and buffers (so packing its convolutions, which
    swaps their classes, leaves `module` as it was, and later updates of the weights reach the copy)."""
    memo = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return copy.deepcopy(module, memo)


def low_precision_copy(generator: nn.Module, dtype: torch.dtype, pack: bool = False) -> nn.Module:
    """A copy of `generator` with its weights in `dtype`, except the conditioning linears (fp32).

    With `pack` (eager CPU sampling), its convolutions pack their weights for oneDNN once per input shape at
    batches up to 8 (`PackedConv2d`: 1.3-3x faster convolutions at batch 1, the same bf16 numbers there).
    """
    from .models.layers import ConditioningLinear

    generator = copy.deepcopy(generator)
    for module in generator.modules():
        if isinstance(module, ConditioningLinear):
            continue
        for name, param in module.named_parameters(recurse=False):
            setattr(module, name, nn.Parameter(param.detach().to(dtype), requires_grad=False))
    if pack and packing_available():
        pack_convolutions(generator)
    return generator


def check_weights_dtype(generator: nn.Module) -> None:
    """The sampler takes fp32 weights and makes its own low-precision copy; a generator cast by hand would fail
    deep inside (its conditioning layers stay fp32)."""
    dtypes = {p.dtype for p in generator.parameters() if p.is_floating_point()}
    if dtypes - {torch.float32}:
        other = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes - {torch.float32}))
        raise ConfigError(
            f"the generator's weights are {other}; keep them float32 and ask for precision='bf16' (--precision "
            f"bf16): the sampler makes its own low-precision copy"
        )


class SamplerRunner:
    """The T denoising steps plus the inverse wavelet transform, for one generator, on one device.

    `runner(x_T, zs, noises)` -> images [B, 3, S, S] in [-1, 1], with noise drawn by
    `VPDiffusion.draw_noise`; `runner.sample(seeds)` draws it per seed first.
    """

    def __init__(self, generator: nn.Module, cfg: ExperimentConfig, device: torch.device | str, fast=FastPath()):
        self.device = torch.device(device)
        self.cfg, self.fast = cfg, fast
        check_weights_dtype(generator)
        self.precision = resolve_precision(fast.precision, self.device)
        self.cuda_graphs = fast.graphs_on(self.device)
        if self.cuda_graphs and self.device.type != "cuda":
            raise ConfigError(f"--cuda-graphs needs a CUDA device, not {self.device}; drop it or pass --device cuda")
        self.winograd = fast.winograd_on(self.device)
        # copies: the caller's generator keeps its fp32 weights and layout (safetensors wants them contiguous)
        self.weights_dtype = torch.bfloat16 if self.precision == "bf16" else None
        pack = self.device.type == "cpu" and not fast.compile  # inductor packs weights itself
        owned = self.weights_dtype is not None
        if owned:
            generator = low_precision_copy(generator, self.weights_dtype, pack=pack)
        self.nhwc = fast.nhwc_on(self.device)
        if self.nhwc:  # the private bf16 copy converts in place; the caller's generator stays NCHW
            generator = generator if owned else copy.deepcopy(generator)
            generator = generator.to(memory_format=torch.channels_last)
            owned = True
        if pack and self.precision == "fp32" and (packing_available() or self.winograd):
            # fp32 packs too: the same numbers up to float rounding (images within 4e-6), 1.3-1.4x faster at
            # batch 1 and 1.05-1.1x at 8 (2-core CPU: cifar10, stl10, celeba_256). The structure is copied, the
            # weights shared: no second fp32 model in memory, and in-place updates (an EMA) are packed again.
            generator = generator if owned else shared_weights_copy(generator)
            pack_convolutions(generator, use_winograd=self.winograd)
        self.generator = generator
        # NHWC activations chosen per batch (channels_last None, eager CPU sampling; inductor picks layouts itself)
        self.nhwc_batches = fast.channels_last is None and self.device.type == "cpu" and not fast.compile
        self.diffusion = VPDiffusion(cfg.diffusion, self.device)
        # GPUs: every block's conditioning in two matrix products instead of dozens of small kernels
        self.stacked_conditioning = self.device.type == "cuda"
        # compile the generator's forward, not the T-step loop: the T steps run the same graph, so inductor compiles
        # one network instead of T unrolled copies (tiny preset, 2-core CPU: 38 s against 252 s, same images); the
        # posterior steps between them are a few element-wise ops, and CUDA graphs replay the whole loop anyway
        # (H100, bf16, batch 100: cifar10 12.9 ms per batch, against 13.6 ms with the loop compiled, channels_last)
        # the compiled generator, the context it runs in, and (CPU) the weight versions it froze
        self._compiled, self._compiling, self._frozen = None, contextlib.nullcontext, None
        if fast.compile:
            options = compile_options(self.device, fast.compile_mode)
            if self.device.type == "cpu":
                # Freezing: the weights become constants to inductor, which packs them for oneDNN (as `PackedConv2d`
                # does in eager mode) and folds them into its fused kernels. On a 2-core Intel Xeon (fp32), compiled
                # against eager at batch 1 and 8: cifar10 1.72x and 1.22x (without freezing 0.97x at 8), stl10 1.17x
                # and 1.2x, celeba_256 1.05x and 1.03x. It must be on while inductor compiles, which is during a
                # call (`_predict`): given as a compile option it is ignored. The weights must then stay as they
                # are: `_call` checks.
                import torch._inductor.config as inductor_config

                self._compiling = functools.partial(inductor_config.patch, freezing=True)
                self._frozen = self._weight_versions(generator)
            self._compiled = torch.compile(generator.predict, dynamic=False, options=options)
        self._graphs: dict[tuple, tuple] = {}

    def _predict(self, x: torch.Tensor, cond) -> torch.Tensor:
        """The generator as the sampler runs it (inside `precision_context()`): x0 predicted from x_{t+1}."""
        if self.weights_dtype is not None:
            x = x.to(self.weights_dtype)
        if self.nhwc or (self.nhwc_batches and nhwc_pays_on_cpu(x)):
            # every later map follows the input's layout; and every step's input has the same strides, so a compiled
            # generator is traced once (x_T is NCHW, the later steps' inputs channels-last: two compiles before)
            x = x.contiguous(memory_format=torch.channels_last)
        if self._compiled is None:
            return self.generator.predict(x, cond)
        with self._compiling():  # (CPU) freezing on: inductor reads it when it compiles, at a new batch size
            return self._compiled(x, cond)

    def precision_context(self):
        """Where `steps` must run: autocast for fp16; nothing for fp32, tf32 and bf16 (a bf16 copy of the weights)."""
        return autocast(self.device, "fp16") if self.precision == "fp16" else contextlib.nullcontext()

    def steps(self, x_T: torch.Tensor, zs: torch.Tensor, noises: torch.Tensor):
        """The T steps one at a time, as `VPDiffusion.denoise_steps` yields them: (t, predicted x_0, x_t).

        Run it inside `precision_context()` and without gradients. All T steps are conditioned in one pass
        first (models/conditioning.py), so each conditioning projection reads its weights once per batch.
        """
        n_steps, batch = zs.shape[:2]
        t = torch.arange(n_steps - 1, -1, -1, device=zs.device).repeat_interleave(batch)  # the rows of zs.flatten
        cond = self.generator.conditioning(t, zs.flatten(0, 1), self.stacked_conditioning)
        per_step = iter(cond.chunk(n_steps))
        # denoise_steps calls the net once per step, in the order of zs: step k gets its rows of the conditioning
        return self.diffusion.denoise_steps(lambda x, t, z: self._predict(x, next(per_step)), x_T, zs, noises)

    def _pure(self, x_T: torch.Tensor, zs: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
        with self.precision_context():
            *_, (_, _, x) = self.steps(x_T, zs, noises)
        x = x.float()
        return wavelet_to_image(x) if self.cfg.space == "wavelet" else x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def __call__(self, x_T: torch.Tensor, zs: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
        fp16 = self.precision == "fp16"
        with cuda_sampling_mode(self.device, self.precision == "tf32"), _cast_weights_once(self.generator, fp16):
            return self._call(x_T, zs, noises)

    @staticmethod
    def _weight_versions(generator: nn.Module) -> list[int]:
        return [version(p) for p in generator.parameters()]

    def _call(self, x_T: torch.Tensor, zs: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
        if self._frozen is not None and self._weight_versions(self.generator) != self._frozen:
            raise RuntimeError(
                "the generator's weights changed after a compiled CPU sampler froze them into its kernels; "
                "make a new SamplerRunner for the new weights"
            )
        if not self.cuda_graphs:
            return self._pure(x_T, zs, noises)
        key = tuple(x_T.shape)
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(x_T, zs, noises)
            except RuntimeError as e:
                text = str(e).strip()
                first = text.splitlines()[0] if text else type(e).__name__
                raise RuntimeError(f"CUDA graph capture failed ({first}); rerun with --no-cuda-graphs") from e
        graph, inputs, output = self._graphs[key]
        for buffer, value in zip(inputs, (x_T, zs, noises)):
            buffer.copy_(value)
        graph.replay()
        return output.clone()  # the next replay overwrites the graph's output buffer

    def _capture(self, *example: torch.Tensor) -> tuple:
        # on self.device also when another GPU is the current one (torch.cuda.graph captures on the current device)
        with torch.cuda.device(self.device):
            inputs = [t.clone() for t in example]
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):  # compile, cuDNN autotuning and allocator warm-up happen outside the graph
                    self._pure(*inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = self._pure(*inputs)
        return graph, inputs, output

    def draw(self, seeds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_T, zs, noises) for `seeds`, each sample's from a torch.Generator seeded with its seed."""
        from .sampling import MAX_SEED, as_seed_list

        seeds = as_seed_list(seeds)
        if not seeds:
            raise ConfigError("no seeds to sample; pass at least one, e.g. seeds=range(16)")
        if bad := [s for s in seeds if not 0 <= s <= MAX_SEED]:  # manual_seed would wrap -1 around to 2^64 - 1
            raise ConfigError(f"seed {bad[0]} is out of range; seeds are integers from 0 to 2^63 - 1")
        return self.draw_batch(len(seeds), [torch.Generator(self.device).manual_seed(s) for s in seeds])

    def draw_batch(self, batch: int, generator: Generators = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_T, zs, noises) for `batch` samples from `generator` (one, a list of one per sample, or None)."""
        shape = (batch, self.cfg.data_channels, self.cfg.data_resolution, self.cfg.data_resolution)
        x_T = randn(shape, generator, self.device)
        return (x_T, *self.diffusion.draw_noise(shape, self.cfg.generator.nz, generator, self.device))

    def sample(self, seeds) -> torch.Tensor:
        """Images [N, 3, S, S] in [-1, 1]; image i depends only on seeds[i]."""
        return self(*self.draw(seeds))
