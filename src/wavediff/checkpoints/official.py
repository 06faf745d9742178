"""The authors' released checkpoints: their training-script arguments -> our config,
and reading `netG_<epoch>.pth` / `content.pth` safely.

`official_args` is a JSON object of the argument names and values of the
authors' training scripts (train_wddgan.py, or train_ddgan.py for the
pixel-space baseline). Arguments left out take those scripts' defaults, so the
arguments of one run.sh line are enough. Keys starting with `_` are notes.
Values take the types of their argparse: numbers as JSON numbers (or the strings a
run.sh line has, "32"), lists such as ch_mult as JSON lists, and flags only as
true/false (the string "false" would be truthy, so it is refused).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import DataConfig, DiffusionConfig, DiscriminatorConfig, ExperimentConfig, GeneratorConfig, TrainConfig
from ..errors import CheckpointError, ConfigError, first_line

# Defaults of the authors' training script (the ones that shape the networks,
# the diffusion and training). `ch_mult` has no default there: it must be given.
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "seed": 1024,
    "image_size": 32,
    "num_channels": 12,
    "centered": True,
    "use_geometric": False,
    "beta_min": 0.1,
    "beta_max": 20.0,
    "patch_size": 1,
    "num_channels_dae": 128,
    "n_mlp": 3,
    "ch_mult": None,
    "num_res_blocks": 2,
    "attn_resolutions": [16],
    "dropout": 0.0,
    "resamp_with_conv": True,
    "conditional": True,
    "fir": True,
    "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True,
    "resblock_type": "biggan",
    "progressive": "none",
    "progressive_input": "residual",
    "progressive_combine": "sum",
    "embedding_type": "positional",
    "fourier_scale": 16.0,
    "not_use_tanh": False,
    "dataset": "cifar10",
    "nz": 100,
    "num_timesteps": 4,
    "z_emb_dim": 256,
    "t_emb_dim": 256,
    "batch_size": 128,
    "num_epoch": 1200,
    "ngf": 64,
    "lr_g": 1.5e-4,
    "lr_d": 1e-4,
    "beta1": 0.5,
    "beta2": 0.9,
    "no_lr_decay": False,
    "use_ema": False,
    "ema_decay": 0.9999,
    "r1_gamma": 0.05,
    "lazy_reg": None,
    "current_resolution": 256,
    "use_pytorch_wavelet": False,
    "rec_loss": False,
    "net_type": "normal",
    "num_disc_layers": 6,
    "no_use_fbn": False,
    "no_use_freq": False,
    "no_use_residual": False,
}
# argparse accepts unambiguous prefixes; the authors' run.sh relies on this one.
_ALIASES = {"attn_resolution": "attn_resolutions"}
# Arguments that only steer the authors' launcher/logging and never the model.
_IGNORED = {
    "resume",
    "exp",
    "datadir",
    "save_content",
    "save_content_every",
    "save_ckpt_every",
    "num_proc_node",
    "num_process_per_node",
    "node_rank",
    "local_rank",
    "global_rank",  # this and world_size: set by their launcher, saved in content.pth
    "world_size",
    "master_address",
    "master_port",
    "num_workers",
    "use_local_loss",
    "epoch_id",
    "compute_fid",
    "real_img_dir",
    "measure_time",
    "batch_size_fid",
}
SMALL_D_DATASETS = ("cifar10", "stl10")


def read_official_args(official_args: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Resolve a dict or JSON file of the authors' arguments against their defaults.

    Every value the converter reads is checked against the type the authors' argparse gives it and
    returned as that type; a wrong one is a one-line ConfigError naming the argument and the file.
    """
    source = "the official arguments"
    if not isinstance(official_args, Mapping):
        source = str(official_args)
        official_args = _load_args_file(Path(official_args))
    args = dict(OFFICIAL_DEFAULTS)
    unknown = []
    for given, value in official_args.items():
        key = given.lstrip("-").replace("-", "_")
        key = _ALIASES.get(key, key)
        if key.startswith("_") or key in _IGNORED:
            continue
        if key not in OFFICIAL_DEFAULTS:
            unknown.append(key)
            continue
        args[key] = _checked(given, key, value, source)
    if unknown:
        raise ConfigError(
            f"unknown official argument(s) {sorted(unknown)}; use the argument names of the "
            f"authors' train_wddgan.py (e.g. num_channels_dae, ch_mult, attn_resolutions)"
        )
    return args


_HOW_TO_WRITE = "pass a JSON object of the authors' training arguments (e.g. from their run.sh line)"


