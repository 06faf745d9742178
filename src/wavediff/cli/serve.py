"""`wavediff serve`: a local web playground for a checkpoint: samples, interpolations, latent variations,
trajectories and sub-bands."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument(
        "checkpoint",
        nargs="?",
        metavar="CHECKPOINT | RUN_DIR",
        help="a .safetensors checkpoint, the authors' .pth with --preset/--official-args, or a run directory "
        "(its final, else latest, EMA generator); default: runs/demo",
    )
    p.add_argument("--preset", help="for the authors' .pth: the paper preset it belongs to")
    p.add_argument("--official-args", metavar="ARGS.json", help="for the authors' .pth: their training arguments")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on, IPv4 or IPv6 (default 127.0.0.1: this machine only; ::1 for IPv6)",
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "tf32", "bf16", "fp16"],
        help="as `wavediff sample --precision` (default auto: bf16 where it is native, so seed s shows what "
        "`wavediff sample --seeds s` writes)",
    )
    p.add_argument("--quiet", action="store_true", help="do not log each request")


def run(args) -> int:
    import os
    import signal
    import sys

    from ..checkpoints.convert import load_any_generator
    from ..devices import resolve_device
    from ..serve.app import bind
    from ..serve.generation import Playground, resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    server = bind(args.host, args.port, quiet=args.quiet)
    try:
        generator, cfg = load_any_generator(path, preset=args.preset, official_args=args.official_args, device=device)
        server.playground = Playground(generator, cfg, device, args.precision, source=path.name)
        if not server.loopback_only:  # the bound address: localhost, 127.0.0.2, ::1 and [::1] are all local
            print(
                f"note: listening on {args.host}: anyone who can reach this port can use the playground",
                file=sys.stderr,
            )
        print(
            f"serving {path} ({cfg.name}, {cfg.image_size}px, T={cfg.diffusion.num_timesteps}, {device}, "
            f"{server.playground.precision}) at {server.url}  (Ctrl+C stops)",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _stop)  # `kill`, `timeout`, a service manager: stop as Ctrl-C does
        server.serve_forever()
    except KeyboardInterrupt:
        busy = server.queue.pending
        print(f"stopped{f' ({busy} generations cut short)' if busy else ''}", file=sys.stderr, flush=True)
        server.server_close()
        if busy:  # a generation cannot be interrupted, and exiting normally would wait for it (a second Ctrl-C
            os._exit(0)  # then aborted the interpreter): nothing is written by the playground, so leave at once
    finally:
        server.server_close()
    return 0


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt
