"""`wavediff bench`: time the sampler with the paper's protocol.

Timed region, as in the paper: all T generator calls with posterior sampling,
the x2 and the inverse wavelet transform, for one batch (100 images; 25 at 512
and 1024 px). 10 warm-up runs, then 300 timed runs (CUDA events on a GPU).
"""

from __future__ import annotations

from .fastopts import add_fast_arguments, describe, fast_from_args


def add_arguments(p):
    p.add_argument(
        "checkpoint",
        nargs="?",
        help="a checkpoint (ours or a run directory, or the authors' .pth with --preset or --official-args)",
    )
    p.add_argument(
        "--preset",
        help="alone: time a preset's architecture with random weights (speed does not depend on the weights); "
        "with a checkpoint: the paper preset an authors' .pth belongs to",
    )
    p.add_argument("--official-args", metavar="ARGS.json", help="for the authors' .pth")
    p.add_argument("--batch", type=int, help="batch size (default: the paper's, 100, or 25 at >= 512 px)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--device", default=None, help="default: cuda when available")
    add_fast_arguments(p)
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")


def run(args) -> int:
    import torch

    from ..devices import resolve_device
    from ..errors import ConfigError
    from ..timing import time_sampler

    if args.runs < 1 or args.warmup < 0:
        raise ConfigError(f"--runs must be >= 1 and --warmup >= 0, got {args.runs} and {args.warmup}")
    if args.batch is not None and args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: PyTorch's default), got {args.threads}")
    if not (args.checkpoint or args.preset):
        raise ConfigError("say what to time: a checkpoint, or --preset NAME for its architecture with random weights")
    if args.official_args and not args.checkpoint:
        raise ConfigError("--official-args describes an authors' checkpoint; give the .pth it belongs to as well")
    if (args.compile or args.compile_mode) and args.warmup == 0:
        import sys

        print("note: --warmup 0 with --compile: the first timed run includes the compile", file=sys.stderr)
    if args.json:
        from ..outputs import check_writable

        check_writable(args.json, flag="--json")  # before minutes of timing, not after
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.checkpoint:
        from ..models.generator import build_generator
        from ..presets import get_preset

        cfg = get_preset(args.preset)
        generator = build_generator(cfg.generator).to(device).eval().requires_grad_(False)
        source = f"preset {args.preset} (random weights)"
    else:
        from ..checkpoints.convert import load_any_generator

        generator, cfg = load_any_generator(
            args.checkpoint, preset=args.preset, official_args=args.official_args, device=device
        )
        source = args.checkpoint
    batch = args.batch or (25 if cfg.image_size >= 512 else 100)
    fast = fast_from_args(args)
    banner = f"timing {source}: batch {batch}, {args.warmup} warm-up + {args.runs} timed runs ..."
    result = time_sampler(
        generator, cfg, batch, device, fast, args.warmup, args.runs, on_ready=lambda: print(banner, flush=True)
    )
    print(f"model      {source}: {cfg.image_size}px {cfg.space}, T={cfg.diffusion.num_timesteps}")
    setting = describe(fast, device, generator)
    print(
        f"setting    batch {batch}, {setting}, device {result['device']}, torch {torch.__version__}, "
        f"{args.warmup} warm-up + {args.runs} timed runs ({result['clock']})"
    )
    print(f"time/batch {result['mean']:.4f} s +- {result['std']:.4f} s  ({batch / result['mean']:.1f} images/s)")
    if args.json:
        import json

        from ..checkpoints.io import atomic_write

        report = dict(result, model=source, preset=cfg.name, batch=batch)
        from ..devices import machine_name

        report.update(setting=setting, torch=torch.__version__, warmup=args.warmup, runs=args.runs)
        report.update(machine=machine_name(torch.device(result["device"])), threads=torch.get_num_threads())
        atomic_write(args.json, lambda tmp: open(tmp, "w").write(json.dumps(report, indent=1)))
    return 0
