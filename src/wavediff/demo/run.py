"""The demo: train a small WaveDiff on scikit-learn's bundled digits on the CPU,
then show what it learned — samples next to real digits, the losses, and a
quality figure from a digit classifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoints.io import atomic_write, load_generator
from ..presets import get_preset
from ..sampling import generate
from .score import CONFIDENT, DigitClassifier

N_EVAL = 500  # samples scored by the classifier


@dataclass
class DemoResult:
    run_dir: Path
    generator: Path
    figure: Path
    losses: Path
    quality: Path
    score: dict


def demo_config(minutes: float, seed: int, steps: int = 0):
    cfg = get_preset("digits")
    cfg.train.seed = seed
    cfg.train.max_minutes = float(minutes)
    if steps:
        cfg.train.steps = steps
    return cfg


def run_demo(
    out: str | Path, minutes: float = 8.0, seed: int = 0, steps: int = 0, resume: str | None = None
) -> DemoResult:
    """Train for `minutes` of wall time (or `steps` iterations), then evaluate into `out`."""
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
        "generator": str(generator_path),
    }
    quality_path = atomic_write(out / "quality.json", lambda tmp: Path(tmp).write_text(json.dumps(quality, indent=1)))
    figure = _samples_vs_real(out / "samples_vs_real.png", samples[:100], real[:100])
    losses = _loss_plot(out / "losses.png", out / "log.jsonl")
    return DemoResult(out, generator_path, figure, losses, quality_path, quality)


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

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("event") == "train"]
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    for key, label in (
        ("loss_d", "D: real + fake"),
        ("loss_g_adv", "G: adversarial"),
        ("loss_rec", "G: L1 reconstruction"),
    ):
        if rows and key in rows[0]:
            ax.plot(steps, [r[key] for r in rows], label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title("WaveDiff on digits: losses")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path