def _load_args_file(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, with one line for a missing, binary, malformed or non-object file."""
    if not path.is_file():
        from ..presets import PRESETS

        if str(path) in PRESETS:  # `load_official_generator(path, "cifar10")`: a preset meant
            raise ConfigError(
                f"'{path}' is a preset name, not an arguments file; pass preset='{path}' "
                f"(wavediff.load_official_generator(path, preset='{path}'); CLI: --preset {path})"
            )
        raise ConfigError(f"official arguments file {path} not found; {_HOW_TO_WRITE}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        # Typically the checkpoint itself given as --official-args (a .pth is a zip archive).
        raise ConfigError(
            f"{path} is not a JSON file of the authors' training arguments (it is binary, e.g. a checkpoint); "
            f"{_HOW_TO_WRITE}"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read official arguments file {path} ({e.strerror}); {_HOW_TO_WRITE}") from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); {_HOW_TO_WRITE}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path} holds a JSON {_json_kind(loaded)}, not an object of argument names and values; "
            f'write it as {{"ch_mult": [1, 2, 2, 2], ...}}'
        )
    return loaded


def _json_kind(value: Any) -> str:
    """How JSON calls the type of a loaded value, for the message about a top level that is not an object."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {list: "list", str: "string", type(None): "null"}.get(type(value), type(value).__name__)


class _WrongValue(Exception):
    """Raised by a value check with what the value should have been ("an integer, e.g. 32")."""


def _checked(given: str, key: str, value: Any, source: str) -> Any:
    """`value` of argument `key` as the type the converter needs, or one line naming it and the fix."""
    if value is None and OFFICIAL_DEFAULTS[key] is None:
        return None  # ch_mult / lazy_reg: null is "not given", as their argparse default
    try:
        return _CHECKS[key](value, key)
    except _WrongValue as e:
        raise ConfigError(f"{given} in {source} is {_show(value)}; give {e}") from None


def _show(value: Any) -> str:
    """The value as it is spelt in JSON (so the string "false" and the boolean false differ), kept short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _example(key: str) -> str:
    example = _EXAMPLES.get(key, OFFICIAL_DEFAULTS[key])
    return json.dumps(example)


def _as_int(value: Any) -> int | None:
    """argparse's type=int: a JSON integer, or a string of one as on a run.sh line ("32"); else None."""
    if isinstance(value, bool):  # a bool is an int in Python, never in the authors' arguments
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


_INTEGER = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}


def _integer(minimum: int | None = None):
    """Check for a type=int argument; `minimum` 1 for sizes and counts that cannot be zero."""

    def check(value: Any, key: str) -> int:
        n = _as_int(value)
        if n is None or (minimum is not None and n < minimum):
            raise _WrongValue(f"{_INTEGER[minimum]}, e.g. {_example(key)}")
        return n

    return check


def _integers(minimum: int | None = None, single: bool = False):
    """Check for an nargs='+' type=int argument (a JSON list); `single` also takes one bare integer."""
    each = _INTEGER[minimum].removeprefix("an ").removeprefix("a ")
    what = f"{_INTEGER[minimum]} or a list of them" if single else f"a list of {each}s"

    def check(value: Any, key: str) -> list[int]:
        items = value if isinstance(value, (list, tuple)) else [value] if single else None
        numbers = [_as_int(v) for v in items] if items else None
        if not numbers or any(n is None or (minimum is not None and n < minimum) for n in numbers):
            raise _WrongValue(f"{what}, e.g. {_example(key)}")
        return numbers

    return check


def _number(value: Any, key: str) -> float:
    """Check for a type=float argument: a JSON number (integers too: beta_max 20) or a string of one."""
    x = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            pass
    if x is None or not math.isfinite(x):
        raise _WrongValue(f"a finite number, e.g. {_example(key)}")
    return x


def _flag(value: Any, key: str) -> bool:
    """Check for a store_true/store_false flag: only a real JSON boolean (the string "false" is truthy)."""
    if not isinstance(value, bool):
        raise _WrongValue("true or false, a JSON boolean without quotes")
    return value


def _text(choices: tuple[str, ...] | None = None, lower: bool = False):
    """Check for a string argument; `choices` are those of the authors' argparse."""

    def check(value: Any, key: str) -> str:
        text = value.lower() if isinstance(value, str) and lower else value
        if choices is not None and text not in choices:
            raise _WrongValue("one of " + ", ".join(json.dumps(c) for c in choices))
        if not isinstance(text, str) or not text:
            raise _WrongValue(f"a non-empty string, e.g. {_example(key)}")
        return text

    return check


