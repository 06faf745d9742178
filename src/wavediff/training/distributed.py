"""One process, or one of N started by torchrun: process group, device, collectives, clean exit.

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment) the group
uses NCCL on GPUs and gloo on CPU. Rank 0 alone writes files.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..errors import WaveDiffError, first_line


class PeerLost(WaveDiffError):
    """Another training process (or node) died, or stopped answering within the collective timeout."""


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order ([obj] in one process)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """In-place reduction over ranks (`op`: sum | min | max); a no-op in one process."""
        if self.distributed:
            dist.all_reduce(
                tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op]
            )
        return tensor


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """The context of this process; joins the process group when started by torchrun.

    `timeout_s` bounds every collective: a process (or a whole node) that stops answering for
    that long makes the others fail with `PeerLost` instead of waiting forever.
    """
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        try:
            dist.init_process_group(
                backend,
                timeout=datetime.timedelta(seconds=timeout_s),
                device_id=dev if dev.type == "cuda" else None,
            )
        except (RuntimeError, ValueError) as e:
            raise PeerLost(
                f"cannot join the {world} training processes ({first_line(e)}); check that every node runs the "
                f"same torchrun command with the same --rdzv-endpoint, then start them again"
            ) from None
    return DistContext(rank, world, local_rank, dev)


def is_peer_failure(e: BaseException) -> bool:
    """Whether `e`, raised by a collective, means another process died or stopped answering."""
    if isinstance(e, dist.DistError):
        return True
    if not isinstance(e, RuntimeError):
        return False
    text = str(e).lower()
    return any(
        s in text
        for s in ("gloo", "nccl", "connection closed", "connection reset", "timed out", "timeout", "broken pipe")
    )


def shutdown(ctx: DistContext) -> None:
    """Wait for every rank, then leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def hard_exit(code: int) -> None:
    """Flush and leave without interpreter teardown.

    gloo worker processes occasionally abort while the interpreter tears down
    (after all their work is done); calling this once every file is written and
    the group is destroyed makes the exit status reliable.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
