"""Splitting work across processes started by torchrun (sampling, evaluation)."""

from __future__ import annotations

import os

import torch


def split_for_this_process(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device) from torchrun's environment; one process when not under torchrun.

    No process group is needed: each rank takes seeds[rank::world_size].
    """
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    return rank, world, torch.device(device)
