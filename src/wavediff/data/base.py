"""The common dataset shape: `load(i)` reads raw pixels, the transform makes the tensor."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .transforms import ImageTransform, flip_for


class ItemKey(NamedTuple):
    """Item `index` as drawn in epoch `epoch` of a run seeded `seed` (the seed and epoch decide its flip)."""

    index: int
    seed: int
    epoch: int


class ImageDataset(Dataset):
    """Unlabelled images as float32 [3, S, S] tensors in [-1, 1].

    Subclasses implement `load(index)` returning a PIL image or a uint8
    [H, W, 3] array; `limit > 0` keeps only the first `limit` items.
    """

    def __init__(self, transform: ImageTransform, length: int, limit: int = 0):
        self.transform = transform
        self._length = min(length, limit) if limit > 0 else length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int | ItemKey) -> torch.Tensor:
        """Item `index`; with an `ItemKey` (what training loaders pass) its flip is `flip_for(seed, epoch, index)`."""
        flip = None
        if isinstance(index, ItemKey):
            flip = flip_for(index.seed, index.epoch, index.index)
            index = index.index
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for a dataset of {self._length} images")
        return self.transform(self.load(index), flip=flip)

    def load(self, index: int) -> Image.Image | np.ndarray:
        raise NotImplementedError


def require_path(path: str, dataset: str, expected: str) -> Path:
    """`path` as an existing Path, or a DataError saying what to pass."""
    if not path:
        raise DataError(f"dataset {dataset!r} needs a data path ({WHERE_PATHS_GO}) pointing to {expected}")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path '{p}' does not exist; point it ({WHERE_PATHS_GO}) to {expected}")
    return p


# where each command takes a dataset's path (the same readers serve training and the metrics' real images)
WHERE_PATHS_GO = "train: --data; fid stats: its path argument; pr: --real with --real-preset"
