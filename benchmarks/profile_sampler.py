"""Where one full sampling pass spends its time: the top operators and kernels by device time.

    python benchmarks/profile_sampler.py --preset stl10 --batch 100 --device cuda --precision bf16 --cuda-graphs
    python benchmarks/profile_sampler.py --preset cifar10 --batch 8            # CPU, default precision
    python benchmarks/profile_sampler.py --preset cifar10 --batch 1 --nf 8     # the same network, 8 base channels

Random-init weights of the preset's generator (speed does not depend on the weights). Prints the wall time
of one pass, the time the device spent in kernels (on a GPU: much less than the wall time means the pass is
bound by kernel launches) and its split by kind (convolution, normalisation, layout copies ...), and the
operators sorted by device time. `--nf` shrinks the base channel count and
keeps everything else: the same operators on tiny tensors, so the pass time is the sampler's fixed per-operator
cost (Python, dispatch, each library call's setup) rather than its arithmetic.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wavediff.devices import resolve_device  # noqa: E402
from wavediff.errors import WaveDiffError  # noqa: E402
from wavediff.fastpath import PRECISION_CHOICES, FastPath  # noqa: E402
from wavediff.models.generator import build_generator  # noqa: E402
from wavediff.presets import get_preset  # noqa: E402
from wavediff.runtime import configure_torch  # noqa: E402
from wavediff.timing import sampler_pass  # noqa: E402

# what a device kernel (or, on a CPU, an operator) does, from its name: the first pattern that it contains
KINDS = (
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "implicit_gemm", "winograd", "nhwckrsc")),
    ("layout copy", ("nchwtonhwc", "nhwctonchw", "copy_", "clone", "contiguous")),
    ("normalisation", ("group_norm", "groupnorm", "rowwisemoments", "layer_norm", "var_mean")),
    ("matrix product", ("gemm", "nvjet", "addmm", "aten::mm", "aten::bmm", "matmul", "cublas", "sm90_xmma_gemm")),
    ("attention", ("flash", "attention", "fmha", "softmax")),
    ("concatenation", ("cat",)),
)


def kernel_kind(name: str) -> str:
    """'convolution', 'layout copy', 'normalisation', 'matrix product', 'attention', 'concatenation', or
    'element-wise / other' (inductor's fused kernels name every operator they fuse: a fused GroupNorm reduction
    counts as normalisation, a fused pointwise kernel that also casts or adds as element-wise)."""
    low = name.lower()
    if low.startswith("triton_tem"):  # inductor's templates (max-autotune): a convolution or a matrix product
        return "convolution" if "conv" in low else "matrix product"
    if low.startswith("triton_"):  # inductor: its reductions are normalisation here, its pointwise kernels not
        return "normalisation" if low.startswith(("triton_red", "triton_per")) else "element-wise / other"
    for kind, patterns in KINDS:
        if any(p in low for p in patterns):
            return kind
    return "element-wise / other"


def by_kind(events, key: str) -> dict[str, float]:
    """Self time (s) per `kernel_kind`, largest first, of the profile's leaf events."""
    totals: dict[str, float] = {}
    for e in events:
        kind = kernel_kind(e.key)
        totals[kind] = totals.get(kind, 0.0) + getattr(e, key) / 1e6
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def profile_pass(once, sync, cuda: bool):
    """One call of `once` under torch.profiler: (profile, its key averages, the time key, the leaf events, their
    total self time in s). On a GPU the leaves are the kernels (an operator's self device time is its kernels'
    again); on a CPU every operator."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        once()
        sync()
    events = prof.key_averages()
    if cuda:
        key, leaves = "self_device_time_total", [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    else:
        key, leaves = "self_cpu_time_total", list(events)
    return prof, events, key, leaves, sum(getattr(e, key) for e in leaves) / 1e6


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cifar10")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="auto", choices=PRECISION_CHOICES)
    ap.add_argument("--cuda-graphs", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--nf", type=int, help="base channel count instead of the preset's (e.g. 8: the fixed costs)")
    ap.add_argument("--rows", type=int, default=25, help="operators to list")
    ap.add_argument("--trace", help="also write a Chrome trace (open in chrome://tracing or Perfetto)")
    opts = ap.parse_args(argv)
    if opts.batch < 1 or opts.rows < 1 or (opts.nf is not None and opts.nf < 1):
        ap.error("--batch, --rows and --nf must be at least 1")
    if opts.trace and not Path(opts.trace).resolve().parent.is_dir():
        ap.error(f"--trace {opts.trace}: its folder does not exist")
    configure_torch()
    device = resolve_device(opts.device)
    cfg = get_preset(opts.preset)
    if opts.nf is not None:
        cfg = dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, nf=opts.nf))
    G = build_generator(cfg.generator).to(device).eval().requires_grad_(False)
    fast = FastPath(opts.precision, opts.compile, cuda_graphs=opts.cuda_graphs, channels_last=opts.channels_last)
    once = sampler_pass(G, cfg, opts.batch, device, fast)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        once()
    sync()
    t0 = time.perf_counter()
    for _ in range(5):
        once()
    sync()
    wall = (time.perf_counter() - t0) / 5
    prof, events, key, leaves, busy = profile_pass(once, sync, device.type == "cuda")
    params = sum(p.numel() for p in G.parameters()) / 1e6
    print(
        f"{opts.preset} ({params:.2f}M parameters), batch {opts.batch}, {fast.describe(device, G)} on {device}: ",
        end="",
    )
    print(f"{wall * 1000:.2f} ms per pass")
    print(f"time in {'kernels' if device.type == 'cuda' else 'operators (self)'}: {busy * 1000:.2f} ms")
    print("  by kind: " + ", ".join(f"{k} {t * 1000:.2f} ms ({t / busy:.0%})" for k, t in by_kind(leaves, key).items()))
    print(events.table(sort_by=key, row_limit=opts.rows, max_name_column_width=60))
    if opts.trace:
        prof.export_chrome_trace(opts.trace)


if __name__ == "__main__":
    try:
        main()
    except WaveDiffError as e:  # the package's own one-line errors, as `wavediff` prints them
        sys.exit(f"error: {e}")
