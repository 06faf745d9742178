"""Frechet distance between Gaussians, and streaming mean/covariance of features (float64)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from ..errors import WaveDiffError


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64.

    If the product's square root is not finite (singular covariances), `eps` is
    added to both diagonals; a small imaginary part from numerical error is dropped.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise WaveDiffError(f"statistics of different feature dimensions: {mu1.shape[0]} vs {mu2.shape[0]}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are expected with few images; handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        with np.errstate(all="ignore"):
            covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            raise WaveDiffError(
                f"the covariance product has no real square root (imaginary part {imag:.3g}); "
                f"the statistics are degenerate, use more images"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class GaussianStats:
    """Running mean and covariance (ddof=1, as np.cov) of feature rows, accumulated in float64.

    Sums are taken around the first batch's mean to avoid cancellation.
    """

    def __init__(self, dims: int):
        self.dims = dims
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(dims)
        self._outer = np.zeros((dims, dims))

    def update(self, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float64).reshape(-1, self.dims)
        if self._shift is None:
            self._shift = feats.mean(axis=0)
        centred = feats - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.n += feats.shape[0]

    @property
    def mu(self) -> np.ndarray:
        return self._shift + self._sum / self.n

    @property
    def sigma(self) -> np.ndarray:
        if self.n < 2:
            raise WaveDiffError(f"a covariance needs at least 2 images, got {self.n}")
        mean = self._sum / self.n
        return (self._outer - self.n * np.outer(mean, mean)) / (self.n - 1)


def fid_warnings(inception, n: int, ref_meta: dict, ours: dict) -> list[str]:
    """What makes an FID unreliable or incomparable, one message each (`wavediff fid compute` and training's FID
    print the same): unofficial Inception weights, too few images for the features' covariance, and a reference
    made with another protocol, other weights or another image size (`ours`: the same keys as the reference's
    `meta`: protocol, inception_weights_sha256, image_size)."""
    found = []
    if not inception.official:
        found.append(
            f"{inception.weights} (sha256 {inception.sha256[:12]}) is not the official "
            f"pt_inception-2015-12-05-6726825d.pth; scores are not comparable to published FIDs"
        )
    if n <= inception.dims:
        found.append(f"{n} images for {inception.dims}-d features: the covariance is singular and the FID unreliable")
    for key, what in (
        ("protocol", "protocol"),
        ("inception_weights_sha256", "Inception weights"),
        ("image_size", "image size"),
    ):
        if key in ref_meta and key in ours and ref_meta[key] != ours[key]:
            a, b = (str(v)[:12] if key.endswith("sha256") else v for v in (ref_meta[key], ours[key]))
            found.append(f"the reference statistics used {what} {a}, these samples {b}")
    return found
