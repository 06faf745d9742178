"""Splitting work across processes started by torchrun (sampling, evaluation)."""

from __future__ import annotations

import os

import torch

from ..devices import resolve_device


def split_for_this_process(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device) from torchrun's environment; one process when not under torchrun.

    No process group is needed: each rank takes seeds[rank::world_size].
    """
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return rank, world, resolve_device(device, local_rank)
