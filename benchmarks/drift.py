"""How much a faster sampler changes images against exact fp32 (direct convolutions), on the same seeds, and
whether quality moves: bf16 (`--against bf16`, the default) or Winograd convolutions (`--against winograd`).

    python benchmarks/drift.py runs/demo/checkpoints/generator_final.safetensors [--n 1000]
    python benchmarks/drift.py ckpt.safetensors --fid-ref REF.npz --inception-weights PATH
    python benchmarks/drift.py runs/demo/checkpoints/generator_final.safetensors --against winograd --every-layer
    python benchmarks/drift.py runs/demo/checkpoints/generator_final.safetensors --against winograd --every-layer 2
    python benchmarks/drift.py --preset cifar10 --against winograd --n 64 --batch 8

Pixel drift is in uint8 levels (0-255) over every pixel of N images. Quality: for a digits model,
the demo classifier's recognised share and the digits FID (no weights needed); otherwise the
Inception FID against --fid-ref. The sampling noise of each figure is the difference between two
fp32 draws of N images (seeds 0..N-1 and N..2N-1): the change should be within it.

`--every-layer` runs Winograd F(4x4, 3x3) on every 3x3 convolution (`--every-layer 2`: F(2x2, 3x3)), also
those its rule leaves direct (the demo's digits model is narrower than the rule's 128 channels): a harsher test
than the default sampler makes.
`--preset` times and compares a paper preset's generator with random weights, perturbed so that they
carry through to the images (untrained: pixel drift only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wavediff.runtime import configure_environment

configure_environment()  # before torch loads OpenMP: as `wavediff` itself runs (see runtime.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wavediff.checkpoints.convert import load_any_generator  # noqa: E402
from wavediff.errors import WaveDiffError  # noqa: E402
from wavediff.fastpath import FastPath, resolve_precision  # noqa: E402
from wavediff.sampling import generate  # noqa: E402

EXACT = FastPath(precision="fp32", winograd=False)
FAST = {"bf16": FastPath(precision="bf16"), "winograd": FastPath(precision="fp32", winograd=True)}


def images(G, cfg, seeds, fast: FastPath, batch) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = np.concatenate(list(generate(G, seeds, batch, cfg, "cpu", fast=fast)))
    return out, time.perf_counter() - t0


def random_generator(preset: str):
    """A paper preset's generator with seeded random weights, perturbed (fresh NCSN++ outputs are ~0)."""
    from wavediff.models.generator import perturbed_generator
    from wavediff.presets import get_preset

    cfg = get_preset(preset)
    return perturbed_generator(cfg.generator, 0.02), cfg


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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--preset", help="a paper preset with random weights instead of a checkpoint")
    ap.add_argument("--against", choices=sorted(FAST), default="bf16")
    ap.add_argument(
        "--every-layer",
        type=int,
        nargs="?",
        const=4,
        choices=[4, 2],
        help="(winograd) F(4x4, 3x3) on every 3x3 convolution, or with 2 F(2x2, 3x3)",
    )
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--fid-ref")
    ap.add_argument("--inception-weights")
    ap.add_argument("--json")
    opts = ap.parse_args()
    if (opts.checkpoint is None) == (opts.preset is None):
        ap.error("give a checkpoint or --preset (one of them)")
    if opts.n < 1 or opts.batch < 1:
        ap.error("--n and --batch must be at least 1")
    if opts.fid_ref and not Path(opts.fid_ref).is_file():
        ap.error(f"--fid-ref {opts.fid_ref} not found; make it with `wavediff fid stats`")
    if opts.json and (Path(opts.json).is_dir() or not Path(opts.json).resolve().parent.is_dir()):
        ap.error(f"--json {opts.json}: give a file in an existing folder")
    if opts.every_layer and opts.against != "winograd":
        ap.error("--every-layer forces Winograd tiles: it needs --against winograd (bf16 sampling never runs it)")
    torch.set_flush_denormal(True)
    if opts.every_layer:
        from wavediff.models import winograd

        winograd.tile_for = lambda x, weight, tile=opts.every_layer: tile
    G, cfg = load_any_generator(opts.checkpoint) if opts.preset is None else random_generator(opts.preset)
    name = opts.against
    seeds, others = list(range(opts.n)), list(range(opts.n, 2 * opts.n))
    print(
        f"{opts.checkpoint or opts.preset}: {cfg.name}, {cfg.image_size}px, T={cfg.diffusion.num_timesteps}; auto "
        f"precision here: {resolve_precision('auto', 'cpu')}; {opts.n} seeds; fp32 against {name}"
        + (f" (F({opts.every_layer}x{opts.every_layer}, 3x3) on every 3x3 convolution)" if opts.every_layer else "")
    )
    fp32, t32 = images(G, cfg, seeds, EXACT, opts.batch)
    fast, t_fast = images(G, cfg, seeds, FAST[name], opts.batch)
    diff = np.abs(fp32.astype(np.int16) - fast.astype(np.int16)).ravel()
    drift = {
        "max": int(diff.max()),
        "p99": float(np.percentile(diff, 99)),
        "p99.9": float(np.percentile(diff, 99.9)),
        "mean": float(diff.mean()),
        "share_within_1": float((diff <= 1).mean()),
        "share_within_2": float((diff <= 2).mean()),
        "share_equal": float((diff == 0).mean()),
    }
    print(
        f"pixel drift (uint8 levels): max {drift['max']}, 99th percentile {drift['p99']:.0f}, "
        f"99.9th {drift['p99.9']:.0f}, mean {drift['mean']:.4f}; {drift['share_within_1']:.3%} of pixels within 1, "
        f"{drift['share_within_2']:.3%} within 2, {drift['share_equal']:.2%} identical"
    )
    print(f"sampling time: fp32 {t32:.1f} s, {name} {t_fast:.1f} s ({t32 / t_fast:.2f}x)")
    report = {
        "source": opts.checkpoint or f"preset {opts.preset} (random weights)",
        "against": name,
        "every_layer": opts.every_layer,
        "n": opts.n,
        "drift": drift,
        "seconds": {"fp32": t32, name: t_fast},
    }
    figures = quality(cfg, opts)
    if figures:
        fp32_b, _ = images(G, cfg, others, EXACT, opts.batch)
        report["quality"] = {}
        for label, fn in figures.items():
            a, b, noise = fn(fp32), fn(fast), fn(fp32_b)
            report["quality"][label] = {"fp32": a, name: b, "fp32_other_seeds": noise}
            print(
                f"{label}: fp32 {a:.4f}, {name} {b:.4f} (change {b - a:+.4f}); fp32 on other seeds {noise:.4f} "
                f"(sampling noise {noise - a:+.4f})"
            )
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except WaveDiffError as e:  # the package's own one-line errors, as `wavediff` prints them
        sys.exit(f"error: {e}")
