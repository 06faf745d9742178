"""Folders of image files: a training dataset (resize + center crop) and a raw
uint8 reader for evaluation (no resizing)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError
from .base import ImageDataset, require_path
from .transforms import DECODE_ERRORS, ImageTransform, to_rgb

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def list_images(path: str | Path) -> list[Path]:
    """Image files under `path`, recursively, sorted by relative path."""
    root = require_path(str(path), "folder", "a folder of images")
    if not root.is_dir():
        raise DataError(f"'{root}' is not a folder; pass --data a folder of images (png, jpg, webp, ...)")
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise DataError(
            f"no image files in '{root}' (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, "
            f"recursively); pass --data a folder of images"
        )
    return files


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; reads no pixel data."""
    with Image.open(path) as img:
        return img.size


def _read_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))


class ImageFolderDataset(ImageDataset):
    """Every image under a folder, resized (shorter side, bicubic) and center-cropped.

    Files whose header cannot be read are skipped (`self.skipped` counts them,
    one warning is logged). A file whose pixels later fail to decode is replaced
    by the next readable file, with a warning, rather than stopping training.
    """

    def __init__(self, path: str, transform: ImageTransform, limit: int = 0):
        self.root = Path(path).expanduser()
        self.files: list[Path] = []
        self.skipped = 0
        first_error = ""
        for file in list_images(path):
            try:
                w, h = _header_size(file)
            except DECODE_ERRORS as e:
                self.skipped += 1
                first_error = first_error or f"{file.name}: {e}"
                continue
            if min(w, h) < transform.size:
                raise DataError(
                    f"image '{file}' is {w}x{h}, smaller than the {transform.size}px training size; "
                    f"pass --data a folder of images at least {transform.size}px on the shorter side, "
                    f"or choose a preset with a smaller image size"
                )
            self.files.append(file)
            if 0 < limit <= len(self.files):
                break
        if not self.files:
            raise DataError(
                f"none of the {self.skipped} image files in '{self.root}' could be read "
                f"(first: {first_error}); pass --data a folder of valid images"
            )
        if self.skipped:
            log.warning("skipped %d unreadable image file(s) in '%s' (first: %s)", self.skipped, self.root, first_error)
        self._warned: set[Path] = set()
        super().__init__(transform, len(self.files))

    def load(self, index: int) -> Image.Image:
        for offset in range(len(self.files)):
            file = self.files[(index + offset) % len(self.files)]
            try:
                return _read_rgb(file)
            except DECODE_ERRORS as e:
                if file not in self._warned:
                    self._warned.add(file)
                    log.warning("cannot decode '%s' (%s); using the next image instead", file, e)
        raise DataError(f"no image in '{self.root}' could be decoded; pass --data a folder of valid images")


def iter_image_folder_uint8(path: str | Path, batch_size: int = 500, max_images: int = 0) -> Iterator[np.ndarray]:
    """Batches of uint8 [B, H, W, 3] from a folder of same-sized images, unresized
    (grey/RGBA/palette converted to RGB). Sizes are checked for all files first."""
    files = list_images(path)
    if max_images > 0:
        files = files[:max_images]
    sizes: dict[tuple[int, int], Path] = {}
    for file in files:
        try:
            sizes.setdefault(_header_size(file), file)
        except DECODE_ERRORS as e:
            raise DataError(f"'{file}' is not a readable image ({e}); remove it from '{path}'") from None
        if len(sizes) > 1:
            (a, fa), (b, fb) = sizes.items()
            raise DataError(
                f"images in '{path}' differ in size: '{fa}' is {a[0]}x{a[1]}, '{fb}' is {b[0]}x{b[1]}; "
                f"pass a folder whose images all have the same size"
            )
    for start in range(0, len(files), batch_size):
        batch = []
        for file in files[start : start + batch_size]:
            try:
                with Image.open(file) as img:
                    batch.append(np.asarray(to_rgb(img)))
            except DECODE_ERRORS as e:
                raise DataError(f"'{file}' is not a readable image ({e}); remove it from '{path}'") from None
        yield np.stack(batch)


def load_image_folder_uint8(path: str | Path, max_images: int = 0) -> np.ndarray:
    """All images of a folder as one uint8 [N, H, W, 3] array (see `iter_image_folder_uint8`)."""
    return np.concatenate(list(iter_image_folder_uint8(path, max_images=max_images)))
