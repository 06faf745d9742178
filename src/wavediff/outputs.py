"""Output paths, checked before any work: one line when a file or folder cannot be written there.

`check_writable` runs when a command starts, so a read-only or virtual file system, a
file standing where a folder should be, or a full disk fails in a second, not after
hours of sampling. Missing parent folders are fine (they are created on writing).
`os_error_reason` turns the OSError of a failed write into words and a fix.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import OutputError

_REASONS = {
    errno.ENOSPC: ("no space left on the device", "free some space or write elsewhere"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or write elsewhere"),
    errno.EROFS: ("the file system is read-only", "choose a writable location"),
    errno.EACCES: ("permission denied", "choose a location you can write to"),
    errno.EPERM: ("the operation is not permitted", "choose a location you can write to"),
    errno.ENOENT: ("a folder cannot be created there", "choose a location on a normal, writable disk"),
    errno.ENOTDIR: ("a parent in the path is a file, not a folder", "choose another path"),
    errno.EISDIR: ("a folder of that name is in the way", "choose another file name"),
    errno.EFBIG: ("the file is too large for the file system", "write to another disk"),
    errno.EIO: ("an input/output error of the device", "check the disk, or write elsewhere"),
}


def os_error_reason(e: OSError) -> tuple[str, str]:
    """(what happened, the fix) for an OSError raised while writing."""
    if e.errno in _REASONS:
        return _REASONS[e.errno]
    return (e.strerror or type(e).__name__).lower(), "choose another location"


def check_writable(path: str | os.PathLike, *, directory: bool = False, flag: str = "--out") -> Path:
    """`path` (a file to write, or with `directory=True` a folder to write into), or a one-line OutputError.

    Probes the nearest existing folder on the way with a temporary file (removed at once);
    missing folders below it are created later, when the output is written.
    """
    target = Path(path).expanduser()
    if not directory and target.is_dir():
        raise OutputError(f"{flag} {path} is a folder; pass a file name")
    if directory and target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    folder = target if directory else target.parent
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot write {flag} {path}: {probe} is a file, not a folder; choose another {flag}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".wavediff-write-test.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        what, fix = os_error_reason(e)
        raise OutputError(f"cannot write {flag} {path} ({probe}: {what}); {fix}") from None
    return target
