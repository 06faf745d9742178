"""Our checkpoint format and safe file writing.

A generator checkpoint is one `.safetensors` file: the weights, plus metadata
holding the resolved `ExperimentConfig` as JSON, so the file alone rebuilds the
model (`load_generator`). safetensors cannot execute code when read.
Every write goes to a temporary file in the same folder, is fsynced, then
renamed over the target: a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..config import ExperimentConfig
from ..errors import CheckpointError, ConfigError, OutputError, WaveDiffError, first_line
from ..outputs import os_error_reason

FORMAT = "wavediff-generator"
FORMAT_VERSION = "1"


def _new_file_mode() -> int:
    """The mode `open()` would give a new file under the current umask (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `folder` when its process was killed mid-write."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()] if Path(folder).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, fsync: bool = True) -> Path:
    """Call `write(tmp_path)`, fsync, then rename onto `path` (same folder, so the rename is atomic).

    A failed write (full disk, read-only file system, ...) removes the temporary file, leaves
    any previous `path` untouched and raises a one-line OutputError saying so.
    `fsync=False` keeps the rename (never a half-written file) without waiting for the disk.
    """
    path = Path(path)
    existed = path.exists()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        # after the write: mkstemp makes the file 0600, and a writer may replace it with a new file (safetensors does)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if existed else _new_file_mode())
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_folder(path.parent)  # the rename itself survives a power cut only once its folder is on disk
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:  # the file system refused (PIL's encoder errors have none)
            what, fix = os_error_reason(e)
            kept = f"the previous {path.name} is untouched" if existed else "nothing was written"
            raise OutputError(f"cannot write {path}: {what}; {kept}; {fix}") from None
        raise
    return path


def _fsync_folder(folder: Path) -> None:
    """fsync a folder (its entries: a rename into it); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the data itself is already on disk
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """`torch.save` through `atomic_write` (for training states).

    It writes through a file object, so a full disk surfaces as an OSError (ENOSPC), not torch's RuntimeError.
    """

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)


def save_generator(
    path: str | os.PathLike, generator: nn.Module, cfg: ExperimentConfig, meta: dict[str, str] | None = None
) -> Path:
    """Write the generator's weights and the resolved config as one safetensors file (with a CRC-32 of the weights,
    checked when it is loaded). The weights must be those of `build_generator(cfg.generator)`."""
    from safetensors.torch import save_file

    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(f"cfg must be the ExperimentConfig the generator was built from, not {type(cfg).__name__}")
    if reserved := sorted(RESERVED_META & set(meta or {})):
        raise ConfigError(f"meta key(s) {reserved} are the file format's own; name yours otherwise")
    module = getattr(generator, "module", generator)  # unwrap DDP
    module = getattr(module, "_orig_mod", module)  # unwrap torch.compile
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    _check_matches_config(tensors, cfg, path)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg.to_json()}
    metadata["crc32"] = f"{weights_crc32(tensors):08x}"
    metadata.update({k: str(v) for k, v in (meta or {}).items()})
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


RESERVED_META = frozenset({"format", "format_version", "config", "crc32"})


def weights_crc32(tensors: dict[str, torch.Tensor]) -> int:
    """CRC-32 of every tensor's bytes, in name order (safetensors itself checks no data)."""
    crc = 0
    for name in sorted(tensors):
        crc = zlib.crc32(tensors[name].reshape(-1).contiguous().view(torch.uint8).numpy(), crc)
    return crc


def _check_matches_config(tensors: dict[str, torch.Tensor], cfg: ExperimentConfig, path) -> None:
    """Refuse to write a file whose weights `cfg` does not rebuild (it could never be loaded)."""
    from ..models.generator import build_generator

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_generator(cfg.generator).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
        shapes = [k for k in expected.keys() & got.keys() if expected[k] != got[k]]
        what = (f"{len(missing)} missing, " if missing else "") + (f"{len(extra)} unexpected, " if extra else "")
        what += f"{len(shapes)} of another shape" if shapes else ""
        raise ConfigError(
            f"not writing {path}: the generator's weights do not match cfg.generator ({what.rstrip(', ')}); pass "
            f"the config it was built from"
        )


@dataclass
class GeneratorCheckpoint:
    generator: nn.Module
    config: ExperimentConfig
    meta: dict[str, str]


