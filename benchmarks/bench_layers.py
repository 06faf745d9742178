"""Resampling layers on the CPU, forward plus backward: our paths against convolutions.

"ours" is what the models run: for FIR up/down-sampling, a product with the
resampling matrix on axes up to `fir.MATMUL_MAX_LENGTH` samples, shifted slices
on longer ones; for the Haar transform, `pixel_unshuffle` and sums. Baselines,
measured in the same run on the same inputs:
* FIR: the slices alone (the matrix product switched off), and `upfirdn2d` with
  the 2-D kernel, which takes the single-channel-convolution path (channels
  folded into the batch) — our first implementation, and what the 1-D kernel
  takes on GPUs;
* Haar transform: a stride-2 convolution with the four 2x2 Haar filters and its
  transpose (our previous implementation).
Ratios > 1 mean ours is faster.

    python benchmarks/bench_layers.py [--threads 2] [--repeats 30] [--dtype bf16]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from wavediff.models import fir
from wavediff.models.fir import _kernel_1d, make_kernel, upfirdn2d
from wavediff.wavelets import dwt, idwt

HAAR = (
    torch.tensor(
        [[[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [-1.0, -1.0]], [[1.0, -1.0], [1.0, -1.0]], [[1.0, -1.0], [-1.0, 1.0]]]
    ).unsqueeze(1)
    * 0.5
)


def conv_dwt(x):
    b, c, h, w = x.shape
    y = F.conv2d(x.reshape(b * c, 1, h, w), HAAR.to(x.dtype), stride=2)
    return y.view(b, c, 4, h // 2, w // 2).transpose(1, 2).reshape(b, 4 * c, h // 2, w // 2)


def conv_idwt(y):
    b, c4, h, w = y.shape
    y = y.view(b, 4, c4 // 4, h, w).transpose(1, 2).reshape(b * c4 // 4, 4, h, w)
    return F.conv_transpose2d(y, HAAR.to(y.dtype), stride=2).view(b, c4 // 4, 2 * h, 2 * w)


def seconds(fn, x, repeats):
    """Median seconds of forward + backward of sum(fn(x)^2)."""
    times = []
    for i in range(repeats + 3):
        x.grad = None
        t = time.perf_counter()
        fn(x).square().sum().backward()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def slices_only(fn):
    """fn with FIR resampling on shifted slices whatever the axis length."""

    def run(x):
        saved, fir.MATMUL_MAX_LENGTH = fir.MATMUL_MAX_LENGTH, 0
        try:
            return fn(x)
        finally:
            fir.MATMUL_MAX_LENGTH = saved

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be at least 1")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    k1 = _kernel_1d((1, 3, 3, 1), 1.0)
    k1_up = _kernel_1d((1, 3, 3, 1), 4.0)
    k2, k2_up = make_kernel((1, 3, 3, 1)), make_kernel((1, 3, 3, 1)) * 4
    cases = {
        "FIR down /2": (lambda x: upfirdn2d(x, k1, down=2, pad=(1, 1)), lambda x: upfirdn2d(x, k2, down=2, pad=(1, 1))),
        "FIR up x2": (lambda x: upfirdn2d(x, k1_up, up=2, pad=(2, 1)), lambda x: upfirdn2d(x, k2_up, up=2, pad=(2, 1))),
        "Haar DWT": (dwt, conv_dwt),
        "Haar IDWT": (idwt, conv_idwt),
    }
    print(f"torch {torch.__version__}, {args.threads} threads, {args.dtype}, median of {args.repeats}, fwd + bwd")
    print(
        f"{'layer':<13}{'input':<20}{'ours (ms)':>10}{'slices (ms)':>12}{'conv (ms)':>10}"
        f"{'vs slices':>10}{'vs conv':>9}"
    )
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    for shape in [(32, 64, 8, 8), (32, 64, 16, 16), (32, 128, 32, 32), (8, 64, 64, 64), (2, 64, 128, 128)]:
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        for name, (ours, base) in cases.items():
            inp = x if name != "Haar IDWT" else torch.randn(shape, dtype=dtype, requires_grad=True)
            torch.testing.assert_close(ours(inp), base(inp), rtol=tol, atol=tol)
            a, b = seconds(ours, inp, args.repeats), seconds(base, inp, args.repeats)
            sliced = f"{seconds(slices_only(ours), inp, args.repeats) * 1e3:>12.2f}" if name.startswith("FIR") else ""
            versus = f"{float(sliced) / (a * 1e3):>9.2f}x" if sliced else ""
            print(
                f"{name:<13}{str(list(shape)):<20}{a * 1e3:>10.2f}{sliced:>12}{b * 1e3:>10.2f}"
                f"{versus:>10}{b / a:>8.2f}x"
            )


if __name__ == "__main__":
    main()
