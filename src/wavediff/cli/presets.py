"""`wavediff presets`: list the named presets, or print one resolved."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("name", nargs="?", help="preset to print in full")


def run(args) -> int:
    from ..presets import PRESETS, get_preset

    if args.name:
        print(get_preset(args.name).to_json())
        return 0
    print(f"{'preset':<22} {'space':<8} {'image':>5} {'T':>2} {'G':<8} {'D':<6} {'batch x gpus':>12}")
    for name, c in PRESETS.items():
        print(
            f"{name:<22} {c.space:<8} {c.image_size:>5} {c.diffusion.num_timesteps:>2} "
            f"{c.generator.net_type:<8} {c.discriminator.kind:<6} "
            f"{f'{c.train.batch_size} x {c.train.gpus}':>12}"
        )
    return 0
