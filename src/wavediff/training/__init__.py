"""Training WaveDiff / DDGAN: the authors' D and G steps (`step`), EMA (`ema`),
resumable training states (`state`), torchrun/DDP support (`distributed`),
run records (`logging`) and the loop itself (`trainer.train_run`)."""

from .trainer import train_run, validate_config

__all__ = ["train_run", "validate_config"]
