"""Where the images of a metric come from: a folder, an .npz, a checkpoint, or a preset's dataset.

An `ImageSource` knows how many images it will yield before producing any, so
count checks (e.g. the paper's 50,000 samples) fail before hours of work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, DataError
from . import images as im

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass
class ImageSource:
    """`count` uint8 images; `batches(b)` yields them as [<=b, H, W, 3] arrays."""

    description: str
    kind: str  # "folder" | "npz" | "checkpoint" | dataset name
    count: int
    batches: Callable[[int], Iterator[np.ndarray]]


def is_checkpoint(path: str | Path) -> bool:
    """A generator file, or a training run's directory (read as its newest generator, as `sample` does)."""
    from ..checkpoints.io import run_generator

    if str(path).lower().endswith(CHECKPOINT_SUFFIXES):
        return True
    if not Path(path).is_dir():
        return False
    try:
        run_generator(path)  # the lookup `sample` uses for a run directory
    except CheckpointError:
        return False
    return True


def _cap(available: int, limit: int | None) -> int:
    return available if limit is None else min(available, limit)


def folder_source(path: str | Path, limit: int | None = None) -> ImageSource:
    """The first `limit` (default all) images of a folder, sorted by path; all must share one size."""
    from ..data import iter_image_folder_uint8, list_images

    count = _cap(len(list_images(path)), limit)
    return ImageSource(
        f"folder {path}", "folder", count, lambda b: iter_image_folder_uint8(path, batch_size=b, max_images=count)
    )


def npz_source(path: str | Path, limit: int | None = None) -> ImageSource:
    """The first `limit` (default all) images of an .npz holding uint8 `images` [N, H, W, 3]."""
    images = im.load_npz_images(path)
    images = images[: _cap(len(images), limit)]
    return ImageSource(
        f"npz {path}", "npz", len(images), lambda b: (images[i : i + b] for i in range(0, len(images), b))
    )


def images_source(path: str | Path, limit: int | None = None) -> ImageSource:
    """A folder or an .npz of images (at most `limit`)."""
    if not Path(path).exists():
        raise DataError(f"{path} does not exist (expected a folder of images or an .npz with 'images')")
    if str(path).lower().endswith(".npz"):
        return npz_source(path, limit)
    return folder_source(path, limit)


def checkpoint_source(
    path: str | Path,
    seeds: Sequence[int],
    device: str,
    precision: str,
    preset: str | None = None,
    official_args: str | None = None,
    fast=None,
) -> ImageSource:
    """Images generated from a checkpoint, one per seed, by `wavediff.sampling.generate_uint8`
    (`preset` or `official_args` describe an authors' checkpoint; `fast`, a FastPath, overrides `precision`)."""
    if not Path(path).exists():
        raise DataError(f"checkpoint {path} does not exist")
    if Path(path).is_dir():  # a training run's directory: its final (else latest) generator, as `sample` reads it
        from ..checkpoints.io import run_generator

        path = run_generator(path)

    def batches(b: int) -> Iterator[np.ndarray]:
        from ..sampling import generate_uint8

        extra = {k: v for k, v in (("preset", preset), ("official_args", official_args)) if v}
        return generate_uint8(str(path), list(seeds), b, device, precision, fast=fast, **extra)

    return ImageSource(f"checkpoint {path} (seeds {seeds[0]}..{seeds[-1]})", "checkpoint", len(seeds), batches)


def dataset_source(preset: str, path: str | Path, limit: int | None = None) -> ImageSource:
    """A preset's dataset read through its own pipeline (no flips), converted to uint8 like samples are."""
    import torch

    from ..data import build_dataset
    from ..presets import get_preset
    from ..runtime import usable_cpus
    from ..sampling import to_uint8

    cfg = get_preset(preset)
    cfg.data.path = str(path)
    cfg.data.hflip = False
    dataset = build_dataset(cfg.data)
    count = _cap(len(dataset), limit)
    if count == 0:
        raise DataError(f"dataset {cfg.data.dataset} at {path} holds no images")
    subset = torch.utils.data.Subset(dataset, range(count))

    def batches(b: int) -> Iterator[np.ndarray]:
        workers = min(cfg.data.num_workers, usable_cpus())
        loader = torch.utils.data.DataLoader(subset, batch_size=b, shuffle=False, num_workers=workers)
        for item in loader:
            yield to_uint8(item[0] if isinstance(item, (tuple, list)) else item)

    return ImageSource(
        f"dataset {cfg.data.dataset} at {path} via preset {preset} ({cfg.image_size}px)",
        cfg.data.dataset,
        count,
        batches,
    )
