"""Convert the authors' discriminator weights (`netD_<epoch>.pth`, `content.pth`) to ours.

The mapping is derived from our model, not kept as a table:
`TimeConditionedDiscriminator.official_parts()` names each of our top-level
parts the authors' way (`stem` <-> `start_conv`, `blocks.i` <-> `conv{i+1}`, ...)
in their key order, and each block class maps its own attributes in
`official_names` (e.g. our `t_proj` is their `dense_t1`). The conversion is
strict: every official tensor is used once, every one of ours is filled, all
shapes agree; otherwise a one-line `CheckpointError` names the first mismatch
and the settings that usually cause it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from ..config import DiscriminatorConfig, ExperimentConfig
from ..models.discriminator import TimeConditionedDiscriminator, build_discriminator
from .keymap import Row, apply_key_map, key_rows
from .official import read_official_state_dict

_SETTINGS_HINT = (
    "check num_disc_layers, ngf, t_emb_dim, num_channels and the dataset (cifar10/stl10 use the "
    "small discriminator, others the large one) against the run that produced the checkpoint"
)


def infer_official_settings(official: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What the authors' discriminator tensors reveal about its settings (best effort; missing entries unknown)."""
    found: dict[str, Any] = {}

    def shape(key: str) -> tuple[int, ...] | None:
        value = official.get(key)
        return tuple(value.shape) if torch.is_tensor(value) else None

    start = shape("start_conv.weight")
    if start is not None and len(start) == 4 and start[0] % 2 == 0 and start[1] % 2 == 0:
        found["ngf"], found["num_channels"] = start[0] // 2, start[1] // 2
    temb = shape("t_embed.main.0.weight")
    if temb is not None and len(temb) == 2:
        found["t_emb_dim"] = temb[1]
    first = shape("conv1.conv1.0.weight")
    if first is not None and len(first) == 4:
        found["kind"] = "small" if first[0] == first[1] else "large"
    blocks = {int(k.split(".")[0][4:]) for k in official if k.startswith("conv") and k.split(".")[0][4:].isdigit()}
    if blocks:
        found["num_disc_layers"] = max(blocks)
    return found


def _mismatch_hint(official: Mapping[str, torch.Tensor], cfg: DiscriminatorConfig, n_blocks: int) -> str:
    """Name the settings in which the checkpoint and the config differ, or the usual suspects."""
    seen = infer_official_settings(official)
    ours = {
        "ngf": cfg.ngf,
        "num_channels": cfg.in_channels * cfg.patch_size**2,
        "t_emb_dim": cfg.t_emb_dim,
        "kind": cfg.kind,
        "num_disc_layers": n_blocks,
    }
    labels = {"kind": "discriminator kind (dataset cifar10/stl10 -> small, others -> large)"}
    diffs = [
        f"{labels.get(k, k)}: checkpoint {seen[k]}, config {ours[k]}" for k in ours if k in seen and seen[k] != ours[k]
    ]
    if any(k.startswith("local_end_linear") for k in official):
        diffs.append("the checkpoint was trained with use_local_loss (its local head is not supported)")
    if diffs:
        return "likely wrong setting(s): " + "; ".join(diffs)
    return _SETTINGS_HINT


def official_key_map(model: TimeConditionedDiscriminator) -> list[Row]:
    """(official key, our key, our tensor) for every tensor of `model`, in the authors' key order."""
    return key_rows(model, model.official_parts())


def _disc_cfg(cfg: DiscriminatorConfig | ExperimentConfig) -> DiscriminatorConfig:
    return cfg.discriminator if isinstance(cfg, ExperimentConfig) else cfg


def _meta_discriminator(cfg: DiscriminatorConfig) -> TimeConditionedDiscriminator:
    with torch.device("meta"):
        return build_discriminator(cfg)


def official_discriminator_key_shapes(cfg: DiscriminatorConfig | ExperimentConfig) -> list[tuple[str, tuple[int, ...]]]:
    """The authors' discriminator state-dict keys and shapes (without `module.`) for `cfg`, in their order."""
    return [(k, tuple(t.shape)) for k, _, t in official_key_map(_meta_discriminator(_disc_cfg(cfg)))]


def convert_discriminator_state(
    official: Mapping[str, torch.Tensor], cfg: DiscriminatorConfig | ExperimentConfig
) -> dict[str, torch.Tensor]:
    """The authors' discriminator state dict (`module.` stripped) -> our discriminator's state dict."""
    model = _meta_discriminator(_disc_cfg(cfg))
    hint = _mismatch_hint(official, model.config, len(model.blocks))
    return apply_key_map(official, model, official_key_map(model), "discriminator", hint)


def load_official_discriminator(
    path: str | os.PathLike,
    official_args: Mapping[str, Any] | str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    *,
    preset: str | None = None,
) -> TimeConditionedDiscriminator:
    """The authors' discriminator (`netD_<epoch>.pth` or `content.pth`) as our module, eval mode, its weights
    frozen (`requires_grad_(True)` to train it further), like `load_official_generator`'s generator.

    Described by exactly one of `official_args` (their training arguments: dict or JSON file) or `preset`; a
    `content.pth` carries their arguments, so it needs neither. The model takes canonical (pywt) band order
    whatever order it was trained with.
    """
    from ..devices import resolve_device
    from .convert import describe_official

    device = resolve_device(str(device))
    cfg = describe_official(preset, official_args, path).discriminator
    state = convert_discriminator_state(read_official_state_dict(path, part="D"), cfg)
    model = build_discriminator(cfg)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device)
