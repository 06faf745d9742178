"""The sampler's fast path: precision, channels_last, torch.compile and CUDA graphs.

All the randomness of a sampling pass is drawn before its T steps
(`VPDiffusion.draw_noise`, per seed), so the steps are a pure function of
(x_T, zs, noises). That is what makes them safe to compile and to capture in a
CUDA graph, and why sample i still depends only on seed i with every option.

Precision "auto" picks bf16 where bf16 arithmetic is native: CPUs with
AVX512-BF16 or AMX (1.5x faster sampling measured on such a CPU) and GPUs that
support it; elsewhere fp32. bf16 changes images slightly against fp32, so fp32
is one flag away for bit-reproducible images.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass

import torch
import torch.nn as nn

from .config import ExperimentConfig
from .diffusion import Generators, VPDiffusion, randn
from .errors import ConfigError
from .wavelets import wavelet_to_image

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


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
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """Autocast context for `precision` ("fp32" is a no-op; "auto" as `resolve_precision`)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


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
    """How to run the sampler. The defaults are what `wavediff sample` does without flags."""

    precision: str = "auto"
    compile: bool = False  # torch.compile the T steps (inductor); the first batch of each size compiles
    cuda_graphs: bool = False  # capture the T steps of each batch size in a CUDA graph, replay afterwards
    channels_last: bool | None = None  # NHWC weights and activations; None: on for bf16 on the CPU

    def resolve_channels_last(self, device: torch.device | str) -> bool:
        """channels_last=None means on for bf16 on the CPU (1.1-1.2x measured there; not yet measured on GPUs)."""
        if self.channels_last is not None:
            return self.channels_last
        return torch.device(device).type == "cpu" and resolve_precision(self.precision, device) == "bf16"

    def describe(self, device: torch.device | str) -> str:
        """e.g. "bf16, channels_last" or "fp32, compile, cuda_graphs"."""
        on = [("compile", self.compile), ("cuda_graphs", self.cuda_graphs)]
        on.append(("channels_last", self.resolve_channels_last(device)))
        return ", ".join([resolve_precision(self.precision, device), *(name for name, flag in on if flag)])


class SamplerRunner:
    """The T denoising steps plus the inverse wavelet transform, for one generator, on one device.

    `runner(x_T, zs, noises)` -> images [B, 3, S, S] in [-1, 1], with noise drawn by
    `VPDiffusion.draw_noise`; `runner.sample(seeds)` draws it per seed first.
    """

    def __init__(self, generator: nn.Module, cfg: ExperimentConfig, device: torch.device | str, fast=FastPath()):
        self.device = torch.device(device)
        self.cfg, self.fast = cfg, fast
        self.precision = resolve_precision(fast.precision, self.device)
        if fast.cuda_graphs and self.device.type != "cuda":
            raise ConfigError(f"--cuda-graphs needs a CUDA device, not {self.device}; drop it or pass --device cuda")
        self.channels_last = fast.resolve_channels_last(self.device)
        if self.channels_last:  # a copy: the caller's weights keep their layout (safetensors wants it contiguous)
            generator = copy.deepcopy(generator).to(memory_format=torch.channels_last)
        self.generator = generator
        self.diffusion = VPDiffusion(cfg.diffusion, self.device)
        self._steps = torch.compile(self._pure, dynamic=False) if fast.compile else self._pure
        self._graphs: dict[tuple, tuple] = {}

    def _pure(self, x_T: torch.Tensor, zs: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            x = self.diffusion.denoise(self.generator, x_T, zs, noises)
        x = x.float()
        return wavelet_to_image(x) if self.cfg.space == "wavelet" else x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def __call__(self, x_T: torch.Tensor, zs: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
        with _cast_weights_once(self.generator, self.precision != "fp32"):
            return self._call(x_T, zs, noises)

    def _call(self, x_T: torch.Tensor, zs: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
        if not self.fast.cuda_graphs:
            return self._steps(x_T, zs, noises)
        key = tuple(x_T.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x_T, zs, noises)
        graph, inputs, output = self._graphs[key]
        for buffer, value in zip(inputs, (x_T, zs, noises)):
            buffer.copy_(value)
        graph.replay()
        return output.clone()  # the next replay overwrites the graph's output buffer

    def _capture(self, *example: torch.Tensor) -> tuple:
        inputs = [t.clone() for t in example]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # compile, cuDNN autotuning and allocator warm-up happen outside the graph
                self._steps(*inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self._steps(*inputs)
        return graph, inputs, output

    def draw(self, seeds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_T, zs, noises) for `seeds`, each sample's from a torch.Generator seeded with its seed."""
        return self.draw_batch(len(seeds), [torch.Generator(self.device).manual_seed(int(s)) for s in seeds])

    def draw_batch(self, batch: int, generator: Generators = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_T, zs, noises) for `batch` samples from `generator` (one, a list of one per sample, or None)."""
        shape = (batch, self.cfg.data_channels, self.cfg.data_resolution, self.cfg.data_resolution)
        x_T = randn(shape, generator, self.device)
        return (x_T, *self.diffusion.draw_noise(shape, self.cfg.generator.nz, generator, self.device))

    def sample(self, seeds) -> torch.Tensor:
        """Images [N, 3, S, S] in [-1, 1]; image i depends only on seeds[i]."""
        return self(*self.draw(list(seeds)))
