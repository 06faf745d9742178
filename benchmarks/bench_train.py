"""One training iteration on CPU (2 threads), against the authors' train_wddgan.py.

An iteration is a D step (with or without the lazy R1 penalty), a G step and
the EMA update, exactly as `wavediff train` runs them. Baseline: the authors'
code timed on this machine class (median seconds per iteration, with R1 /
without R1; peak RSS for cifar10 B=32). Each configuration runs in a fresh
process so its peak RSS is its own. Ratio > 1 means we are faster / smaller.

    python benchmarks/bench_train.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference" / "fixtures" / "tiny_wavelet_config.json"
# (config, batch) -> authors' seconds per iteration (with R1, without R1)
AUTHORS = {
    ("cifar10", 8): (1.72, 1.50),
    ("cifar10", 32): (7.41, 5.93),
    ("tiny", 8): (0.222, 0.163),
    ("tiny", 32): (0.787, 0.536),
}
AUTHORS_PEAK_GIB = 2.6  # cifar10, B=32


def build_config(name: str):
    """The cifar10 preset, or the reference fixture `tiny_wavelet` with a small 3-layer discriminator."""
    from wavediff.checkpoints.official import official_args_to_config
    from wavediff.presets import get_preset

    if name == "cifar10":
        return get_preset("cifar10")
    cfg = official_args_to_config(FIXTURE)
    cfg.space, cfg.image_size = "wavelet", 32
    cfg.discriminator.num_layers, cfg.discriminator.ngf, cfg.discriminator.kind = 3, 16, "small"
    return cfg


def time_one(name: str, batch: int, repeats: int, threads: int) -> dict:
    """Median seconds per iteration with and without R1, and this process's peak RSS."""
    from wavediff.diffusion import VPDiffusion
    from wavediff.models.discriminator import build_discriminator
    from wavediff.models.generator import build_generator
    from wavediff.training.ema import EMA
    from wavediff.training.step import Nets, TrainStep

    torch.set_num_threads(threads)
    cfg = build_config(name)
    torch.manual_seed(0)
    G, D = build_generator(cfg.generator), build_discriminator(cfg.discriminator)
    adam = dict(betas=(cfg.train.beta1, cfg.train.beta2), fused=True)
    step = TrainStep(
        Nets(G, D, G, D, G, D),
        torch.optim.Adam(G.parameters(), cfg.train.lr_g, **adam),
        torch.optim.Adam(D.parameters(), cfg.train.lr_d, **adam),
        VPDiffusion(cfg.diffusion),
        cfg,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
    )
    ema = EMA(G, cfg.train.ema_decay)
    res = cfg.data_resolution
    x0 = torch.rand(batch, cfg.data_channels, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def iteration(r1: bool) -> float:
        t0 = time.perf_counter()
        step.d_step(x0, r1)
        step.g_step(x0)
        ema.update(G, batch, batch)
        return time.perf_counter() - t0

    out = {}
    for r1 in (True, False):
        iteration(r1)  # warm-up
        out["r1" if r1 else "no_r1"] = statistics.median(iteration(r1) for _ in range(repeats))
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "BATCH"), help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(time_one(args.one[0], int(args.one[1]), args.repeats, args.threads)))
        return
    print(
        f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} after warm-up; load average "
        f"{os.getloadavg()[0]:.1f} (other processes on the cores distort CPU timings badly)"
    )
    print(f"{'config':<18}{'R1':<6}{'ours s/it':>10}{'img/s':>8}{'authors':>9}{'ratio':>7}")
    for (name, batch), authors in AUTHORS.items():
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                name,
                str(batch),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(child.stdout.strip().splitlines()[-1])
        for key, ref in zip(("r1", "no_r1"), authors):
            print(
                f"{name + ' B=' + str(batch):<18}{'yes' if key == 'r1' else 'no':<6}{r[key]:>10.3f}"
                f"{batch / r[key]:>8.1f}{ref:>9.3f}{ref / r[key]:>7.2f}"
            )
        if (name, batch) == ("cifar10", 32):
            peak = r["peak_rss_gib"]
            print(
                f"{'cifar10 B=32 peak RSS':<24}{peak:>10.2f} GiB{AUTHORS_PEAK_GIB:>9.1f} GiB"
                f"{AUTHORS_PEAK_GIB / peak:>7.2f}"
            )


if __name__ == "__main__":
    main()
