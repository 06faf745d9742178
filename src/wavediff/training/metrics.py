"""Metrics during training: every `train.metrics_every` steps, the FID of `train.metrics_n` EMA samples
against reference statistics, logged, plotted, and the best generator kept.

Feature spaces: pytorch-fid's Inception (`train.fid_ref` statistics from `wavediff fid stats`, weights
from `train.inception_weights` or the torch hub cache, exactly as `wavediff fid`), or, for the `digits`
dataset, the hidden layer of the demo's digit classifier against all real digits (a "digits FID" that
needs no weights). The samples use fixed seeds 0..N-1, so successive values differ only by the generator.

Outputs in the run directory: `metric` records in log.jsonl (and TensorBoard), `metrics.png` (the metric
against step and training time), `metrics/step_XXXXXXX.png` (the first 64 scored samples) and
`checkpoints/generator_best.safetensors` (written atomically whenever the metric improves). Time spent
here is counted apart from training time; `state_dict()` goes into the training state so that a resumed
run keeps its best value.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoints.io import atomic_write, save_generator
from ..config import ExperimentConfig
from ..errors import ConfigError
from ..metrics.fid import GaussianStats, fid_warnings, frechet_distance
from ..metrics.stats import FIDStats
from ..sampling import generate

DIGITS_N = 500  # default number of samples per measurement in the digits feature space
INCEPTION_N = 5000  # ... and with Inception
GRID_N = 64  # samples kept as a picture per measurement
BEST_NAME = "generator_best.safetensors"


@dataclass
class FeatureSpace:
    """A feature extractor (uint8 [B, H, W, 3] -> [B, D]) with the reference statistics in that space."""

    name: str  # "fid" (Inception) or "fid_digits"
    extract: Callable[[np.ndarray], np.ndarray]
    reference: FIDStats
    default_n: int


def digits_space(seed: int = 0) -> FeatureSpace:
    """The demo classifier's hidden features; the reference is every real digit of the training set."""
    from ..data import load_digits_arrays
    from ..demo.score import DigitClassifier

    classifier = DigitClassifier(seed=seed)
    real, _ = load_digits_arrays(32)
    feats = classifier.features(real)
    acc = GaussianStats(feats.shape[1])
    acc.update(feats)
    ref = FIDStats(acc.mu, acc.sigma, acc.n, {"source": "sklearn digits", "features": "digit classifier hidden layer"})
    return FeatureSpace("fid_digits", classifier.features, ref, DIGITS_N)


def inception_space(ref_path: str, weights: str | None, device: torch.device) -> FeatureSpace:
    """pytorch-fid's Inception (pool3 or the statistics' own size), as `wavediff fid compute`."""
    from ..metrics import InceptionFeatures, load_stats

    ref = load_stats(ref_path)
    if ref.dims not in (64, 192, 768, 2048):
        raise ConfigError(
            f"{ref_path} holds {ref.dims}-d statistics, not Inception features; make them with `wavediff fid stats`"
        )
    inception = InceptionFeatures(weights or None, device, ref.dims)
    return FeatureSpace("fid", inception, ref, INCEPTION_N)


def build_feature_space(cfg: ExperimentConfig, device: torch.device) -> FeatureSpace:
    """The feature space `cfg.train` asks for; a one-line ConfigError when it cannot be built."""
    tc = cfg.train
    if tc.fid_ref:
        return inception_space(tc.fid_ref, tc.inception_weights or None, device)
    if cfg.data.dataset == "digits":
        return digits_space()
    raise ConfigError(
        f"--metrics-every needs reference statistics for the {cfg.name} preset: make them with "
        f"`wavediff fid stats DATA --preset {cfg.name} -o REF.npz` and pass --fid-ref REF.npz"
    )


