"""`build_dataset`: the dataset named by a `DataConfig`."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from ..config import DataConfig
from ..errors import ConfigError
from .base import ImageDataset
from .digits import DigitsDataset
from .folder import ImageFolderDataset
from .lmdb_datasets import celeba_nvae, celeba_toolbox, lsun_church
from .torchvision_sets import CIFAR10Dataset, STL10UnlabeledDataset
from .transforms import ImageTransform

# The paper's datasets use torchvision's default (bilinear) resize, as the
# authors' pipeline does; user folders get bicubic.
_Builder = Callable[[DataConfig, ImageTransform], ImageDataset]
_BUILDERS: dict[str, _Builder] = {
    "cifar10": lambda c, t: CIFAR10Dataset(c.path, t, c.max_images),
    "stl10": lambda c, t: STL10UnlabeledDataset(c.path, t, c.max_images),
    "lsun": lambda c, t: lsun_church(c.path, t, c.max_images),
    "celeba_256": lambda c, t: celeba_nvae(c.path, t, c.max_images),
    "celeba_512": lambda c, t: celeba_toolbox(c.path, "celeba_512", t, c.max_images),
    "celeba_1024": lambda c, t: celeba_toolbox(c.path, "celeba_1024", t, c.max_images),
    "folder": lambda c, t: ImageFolderDataset(c.path, t, c.max_images),
    "digits": lambda c, t: DigitsDataset(t, c.max_images),
}
DATASET_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_dataset(cfg: DataConfig) -> ImageDataset:
    """Items are float32 [3, S, S] in [-1, 1], S = cfg.image_size, randomly
    mirrored when cfg.hflip; cfg.max_images > 0 keeps the first N images."""
    if cfg.dataset not in _BUILDERS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose one of: {', '.join(DATASET_NAMES)}")
    if cfg.dataset == "digits" and cfg.path:  # bundled: a path given for it is a mistake, not something to ignore
        raise ConfigError(
            f"the digits dataset is bundled with scikit-learn and reads no path, but got '{cfg.path}'; drop it, "
            f"or read that folder as images (--dataset folder, data.dataset=folder)"
        )
    resample = Image.Resampling.BICUBIC if cfg.dataset == "folder" else Image.Resampling.BILINEAR
    transform = ImageTransform(size=cfg.image_size, hflip=cfg.hflip, resample=resample)
    return _BUILDERS[cfg.dataset](cfg, transform)
