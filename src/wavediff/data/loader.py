"""DataLoader construction with a resumable, seed-determined data order."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import DataError
from ..runtime import usable_cpus
from .base import ImageDataset, ItemKey


class ResumableSampler(DistributedSampler):
    """DistributedSampler (also for one process) whose order in epoch `e` depends
    only on (seed, e), and which skips the first `skip` indices of epoch
    `start_epoch`, to continue a run that stopped mid-epoch.

    Call `set_epoch(e)` before each epoch, as with DistributedSampler. `keyed=True`
    yields `ItemKey(index, seed, epoch)` instead of bare indices, so an `ImageDataset`
    draws each image's flip from (seed, epoch, index) whichever worker loads it.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_epoch: int = 0,
        skip: int = 0,
        keyed: bool = False,
    ):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start_epoch = start_epoch
        self.skip = skip
        self.keyed = keyed
        self.set_epoch(start_epoch)

    def _skipped(self) -> int:
        return min(self.skip, self.num_samples) if self.epoch == self.start_epoch else 0

    def __iter__(self) -> Iterator[int] | Iterator[ItemKey]:
        indices = itertools.islice(super().__iter__(), self._skipped(), None)
        if not self.keyed:
            return indices
        seed, epoch = self.seed, self.epoch
        return (ItemKey(i, seed, epoch) for i in indices)

    def __len__(self) -> int:
        return self.num_samples - self._skipped()


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
    start_epoch: int = 0,
    start_batch: int = 0,
    pin_memory: bool | None = None,
    multiprocessing_context: str | None = None,
    persistent_workers: bool = True,
) -> DataLoader:
    """A DataLoader over `dataset` using a `ResumableSampler` (`loader.sampler`).

    Each process (rank of world_size) sees its own shard. To resume after
    `start_batch` batches of epoch `start_epoch`, pass both: that epoch then
    yields only its remaining batches, identical to those of an uninterrupted run.
    An `ImageDataset` gets `ItemKey`s, so random flips come from (seed, epoch, index): the
    same with 0 or N workers, persistent or not, and after a resume. `persistent_workers`
    (with num_workers > 0) keeps the workers alive from one epoch to the next.
    """
    # no more workers than usable cores (PyTorch warns past that); the data order and flips do not depend on the
    # number of workers
    num_workers = min(num_workers, usable_cpus())
    sampler = ResumableSampler(
        dataset,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        start_epoch=start_epoch,
        skip=start_batch * batch_size,
        keyed=isinstance(dataset, ImageDataset),
    )
    if drop_last and sampler.num_samples < batch_size:
        raise DataError(
            f"the dataset has {len(dataset)} images ({sampler.num_samples} per process), fewer than "
            f"the batch size {batch_size}; use more images or a smaller train.batch_size"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        generator=torch.Generator().manual_seed(seed * 1000 + rank),
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        worker_init_fn=leave_signals_to_the_main_process if num_workers > 0 else None,
    )


def leave_signals_to_the_main_process(_worker_id: int) -> None:
    """In a data worker: a terminal's Ctrl-C (sent to the whole process group) is the main process's to handle,
    which stops training at a whole step and saves it (`training/stopping.py`); SIGTERM (Slurm sends it to every
    process) ends the worker quietly, with status 0, since a worker that a signal kills makes PyTorch raise an
    error in the main process at once, wherever it is, and the run could not save its state."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