def read_generator_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ExperimentConfig, dict]:
    """Tensors, config and metadata of one of our generator files; clear errors for anything else."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; pass a .safetensors file written by "
            f"`wavediff train` or `wavediff convert-official`"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        if re.fullmatch(r"state_\d+\.pt", path.name):
            hint = "it is a training state: load the run directory, or its checkpoints/generator_*.safetensors"
        elif path.suffix in (".pth", ".pt"):
            hint = "for the authors' netG_<epoch>.pth run `wavediff convert-official` first"
        else:
            hint = "it may be truncated: copy or download it again"
        raise CheckpointError(f"{path} is not a readable safetensors file ({first_line(e, 120)}); {hint}") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{path} is a safetensors file but not a wavediff generator (no embedded config); "
            f"convert the authors' checkpoints with `wavediff convert-official`"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is in wavediff's generator format version {meta.get('format_version')!r}, which this version "
            f"(reading {FORMAT_VERSION!r}) does not know; upgrade wavediff"
        )
    try:
        cfg = ExperimentConfig.from_dict(json.loads(meta.pop("config")))
    except (json.JSONDecodeError, WaveDiffError) as e:
        raise CheckpointError(f"{path} has an unreadable embedded config ({e}); re-export the checkpoint") from None
    crc = meta.pop("crc32", None)  # files written before it was stored have none
    if crc is not None and crc != f"{weights_crc32(tensors):08x}":
        raise CheckpointError(f"{path} is damaged: its weights fail their CRC-32 check; copy or download it again")
    if bad := next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None):
        raise CheckpointError(
            f"{path} holds NaN or infinite weights ({bad}): the run had diverged when it was written; use an "
            f"earlier checkpoint of that run"
        )
    return tensors, cfg, meta


def load_generator_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> GeneratorCheckpoint:
    """Rebuild the generator of one of our checkpoints, in eval mode, with its config."""
    from ..devices import resolve_device
    from ..models.generator import build_generator

    device = resolve_device(str(device))  # before reading: an unusable device is one line, not torch's traceback
    tensors, cfg, meta = read_generator_file(path)
    generator = build_generator(cfg.generator)
    load_state_strict(generator, tensors, f"{path}")
    generator.eval().requires_grad_(False)
    return GeneratorCheckpoint(generator.to(device), cfg, meta)


def load_generator(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """The generator of one of our checkpoints (or of a run directory: its final, else latest, one), in eval mode
    (`G(x, t, z)`); its config is `G.config`."""
    ckpt = load_generator_checkpoint(run_generator(path) if Path(path).is_dir() else path, device)
    ckpt.generator.config = ckpt.config
    return ckpt.generator


def load_state_strict(module: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Load a state dict requiring every key and shape to match, with a one-line error otherwise."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    wrong = [
        (k, tuple(tensors[k].shape), tuple(v.shape))
        for k, v in own.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        first = (
            f"shape of {wrong[0][0]} is {wrong[0][1]}, the config expects {wrong[0][2]}"
            if wrong
            else f"missing {missing[0]}"
            if missing
            else f"unexpected {unexpected[0]}"
        )
        raise CheckpointError(
            f"{what} does not match its config ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} wrong shapes; first: {first}); the file was written "
            f"for a different model: check the preset or arguments"
        )
    module.load_state_dict(tensors, strict=True)


_NUMBERED_GENERATOR = re.compile(r"generator_(\d+)\.safetensors$")


def _export_step(path: Path) -> int:
    """The training step a generator export records (-1 when it records none or cannot be read)."""
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {}).get("step", -1))
    except Exception:  # noqa: BLE001 - unreadable: loading it later reports why
        return -1


def run_generator(run_dir: str | os.PathLike) -> Path:
    """A training run's newest EMA generator, looked for in `run_dir/checkpoints` and then `run_dir` itself:
    `generator_final.safetensors`, unless a numbered export is of a later step than the one it records (a resumed
    run stopped before its end exported those, but no new final one); else the highest-numbered export."""
    run_dir = Path(run_dir)
    for folder in (run_dir / "checkpoints", run_dir):
        numbered = sorted(
            (int(m.group(1)), p)
            for p in folder.glob("generator_*.safetensors")
            if (m := _NUMBERED_GENERATOR.match(p.name))
        )
        final, step = folder / "generator_final.safetensors", -1
        if final.is_file() and numbered:
            step = _export_step(final)  # -1: no step recorded (a converted or hand-copied file): trust it
        if final.is_file() and not (numbered and 0 <= step < numbered[-1][0]):
            return final
        if numbered:
            return numbered[-1][1]
    best = next((p for p in (run_dir / "checkpoints", run_dir) if (p / "generator_best.safetensors").is_file()), None)
    if best is not None:  # never silently another model than "final, else latest": say it is there
        raise CheckpointError(
            f"{run_dir} holds no final or numbered generator, only {best / 'generator_best.safetensors'} (the best "
            f"by the training metric); pass that file"
        )
    raise CheckpointError(
        f"{run_dir} holds no generator checkpoint (checkpoints/generator_final.safetensors or "
        f"generator_NNNNNNN.safetensors); pass a .safetensors file or the run directory of `wavediff train`/`demo`"
    )
