"""`wavediff train`: train a preset on a dataset, in one process or N under torchrun.

    wavediff train --preset cifar10 --data ~/data/cifar10 --out runs/c10
    wavediff train --preset tiny --data imgs/ --out runs/t --steps 500 --set train.lr_g=2e-4
    wavediff train --preset cifar10 --data my_images/ --dataset folder --out runs/mine
    wavediff train --out runs/c10 --resume auto            # continue (config from the run)
    torchrun --standalone --nproc_per_node 4 -m wavediff train --preset lsun --data ... --out ...

Any config field can be set with `--set section.field=value` (repeatable); the
flags below are shortcuts applied after them. The last line printed is the
path of the final EMA generator checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import ConfigError, WaveDiffError

DEFAULT_DIST_TIMEOUT_S = 1800.0
# data/build.py's DATASET_NAMES, spelled out so `--help` does not import torch
DATASET_CHOICES = ("cifar10", "stl10", "lsun", "celeba_256", "celeba_512", "celeba_1024", "folder", "digits")

# flag attribute -> config field
FLAG_FIELDS = {
    "data": "data.path",
    "dataset": "data.dataset",
    "steps": "train.steps",
    "checkpoint_every": "train.checkpoint_every",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "precision": "train.precision",
    "metrics_every": "train.metrics_every",
    "metrics_n": "train.metrics_n",
    "fid_ref": "train.fid_ref",
    "inception_weights": "train.inception_weights",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="named preset (`wavediff presets`); optional with --resume")
    p.add_argument("--data", help="dataset path (data.path): a folder of images or the preset's dataset files")
    p.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        help="what --data holds (data.dataset; default: the preset's). 'folder': any folder of images",
    )
    p.add_argument("--out", required=True, help="run directory (config, log, samples, checkpoints)")
    p.add_argument("--steps", type=int, help="total training iterations (train.steps; default: train.num_epoch epochs)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (train.checkpoint_every)")
    p.add_argument("--batch-size", type=int, help="batch size per process (train.batch_size)")
    p.add_argument("--seed", type=int, help="training seed (train.seed)")
    p.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run: 'auto' = the latest state in --out, or a state_XXXXXXX.pt file",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set train.lr_g=2e-4 (repeatable)",
    )
    p.add_argument(
        "--metrics-every",
        type=int,
        metavar="K",
        help="every K steps, the FID of EMA samples; the best generator is kept (train.metrics_every)",
    )
    p.add_argument("--metrics-n", type=int, metavar="N", help="samples per measurement (train.metrics_n)")
    p.add_argument(
        "--fid-ref",
        metavar="REF.npz",
        help="reference statistics from `wavediff fid stats` (train.fid_ref; digits need none)",
    )
    p.add_argument(
        "--inception-weights",
        metavar="PATH",
        help="local pt_inception-2015-12-05-6726825d.pth (train.inception_weights; default: torch hub cache)",
    )
    p.add_argument("--precision", choices=("fp32", "bf16"), help="autocast precision (train.precision)")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (train.compile)")
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay each iteration from a CUDA graph: for small batches, where the GPU waits for kernel launches "
        "(one GPU, one process; train.cuda_graphs)",
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: this process's GPU, else the CPU)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="under torchrun: give up, with one line, when another process (node) has not answered for this "
        f"long (default {DEFAULT_DIST_TIMEOUT_S:g}; env WAVEDIFF_DIST_TIMEOUT)",
    )


def check_arguments(args: argparse.Namespace) -> None:
    """One line for flag values no run can use, before anything is read or written."""
    for flag in ("steps", "batch_size", "checkpoint_every"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            hint = " (leave it out to train train.num_epoch epochs)" if flag == "steps" else ""
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {value}{hint}")
    if args.dist_timeout is not None and not args.dist_timeout > 0:  # NaN too
        raise ConfigError(f"--dist-timeout must be a positive number of seconds, got {args.dist_timeout:g}")


NO_DIST_TIMEOUT_S = 365 * 24 * 3600.0  # what `inf` means: PyTorch takes a timedelta, which has no infinity


def dist_timeout_s(args: argparse.Namespace) -> float:
    """--dist-timeout, else $WAVEDIFF_DIST_TIMEOUT, else the default; inf: a year (no limit in practice)."""
    if args.dist_timeout is not None:
        return min(args.dist_timeout, NO_DIST_TIMEOUT_S)
    env = os.environ.get("WAVEDIFF_DIST_TIMEOUT", "")
    if not env:
        return DEFAULT_DIST_TIMEOUT_S
    try:
        value = float(env)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"WAVEDIFF_DIST_TIMEOUT={env!r} is not a positive number of seconds; fix or unset it")
    return min(value, NO_DIST_TIMEOUT_S)


def resolve_config(args: argparse.Namespace):
    """The preset (or, when resuming without one, the run's own config) with the overrides applied."""
    from ..config import ExperimentConfig
    from ..presets import get_preset

    if args.preset:
        base = get_preset(args.preset)
    elif args.resume:
        base = ExperimentConfig.from_dict(_saved_config(Path(args.out), args.resume))
    else:
        raise ConfigError(
            "pass --preset NAME (list them with `wavediff presets`), or --resume auto to continue the run in --out"
        )
    overrides = list(args.set)
    overrides += [
        f"{field}={getattr(args, flag)}" for flag, field in FLAG_FIELDS.items() if getattr(args, flag) is not None
    ]
    if args.compile:
        overrides.append("train.compile=true")
    if args.cuda_graphs:
        overrides.append("train.cuda_graphs=true")
    cfg = base.override(overrides)
    if cfg.data.path:  # saved absolute, so `--resume auto` from another directory reads the same data
        cfg = cfg.override([f"data.path={Path(cfg.data.path).expanduser().absolute()}"])
    return cfg


def _saved_config(run_dir: Path, resume: str) -> dict:
    from ..training.state import load_state, newest_readable_state

    if resume != "auto":
        return load_state(Path(resume), mmap=True)["config"]
    found = newest_readable_state(run_dir, mmap=True)  # unreadable newer states are reported by the trainer
    if found.state is not None:
        return found.state["config"]
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise ConfigError(
            f"nothing to resume in {run_dir} (no checkpoints, no config.json); pass --preset to start a run there"
        )
    try:
        saved = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"cannot read {config_file} ({e}); restore it, or pass --preset to start over") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{config_file} is not a run's config (a JSON object); restore it, or pass --preset")
    return saved


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    cfg = resolve_config(args)
    if args.dry_run:
        from ..training.trainer import validate_config

        validate_config(cfg)
        print(cfg.to_json())
        return 0
    from ..errors import first_line
    from ..outputs import check_writable
    from ..training.distributed import PeerLost, hard_exit, init_distributed, is_peer_failure, shutdown
    from ..training.trainer import train_run
    from . import report

    if cfg.data.dataset == "folder" and cfg.data.path:
        data, out = Path(cfg.data.path).resolve(), Path(args.out).expanduser().resolve()
        if out == data or data in out.parents:
            raise ConfigError(
                f"--out {args.out} is inside the image folder {cfg.data.path}: its sample grids would become "
                f"training images; choose a run directory outside it"
            )
    check_writable(args.out, directory=True)
    ctx = init_distributed(args.device, timeout_s=dist_timeout_s(args))
    if not ctx.distributed:
        print(train_run(cfg, args.out, resume=args.resume, ctx=ctx))
        return 0
    # A torchrun worker: leave the group cleanly and exit without interpreter teardown.
    try:
        final = train_run(cfg, args.out, resume=args.resume, ctx=ctx)
    except WaveDiffError as e:
        hard_exit(report(e, "" if ctx.is_main else f" (rank {ctx.rank})"))
    except Exception as e:  # a peer lost while the run is set up (outside the training loop)
        if not is_peer_failure(e):
            raise
        message = f"lost contact with another training process while starting ({first_line(e, 120)}); start every "
        message += "node again with the same command"
        hard_exit(report(PeerLost(message), "" if ctx.is_main else f" (rank {ctx.rank})"))
    try:
        shutdown(ctx)
    except Exception as e:
        if not is_peer_failure(e):
            raise
        message = f"the run finished ({final}) but another process did not say goodbye ({first_line(e, 120)})"
        hard_exit(report(PeerLost(message), "" if ctx.is_main else f" (rank {ctx.rank})"))
    if ctx.is_main:
        print(final)
    hard_exit(0)
    return 0
