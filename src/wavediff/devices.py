"""`--device` values, checked once: a device this machine has, or one line saying what to pass instead."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """The torch device for `--device NAME` (None: this process's GPU when there is one, else the CPU).

    Raises a one-line ConfigError for names torch does not know, device types this
    package does not run on, CUDA without a usable GPU, or a GPU index out of range.
    """
    if name is None or name == "":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "mps":
        if not (torch.backends.mps.is_available()):
            raise ConfigError(
                f"device {name!r} requested but this machine has no usable MPS device; use the CPU (--device cpu; "
                "device='cpu' in Python)"
            )
        return dev
    if dev.type != "cuda":
        raise ConfigError(f"device type {dev.type!r} is not supported by wavediff; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} requested but no CUDA GPU is available (no NVIDIA driver or GPU, or a CPU-only "
            f"torch build); use the CPU (--device cpu; device='cpu' in Python)"
        )
    count = torch.cuda.device_count()
    index = local_rank if dev.index is None else dev.index
    if index >= count:
        have = "cuda:0" if count == 1 else f"cuda:0 .. cuda:{count - 1}"
        if dev.index is None:  # one GPU per process: LOCAL_RANK picks it
            raise ConfigError(
                f"process {local_rank} on this machine needs cuda:{local_rank}, but it has {count} GPU(s) ({have}); "
                f"start at most {count} process(es) per machine (torchrun --nproc_per_node {count})"
            )
        raise ConfigError(f"device {name!r} does not exist: this machine has {count} GPU(s) ({have}); pass one of them")
    return torch.device("cuda", index)


def machine_name(device: torch.device) -> str:
    """What a timing ran on: the GPU's name, or the CPU's model and core count (for benchmark reports)."""
    import os
    import platform

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"
