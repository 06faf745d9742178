"""Reference FID statistics on disk: our .npz, pytorch-fid's .npz, and the authors' pickled .npy.

Ours: `mu`, `sigma`, `n` and `meta` (a JSON string describing how they were made).
The authors' files (`np.save` of a dict) are pickles; they are read with an
unpickler that only builds numpy arrays and dicts, and refused if they need more.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

NPY_MAGIC = b"\x93NUMPY"


@dataclass
class FIDStats:
    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None  # number of images, when known
    meta: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return int(self.mu.shape[0])


def save_stats(path: str | Path, stats: FIDStats) -> None:
    """Write `stats` as an .npz at exactly `path` (loadable with allow_pickle=False), atomically."""
    from ..checkpoints.io import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(
                f,
                mu=stats.mu,
                sigma=stats.sigma,
                n=np.int64(stats.n or 0),
                meta=np.array(json.dumps(stats.meta, sort_keys=True)),
            )

    atomic_write(path, write)


def load_stats(path: str | Path) -> FIDStats:
    """Read .npz statistics (ours or pytorch-fid's) or the authors' .npy dict of `mu` and `sigma`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"reference statistics {path} not found; make them with `wavediff fid stats`")
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head == NPY_MAGIC:
        d = _load_npy_dict(path)
        return _checked(path, d["mu"], d["sigma"], None, {})
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is neither an .npz nor an .npy file of FID statistics")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "mu" not in f.files or "sigma" not in f.files:
                raise DataError(f"{path} has no 'mu' and 'sigma' arrays (keys: {', '.join(f.files)})")
            mu, sigma = f["mu"], f["sigma"]
            n = int(f["n"]) if "n" in f.files and int(f["n"]) > 0 else None
            meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
    except ValueError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    return _checked(path, mu, sigma, n, meta)


def _checked(path: Path, mu, sigma, n, meta) -> FIDStats:
    try:
        mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: mu and sigma must be arrays of numbers; make the statistics with `wavediff fid stats`"
        ) from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise DataError(f"{path}: mu must be [D] and sigma [D,D], got {list(mu.shape)} and {list(sigma.shape)}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise DataError(f"{path}: mu or sigma holds NaN or inf; make the statistics again with `wavediff fid stats`")
    return FIDStats(mu, sigma, n, meta)


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays and dicts only."""

    _reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "dict"): dict,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _NeedsTrust(f"{module}.{name}") from None


class _NeedsTrust(Exception):
    pass


def _load_npy_dict(path: Path) -> dict:
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        try:
            _, _, dtype = read_header(f)
        except ValueError as e:
            raise DataError(f"cannot read {path}: {e}") from None
        if not dtype.hasobject:
            raise DataError(f"{path} holds a plain {dtype} array, not a dict with 'mu' and 'sigma'")
        try:
            obj = _ArrayUnpickler(f).load()
        except _NeedsTrust as e:
            out = path.with_suffix(".npz")
            raise DataError(
                f"{path} needs trust: its pickle asks for {e}, which is not loaded from files of unknown origin; "
                f'if you trust it, convert it once with: python -c "import numpy as np; '
                f"d = np.load('{path}', allow_pickle=True).item(); "
                f"np.savez('{out}', mu=d['mu'], sigma=d['sigma'])\" and pass {out}"
            ) from None
        except Exception as e:
            raise DataError(f"cannot read {path} as pickled FID statistics ({type(e).__name__}: {e})") from None
    d = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(d, dict) or "mu" not in d or "sigma" not in d:
        raise DataError(f"{path} does not hold a dict with 'mu' and 'sigma'")
    return d
