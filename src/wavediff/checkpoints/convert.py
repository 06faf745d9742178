"""Load the authors' released generators and write them in our format."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..config import ExperimentConfig
from ..errors import CheckpointError, ConfigError
from ..presets import get_preset
from .io import FORMAT, load_generator_checkpoint, load_state_strict, run_generator, save_generator
from .official import (
    ForeignObjectsError,
    load_official_file,
    official_args_in,
    official_args_to_config,
    read_official_state_dict,
    require_ch_mult,
    snapshot_args,
)

OfficialArgs = Mapping[str, Any] | str | os.PathLike


def describe_official(
    preset: str | None = None, official_args: OfficialArgs | None = None, path: str | os.PathLike | None = None
) -> ExperimentConfig:
    """The config of a released checkpoint, from a preset name or the authors' arguments (exactly one); with neither,
    from the arguments the authors' `content.pth` at `path` carries."""
    if preset is not None and official_args is not None:
        raise ConfigError("give one of --preset NAME or --official-args ARGS.json, not both")
    if preset is None and official_args is None:
        official_args = official_args_in(path) if path is not None else None
        if official_args is None:
            raise ConfigError(
                "give --preset NAME or --official-args ARGS.json (preset= or official_args= in Python) to describe the "
                "authors' checkpoint (only their content.pth carries its own training arguments)"
            )
    return get_preset(preset) if preset is not None else official_args_to_config(official_args)


def resolve_official_config(
    preset: str | None = None, official_args: OfficialArgs | None = None, path: str | os.PathLike | None = None
) -> ExperimentConfig:
    """`describe_official`, for a generator (which needs the authors' ch_mult)."""
    cfg = describe_official(preset, official_args, path)
    require_ch_mult(cfg)
    return cfg


def load_official_generator_with_config(
    path: str | os.PathLike, cfg: ExperimentConfig, device: torch.device | str = "cpu"
) -> nn.Module:
    from ..devices import resolve_device
    from ..models.generator import build_generator
    from .official_generator import convert_generator_state

    device = resolve_device(str(device))
    state = convert_generator_state(read_official_state_dict(path, part="G"), cfg.generator)
    generator = build_generator(cfg.generator)
    load_state_strict(generator, state, str(path))
    generator.eval().requires_grad_(False)
    generator.config = cfg
    return generator.to(device)


def load_official_generator(
    path: str | os.PathLike,
    official_args: OfficialArgs | None = None,
    device: torch.device | str = "cpu",
    *,
    preset: str | None = None,
) -> nn.Module:
    """The authors' generator (`netG_<epoch>.pth` or `content.pth`) as our module, eval mode, described by
    exactly one of `official_args` (their training arguments: a dict or a JSON file) or `preset` (the name of
    the paper setting it was trained with); a `content.pth` carries their arguments, so it needs neither.

    It takes and returns canonical band order whatever order it was trained with.
    """
    if is_wavediff_checkpoint(path):
        raise CheckpointError(
            f"{path} is already a wavediff checkpoint that holds its own config; load it with "
            f"wavediff.load_generator({str(path)!r})"
        )
    return load_official_generator_with_config(path, resolve_official_config(preset, official_args, path), device)


def convert_official_checkpoint(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    preset: str | None = None,
    official_args: OfficialArgs | None = None,
) -> tuple[Path, ExperimentConfig, int]:
    """Convert a released generator into our self-describing safetensors file."""
    if is_wavediff_checkpoint(path):  # before the description: for our file it is beside the point
        raise CheckpointError(
            f"{path} is already a wavediff checkpoint (converted or trained) that holds its own config; "
            f"there is nothing to convert: use it directly, e.g. `wavediff sample {path}`"
        )
    cfg = resolve_official_config(preset, official_args, path)
    generator = load_official_generator_with_config(path, cfg)
    n_params = sum(p.numel() for p in generator.parameters())
    out = save_generator(out, generator, cfg, meta={"converted_from": Path(path).name})
    return out, cfg, n_params


def load_any_generator(
    path: str | os.PathLike,
    *,
    preset: str | None = None,
    official_args: OfficialArgs | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, ExperimentConfig]:
    """Our .safetensors checkpoint (or a training run's directory: its final, else latest, EMA generator), or the
    authors' .pth when a preset or their arguments describe it."""
    ours = preset is None and official_args is None
    if Path(path).is_dir():
        if not ours:
            raise ConfigError(f"{path} is a directory; --preset and --official-args describe one of the authors' files")
        path = run_generator(path)
    if ours and (str(path).endswith(".safetensors") or is_wavediff_checkpoint(path)):  # ours, whatever its name
        ckpt = load_generator_checkpoint(path, device)
        return ckpt.generator, ckpt.config
    if not Path(path).is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; pass a .safetensors file written by `wavediff train` or "
            f"`wavediff convert-official`, a run directory, or the authors' .pth with --preset NAME"
        )
    if ours:
        embedded = snapshot_args(_refuse_training_state(path))
        if embedded is not None:  # the authors' content.pth: their arguments are inside
            cfg = resolve_official_config(official_args=embedded)
            return load_official_generator_with_config(path, cfg, device), cfg
        raise ConfigError(
            f"{path} looks like the authors' checkpoint: add --preset NAME or --official-args "
            f"ARGS.json (or convert it once with `wavediff convert-official`)"
        )
    if is_wavediff_checkpoint(path):
        # Otherwise the description would be applied to our tensor names and fail with a misleading key error.
        raise ConfigError(
            f"{path} is already a wavediff checkpoint that describes itself (its config is inside); "
            f"drop --preset/--official-args"
        )
    cfg = resolve_official_config(preset, official_args, path)
    return load_official_generator_with_config(path, cfg, device), cfg


def is_wavediff_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a safetensors file carrying our format marker; reads only its header, whatever its name."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except Exception:  # noqa: BLE001 - anything unreadable as safetensors (the authors' .pth) is not ours
        return False


def _refuse_training_state(path: str | os.PathLike):
    """One line when the file given where a generator is expected is a wavediff training state (state_*.pt) or no
    PyTorch file at all; else the file, loaded (memory-mapped)."""
    try:
        obj = load_official_file(Path(path), mmap=True)
    except ForeignObjectsError:
        raise
    except CheckpointError:  # not a PyTorch file at all
        raise CheckpointError(
            f"{path} is not a checkpoint (neither a wavediff .safetensors file nor a PyTorch file); pass "
            f"a generator_*.safetensors of `wavediff train`, a run directory, or the authors' netG_*.pth with --preset"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == "wavediff-train-state":
        step = obj.get("step")
        export = f"generator_{step:07d}.safetensors" if isinstance(step, int) else "generator_*.safetensors"
        raise CheckpointError(
            f"{path} is a wavediff training state (step {step}), not a generator; sample from the EMA generator "
            f"exported next to it (checkpoints/{export} or generator_final.safetensors)"
        )
    return obj
