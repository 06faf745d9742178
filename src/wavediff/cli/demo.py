"""`wavediff demo`: train a small WaveDiff on the digits bundled with scikit-learn, on the CPU."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument(
        "--minutes", type=float, default=None, help="wall-clock training budget (default 8; none with --steps)"
    )
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="train this many steps instead of for a time (0: use --minutes); with --minutes too, whichever ends first",
    )
    p.add_argument("--resume", metavar="auto|PATH", help="continue a demo run")


def run(args) -> int:
    from ..demo.run import run_demo
    from ..errors import ConfigError
    from ..outputs import check_writable

    if args.minutes is not None and not args.minutes > 0:
        raise ConfigError(f"--minutes must be positive, got {args.minutes:g}")
    minutes = args.minutes if args.minutes is not None else 0.0 if args.steps else 8.0  # 0: no time limit
    if args.steps < 0:
        raise ConfigError(f"--steps must be >= 1 (or 0: use --minutes), got {args.steps}")
    check_writable(args.out, directory=True)
    res = run_demo(args.out, minutes=minutes, seed=args.seed, steps=args.steps, resume=args.resume)
    q = res.score
    s, real, noise = q["samples"], q["real_held_out"], q["noise"]
    print()
    print(
        f"quality: {s['recognised']:.0%} of the samples are recognised as digits with probability >= 0.9 "
        f"({s['classes_seen']} of 10 digits seen); real held-out digits score {real['recognised']:.0%}, "
        f"noise {noise['recognised']:.0%}"
    )
    near = q["nearest_training_digit"]
    print(
        f"memorisation: samples lie {near['samples']:.2f} from their nearest training digit on average, "
        f"held-out real digits {near['real_held_out']:.2f} (8x8 grid, L2; copies would lie near 0)"
    )
    fid = q["digits_fid"]
    if fid:
        print(
            f"digits FID: {fid['last']:.3g} at step {fid['last_step']} (best {fid['best']:.3g} at step "
            f"{fid['best_step']}, kept as checkpoints/generator_best.safetensors); {fid['metric_seconds']:.0f} s "
            f"of measuring, not counted in the training time"
        )
    print(f"  samples next to real digits: {res.figure}")
    if res.progress:
        print(f"  the run at a few moments:    {res.progress}  (samples, digits FID, losses)")
    print(f"  losses over time:            {res.losses}")
    print(f"  quality figure (JSON):       {res.quality}")
    print(f"  run directory:               {res.run_dir}  (config, log, checkpoints)")
    print(f"  sample more: wavediff sample {res.generator} --n 64 --out grid.png")
    print(f"  play with it: wavediff serve {res.run_dir}  (a page of samples, interpolations, trajectories)")
    print(res.generator)
    return 0
