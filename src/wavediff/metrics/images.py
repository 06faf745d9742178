"""uint8 images for the metrics: .npz arrays and the paper's JPEG round trip.

Every image the metrics see is a uint8 numpy array [H, W, 3]; batches are [B, H, W, 3].
Folders are read by `wavediff.data.iter_image_folder_uint8`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

PAPER_JPEG_QUALITY = 75  # PIL's default, which torchvision.utils.save_image(..., "x.jpg") uses


def load_npz_images(path: str | Path) -> np.ndarray:
    """The uint8 [N, H, W, 3] array stored under key `images` of an .npz file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f.files:
                raise DataError(
                    f"{path} has no array 'images' (keys: {', '.join(f.files) or 'none'}); "
                    f"store uint8 images [N,H,W,3] under 'images'"
                )
            images = f["images"]
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as an .npz of images: {e}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{path}: 'images' must be uint8 [N,H,W,3], got {images.dtype} {list(images.shape)}")
    if len(images) == 0:
        raise DataError(f"{path}: 'images' holds no images")
    return images


def jpeg_roundtrip(batch: np.ndarray, quality: int = PAPER_JPEG_QUALITY) -> np.ndarray:
    """Encode each image as JPEG (PIL, `quality`, default 4:2:0 subsampling) and decode it, in memory."""
    out = np.empty_like(batch)
    for i, img in enumerate(batch):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out