# What each argument the converter reads must be, following the types of the authors' argparse.
_CHECKS = {
    "seed": _integer(),
    "image_size": _integer(1),
    "num_channels": _integer(1),
    "centered": _flag,
    "use_geometric": _flag,
    "beta_min": _number,
    "beta_max": _number,
    "patch_size": _integer(1),
    "num_channels_dae": _integer(1),
    "n_mlp": _integer(0),
    "ch_mult": _integers(1),
    "num_res_blocks": _integer(0),
    # Their default is the tuple (16,); a bare number is one resolution. 0 means none (celeba_1024).
    "attn_resolutions": _integers(0, single=True),
    "dropout": _number,
    "resamp_with_conv": _flag,
    "conditional": _flag,
    "fir": _flag,
    "fir_kernel": _integers(),
    "skip_rescale": _flag,
    "resblock_type": _text(lower=True),
    "progressive": _text(("none", "output_skip", "residual"), lower=True),
    "progressive_input": _text(("none", "input_skip", "residual"), lower=True),
    "progressive_combine": _text(("sum", "cat"), lower=True),
    "embedding_type": _text(("positional", "fourier"), lower=True),
    "fourier_scale": _number,
    "not_use_tanh": _flag,
    "dataset": _text(),
    "nz": _integer(1),
    "num_timesteps": _integer(1),
    "z_emb_dim": _integer(1),
    "t_emb_dim": _integer(1),
    "batch_size": _integer(1),
    "num_epoch": _integer(1),
    "ngf": _integer(1),
    "lr_g": _number,
    "lr_d": _number,
    "beta1": _number,
    "beta2": _number,
    "no_lr_decay": _flag,
    "use_ema": _flag,
    "ema_decay": _number,
    "r1_gamma": _number,
    "lazy_reg": _integer(0),
    "current_resolution": _integer(1),
    "use_pytorch_wavelet": _flag,
    "rec_loss": _flag,
    "net_type": _text(),
    "num_disc_layers": _integer(1),
    "no_use_fbn": _flag,
    "no_use_freq": _flag,
    "no_use_residual": _flag,
}
# Examples for the arguments whose default (None) cannot serve as one.
_EXAMPLES = {"ch_mult": [1, 2, 2, 2], "lazy_reg": 10}


def require_ch_mult(cfg: ExperimentConfig) -> None:
    """A generator needs ch_mult, which the authors' script has no default for."""
    if not cfg.generator.ch_mult:
        raise ConfigError(
            "official arguments lack ch_mult (the authors' script has no default); "
            'add it from the run.sh line, e.g. "ch_mult": [1, 2, 2, 2]'
        )


def official_args_to_config(official_args: Mapping[str, Any] | str | os.PathLike) -> ExperimentConfig:
    """Our `ExperimentConfig` for a model trained by the authors' scripts with these arguments."""
    a = read_official_args(official_args)  # checked: every value below already has its type
    pixel = a["num_channels"] == 3
    image_size = a["image_size"]
    resolution = image_size if pixel else a["current_resolution"]
    if not pixel and resolution * 2 != image_size:
        raise ConfigError(
            f"current_resolution {resolution} must be half of image_size {image_size} for a "
            f"wavelet-space model; check the two values against the run.sh line"
        )
    band_order = "pywt" if (pixel or a["use_pytorch_wavelet"]) else "dwt2d"
    g = GeneratorConfig(
        net_type="normal" if pixel else a["net_type"],
        in_channels=a["num_channels"],
        resolution=resolution,
        patch_size=a["patch_size"],
        nf=a["num_channels_dae"],
        ch_mult=tuple(a["ch_mult"] or ()),
        num_res_blocks=a["num_res_blocks"],
        attn_resolutions=tuple(a["attn_resolutions"]),
        dropout=a["dropout"],
        resamp_with_conv=a["resamp_with_conv"],
        conditional=a["conditional"],
        fir=a["fir"],
        fir_kernel=tuple(a["fir_kernel"]),
        skip_rescale=a["skip_rescale"],
        resblock_type=a["resblock_type"],
        progressive=a["progressive"],
        progressive_input=a["progressive_input"],
        progressive_combine=a["progressive_combine"],
        embedding_type=a["embedding_type"],
        fourier_scale=a["fourier_scale"],
        use_tanh=not a["not_use_tanh"],
        centered=a["centered"],
        nz=a["nz"],
        z_emb_dim=a["z_emb_dim"],
        n_mlp=a["n_mlp"],
        use_freq=not a["no_use_freq"],
        use_fbn=not a["no_use_fbn"],
        use_residual=not a["no_use_residual"],
        band_order=band_order,
    )
    dataset = a["dataset"]
    small = dataset in SMALL_D_DATASETS
    # The authors' classes cap the block count (small 4, large 6); train_ddgan.py does not pass
    # num_layers at all, so the caps apply there.
    cap = 4 if small else 6
    d_layers = cap if pixel else min(a["num_disc_layers"], cap)
    d = DiscriminatorConfig(
        kind="small" if small else "large",
        in_channels=a["num_channels"],
        ngf=a["ngf"],
        t_emb_dim=a["t_emb_dim"],
        num_layers=d_layers,
        band_order=band_order,
    )
    return ExperimentConfig(
        name=f"official_{dataset}",
        space="pixel" if pixel else "wavelet",
        image_size=image_size,
        generator=g,
        discriminator=d,
        diffusion=DiffusionConfig(
            num_timesteps=a["num_timesteps"],
            beta_min=a["beta_min"],
            beta_max=a["beta_max"],
            use_geometric=a["use_geometric"],
        ),
        data=DataConfig(dataset=dataset, image_size=image_size),
        train=TrainConfig(
            batch_size=a["batch_size"],
            num_epoch=a["num_epoch"],
            lr_g=a["lr_g"],
            lr_d=a["lr_d"],
            beta1=a["beta1"],
            beta2=a["beta2"],
            lr_decay=not a["no_lr_decay"],
            use_ema=a["use_ema"],
            ema_decay=a["ema_decay"],
            r1_gamma=a["r1_gamma"],
            lazy_reg=a["lazy_reg"] or 1,  # their None (and 0): R1 every step
            rec_loss=a["rec_loss"],
            seed=a["seed"],
        ),
    )


