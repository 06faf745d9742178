"""Process-wide CPU settings that make a large difference on small machines.

* Flush denormals to zero. Several NCSN++ layers start at ~1e-10 scale, so a
  fresh model's activations and gradients fall into float32's denormal range,
  which the CPU handles in microcode: measured here, the first training steps
  of the `tiny` preset took 6 s each instead of 0.19 s. Values below 1e-38 do
  not matter to any result.
* A bounded OpenMP spin. By default libgomp busy-waits ~300k spins between
  parallel regions: two threads then collapse 20-50x whenever another process
  wants a core. Passive waiting (no spin) fixes that but made the small demo
  model's training step 1.65x slower on an idle machine (0.33 s against
  0.20 s). Measured on a 2-core AMD EPYC (digits step, idle / with a second
  training process): spin 0: 0.33 / 0.56 s; 300: 0.28 / 0.60 s; 2000: 0.21 /
  0.83 s; 10000: 0.20 / 1.8 s; the default: 0.20 s idle and 20-50x slower
  under load. How long a spin must be depends on the machine: on a 2-core Intel
  Xeon VM, where waking a sleeping thread costs more, 2000 made cifar10
  sampling 1.3-1.5x slower than the default at batch 1 (0.15-0.20 s against
  0.12) and up to 1.4x at batch 8, while 10000 ran at the default's speed
  (0.12-0.13 s; batch 8 0.53 against 0.50-0.54 s); with a busy-looping process
  on one core: 2000 0.30 s, 10000 0.36-0.39 s, the default 0.54 s. Hence 10000:
  the idle speed on both machines, a bounded loss under load (where
  OMP_NUM_THREADS=1 is the better setting anyway). Must be set before torch
  loads OpenMP, so the CLI calls `configure_environment()` first thing; an
  explicit setting wins.
* Large allocations stay in the heap (Linux, glibc). PyTorch's CPU tensors come from plain malloc, and glibc
  serves every block above its mmap threshold (128 KB, adapting up to 32 MB) with a fresh mmap, which the
  kernel zero-fills page by page on first touch and unmaps on free. A sampler or training step allocates the
  same large activations at every layer of every step, so on large maps it spent more time in page faults than
  in arithmetic: celeba_256 sampling at batch 8 on 2 cores took 5.8 s in fp32 and 2.3 s in bf16, and 2.9 s and
  1.8 s with blocks below 1 GB kept in the heap and freed memory kept for reuse (`mallopt`). The price is a
  resident size that stays at the run's peak. WAVEDIFF_MALLOC_TUNING=0, or any MALLOC_*_ environment variable
  (glibc's own tunables), leaves malloc as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_KEEP_BELOW = 1 << 30  # blocks up to 1 GB come from the heap
_TRIM_ABOVE = 2**31 - 1  # return freed heap memory to the system only beyond 2 GB of it
_allocator_configured: bool | None = None


OMP_SPINCOUNT = "10000"  # GOMP_SPINCOUNT unless the user sets it or OMP_WAIT_POLICY (see above)


def configure_environment() -> None:
    """Environment variables read when torch is first imported (no effect afterwards)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", OMP_SPINCOUNT)


def configure_torch() -> None:
    import torch

    torch.set_flush_denormal(True)
    configure_allocator()


def configure_allocator() -> bool:
    """Keep large blocks in glibc's heap (see above); True when done, in this process, once."""
    global _allocator_configured
    if _allocator_configured is None:
        _allocator_configured = _tune_glibc_malloc()
    return _allocator_configured


def _tune_glibc_malloc() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get("WAVEDIFF_MALLOC_TUNING", "1") == "0":
        return False
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or "GLIBC_TUNABLES" in os.environ:
        return False  # the user tunes malloc already
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc; musl and others have no libc.so.6 or no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # glibc versions that cap the threshold at 32 MB (their largest heap block) refuse 1 GB: take the cap then
    kept = mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW) or mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    return bool(kept) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE))


def configure_training_device(device) -> None:
    """On CUDA, let cuDNN autotune its convolution algorithms: a training run repeats the same shapes (fixed batch,
    `drop_last`), so the first iteration's search pays for itself, as in EDM's training loop. The authors' code leaves
    it off. Elsewhere nothing. Like TF32, this may pick non-deterministic kernels; CUDA training is not bitwise
    reproducible either way (convolution backward uses atomics)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a batch scheduler)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


NETWORK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def network_timeout(seconds: float | None = None):
    """Downloads (torchvision's datasets, torch hub's weights) open their connections without a timeout, so a
    connection that stalls (a proxy or firewall that accepts and never answers) would hang the command silently
    for ever. Within this block every new socket gives up after `seconds` (default NETWORK_TIMEOUT_S) without
    data."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S if seconds is None else seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