class MetricTracker:
    """Measures the EMA generator's FID, logs it, and keeps the best generator (rank 0 only)."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, device: torch.device, space: FeatureSpace, log=None):
        self.cfg, self.run_dir, self.device, self.space, self.log = cfg, Path(run_dir), device, space, log
        self.every = cfg.train.metrics_every
        self.n = cfg.train.metrics_n or space.default_n
        if self.n < 2:
            raise ConfigError(f"train.metrics_n must be at least 2 (a covariance needs 2 samples), got {self.n}")
        if hasattr(space.extract, "sha256"):  # Inception: what `wavediff fid compute` would warn about, said now
            size = [cfg.image_size, cfg.image_size]
            ours = {"protocol": "lossless", "inception_weights_sha256": space.extract.sha256, "image_size": size}
            for message in fid_warnings(space.extract, self.n, space.reference.meta, ours):
                print(f"warning: training FID: {message}", file=sys.stderr)
        self.best: float = math.inf
        self.best_step: int = -1
        self.history: list[dict] = []
        self.seconds = 0.0  # spent measuring, in this process
        self.seconds_before = 0.0  # ... in earlier invocations of a resumed run
        self.train_seconds_before = 0.0  # training time of earlier invocations

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / BEST_NAME

    @property
    def last_step(self) -> int | None:
        return self.history[-1]["step"] if self.history else None

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def fid(self, generator: torch.nn.Module) -> tuple[float, np.ndarray]:
        """(FID of `n` samples of `generator` against the reference, the first GRID_N samples as uint8)."""
        acc = GaussianStats(self.space.reference.dims)
        grid = []
        was_training = generator.training
        generator.eval()
        try:
            for batch in generate(generator, list(range(self.n)), 100, self.cfg, self.device):
                acc.update(self.space.extract(batch))
                if sum(len(g) for g in grid) < GRID_N:
                    grid.append(batch)
        finally:
            generator.train(was_training)
        ref = self.space.reference
        value = frechet_distance(acc.mu, acc.sigma, ref.mu, ref.sigma)
        return value, np.concatenate(grid)[:GRID_N]

    def measure(self, generator: torch.nn.Module, step: int, train_seconds: float, meta: dict | None = None) -> dict:
        """Score `generator` at `step` (`train_seconds`: training time of this invocation); returns the record."""
        started = time.perf_counter()
        value, grid = self.fid(generator)
        improved = value < self.best
        if improved:
            self.best, self.best_step = value, step
            save_generator(self.best_path, generator, self.cfg, {"step": step, self.space.name: value, **(meta or {})})
        _save_grid(self.run_dir / "metrics" / f"step_{step:07d}.png", grid)
        self.seconds += time.perf_counter() - started
        record = {
            "step": step,
            self.space.name: value,
            "n": self.n,
            "best": self.best,
            "best_step": self.best_step,
            "improved": improved,
            "train_s": self.train_seconds_before + train_seconds,
            "metric_s": self.seconds_before + self.seconds,
        }
        self.history.append(record)
        if self.log is not None:
            self.log.event("metric", **record)
            self.log.tb_scalars("metrics", step, {self.space.name: value, "best": self.best})
            self.log.write(
                f"step {step}: {self.space.name} {value:.4g} ({self.n} EMA samples; best {self.best:.4g} "
                f"at step {self.best_step}) in {time.perf_counter() - started:.1f} s"
            )
        plot_metric(self.run_dir / "metrics.png", self.history, self.space.name)
        return record

    def state_dict(self, train_seconds: float) -> dict:
        """What a resumed run needs: the best value, where it was reached, the history and the time spent."""
        return {
            "best": self.best,
            "best_step": self.best_step,
            "metric": self.space.name,
            "history_json": json.dumps(self.history),
            "metric_s": self.seconds_before + self.seconds,
            "train_s": self.train_seconds_before + train_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("metric") != self.space.name:  # another feature space: its values do not compare
            return
        self.best, self.best_step = float(state["best"]), int(state["best_step"])
        self.history = json.loads(state["history_json"])
        self.seconds_before, self.train_seconds_before = float(state["metric_s"]), float(state["train_s"])


def _save_grid(path: Path, images: np.ndarray, cols: int = 8) -> Path:
    from PIL import Image

    n, h, w, c = images.shape
    rows = -(-n // cols)
    cells = np.zeros((rows * cols, h, w, c), np.uint8)
    cells[:n] = images
    grid = cells.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    return atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))


def plot_metric(path: Path, history: list[dict], name: str) -> Path | None:
    """The metric against training step and against training time (minutes), side by side."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [r[name] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, xs, label in (
        (axes[0], [r["step"] for r in history], "training step"),
        (axes[1], [r["train_s"] / 60 for r in history], "training time (min, metrics excluded)"),
    ):
        ax.plot(xs, values, marker="o", ms=3)
        best = int(np.argmin(values))
        ax.plot([xs[best]], [values[best]], marker="*", ms=12, color="tab:red", label=f"best {values[best]:.3g}")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel(f"{name} (lower is better)")
    if max(values) / max(min(values), 1e-12) > 20:
        axes[0].set_yscale("log")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path
