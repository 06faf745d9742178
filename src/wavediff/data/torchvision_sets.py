"""CIFAR-10 (train split) and STL-10 (unlabeled split) in torchvision's on-disk layout.

We read the files ourselves instead of going through `torchvision.datasets`:
torchvision verifies the md5 of every file on construction, which rejects any
subset or re-packed copy (and the tiny fixtures our tests write), and its
STL10 loads the whole 2.7 GB `unlabeled_X.bin` into memory. torchvision is
still used (imported only then: it is slow to import) to download and
md5-check the official archive when the files are missing.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import WHERE_PATHS_GO, ImageDataset
from .transforms import ImageTransform


@dataclass(frozen=True)
class Archive:
    """An official dataset archive (the values torchvision's datasets use)."""

    name: str
    url: str
    md5: str
    folder: str  # what the archive extracts to

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


CIFAR10_ARCHIVE = Archive(
    "CIFAR-10",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    "cifar-10-batches-py",
)
STL10_ARCHIVE = Archive(
    "STL-10",
    "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "91f7769df0f17e558f3565bffb0c7dfb",
    "stl10_binary",
)
STL10_SIDE = 96
_STL10_BYTES = 3 * STL10_SIDE * STL10_SIDE


def fetch_archive(archive: Archive, root: Path) -> None:
    """Download, md5-check and extract `archive` into `root`."""
    from torchvision.datasets.utils import download_and_extract_archive

    from ..runtime import network_timeout

    print(f"downloading {archive.name} from {archive.url} into {root} (once)", flush=True)
    with network_timeout():
        download_and_extract_archive(archive.url, str(root), filename=archive.filename, md5=archive.md5)


def _holds_images(root: Path) -> bool:
    """Whether `root` or its subfolders (two levels) hold image files: a user's folder, not a download target."""
    from .folder import IMAGE_EXTENSIONS

    if not root.is_dir():
        return False
    for pattern in ("*", "*/*", "*/*/*"):
        if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.glob(pattern)):
            return True
    return False


def _download(archive: Archive, root: Path) -> None:
    if _holds_images(root):  # never download a dataset into someone's image folder
        raise DataError(
            f"'{root}' holds image files, not {archive.name}'s; to use those images read it as a folder (train: "
            f"--dataset folder; fid stats: drop --preset), or give {archive.name} its own directory (it is "
            f"downloaded there when absent)"
        )
    try:
        fetch_archive(archive, root)
    except Exception as e:  # network, disk or checksum failure: all need the same fix
        raise DataError(
            f"could not download {archive.name} into '{root}' ({type(e).__name__}: {e}); download "
            f"{archive.url} yourself and extract it into that directory"
        ) from None


def _root(path: str, name: str) -> Path:
    if not path:
        raise DataError(f"{name} needs a directory to read or download it into ({WHERE_PATHS_GO})")
    return Path(path).expanduser()


def read_cifar10_train(path: str) -> np.ndarray:
    """The 50,000 CIFAR-10 training images as uint8 [N, 32, 32, 3], downloading if absent."""
    root = _root(path, "cifar10")
    folder = root / CIFAR10_ARCHIVE.folder
    batches = [folder / f"data_batch_{i}" for i in range(1, 6)]
    if not all(b.is_file() for b in batches):
        _download(CIFAR10_ARCHIVE, root)
    chunks = []
    for batch in batches:
        try:
            with open(batch, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            chunks.append(np.asarray(entry.get("data", entry.get(b"data")), dtype=np.uint8).reshape(-1, 3, 32, 32))
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
            raise DataError(
                f"CIFAR-10 batch '{batch}' is unreadable ({e}); delete '{folder}' so it is downloaded again"
            ) from None
    return np.concatenate(chunks).transpose(0, 2, 3, 1)


class CIFAR10Dataset(ImageDataset):
    """CIFAR-10 training images (held in memory, 150 MB)."""

    def __init__(self, path: str, transform: ImageTransform, limit: int = 0):
        self.images = read_cifar10_train(path)
        if limit > 0:
            self.images = self.images[:limit]
        super().__init__(transform, len(self.images))

    def load(self, index: int) -> np.ndarray:
        return self.images[index]


class STL10UnlabeledDataset(ImageDataset):
    """The 100,000 unlabeled STL-10 images, memory-mapped lazily per worker."""

    def __init__(self, path: str, transform: ImageTransform, limit: int = 0):
        root = _root(path, "stl10")
        self.file = root / STL10_ARCHIVE.folder / "unlabeled_X.bin"
        if not self.file.is_file():
            _download(STL10_ARCHIVE, root)
        size = self.file.stat().st_size
        if size == 0 or size % _STL10_BYTES:
            raise DataError(
                f"'{self.file}' has {size} bytes, not a whole number of 96x96 RGB images; delete "
                f"'{self.file.parent}' so it is downloaded again"
            )
        self._pixels: np.ndarray | None = None
        super().__init__(transform, size // _STL10_BYTES, limit)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}

    def load(self, index: int) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.memmap(self.file, dtype=np.uint8, mode="r").reshape(-1, 3, STL10_SIDE, STL10_SIDE)
        # Stored channel-major and column-major: [C, W, H] per image.
        return np.asarray(self._pixels[index]).transpose(2, 1, 0)
