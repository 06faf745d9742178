"""Process-wide CPU settings that make a large difference on small machines.

* Flush denormals to zero. Several NCSN++ layers start at ~1e-10 scale, so a
  fresh model's activations and gradients fall into float32's denormal range,
  which the CPU handles in microcode: measured here, the first training steps
  of the `tiny` preset took 6 s each instead of 0.19 s. Values below 1e-38 do
  not matter to any result.
* Passive OpenMP waiting. With PyTorch's default busy-waiting, two threads
  collapse 20-50x when any other process wants a core; passive waiting costs
  nothing measurable when the machine is idle. Must be set before torch loads
  OpenMP, so the CLI calls `configure_environment()` first thing.
"""
from __future__ import annotations

import os


def configure_environment() -> None:
    """Environment variables read when torch is first imported (no effect afterwards)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def configure_torch() -> None:
    import torch

    torch.set_flush_denormal(True)
