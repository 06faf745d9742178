"""Folders of image files: a training dataset (resize + center crop) and a raw
uint8 reader for evaluation (no resizing)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError
from .base import ImageDataset, require_path
from .transforms import DECODE_ERRORS, ImageTransform, to_rgb

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def _image_root(path: str | Path) -> Path:
    """`path` as an existing folder. The messages name no command-line flag: `wavediff train --data`,
    `wavediff fid stats DATA` and `wavediff pr --real` all end up here."""
    if not str(path):  # Path("") is the current folder, which nobody means
        raise DataError("no image folder given (an empty path); point it at a folder of images (png, jpg, webp, ...)")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"'{root}' does not exist; point it at a folder of images (png, jpg, webp, ...)")
    if not root.is_dir():
        raise DataError(f"'{root}' is not a folder; point it at a folder of images (png, jpg, webp, ...)")
    return root


def _is_hidden(name: str) -> bool:
    # ".ipynb_checkpoints", ".git", macOS "._x.png" resource forks: copies or non-images, never data.
    return name.startswith(".")


def _subfolders_and_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """The visible subfolders and image files directly in `folder`; both follow symlinks."""
    folders, images = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            if entry.is_dir():  # follows symlinks: a linked-in folder of images is part of the data
                folders.append(Path(entry.path))
            elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                images.append(Path(entry.path))
    return sorted(folders), images


def _walk_images(root: Path) -> list[Path]:
    """Image files under `root`, following folder symlinks. Each real folder is read once, so a
    symlink cycle (a link to a parent) ends, and two links to one folder give no duplicate images;
    folders are visited in sorted order, so which path of a linked folder is kept is deterministic."""
    images: list[Path] = []
    seen: set[Path] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            folders, found = _subfolders_and_images(folder)
        except OSError as e:
            if folder == root:
                raise DataError(f"cannot read folder '{root}' ({e.strerror or e}); check its permissions") from None
            # an unreadable subfolder costs its own images, not the whole dataset
            log.warning("skipped unreadable folder '%s' (%s)", folder, e.strerror or e)
            continue
        images.extend(found)
        pending.extend(reversed(folders))  # popped from the end: depth-first in sorted order
    return images


def list_images(path: str | Path) -> list[Path]:
    """Image files under `path`, recursively (following folder symlinks, skipping hidden files and
    folders), sorted by relative path."""
    root = _image_root(path)
    files = sorted(_walk_images(root), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise DataError(
            f"no image files in '{root}' (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, recursively, "
            f"skipping hidden files and folders); point it at a folder of images"
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
        if not path:  # an unset data.path: base's message names the config key to set
            require_path(path, "folder", "a folder of images")
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
                    f"use a folder of images at least {transform.size}px on the shorter side, "
                    f"or choose a preset with a smaller image size"
                )
            self.files.append(file)
            if 0 < limit <= len(self.files):
                break
        if not self.files:
            raise DataError(
                f"none of the {self.skipped} image files in '{self.root}' could be read "
                f"(first: {first_error}); replace or remove the unreadable files, or use another folder"
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
        raise DataError(
            f"no image in '{self.root}' could be decoded; replace or remove the damaged files, or use another folder"
        )


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
    shape = None
    for start in range(0, len(files), batch_size):
        batch = []
        for file in files[start : start + batch_size]:
            try:
                pixels = np.asarray(_read_rgb(file))  # EXIF orientation applied, as training reads it
            except DECODE_ERRORS as e:
                raise DataError(f"'{file}' is not a readable image ({e}); remove it from '{path}'") from None
            shape = shape or pixels.shape
            if pixels.shape != shape:  # an EXIF rotation can turn a same-sized header into another size
                raise DataError(
                    f"'{file}' is {pixels.shape[1]}x{pixels.shape[0]} after its EXIF orientation, the other images "
                    f"in '{path}' {shape[1]}x{shape[0]}; pass a folder whose images all have the same size"
                )
            batch.append(pixels)
        yield np.stack(batch)


def load_image_folder_uint8(path: str | Path, max_images: int = 0) -> np.ndarray:
    """All images of a folder as one uint8 [N, H, W, 3] array (see `iter_image_folder_uint8`)."""
    return np.concatenate(list(iter_image_folder_uint8(path, max_images=max_images)))
