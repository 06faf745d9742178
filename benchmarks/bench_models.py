"""Generator forward and full sampling on CPU, against the authors' implementation.

Baseline: the authors' published code timed on this machine class (2 threads,
median of 3), as recorded in tests/data/reference/presets/<preset>.json. We time
ours the same way in this run and print the ratio (> 1 means we are faster).

    python benchmarks/bench_models.py [--presets cifar10 stl10] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from wavediff.diffusion import VPDiffusion
from wavediff.models.generator import build_generator
from wavediff.presets import get_preset
from wavediff.wavelets import idwt

REF = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference" / "presets"


def median_time(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def bench_preset(name: str) -> list[tuple[str, float, float]]:
    cfg = get_preset(name)
    ref = json.loads((REF / f"{name}.json").read_text())
    G = build_generator(cfg.generator).eval()
    diffusion = VPDiffusion(cfg.diffusion)
    res, ch, nz = cfg.data_resolution, cfg.data_channels, cfg.generator.nz
    rows = []
    for b in (1, 8):
        x, z = torch.randn(b, ch, res, res), torch.randn(b, nz)
        t = torch.full((b,), 1, dtype=torch.int64)
        ours = median_time(lambda: G(x, t, z))
        rows.append((f"{name} G forward B={b}", ours, ref["G_forward"][str(b)]["median_s"]))
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(1, ch, res, res)
    ours = median_time(lambda: idwt(diffusion.sample(G, x_T, nz, g) * 2))
    rows.append((f"{name} full sampling B=1", ours, ref["full_sampling_B1"]["median_s"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["cifar10", "stl10"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of 3 after one warm-up")
    print(f"{'case':<32} {'ours (s)':>9} {'authors (s)':>12} {'speed-up':>9}")
    for name in args.presets:
        for case, ours, theirs in bench_preset(name):
            print(f"{case:<32} {ours:>9.4f} {theirs:>12.4f} {theirs / ours:>8.2f}x")


if __name__ == "__main__":
    main()
