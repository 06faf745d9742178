"""Training-state checkpoints: file layout, RNG states, resume checks, keep-last-K.

RUN_DIR/checkpoints/ holds `state_XXXXXXX.pt` (everything needed to continue
bit-exactly, loadable with `torch.load(weights_only=True)`) and
`generator_XXXXXXX.safetensors` (the EMA generator in our format); the last
`keep_last` of each are kept, `generator_final.safetensors` always.
"""

from __future__ import annotations

import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ExperimentConfig
from ..errors import CheckpointError, ConfigError, first_line

STATE_FORMAT = "wavediff-train-state"
STATE_VERSION = 1
# Fields that may change when a run is resumed (length, cadence, data location, speed knobs, and the learning rates
# and precision a run that diverged is resumed with).
RESUMABLE_CHANGES = frozenset(
    {
        "train.lr_g",
        "train.lr_d",
        "train.precision",
        "train.steps",
        "train.num_epoch",
        "train.max_minutes",
        "train.checkpoint_every",
        "train.keep_last",
        "train.log_every",
        "train.sample_every",
        "train.metrics_every",
        "train.metrics_n",
        "train.fid_ref",
        "train.inception_weights",
        "train.compile",
        "train.cuda_graphs",
        "data.path",
        "data.num_workers",
        "data.persistent_workers",
    }
)
_STATE_RE = re.compile(r"state_(\d+)\.pt$")
_GEN_RE = re.compile(r"generator_(\d+)\.safetensors$")


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def state_path(run_dir: Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"state_{step:07d}.pt"


def generator_path(run_dir: Path, step: int | None) -> Path:
    """The EMA generator export at `step` (None: the final one)."""
    name = "generator_final" if step is None else f"generator_{step:07d}"
    return checkpoint_dir(run_dir) / f"{name}.safetensors"


def _numbered(folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = ((pattern.match(p.name), p) for p in folder.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def numbered_states(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's training states, oldest first."""
    return _numbered(checkpoint_dir(run_dir), _STATE_RE)


def latest_state(run_dir: Path) -> Path | None:
    states = numbered_states(run_dir)
    return states[-1][1] if states else None


@dataclass
class FoundState:
    """The newest training state of a run that loads, and the newer ones that do not (path, reason)."""

    path: Path | None
    state: dict | None
    unreadable: list[tuple[Path, str]]


def newest_readable_state(run_dir: Path, mmap: bool = False) -> FoundState:
    """Walk the run's states from the newest down to the first one that loads.

    A state that died mid-write, on a full disk or a bad sector is skipped, never deleted or
    overwritten here; the caller says so and moves it aside (`set_aside`).
    """
    unreadable: list[tuple[Path, str]] = []
    for _, path in reversed(_numbered(checkpoint_dir(run_dir), _STATE_RE)):
        try:
            return FoundState(path, load_state(path, mmap=mmap), unreadable)
        except CheckpointError as e:
            unreadable.append((path, str(e)))
    if unreadable:
        reason = unreadable[0][1]
        raise CheckpointError(
            f"no training state in {checkpoint_dir(run_dir)} can be read ({len(unreadable)} tried; newest: {reason}); "
            f"restore a good copy of one, or move them all aside to start the run over"
        )
    return FoundState(None, None, [])


def set_aside(path: Path) -> Path:
    """Rename an unreadable state to `<name>.corrupt` (kept for inspection; never matched as a state again)."""
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt{n}")
    path.rename(target)
    return target


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` states and numbered generator exports."""
    for pattern in (_STATE_RE, _GEN_RE):
        for _, path in _numbered(checkpoint_dir(run_dir), pattern)[: -max(keep, 1)]:
            path.unlink(missing_ok=True)


# ------------------------------------------------------------------ RNG states
def capture_rng(train_rng: torch.Generator) -> dict:
    """Every RNG this process draws from, as tensors and plain lists."""
    np_state = np.random.get_state()
    state = {
        "train": train_rng.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": [int(v) for v in random.getstate()[1]],
    }
    if train_rng.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(train_rng.device)
    return state


def restore_rng(state: dict, train_rng: torch.Generator) -> None:
    train_rng.set_state(state["train"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and train_rng.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], train_rng.device)


# ------------------------------------------------------------------ load / compare
def load_state(path: Path, mmap: bool = False) -> dict:
    """A training state written by `wavediff train`, with one-line errors for anything else.

    `mmap=True` maps the tensors instead of reading them (cheap, to look at the config).
    """
    if not path.is_file():
        raise CheckpointError(
            f"training state {path} not found; pass --resume auto or the path of a "
            f"RUN_DIR/checkpoints/state_XXXXXXX.pt file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means an unusable file
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        if path.stat().st_size == 0:
            reason = "the file is empty"
        raise CheckpointError(
            f"cannot read training state {path} ({reason}); it may be "
            f"truncated or not a wavediff training state: pass another one"
        ) from None
    if not mmap:
        bad = _damaged_record(path)
        if bad:
            raise CheckpointError(
                f"training state {path} is damaged ({bad}); it may have been hit by a bad sector or an "
                f"interrupted copy: pass another one"
            )
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a wavediff training state; pass a RUN_DIR/checkpoints/state_*.pt file")
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(
            f"{path} has training-state version {state.get('version')}, this wavediff reads "
            f"version {STATE_VERSION}; resume it with the wavediff version that wrote it"
        )
    return state


def _damaged_record(path: Path) -> str | None:
    """The first record of a torch.save zip whose CRC-32 does not match its bytes (torch.load does
    not check them), or None. Records written without a CRC (crc32 options off) are not checked."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.CRC == 0 and info.file_size > 0:
                    continue
                with zf.open(info) as f:
                    while f.read(1 << 24):
                        pass
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"{type(e).__name__}: {first_line(e, 100)}"
    return None


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _with_defaults(saved: dict) -> dict:
    try:
        return ExperimentConfig.from_dict(saved).to_dict()
    except (ConfigError, TypeError, ValueError):
        return saved  # unreadable as a config: compared as written, so its odd fields are listed


def config_differences(saved: dict, current: dict) -> list[str]:
    """`field: saved -> current` for every field that differs and may not change on resume.

    A field the saved config lacks (written before the field existed) counts as its default.
    """
    a, b = _flatten(_with_defaults(saved)), _flatten(current)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)
    ]


def check_same_config(saved: dict, current: dict, source: str) -> None:
    diffs = config_differences(saved, current)
    if diffs:
        raise CheckpointError(
            f"{source} was written with a different config ({'; '.join(diffs)}); resume with "
            f"the same preset and --set values, or start a new run with another --out"
        )
