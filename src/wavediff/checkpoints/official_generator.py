"""Convert the authors' released generator weights (`netG_<epoch>.pth`) to our `Generator`.

The authors keep their generator in one flat `all_modules` list (in
construction order) plus a `z_transform` Sequential. Rather than a table of
key names, the mapping is derived from our model: `Generator.official_order()`
lists our blocks in the authors' construction order (block i <-> `all_modules.i`),
and each block class names its parts the authors' way in `official_names`
(e.g. our `norm_in` is their `GroupNorm_0`). The conversion is strict: every
official tensor is used once, every one of ours is filled, all shapes agree.
"""

from __future__ import annotations

import torch

from ..config import ExperimentConfig, GeneratorConfig
from ..models.generator import Generator, build_generator
from .keymap import Row, apply_key_map, key_rows

_SETTINGS_HINT = (
    "check num_channels_dae / ch_mult / num_res_blocks / attn_resolutions / net_type / patch_size / "
    "nz / z_emb_dim / n_mlp / no_use_* flags against the run that produced the checkpoint"
)


def official_key_map(model: Generator) -> list[Row]:
    """(official key, our key, our tensor) for every tensor of `model`, in the authors' key order."""
    parts = [(f"all_modules.{i}", m) for i, m in enumerate(model.official_order())]
    return key_rows(model, parts + list(model.net.z_mapping.official_layers()))


def _generator_cfg(cfg: GeneratorConfig | ExperimentConfig) -> GeneratorConfig:
    return cfg.generator if isinstance(cfg, ExperimentConfig) else cfg


def _meta_generator(cfg: GeneratorConfig) -> Generator:
    with torch.device("meta"):
        return build_generator(cfg)


def official_generator_key_shapes(cfg: GeneratorConfig | ExperimentConfig) -> list[tuple[str, tuple[int, ...]]]:
    """The authors' state-dict keys and shapes (without `module.`) that our model for `cfg` corresponds to."""
    return [(k, tuple(t.shape)) for k, _, t in official_key_map(_meta_generator(_generator_cfg(cfg)))]


def convert_generator_state(
    official: dict[str, torch.Tensor], cfg: GeneratorConfig | ExperimentConfig
) -> dict[str, torch.Tensor]:
    """The authors' generator state dict (`module.` stripped) -> our `Generator` state dict."""
    model = _meta_generator(_generator_cfg(cfg))
    return apply_key_map(official, model, official_key_map(model), "generator", _SETTINGS_HINT)
