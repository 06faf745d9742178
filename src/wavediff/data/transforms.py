"""Image preprocessing shared by every dataset: RGB conversion, resize + center
crop, random horizontal flip, and the uint8 -> [-1, 1] float tensor mapping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

# Errors PIL raises for files that are not images or are damaged.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


# PIL's own conversion of these single-channel modes to "L"/"RGB" clips every value above 255
# instead of scaling, so a 16-bit PNG comes out almost white and a [0, 1] float TIFF black.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _scale_to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Pixels of a 16-bit, 32-bit int or float single-channel image as uint8 in [0, 255]."""
    if mode.startswith("I;16"):
        # round(v / 257) maps 65535 -> 255 and 257 * k -> k; in integers it is exact (257 is odd: no ties)
        return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if mode == "I":
        # 32-bit ints mostly hold 16-bit PNG values (older Pillow opened 16-bit grey PNGs as "I");
        # anything larger is taken as the full int32 range rather than each image's own maximum,
        # so that the images of one dataset keep their relative brightness.
        top = 65535 if pixels.size == 0 or pixels.max() <= 65535 else 2**31 - 1
        scaled = np.clip(pixels.astype(np.float64), 0, top) * (255 / top)
    else:  # "F": [0, 1] (most float TIFFs) when nothing exceeds 1, else already on the 0..255 scale
        pixels = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        peak = pixels.max() if pixels.size else 0.0
        scaled = pixels * 255 if peak <= 1.0 else pixels
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def _wide_to_8bit(img: Image.Image) -> Image.Image:
    """A 16/32-bit or float greyscale image as "L", or "LA" when it names a transparent grey value
    (a 16-bit PNG's tRNS chunk), which must be matched against the unscaled pixels."""
    pixels = np.asarray(img)
    grey = Image.fromarray(_scale_to_uint8(pixels, img.mode), "L")
    key = img.info.get("transparency")
    if not isinstance(key, (int, float)):
        return grey
    alpha = np.where(pixels == key, 0, 255).astype(np.uint8)
    return Image.merge("LA", (grey, Image.fromarray(alpha, "L")))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB; transparent pixels are composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_MODES:
        img = _wide_to_8bit(img)
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
