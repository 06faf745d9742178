"""A quality figure for digit samples: how confidently a classifier trained on
the real digits recognises them.

The classifier is a small MLP on the 8x8 grey digits scikit-learn ships, with an
11th class "not a digit" (noise, smooth blobs, flat images and
blends of two different digits), so that garbage is not forced into a digit
class. Samples are reduced to the same 8x8 grid by area averaging: the score
asks "would this pass for a real handwritten digit at the data's resolution?".
We report the share of samples recognised as a digit with probability >= 0.9,
the mean top probability, and how many of the 10 digits appear, next to the
same numbers for held-out real digits and for random noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

CONFIDENT = 0.9
NOT_A_DIGIT = 10


@dataclass
class DigitScore:
    recognised: float  # share of images classified as a digit with probability >= CONFIDENT
    mean_confidence: float  # mean probability of the top digit class
    classes_seen: int  # distinct digits among the recognised images
    class_counts: list[int]

    def as_dict(self) -> dict:
        return asdict(self)


def to_digit_features(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N, S, S, 3] (S a multiple of 8) -> [N, 64] in [0, 1], on sklearn's 8x8 digit grid."""
    n, s = images_uint8.shape[:2]
    grey = images_uint8.astype(np.float32).mean(axis=-1) / 255.0
    f = s // 8
    return grey.reshape(n, 8, f, 8, f).mean(axis=(2, 4)).reshape(n, 64)


def _negatives(digits: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    q = n // 4
    noise = rng.random((q, 64), dtype=np.float32)
    coarse = torch.from_numpy(rng.random((q, 1, 3, 3), dtype=np.float32))
    blobs = F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False).reshape(q, 64).numpy()
    flat = np.repeat(rng.random((q, 1), dtype=np.float32), 64, axis=1)
    i, j = rng.integers(0, len(digits), (2, n - 3 * q))
    keep = labels[i] != labels[j]
    blends = (digits[i[keep]] + digits[j[keep]]) / 2
    return np.concatenate([noise, blobs, flat, blends])


def nearest_distances(queries: np.ndarray, references: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """L2 distance of each query row to its nearest reference row (on the 8x8 grid in [0, 1]).

    `exclude_self`: queries are references themselves; a zero distance to an identical row is skipped
    once (its own copy), so a held-out digit is measured against the other digits.
    """
    q = torch.from_numpy(np.asarray(queries, np.float32))
    r = torch.from_numpy(np.asarray(references, np.float32))
    d = torch.cdist(q, r)
    if exclude_self:
        rows, own = torch.arange(len(q)), d.argmin(dim=1)
        d[rows, own] = torch.where(d[rows, own] == 0, torch.inf, d[rows, own])
    return d.min(dim=1).values.numpy()


class DigitClassifier:
    """A small MLP (10 digits + "not a digit"); `held_out` real digits are kept for the baseline."""

    def __init__(self, seed: int = 0, held_out: int = 300):
        from ..data import load_digits_arrays

        images, y = load_digits_arrays(32)  # the pipeline the demo trains on
        x = to_digit_features(images)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        test, train = order[:held_out], order[held_out:]
        neg = _negatives(x[train], y[train], len(train) // 3, rng)
        xs = torch.from_numpy(np.concatenate([x[train], neg]))
        ys = torch.from_numpy(np.concatenate([y[train], np.full(len(neg), NOT_A_DIGIT)]))
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 11))
        opt = torch.optim.Adam(self.net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(600):  # full batch, ~1 s
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.net(xs), ys).backward()
            opt.step()
        self.held_out_features, self.held_out_labels = x[test], y[test]
        with torch.no_grad():
            pred = self.net(torch.from_numpy(x[test])).argmax(1).numpy()
        self.accuracy = float((pred == y[test]).mean())

    @torch.no_grad()
    def score_features(self, features: np.ndarray) -> DigitScore:
        probs = F.softmax(self.net(torch.from_numpy(np.asarray(features, np.float32))), dim=1).numpy()
        top_digit = probs[:, :NOT_A_DIGIT].argmax(axis=1)
        top_prob = probs[:, :NOT_A_DIGIT].max(axis=1)
        sure = top_prob >= CONFIDENT
        counts = np.bincount(top_digit[sure], minlength=10).tolist()
        return DigitScore(
            recognised=float(sure.mean()),
            mean_confidence=float(top_prob.mean()),
            classes_seen=int(sum(c > 0 for c in counts)),
            class_counts=counts,
        )

    def score_images(self, images_uint8: np.ndarray) -> DigitScore:
        return self.score_features(to_digit_features(images_uint8))

    @torch.no_grad()
    def features(self, images_uint8: np.ndarray) -> np.ndarray:
        """The hidden layer (128-d, after the ReLU) for uint8 [N, S, S, 3] images: the digits-FID features."""
        x = torch.from_numpy(to_digit_features(images_uint8))
        return self.net[1](self.net[0](x)).double().numpy()

    def baselines(self, n: int, seed: int = 0) -> dict[str, DigitScore]:
        """Scores of held-out real digits and of uniform noise images, for reading the figure."""
        noise = np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        return {"real_held_out": self.score_features(self.held_out_features), "noise": self.score_images(noise)}
