"""The demo: train a small WaveDiff on scikit-learn's bundled digits on the CPU,
then show what it learned — samples next to real digits, how the samples and the
digits FID evolved next to the losses, a quality figure from a digit classifier,
and a memorisation check (distance of samples to their nearest training digit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoints.io import atomic_write, load_generator
from ..presets import get_preset
from ..sampling import generate
from .score import CONFIDENT, DigitClassifier, nearest_distances, to_digit_features

N_EVAL = 500  # samples scored by the classifier
METRICS_EVERY = 200  # steps between digits-FID measurements during the demo's training
SNAPSHOTS = (1 / 8, 1 / 4, 1 / 2, 1.0)  # moments of the run shown in progress.png (fractions of its training time)


@dataclass
class DemoResult:
    run_dir: Path
    generator: Path
    figure: Path
    losses: Path
    quality: Path
    score: dict
    progress: Path | None = None


def demo_config(minutes: float, seed: int, steps: int = 0):
    cfg = get_preset("digits")
    cfg.train.seed = seed
    cfg.train.max_minutes = float(minutes)
    if steps:
        cfg.train.steps = steps
    cfg.train.metrics_every = METRICS_EVERY
    return cfg


def run_demo(
    out: str | Path, minutes: float = 8.0, seed: int = 0, steps: int = 0, resume: str | None = None
) -> DemoResult:
    """Train for `minutes` of wall time (0: no limit) or `steps` iterations, whichever ends first, then evaluate
    into `out`."""
    from ..training.trainer import train_run

    out = Path(out)
    final = train_run(demo_config(minutes, seed, steps), out, resume=resume)
    return evaluate_demo(out, final, seed)


def evaluate_demo(out: Path, generator_path: Path, seed: int = 0) -> DemoResult:
    from ..data import load_digits_arrays

    G = load_generator(generator_path)
    samples = np.concatenate(list(generate(G, list(range(N_EVAL)), 100)))
    real, _ = load_digits_arrays(G.config.image_size)
    classifier = DigitClassifier(seed=seed)
    score = classifier.score_images(samples).as_dict()
    baselines = {k: v.as_dict() for k, v in classifier.baselines(N_EVAL, seed).items()}
    train_grid = to_digit_features(real)
    memorisation = {
        "explanation": (
            "mean L2 distance (8x8 grid, pixels in [0, 1]) to the nearest training digit: samples against "
            "all training digits, held-out real digits against the other digits; samples much closer than "
            "real digits would be copies"
        ),
        "samples": float(nearest_distances(to_digit_features(samples), train_grid).mean()),
        "real_held_out": float(nearest_distances(classifier.held_out_features, train_grid, exclude_self=True).mean()),
    }
    quality = {
        "explanation": (
            f"share of {N_EVAL} samples that a digit classifier trained on the real digits "
            f"(held-out accuracy {classifier.accuracy:.1%}) recognises with probability >= "
            f"{CONFIDENT}; higher is better, real digits and noise given for scale"
        ),
        "samples": score,
        "real_held_out": baselines["real_held_out"],
        "noise": baselines["noise"],
        "classifier_accuracy": classifier.accuracy,
        "nearest_training_digit": memorisation,
        "digits_fid": _metric_summary(out),
        "generator": str(generator_path),
    }
    quality_path = atomic_write(out / "quality.json", lambda tmp: Path(tmp).write_text(json.dumps(quality, indent=1)))
    figure = _samples_vs_real(out / "samples_vs_real.png", samples[:100], real[:100])
    losses = _loss_plot(out / "losses.png", out / "log.jsonl")
    progress = _progress_figure(out / "progress.png", out)
    return DemoResult(out, generator_path, figure, losses, quality_path, quality, progress)


def _grid(images: np.ndarray, cols: int = 10) -> np.ndarray:
    n, h, w, c = images.shape
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + 2) + 2, cols * (w + 2) + 2, c), dtype=np.uint8) + 64
    for i, img in enumerate(images):
        r, col = divmod(i, cols)
        canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + col * (w + 2) : 2 + col * (w + 2) + w] = img
    return canvas


def _samples_vs_real(path: Path, samples: np.ndarray, real: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, imgs, title in ((axes[0], samples, "WaveDiff samples (EMA generator)"), (axes[1], real, "real digits")):
        ax.imshow(_grid(imgs), interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def _loss_plot(path: Path, log_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    _plot_losses(ax, _records(log_path, "train"))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def _records(log_path: Path, event: str) -> list[dict]:
    if not log_path.is_file():
        return []
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("event") == event]


def _metric_summary(out: Path) -> dict | None:
    """The digits FID measured during training: last and best values, and the time spent measuring."""
    rows = _records(out / "log.jsonl", "metric")
    if not rows:
        return None
    last = rows[-1]
    return {
        "explanation": (
            "Frechet distance between the digit classifier's hidden features of EMA samples and of all real "
            "digits (lower is better), measured during training"
        ),
        "last": last["fid_digits"],
        "last_step": last["step"],
        "best": last["best"],
        "best_step": last["best_step"],
        "measurements": len(rows),
        "metric_seconds": last["metric_s"],
        "train_seconds": last["train_s"],
    }


def _regrid(picture: np.ndarray, size: int = 32, show: int = 6) -> np.ndarray:
    """A gapless grid of `size`-px samples (as training saves them) -> the first show x show, with gaps."""
    h, w, c = picture.shape
    cells = picture.reshape(h // size, size, w // size, size, c).transpose(0, 2, 1, 3, 4).reshape(-1, size, size, c)
    return _grid(cells[: show * show], cols=show)


def _snapshot_rows(rows: list[dict]) -> list[dict]:
    """The measurements nearest to each fraction in SNAPSHOTS of the run's training time (distinct ones)."""
    total = rows[-1]["train_s"]
    picked: list[dict] = []
    for frac in SNAPSHOTS:
        best = min(rows, key=lambda r: abs(r["train_s"] - frac * total))
        if best not in picked:
            picked.append(best)
    return picked


