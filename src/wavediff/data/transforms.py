"""Image preprocessing shared by every dataset: RGB conversion, resize + center
crop, random horizontal flip, and the uint8 -> [-1, 1] float tensor mapping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

# Errors PIL raises for files that are not images or are damaged.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB; transparent pixels are composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def resize_center_crop(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize the shorter side to `size` (as torchvision's `Resize(size)`), then
    crop the central `size` x `size` square."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def uint8_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W] in [-1, 1] (as ToTensor + Normalize(0.5, 0.5))."""
    pixels = np.require(pixels, requirements=["C", "W"])  # copies read-only (mmap, LMDB) buffers
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def flip_for(seed: int, epoch: int, index: int) -> bool:
    """Whether image `index` is mirrored in epoch `epoch` of a run seeded `seed`: a fair coin that
    depends on these three numbers only, never on which process or DataLoader worker loads it,
    so a run resumed mid-epoch with any number of workers sees exactly the same images."""
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (epoch & _MASK64))
    h = _splitmix64(h ^ (index & _MASK64))
    return bool(h >> 63)


@dataclass(frozen=True)
class ImageTransform:
    """Picklable per-item transform: resize + center crop to `size`, optional horizontal
    flip: `flip` when the caller decides it (training: `flip_for(seed, epoch, index)`),
    else drawn from torch's RNG."""

    size: int
    hflip: bool
    resample: Image.Resampling = Image.Resampling.BILINEAR

    def __call__(self, img: Image.Image | np.ndarray, flip: bool | None = None) -> torch.Tensor:
        if isinstance(img, np.ndarray) and img.shape[:2] != (self.size, self.size):
            img = Image.fromarray(img)
        if isinstance(img, Image.Image):
            img = np.asarray(resize_center_crop(to_rgb(img), self.size, self.resample))
        x = uint8_to_tensor(img)
        if self.hflip and (bool(torch.rand(()) < 0.5) if flip is None else flip):
            x = x.flip(-1)
        return x
