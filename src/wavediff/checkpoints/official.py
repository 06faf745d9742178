"""The authors' released checkpoints: their training-script arguments -> our config,
and reading `netG_<epoch>.pth` / `content.pth` safely.

`official_args` is a JSON object of the argument names and values of the
authors' training scripts (train_wddgan.py, or train_ddgan.py for the
pixel-space baseline). Arguments left out take those scripts' defaults, so the
arguments of one run.sh line are enough. Keys starting with `_` are notes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import DataConfig, DiffusionConfig, DiscriminatorConfig, ExperimentConfig, GeneratorConfig, TrainConfig
from ..errors import CheckpointError, ConfigError

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
    """Resolve a dict or JSON file of the authors' arguments against their defaults."""
    if not isinstance(official_args, Mapping):
        path = Path(official_args)
        if not path.is_file():
            raise ConfigError(
                f"official arguments file {path} not found; pass a JSON object of the authors' "
                f"training arguments (e.g. from their run.sh line)"
            )
        try:
            official_args = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(official_args, dict):
            raise ConfigError(f"{path} must hold a JSON object of argument names and values")
    args = dict(OFFICIAL_DEFAULTS)
    unknown = []
    for key, value in official_args.items():
        key = key.lstrip("-").replace("-", "_")
        key = _ALIASES.get(key, key)
        if key.startswith("_") or key in _IGNORED:
            continue
        if key not in OFFICIAL_DEFAULTS:
            unknown.append(key)
            continue
        args[key] = value
    if unknown:
        raise ConfigError(
            f"unknown official argument(s) {sorted(unknown)}; use the argument names of the "
            f"authors' train_wddgan.py (e.g. num_channels_dae, ch_mult, attn_resolutions)"
        )
    return args


def require_ch_mult(cfg: ExperimentConfig) -> None:
    """A generator needs ch_mult, which the authors' script has no default for."""
    if not cfg.generator.ch_mult:
        raise ConfigError(
            "official arguments lack ch_mult (the authors' script has no default); "
            'add it from the run.sh line, e.g. "ch_mult": [1, 2, 2, 2]'
        )


def official_args_to_config(official_args: Mapping[str, Any] | str | os.PathLike) -> ExperimentConfig:
    """Our `ExperimentConfig` for a model trained by the authors' scripts with these arguments."""
    a = read_official_args(official_args)
    pixel = int(a["num_channels"]) == 3
    image_size = int(a["image_size"])
    resolution = image_size if pixel else int(a["current_resolution"])
    if not pixel and resolution * 2 != image_size:
        raise ConfigError(
            f"current_resolution {resolution} must be half of image_size {image_size} for a "
            f"wavelet-space model; check the two values against the run.sh line"
        )
    band_order = "pywt" if (pixel or a["use_pytorch_wavelet"]) else "dwt2d"
    g = GeneratorConfig(
        net_type="normal" if pixel else str(a["net_type"]),
        in_channels=int(a["num_channels"]),
        resolution=resolution,
        patch_size=int(a["patch_size"]),
        nf=int(a["num_channels_dae"]),
        ch_mult=tuple(int(c) for c in a["ch_mult"] or ()),
        num_res_blocks=int(a["num_res_blocks"]),
        attn_resolutions=tuple(int(r) for r in _as_list(a["attn_resolutions"])),
        dropout=float(a["dropout"]),
        resamp_with_conv=bool(a["resamp_with_conv"]),
        conditional=bool(a["conditional"]),
        fir=bool(a["fir"]),
        fir_kernel=tuple(int(k) for k in a["fir_kernel"]),
        skip_rescale=bool(a["skip_rescale"]),
        resblock_type=str(a["resblock_type"]).lower(),
        progressive=str(a["progressive"]).lower(),
        progressive_input=str(a["progressive_input"]).lower(),
        progressive_combine=str(a["progressive_combine"]).lower(),
        embedding_type=str(a["embedding_type"]).lower(),
        fourier_scale=float(a["fourier_scale"]),
        use_tanh=not a["not_use_tanh"],
        centered=bool(a["centered"]),
        nz=int(a["nz"]),
        z_emb_dim=int(a["z_emb_dim"]),
        n_mlp=int(a["n_mlp"]),
        use_freq=not a["no_use_freq"],
        use_fbn=not a["no_use_fbn"],
        use_residual=not a["no_use_residual"],
        band_order=band_order,
    )
    dataset = str(a["dataset"])
    small = dataset in SMALL_D_DATASETS
    # The authors' classes cap the block count (small 4, large 6); train_ddgan.py does not pass
    # num_layers at all, so the caps apply there.
    cap = 4 if small else 6
    d_layers = cap if pixel else min(int(a["num_disc_layers"]), cap)
    d = DiscriminatorConfig(
        kind="small" if small else "large",
        in_channels=int(a["num_channels"]),
        ngf=int(a["ngf"]),
        t_emb_dim=int(a["t_emb_dim"]),
        num_layers=d_layers,
        band_order=band_order,
    )
    lazy = a["lazy_reg"]
    return ExperimentConfig(
        name=f"official_{dataset}",
        space="pixel" if pixel else "wavelet",
        image_size=image_size,
        generator=g,
        discriminator=d,
        diffusion=DiffusionConfig(
            num_timesteps=int(a["num_timesteps"]),
            beta_min=float(a["beta_min"]),
            beta_max=float(a["beta_max"]),
            use_geometric=bool(a["use_geometric"]),
        ),
        data=DataConfig(dataset=dataset, image_size=image_size),
        train=TrainConfig(
            batch_size=int(a["batch_size"]),
            num_epoch=int(a["num_epoch"]),
            lr_g=float(a["lr_g"]),
            lr_d=float(a["lr_d"]),
            beta1=float(a["beta1"]),
            beta2=float(a["beta2"]),
            lr_decay=not a["no_lr_decay"],
            use_ema=bool(a["use_ema"]),
            ema_decay=float(a["ema_decay"]),
            r1_gamma=float(a["r1_gamma"]),
            lazy_reg=int(lazy) if lazy else 1,
            rec_loss=bool(a["rec_loss"]),
            seed=int(a["seed"]),
        ),
    )


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


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
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the restricted unpickler raises many kinds of errors on foreign or damaged files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {first[:160]}); "
            f"it may be truncated or not a checkpoint: download it again"
        ) from None
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
