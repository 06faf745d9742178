"""LMDB-backed datasets: LSUN (torchvision layout), CelebA-HQ 256 (NVAE layout)
and CelebA-HQ 512/1024 (torch-toolbox layout).

An LMDB environment cannot be pickled, and py-lmdb refuses to open the same
files twice in one process. So datasets hold only the path: `__init__` opens the
database just long enough to list the keys, and `load` uses one read-only
handle per process (DataLoader worker), opened on first access and shared by
every dataset on those files. A forked worker keeps using the handle it
inherited, which py-lmdb supports for read-only, lock-free environments.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import DataError
from .base import ImageDataset, require_path
from .transforms import DECODE_ERRORS, ImageTransform

if TYPE_CHECKING:
    import lmdb

LSUN_CHURCH_DIR = "church_outdoor_train_lmdb"
LSUN_MAX_IMAGES = 120_000  # the DDGAN/WaveDiff training subset
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_OPEN: dict[Path, lmdb.Environment] = {}  # this process's handles, by resolved path


def _lmdb():
    """The lmdb module, imported only when an LMDB dataset is used (a GPU box may lack it)."""
    try:
        import lmdb
    except ImportError:
        raise DataError("reading LMDB datasets needs the lmdb package: pip install lmdb") from None
    return lmdb


def _open(path: Path) -> lmdb.Environment:
    return _lmdb().open(str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False)


def shared_env(path: Path) -> lmdb.Environment:
    """This process's handle on the database at `path`, opened on first use."""
    key = path.resolve()
    if key not in _OPEN:
        _OPEN[key] = _open(path)
    return _OPEN[key]


def _locate(root: Path, name: str, hint: str) -> Path:
    """`root/name` if present, else `root` itself; must be an LMDB file or environment directory."""
    db = root / name if (root / name).exists() else root
    if not (db.is_file() or (db / "data.mdb").is_file()):
        raise DataError(f"no LMDB database at '{db}'; point the data path to {hint}")
    return db


def _decode_encoded(value: bytes) -> Image.Image:
    """A value holding a whole image file (jpeg, png, webp, ...)."""
    img = Image.open(io.BytesIO(value))
    img.load()
    return img


def _decode_raw_square(value: bytes) -> np.ndarray:
    """NVAE layout: raw uint8 RGB bytes of a square image, side = sqrt(len / 3)."""
    side = math.isqrt(len(value) // 3)
    if 3 * side * side != len(value):
        raise ValueError(f"{len(value)} bytes is not a square RGB image")
    return np.frombuffer(value, dtype=np.uint8).reshape(side, side, 3)


def _decode_wrapped(value: bytes) -> Image.Image:
    """torch-toolbox layout: pyarrow-serialised (image file bytes, label). Modern
    pyarrow cannot deserialise it, so decode from the first JPEG/PNG signature;
    the decoders stop at the image's end marker and ignore the trailing label."""
    starts = [i for i in (value.find(_JPEG_MAGIC), value.find(_PNG_MAGIC)) if i >= 0]
    if not starts:
        raise ValueError("no JPEG or PNG signature in the value")
    return _decode_encoded(value[min(starts) :])


_DECODERS = {"encoded": _decode_encoded, "raw": _decode_raw_square, "wrapped": _decode_wrapped}


class LMDBImageDataset(ImageDataset):
    """Images stored as LMDB values.

    `value_format`: "encoded" (image files), "raw" (NVAE) or "wrapped" (torch-toolbox).
    `numeric_keys`: keep only decimal keys (b"0", b"1", ...; drops metadata such as
    b"__len__") in numeric order; otherwise all keys in LMDB's byte order.
    """

    def __init__(self, path: Path, transform: ImageTransform, *, value_format: str, numeric_keys: bool, limit: int = 0):
        self.path = path
        self.value_format = value_format
        self.keys = self._read_keys(numeric_keys, limit)
        super().__init__(transform, len(self.keys))

    def _read_keys(self, numeric: bool, limit: int) -> list[bytes]:
        cached = _OPEN.get(self.path.resolve())
        try:
            env = cached if cached is not None else _open(self.path)
            try:
                with env.begin() as txn:
                    keys = list(txn.cursor().iternext(keys=True, values=False))
            finally:
                if env is not cached:  # close a temporary handle; keep this process's shared one
                    env.close()
        except _lmdb().Error as e:
            raise DataError(f"'{self.path}' is not a readable LMDB database ({e}); check --data") from None
        if numeric:
            all_keys, keys = len(keys), sorted((k for k in keys if k.isdigit()), key=int)
            if all_keys and not keys:  # e.g. an LSUN database (hex keys) given to a CelebA-HQ preset
                raise DataError(
                    f"LMDB database '{self.path}' holds {all_keys} entries but none under the numeric keys "
                    f"(b'0', b'1', ...) that this dataset's layout uses; is it another dataset's (LSUN's keys are "
                    f"hashes)? check --data and --dataset"
                )
        if not keys:
            raise DataError(f"LMDB database '{self.path}' holds no images; check --data")
        return keys[:limit] if limit > 0 else keys

    def load(self, index: int) -> Image.Image | np.ndarray:
        key = self.keys[index]
        with shared_env(self.path).begin() as txn:
            value = txn.get(key)
        try:
            if value is None:
                raise ValueError("key is missing")
            return _DECODERS[self.value_format](value)
        except DECODE_ERRORS as e:
            raise DataError(
                f"LMDB '{self.path}' entry {key!r} is not a readable image ({e}); rebuild the database"
            ) from None


def lsun_church(path: str, transform: ImageTransform, limit: int = 0) -> LMDBImageDataset:
    """LSUN church_outdoor train: the first 120,000 images in key order, as DDGAN/WaveDiff train on."""
    root = require_path(path, "lsun", f"the LSUN directory holding '{LSUN_CHURCH_DIR}'")
    db = _locate(root, LSUN_CHURCH_DIR, f"the directory that holds '{LSUN_CHURCH_DIR}' (LSUN's download, unzipped)")
    cap = min(limit, LSUN_MAX_IMAGES) if limit > 0 else LSUN_MAX_IMAGES
    return LMDBImageDataset(db, transform, value_format="encoded", numeric_keys=False, limit=cap)


def celeba_nvae(path: str, transform: ImageTransform, limit: int = 0) -> LMDBImageDataset:
    """CelebA-HQ 256 in NVAE's layout: `train.lmdb`, keys b"0".., raw 256x256x3 uint8 values."""
    root = require_path(path, "celeba_256", "the directory holding NVAE's 'train.lmdb'")
    db = _locate(root, "train.lmdb", "the directory that holds 'train.lmdb' (NVAE's CelebA-HQ 256 preparation)")
    return LMDBImageDataset(db, transform, value_format="raw", numeric_keys=True, limit=limit)


def celeba_toolbox(path: str, name: str, transform: ImageTransform, limit: int = 0) -> LMDBImageDataset:
    """CelebA-HQ 512/1024 as written by torch-toolbox: a single LMDB file `<name>.lmdb`."""
    root = require_path(path, name, f"the file '{name}.lmdb' or the directory holding it")
    db = _locate(root, f"{name}.lmdb", f"the torch-toolbox LMDB file '{name}.lmdb' or the directory holding it")
    return LMDBImageDataset(db, transform, value_format="wrapped", numeric_keys=True, limit=limit)
