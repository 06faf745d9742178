"""`wavediff convert-official`: the authors' netG_<epoch>.pth -> our self-describing .safetensors."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("checkpoint", help="the authors' netG_<epoch>.pth (or content.pth)")
    src = p.add_mutually_exclusive_group()  # neither: a content.pth, which carries the authors' arguments
    src.add_argument("--preset", help="the paper preset the checkpoint belongs to (e.g. cifar10, celeba_256)")
    src.add_argument(
        "--official-args",
        metavar="ARGS.json",
        help="JSON object of the authors' training arguments (a run.sh line is enough); a content.pth carries its "
        "own, so it needs neither this nor --preset",
    )
    p.add_argument("-o", "--out", required=True, help="output .safetensors path")


def run(args) -> int:
    from ..checkpoints.convert import convert_official_checkpoint
    from ..errors import ConfigError
    from ..outputs import check_writable

    if not args.out.lower().endswith(".safetensors"):
        raise ConfigError(f"output {args.out} must end with .safetensors")
    check_writable(args.out, flag="-o")
    out, cfg, n_params = convert_official_checkpoint(
        args.checkpoint, args.out, preset=args.preset, official_args=args.official_args
    )
    g = cfg.generator
    print(
        f"converted {args.checkpoint} -> {out}: {g.net_type} generator, {n_params:,} parameters, "
        f"{cfg.image_size}px {cfg.space} space, T={cfg.diffusion.num_timesteps}, band order {g.band_order}"
    )
    return 0
