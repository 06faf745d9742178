"""`wavediff <command>`: one entry point, one module per command.

Each command module defines `add_arguments(parser)` and `run(args) -> int`.
Heavy imports stay inside `run` so `--help` is instant.
Errors derived from `WaveDiffError` (and a few well-understood OS errors) are
printed as one line, `error: ...`, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import Interrupted, WaveDiffError
from ..runtime import configure_environment, configure_torch

# command name -> (module relative to this package, one-line help)
COMMANDS = {
    "demo": (".demo", "train a small WaveDiff on bundled digits on the CPU and show that it learns"),
    "train": (".train", "train a preset on a dataset or image folder (1..N processes with torchrun)"),
    "sample": (".sample", "generate images from a checkpoint (ours or the authors')"),
    "fid": (".fid", "FID: reference statistics (`fid stats`) and scores (`fid compute`)"),
    "pr": (".pr", "improved precision and recall (k=3, as StyleGAN2-ADA's pr50k3)"),
    "bench": (".bench", "time the sampler with the paper's protocol"),
    "convert-official": (".convert", "convert the authors' netG_<epoch>.pth / content.pth into our format"),
    "presets": (".presets", "list the named presets, or print one resolved"),
    "serve": (".serve", "a local web playground: samples, interpolations, latent variations, trajectories"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported (all of them if None)."""
    parser = argparse.ArgumentParser(
        prog="wavediff",
        description="WaveDiff: wavelet diffusion GANs. Train, sample, evaluate, time, and load the authors' "
        "released checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            module = importlib.import_module(module_name, __name__)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    configure_torch()
    try:
        return int(args._run(args) or 0)
    except WaveDiffError as e:
        return report(e, _rank_suffix())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _rank_suffix() -> str:
    """ " (rank 2)" in a process torchrun started other than rank 0: every process reports its own error, and the
    lines say which is which (the training loop does the same once its process group exists)."""
    rank = os.environ.get("RANK", "0")
    return "" if rank in ("", "0") or os.environ.get("WORLD_SIZE", "1") == "1" else f" (rank {rank})"


def report(e: WaveDiffError, prefix: str = "") -> int:
    """Print `e` as one line (`error: ...`, or `interrupted: ...` after Ctrl-C); returns the exit status."""
    kind = "interrupted" if isinstance(e, Interrupted) else "error"
    text = str(e)
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: the worker's own message is the last line
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    message = " ".join(text.split())  # always one line
    print(f"{kind}{prefix}: {message}", file=sys.stderr)
    return getattr(e, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
