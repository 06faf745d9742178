"""Checked uint8 batches of an `ImageSource` under an evaluation protocol, and features of them.

Protocols: `lossless` feeds the uint8 images as they are; `paper` first round-trips every
image through JPEG at quality 75, as the authors' sampler and dataset-statistics scripts
did by saving `.jpg` files with torchvision's `save_image`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..errors import DataError
from .fid import GaussianStats
from .images import jpeg_roundtrip
from .inception import InceptionFeatures
from .sources import ImageSource
from .stats import FIDStats

PROTOCOLS = ("lossless", "paper")


def iter_images(
    source: ImageSource, *, protocol: str, batch_size: int, progress: str | None = None
) -> Iterator[np.ndarray]:
    """Every image of `source` as it goes into a feature network; all must share one size."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    shape = None
    seen = 0
    with tqdm(total=source.count, desc=progress, unit="img", disable=None if progress else True) as bar:
        for batch in source.batches(batch_size):
            batch = batch[: source.count - seen]
            if len(batch) == 0:
                break
            if shape is None:
                shape = batch.shape[1:]
            elif batch.shape[1:] != shape:
                raise DataError(
                    f"images of mixed sizes in {source.description}: {list(shape)} then {list(batch.shape[1:])}"
                )
            if protocol == "paper":
                batch = jpeg_roundtrip(batch)
            yield batch
            seen += len(batch)
            bar.update(len(batch))
    if seen < source.count:
        raise DataError(f"{source.description} yielded {seen} images, expected {source.count}")


def fid_stats(
    source: ImageSource, inception: InceptionFeatures, *, protocol: str, batch_size: int, progress: str | None = None
) -> FIDStats:
    """Mean and covariance of the Inception features of `source`, with a description of how they were made."""
    acc = GaussianStats(inception.dims)
    size = None
    for batch in iter_images(source, protocol=protocol, batch_size=batch_size, progress=progress):
        size = list(batch.shape[1:3])
        acc.update(inception(batch))
    meta = {
        "source": source.description,
        "dataset": source.kind,
        "image_size": size,
        "n": acc.n,
        "protocol": protocol,
        "dims": inception.dims,
        "inception_weights": inception.weights.name,
        "inception_weights_sha256": inception.sha256,
    }
    return FIDStats(acc.mu, acc.sigma, acc.n, meta)


def collect_features(
    source: ImageSource, extract: Callable[[np.ndarray], torch.Tensor], *, batch_size: int, progress: str | None = None
) -> torch.Tensor:
    """All features of `source` stacked into one [N, D] tensor (lossless protocol)."""
    return torch.cat(
        [extract(b) for b in iter_images(source, protocol="lossless", batch_size=batch_size, progress=progress)]
    )
