"""Training iterations replayed as CUDA graphs (`train.cuda_graphs`, `wavediff train --cuda-graphs`).

At small batches a GPU training iteration is bound by kernel launches, not by arithmetic: on an H100, cifar10 at
batch 32 took 91 ms per iteration without R1 against 131 ms at batch 128 (docs/gpu_runs.md), the GPU waiting for
the host to launch a few thousand kernels. A CUDA graph launches the whole iteration, D step, G step and both Adam
updates, at once.

Why this is exact: `TrainStep.iteration` draws all its randomness from the training generator and never waits for
the host (the losses stay on the device), so for a given kind of iteration (with or without R1) and given learning
rates it is a fixed sequence of kernels. Each kind is captured once, after it has run eagerly `WARMUP` times
(cuDNN's autotuning, the optimizers' lazily made states and the library workspaces happen outside the capture;
those eager iterations are real training steps), then replayed with the batch copied into the graph's input. The
training generator is registered with every graph, so each replay draws fresh noise and the generator's state,
which checkpoints save, advances as in eager training: a replay draws the numbers the eager iteration would have.
A captured Adam step holds its learning rate as a constant, so when the cosine schedule changes the rates (once per
epoch) the graphs are captured again. The EMA update and the loss bookkeeping stay outside (a few launches).

Costs: each kind keeps its own activation memory for good (two graphs when R1 is on); one process only (no DDP:
its gradient buckets are not captured here). Without a GPU nothing of this runs: `check_cuda_graphs` refuses it.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import torch

from ..errors import ConfigError
from .step import TrainStep


def check_cuda_graphs(device: torch.device, world_size: int) -> None:
    """ConfigError, in one line, where `train.cuda_graphs` cannot run."""
    if torch.device(device).type != "cuda":
        raise ConfigError(f"train.cuda_graphs needs a CUDA device, not {device}; drop --cuda-graphs")
    if world_size > 1:
        raise ConfigError(
            f"train.cuda_graphs runs in one process only, not {world_size}; drop --cuda-graphs for multi-GPU training"
        )


@contextlib.contextmanager
def _capturable(*optimizers: torch.optim.Optimizer):
    """Mark the optimizers capturable while a graph captures their step (PyTorch refuses otherwise). Their fused
    Adam kernels read the step count from the device either way, so the arithmetic is the same; outside captures the
    flag stays off (it would only slow eager steps down and warn)."""
    groups = [group for opt in optimizers for group in opt.param_groups]
    saved = [group["capturable"] for group in groups]
    for group in groups:
        group["capturable"] = True
    try:
        yield
    finally:
        for group, flag in zip(groups, saved):
            group["capturable"] = flag


class GraphedTrainStep:
    """`TrainStep.iteration`, replayed from a CUDA graph per kind of iteration (with or without R1, batch shape)
    once that kind has run eagerly `WARMUP` times."""

    WARMUP = 2  # eager iterations of a kind before its capture

    def __init__(self, step: TrainStep):
        check_cuda_graphs(step.device, 1)
        for opt in (step.opt_g, step.opt_d):
            if not all(group.get("fused") for group in opt.param_groups):
                raise ConfigError("train.cuda_graphs needs fused Adam optimizers (their step reads no host state)")
        self.step = step
        self.eager_runs: Counter[tuple] = Counter()
        self.captures = self.replays = 0  # for the run's log (and the tests)
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[dict, dict]]] = {}
        self._lrs: tuple[float, ...] = ()
        self._side = torch.cuda.Stream(step.device)

    def iteration(self, x0: torch.Tensor, r1: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """As `TrainStep.iteration`; the returned losses are overwritten by the next replay of the same kind."""
        r1 = bool(r1 and self.step.r1_gamma > 0)
        kind = (r1, tuple(x0.shape))  # training keeps one batch shape (drop_last); benchmarks try several
        lrs = tuple(float(g["lr"]) for opt in (self.step.opt_g, self.step.opt_d) for g in opt.param_groups)
        if lrs != self._lrs:  # the schedule moved: graphs hold the old rates as constants
            self._release()
            self._lrs = lrs
        if kind not in self._graphs:
            if self.eager_runs[kind] < self.WARMUP:
                self.eager_runs[kind] += 1
                return self._eager(x0, r1)
            self._graphs[kind] = self._capture(x0, r1)
        graph, static_x0, losses = self._graphs[kind]
        static_x0.copy_(x0)
        graph.replay()
        self.replays += 1
        return losses

    def _eager(self, x0: torch.Tensor, r1: bool):
        """An eager iteration on a side stream, as PyTorch's graph notes ask of the iterations before a capture."""
        device, side = self.step.device, self._side
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            losses = self.step.iteration(x0, r1)
        torch.cuda.current_stream(device).wait_stream(side)
        return losses

    def _capture(self, x0: torch.Tensor, r1: bool):
        step = self.step
        static_x0 = x0.clone()
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(step.rng)  # each replay advances the training generator
        step.autocast_cache = False
        try:
            with torch.cuda.device(step.device), _capturable(step.opt_g, step.opt_d), torch.cuda.graph(graph):
                losses = step.iteration(static_x0, r1)
        except RuntimeError as e:
            text = str(e).strip()
            first = text.splitlines()[0] if text else type(e).__name__
            raise RuntimeError(
                f"CUDA graph capture of a training iteration failed ({first}); train without --cuda-graphs"
            ) from e
        finally:
            step.autocast_cache = True
        self.captures += 1
        return graph, static_x0, losses

    def _release(self) -> None:
        for graph, _, _ in self._graphs.values():
            graph.reset()
        self._graphs.clear()
