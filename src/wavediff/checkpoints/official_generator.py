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
import torch.nn as nn

from ..config import ExperimentConfig, GeneratorConfig
from ..errors import CheckpointError
from ..models.generator import Generator, build_generator

_SETTINGS_HINT = ("check num_channels_dae / ch_mult / num_res_blocks / attn_resolutions / net_type / patch_size / "
                  "nz / z_emb_dim / n_mlp / no_use_* flags against the run that produced the checkpoint")


def _official_local(module: nn.Module, local: str) -> str:
    """Our parameter path inside `module` -> the authors' path inside their corresponding module."""
    head, _, rest = local.partition(".")
    names = getattr(type(module), "official_names", None)
    mapped = names.get(head, head) if isinstance(names, dict) else head
    if not rest:
        return mapped
    child = module._modules.get(head)
    return f"{mapped}.{_official_local(child, rest) if child is not None else rest}"


def official_key_map(model: Generator) -> list[tuple[str, str, torch.Tensor]]:
    """(official key, our key, our tensor) for every tensor of `model`, in the authors' key order."""
    where = {id(m): name for name, m in model.named_modules()}
    rows: list[tuple[str, str, torch.Tensor]] = []

    def add(official_prefix: str, module: nn.Module) -> None:
        ours = where[id(module)]
        for local, tensor in module.state_dict(keep_vars=True).items():
            rows.append((f"{official_prefix}.{_official_local(module, local)}", f"{ours}.{local}", tensor))

    for i, module in enumerate(model.official_order()):
        add(f"all_modules.{i}", module)
    for name, layer in model.net.z_mapping.official_layers():
        add(name, layer)
    return rows


def _generator_cfg(cfg: GeneratorConfig | ExperimentConfig) -> GeneratorConfig:
    return cfg.generator if isinstance(cfg, ExperimentConfig) else cfg


def _meta_generator(cfg: GeneratorConfig) -> Generator:
    with torch.device("meta"):
        return build_generator(cfg)


def official_generator_key_shapes(cfg: GeneratorConfig | ExperimentConfig) -> list[tuple[str, tuple[int, ...]]]:
    """The authors' state-dict keys and shapes (without `module.`) that our model for `cfg` corresponds to."""
    return [(k, tuple(t.shape)) for k, _, t in official_key_map(_meta_generator(_generator_cfg(cfg)))]


def convert_generator_state(official: dict[str, torch.Tensor],
                            cfg: GeneratorConfig | ExperimentConfig) -> dict[str, torch.Tensor]:
    """The authors' generator state dict (`module.` stripped) -> our `Generator` state dict."""
    model = _meta_generator(_generator_cfg(cfg))
    rows = official_key_map(model)
    ours = set(model.state_dict())
    mapped = {our for _, our, _ in rows}
    if mapped != ours or len(rows) != len(ours):  # a bug in our walk, not in the checkpoint
        raise CheckpointError(f"internal error: the official walk covers {len(mapped)} of our {len(ours)} "
                              f"tensors (e.g. {sorted(ours ^ mapped)[:1]}); please report this")
    expected = {k for k, _, _ in rows}
    missing = [k for k, _, _ in rows if k not in official]
    unexpected = [k for k in official if k not in expected]
    counts = f"{len(missing)} missing, {len(unexpected)} unexpected of {len(expected)} expected keys"
    out: dict[str, torch.Tensor] = {}
    for key, our, tensor in rows:
        if key not in official:
            raise CheckpointError(f"generator checkpoint lacks {key} (shape {tuple(tensor.shape)}); {counts}; "
                                  f"{_SETTINGS_HINT}")
        found = official[key]
        if tuple(found.shape) != tuple(tensor.shape):
            raise CheckpointError(f"generator checkpoint key {key}: expected shape {tuple(tensor.shape)}, found "
                                  f"{tuple(found.shape)}; {counts}; {_SETTINGS_HINT}")
        out[our] = found
    if unexpected:
        raise CheckpointError(f"generator checkpoint has unexpected key {unexpected[0]} "
                              f"(shape {tuple(official[unexpected[0]].shape)}); {counts}; {_SETTINGS_HINT}")
    return out
