"""Exceptions whose message is a complete one-line explanation with the fix.

The CLI prints `error: <message>` for these and exits non-zero, without a traceback.
"""

from __future__ import annotations

import re


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (for quoting inside ours), without a C++ source location prefix,
    cut at a word boundary with '...' when longer than `limit`."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # no terminal colour codes (torch.load's advice has them)
    line = text.splitlines()[0] if text else type(e).__name__
    line = re.sub(r"^(\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*)+", "", line)
    if len(line) <= limit:
        return line
    cut = line[: limit - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut) + "..."


class WaveDiffError(Exception):
    """Base class: bad input from the user, a file, or a checkpoint."""


class ConfigError(WaveDiffError):
    """An unknown option, preset or value."""


class CheckpointError(WaveDiffError):
    """A checkpoint that is missing, truncated, foreign or mismatched with its config."""


class DataError(WaveDiffError):
    """A dataset path or image that cannot be used."""


class OutputError(WaveDiffError):
    """An output file or folder that cannot be created or written (read-only, full disk, a file in the way)."""


class Interrupted(WaveDiffError):
    """Ctrl-C: the message says what was kept and how to continue. The CLI exits with status 130."""

    exit_code = 130
