"""How much bf16 sampling changes images against fp32, on the same seeds, and whether quality moves.

    python benchmarks/bf16_drift.py runs/demo/checkpoints/generator_final.safetensors [--n 1000]
    python benchmarks/bf16_drift.py ckpt.safetensors --fid-ref REF.npz --inception-weights PATH

Pixel drift is in uint8 levels (0-255) over every pixel of N images. Quality: for a digits model,
the demo classifier's recognised share and the digits FID (no weights needed); otherwise the
Inception FID against --fid-ref. The sampling noise of each figure is the difference between two
fp32 draws of N images (seeds 0..N-1 and N..2N-1): bf16's change should be within it.
"""

from __future__ import annotations

import argparse
import json
import time

from wavediff.runtime import configure_environment

configure_environment()  # before torch loads OpenMP: as `wavediff` itself runs (see runtime.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wavediff.checkpoints.convert import load_any_generator  # noqa: E402
from wavediff.fastpath import FastPath, resolve_precision  # noqa: E402
from wavediff.sampling import generate  # noqa: E402


def images(G, cfg, seeds, precision, batch) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = np.concatenate(list(generate(G, seeds, batch, cfg, "cpu", fast=FastPath(precision=precision))))
    return out, time.perf_counter() - t0


def quality(cfg, opts):
    """name -> function(uint8 images) -> figure, for this checkpoint's data."""
    from wavediff.metrics.fid import GaussianStats, frechet_distance

    if cfg.data.dataset == "digits":
        from wavediff.demo.score import DigitClassifier
        from wavediff.training.metrics import digits_space

        classifier, space = DigitClassifier(seed=0), digits_space()
    elif opts.fid_ref:
        from wavediff.training.metrics import inception_space

        classifier, space = None, inception_space(opts.fid_ref, opts.inception_weights, torch.device("cpu"))
    else:
        return {}

    def fid(x):
        acc = GaussianStats(space.reference.dims)
        acc.update(space.extract(x))
        return frechet_distance(acc.mu, acc.sigma, space.reference.mu, space.reference.sigma)

    figures = {space.name: fid}
    if classifier is not None:
        figures["recognised"] = lambda x: classifier.score_images(x).recognised
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--fid-ref")
    ap.add_argument("--inception-weights")
    ap.add_argument("--json")
    opts = ap.parse_args()
    torch.set_flush_denormal(True)
    G, cfg = load_any_generator(opts.checkpoint)
    seeds, others = list(range(opts.n)), list(range(opts.n, 2 * opts.n))
    print(
        f"{opts.checkpoint}: {cfg.name}, {cfg.image_size}px, T={cfg.diffusion.num_timesteps}; auto precision here: "
        f"{resolve_precision('auto', 'cpu')}; {opts.n} seeds"
    )
    fp32, t32 = images(G, cfg, seeds, "fp32", opts.batch)
    bf16, t16 = images(G, cfg, seeds, "bf16", opts.batch)
    diff = np.abs(fp32.astype(np.int16) - bf16.astype(np.int16)).ravel()
    drift = {
        "max": int(diff.max()),
        "p99": float(np.percentile(diff, 99)),
        "p99.9": float(np.percentile(diff, 99.9)),
        "mean": float(diff.mean()),
        "share_within_2": float((diff <= 2).mean()),
        "share_equal": float((diff == 0).mean()),
    }
    print(
        f"pixel drift (uint8 levels): max {drift['max']}, 99th percentile {drift['p99']:.0f}, "
        f"99.9th {drift['p99.9']:.0f}, mean {drift['mean']:.3f}; {drift['share_within_2']:.2%} of pixels within 2, "
        f"{drift['share_equal']:.1%} identical"
    )
    print(f"sampling time: fp32 {t32:.1f} s, bf16 {t16:.1f} s ({t32 / t16:.2f}x)")
    report = {"checkpoint": opts.checkpoint, "n": opts.n, "drift": drift, "seconds": {"fp32": t32, "bf16": t16}}
    figures = quality(cfg, opts)
    if figures:
        fp32_b, _ = images(G, cfg, others, "fp32", opts.batch)
        report["quality"] = {}
        for name, fn in figures.items():
            a, b, noise = fn(fp32), fn(bf16), fn(fp32_b)
            report["quality"][name] = {"fp32": a, "bf16": b, "fp32_other_seeds": noise}
            print(
                f"{name}: fp32 {a:.4f}, bf16 {b:.4f} (change {b - a:+.4f}); fp32 on other seeds {noise:.4f} "
                f"(sampling noise {noise - a:+.4f})"
            )
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
