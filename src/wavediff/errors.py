"""Exceptions whose message is a complete one-line explanation with the fix.

The CLI prints `error: <message>` for these and exits non-zero, without a traceback.
"""


class WaveDiffError(Exception):
    """Base class: bad input from the user, a file, or a checkpoint."""


class ConfigError(WaveDiffError):
    """An unknown option, preset or value."""


class CheckpointError(WaveDiffError):
    """A checkpoint that is missing, truncated, foreign or mismatched with its config."""


class DataError(WaveDiffError):
    """A dataset path or image that cannot be used."""
