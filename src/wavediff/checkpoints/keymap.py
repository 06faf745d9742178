"""Mapping the authors' state-dict keys onto ours, derived from our modules.

A model lists its parts with the authors' names (`official_prefix`, module);
each block class may rename its own attributes in `official_names` (our
`norm_in` is their `GroupNorm_0`). `key_rows` walks that into
(official key, our key, our tensor) rows; `apply_key_map` converts a state dict
strictly: every official tensor used once, every one of ours filled, all shapes
equal, else one `CheckpointError` line naming the first mismatch and a hint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn

from ..errors import CheckpointError

Row = tuple[str, str, torch.Tensor]


def official_local(module: nn.Module, local: str) -> str:
    """Our tensor path inside `module` -> the authors' path inside their corresponding module."""
    head, _, rest = local.partition(".")
    names = getattr(type(module), "official_names", None) or {}
    mapped = names.get(head, head)
    if not rest:
        return mapped
    child = module._modules.get(head)
    return f"{mapped}.{official_local(child, rest) if child is not None else rest}"


def key_rows(model: nn.Module, parts: Iterable[tuple[str, nn.Module]]) -> list[Row]:
    """(official key, our key, our tensor) for every tensor of the named parts, in the authors' order."""
    where = {id(m): name for name, m in model.named_modules()}
    rows: list[Row] = []
    for official_prefix, module in parts:
        ours = where[id(module)]
        for local, tensor in module.state_dict(keep_vars=True).items():
            rows.append((f"{official_prefix}.{official_local(module, local)}", f"{ours}.{local}", tensor))
    return rows


def apply_key_map(
    official: Mapping[str, torch.Tensor], model: nn.Module, rows: list[Row], what: str, hint: str
) -> dict[str, torch.Tensor]:
    """The authors' state dict -> ours for `model`, strictly (see the module docstring)."""
    ours = set(model.state_dict())
    mapped = {our for _, our, _ in rows}
    if mapped != ours or len(rows) != len(ours):  # a bug in our walk, not in the checkpoint
        raise CheckpointError(
            f"internal error: the official walk covers {len(mapped)} of our {len(ours)} {what} "
            f"tensors (e.g. {sorted(ours ^ mapped)[:1]}); please report this"
        )
    expected = {k for k, _, _ in rows}
    missing = [k for k, _, _ in rows if k not in official]
    unexpected = [k for k in official if k not in expected]
    counts = f"{len(missing)} missing, {len(unexpected)} unexpected of {len(expected)} expected keys"
    out: dict[str, torch.Tensor] = {}
    for key, our, tensor in rows:
        if key not in official:
            raise CheckpointError(f"{what} checkpoint lacks {key} (shape {tuple(tensor.shape)}); {counts}; {hint}")
        found = official[key]
        if tuple(found.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{what} checkpoint key {key}: expected shape {tuple(tensor.shape)}, found "
                f"{tuple(found.shape)}; {counts}; {hint}"
            )
        out[our] = found
    if unexpected:
        raise CheckpointError(
            f"{what} checkpoint has unexpected key {unexpected[0]} "
            f"(shape {tuple(official[unexpected[0]].shape)}); {counts}; {hint}"
        )
    return out
