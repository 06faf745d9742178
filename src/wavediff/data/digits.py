"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 17 grey levels)
as RGB images: real data that needs no download, for the CPU demo.

Digits are white on black (the data's ink intensity maps directly to
brightness, as in MNIST), upsampled with bicubic interpolation so strokes are
smooth rather than blocky. They are not mirror-symmetric: a demo that scores
samples with a digit classifier should train with `data.hflip=false`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import ImageDataset
from .transforms import ImageTransform


def load_digits_arrays(image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, S, S, 3], labels int64 [N]) with S = image_size."""
    from sklearn.datasets import load_digits  # slow import; only when digits are used

    digits = load_digits()
    ink = torch.from_numpy(digits.images).float().mul_(255.0 / 16.0).unsqueeze(1)  # [N, 1, 8, 8]
    big = F.interpolate(ink, size=(image_size, image_size), mode="bicubic", align_corners=False)
    grey = big.round_().clamp_(0, 255).to(torch.uint8).squeeze(1).numpy()
    return np.repeat(grey[..., None], 3, axis=-1), digits.target.astype(np.int64)


class DigitsDataset(ImageDataset):
    """The digits as float32 [3, S, S] tensors in [-1, 1] (held in memory, 5 MB at S=32)."""

    def __init__(self, transform: ImageTransform, limit: int = 0):
        self.images, _labels = load_digits_arrays(transform.size)
        if limit > 0:
            self.images = self.images[:limit]
        super().__init__(transform, len(self.images))

    def load(self, index: int) -> np.ndarray:
        return self.images[index]
