"""Sampler speed options shared by `sample`, `bench` and `fid compute` (see wavediff/fastpath.py)."""

from __future__ import annotations

import argparse

# as fastpath.PRECISION_CHOICES, without importing torch for --help
PRECISION_CHOICES = ["auto", "fp32", "tf32", "bf16", "fp16"]
COMPILE_MODES = ["default", "max-autotune"]  # as fastpath.COMPILE_MODES


def add_fast_arguments(p, precision_default: str = "auto") -> None:
    p.add_argument(
        "--precision",
        default=precision_default,
        choices=PRECISION_CHOICES,
        help=f"generator arithmetic (default {precision_default}). auto: bf16 on CPUs with native bf16 (AVX512-BF16, "
        "AMX) and on GPUs that support it, else fp32. bf16 is about 1.5x faster on such CPUs and changes images "
        "slightly against fp32 (README, Sampling: Precision); fp32 gives fp32 images (TF32 off on GPUs; on CPUs "
        "Winograd convolutions, see --winograd); "
        "tf32 (CUDA only): fp32 with TF32 tensor-core convolutions, PyTorch's default for convolutions",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the generator (the first batch of each size compiles, 30 s to 2 min: worth it for many "
        "batches; on an H100 batch-100 sampling ran about 3x faster than with CUDA graphs alone; on a 2-core "
        "CPU, where the weights are frozen "
        "into the kernels, fp32 ran 1.2-1.7x faster for cifar10, 1.2x for stl10 and 1.03-1.05x for celeba_256)",
    )
    p.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        help="implies --compile. default: as --compile; max-autotune: inductor also benchmarks Triton kernels against "
        "cuDNN and cuBLAS for each convolution and matrix product while compiling (slower to compile)",
    )
    p.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="capture the T steps of each batch size in a CUDA graph and replay it: the same images without the "
        "launch overhead (default: on for CUDA devices, 4x faster for cifar10 at batch 100 on an H100; CUDA only)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC weights and activations (default: automatic: on GPUs NHWC with --compile, 1.09x (cifar10) to "
        "1.8x (lsun) faster on an H100, and NCHW without, where it was 1.15-1.4x faster; on CPUs NHWC activations "
        "for batches of at least 2 with batch x height x width >= 8192 in the generator's input map, where oneDNN's "
        "NHWC convolutions are faster, e.g. celeba_256 fp32 1.1-1.15x)",
    )
    p.add_argument(
        "--winograd",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Winograd F(4x4, 3x3) or F(2x2, 3x3), per layer, for the 3x3 convolutions with at least 128 channels: "
        "4x or 2.25x fewer multiplications, "
        "images within float rounding of the direct convolution's (default: on for eager fp32 sampling on CPUs, "
        "the only place it applies; --no-winograd for the direct convolutions)",
    )


def fast_from_args(args):
    from ..fastpath import FastPath

    return FastPath(
        precision=args.precision,
        compile=args.compile or args.compile_mode is not None,
        compile_mode=args.compile_mode or "default",
        cuda_graphs=args.cuda_graphs,
        channels_last=args.channels_last,
        winograd=args.winograd,
    )


def describe(fast, device, generator=None) -> str:
    return fast.describe(device, generator)