def _progress_figure(path: Path, out: Path) -> Path | None:
    """Sample grids from a few moments of the run (top) and the digits FID next to the losses (bottom)."""
    from PIL import Image

    rows = _records(out / "log.jsonl", "metric")
    snaps = (
        [r for r in _snapshot_rows(rows) if (out / "metrics" / f"step_{r['step']:07d}.png").is_file()] if rows else []
    )
    if not snaps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(3 * max(len(snaps), 4), 7.4))
    grid = fig.add_gridspec(2, 2 * len(snaps), height_ratios=(1.1, 1))
    for i, r in enumerate(snaps):
        ax = fig.add_subplot(grid[0, 2 * i : 2 * i + 2])
        ax.imshow(
            _regrid(np.asarray(Image.open(out / "metrics" / f"step_{r['step']:07d}.png"))), interpolation="nearest"
        )
        ax.set_title(f"step {r['step']}, {r['train_s'] / 60:.1f} min\ndigits FID {r['fid_digits']:.3g}", fontsize=10)
        ax.axis("off")
    half = len(snaps)
    ax_fid = fig.add_subplot(grid[1, :half])
    minutes = [r["train_s"] / 60 for r in rows]
    ax_fid.plot(minutes, [r["fid_digits"] for r in rows], marker="o", ms=3)
    ax_fid.set_yscale("log")
    ax_fid.set_xlabel("training time (min)")
    ax_fid.set_ylabel("digits FID (lower is better)")
    ax_fid.set_title("digits FID of 500 EMA samples")
    ax_fid.grid(alpha=0.3)
    ax_loss = fig.add_subplot(grid[1, half:])
    _plot_losses(ax_loss, _records(out / "log.jsonl", "train"))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path


def _plot_losses(ax, rows: list[dict]) -> None:
    steps = [r["step"] for r in rows]
    for key, label in (
        ("loss_d", "D: real + fake"),
        ("loss_g_adv", "G: adversarial"),
        ("loss_rec", "G: L1 reconstruction"),
    ):
        if rows and key in rows[0]:
            ax.plot(steps, [r[key] for r in rows], label=label)
    ax.axhline(2 * np.log(2), color="grey", lw=0.8, ls=":")
    ax.axhline(np.log(2), color="grey", lw=0.8, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (dotted: 2 ln 2 and ln 2, D at chance)")
    ax.set_title("WaveDiff on digits: losses")
    ax.legend()
    ax.grid(alpha=0.3)