class ForeignObjectsError(CheckpointError):
    """A PyTorch file whose pickle names Python objects that the restricted unpickler refuses."""


def load_official_file(path: Path, mmap: bool = False) -> Any:
    """`torch.load` of an authors' file, tensors and plain values only (never code). Their `content.pth` also holds
    their training arguments as an `argparse.Namespace`, a plain attribute holder, which is allowed too."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # the restricted unpickler raises many kinds of errors on foreign or damaged files
        if "Weights only load failed" in str(e):
            named = re.search(r"GLOBAL ([\w.]+)", str(e))
            holds = f" ({named.group(1)})" if named else ""
            raise ForeignObjectsError(
                f"{path} holds Python objects other than tensors and plain values{holds}, which wavediff does not "
                f"unpickle (they could run code); pass the authors' netG_<epoch>.pth or content.pth as their code "
                f"saves them"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {first_line(e)}); "
            f"it may be truncated or not a checkpoint: download it again"
        ) from None


def official_args_in(path: str | os.PathLike) -> dict[str, Any] | None:
    """The training arguments the authors' `content.pth` carries (their `args`), or None for a file without them
    (`netG_<epoch>.pth`, or anything that is not such a snapshot)."""
    try:
        return snapshot_args(load_official_file(Path(path), mmap=True))
    except CheckpointError:
        return None


def snapshot_args(obj: Any) -> dict[str, Any] | None:
    """`official_args_in` for a file already loaded."""
    args = obj.get("args") if isinstance(obj, dict) and ("netG_dict" in obj or "netD_dict" in obj) else None
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, Mapping):
        return None
    args = dict(args)
    if "ori_image_size" in args:  # their training script puts current_resolution in image_size before saving
        args["image_size"] = args.pop("ori_image_size")
    return args


def read_official_state_dict(path: str | os.PathLike, part: str = "G") -> dict[str, torch.Tensor]:
    """Tensors of a released checkpoint, `module.` prefixes removed; never executes code.

    Accepts `netG_<epoch>.pth` (a generator state dict) and the authors'
    `content.pth` training snapshot (`netG_dict` / `netD_dict`); `part` picks G or D there.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; pass the path of a released netG_<epoch>.pth or content.pth"
        )
    obj = load_official_file(path)
    if isinstance(obj, dict) and obj.get("format") == "wavediff-train-state":
        raise CheckpointError(
            f"{path} is a wavediff training state, not the authors' checkpoint; use the generator exported "
            f"next to it (checkpoints/generator_*.safetensors), or continue training with --resume {path}"
        )
    if isinstance(obj, dict) and ("netG_dict" in obj or "netD_dict" in obj):
        key = "netG_dict" if part == "G" else "netD_dict"
        if key not in obj:
            raise CheckpointError(f"{path} is a training snapshot without {key}")
        obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(
            f"{path} does not hold a state dict of tensors; expected the authors' netG_<epoch>.pth or content.pth"
        )
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}
    _check_part(path, state, part)
    return state


def _check_part(path: Path, state: dict[str, torch.Tensor], part: str) -> None:
    """One line when the authors' discriminator is given where their generator is expected, or the reverse."""
    is_g = any(k.startswith("all_modules.") for k in state)
    is_d = not is_g and any(k.startswith("t_embed.") for k in state)
    if part == "G" and is_d:
        raise CheckpointError(
            f"{path} holds the authors' discriminator (netD), not their generator; pass netG_<epoch>.pth "
            f"from the same run (or their content.pth)"
        )
    if part == "D" and is_g:
        raise CheckpointError(
            f"{path} holds the authors' generator (netG), not their discriminator; pass netD_<epoch>.pth "
            f"from the same run (or their content.pth)"
        )
