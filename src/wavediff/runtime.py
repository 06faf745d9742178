"""Process-wide CPU settings that make a large difference on small machines.

* Flush denormals to zero. Several NCSN++ layers start at ~1e-10 scale, so a
  fresh model's activations and gradients fall into float32's denormal range,
  which the CPU handles in microcode: measured here, the first training steps
  of the `tiny` preset took 6 s each instead of 0.19 s. Values below 1e-38 do
  not matter to any result.
* A short OpenMP spin. By default libgomp busy-waits ~300k spins between
  parallel regions: two threads then collapse 20-50x whenever another process
  wants a core. Passive waiting (no spin) fixes that but made the small demo
  model's training step 1.65x slower on an idle machine (0.33 s against
  0.20 s). Measured on 2 cores (digits step, idle / with a second training
  process): spin 0: 0.33 / 0.56 s; 300: 0.28 / 0.60 s; 2000: 0.21 / 0.83 s;
  10000: 0.20 / 1.8 s; the default: 0.20 s idle and 20-50x slower under load.
  2000 keeps the idle speed and degrades gracefully. Must be set before torch loads OpenMP, so the CLI
  calls `configure_environment()` first thing; an explicit setting wins.
"""

from __future__ import annotations

import os


def configure_environment() -> None:
    """Environment variables read when torch is first imported (no effect afterwards)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "2000")


def configure_torch() -> None:
    import torch

    torch.set_flush_denormal(True)


def configure_training_device(device) -> None:
    """On CUDA, let cuDNN autotune its convolution algorithms: a training run repeats the same shapes (fixed batch,
    `drop_last`), so the first iteration's search pays for itself, as in EDM's training loop. The authors' code leaves
    it off. Elsewhere nothing. Like TF32, this may pick non-deterministic kernels; CUDA training is not bitwise
    reproducible either way (convolution backward uses atomics)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
