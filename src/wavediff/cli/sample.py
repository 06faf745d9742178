"""`wavediff sample`: images from a checkpoint into a folder, an .npz, or one grid PNG."""

from __future__ import annotations

import os

from .fastopts import add_fast_arguments, describe, fast_from_args


def add_arguments(p):
    p.add_argument(
        "checkpoint",
        help="our .safetensors checkpoint or a training run's directory (its final, else latest, generator), "
        "or the authors' .pth with --preset/--official-args",
    )
    p.add_argument("--n", type=int, help="number of samples (seeds 0..n-1 unless --seeds)")
    p.add_argument("--seeds", help="seed list, e.g. 0-49999 or 1,5,7-9; sample i depends only on seed i")
    p.add_argument(
        "--batch", type=int, default=64, help="batch size (the same images up to float rounding: README, Sampling)"
    )
    p.add_argument("--out", required=True, help="a folder (PNG per sample), FILE.npz (uint8 images), or GRID.png")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_fast_arguments(p)
    p.add_argument("--preset", help="for the authors' .pth: the paper preset it belongs to")
    p.add_argument("--official-args", metavar="ARGS.json", help="for the authors' .pth: their training arguments")


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..checkpoints.convert import load_any_generator
    from ..checkpoints.io import atomic_write
    from ..data.folder import IMAGE_EXTENSIONS
    from ..errors import ConfigError, Interrupted
    from ..outputs import check_writable
    from ..sampling import MAX_SEEDS, generate, parse_seeds
    from .dist import split_for_this_process

    if args.seeds:
        seeds = parse_seeds(args.seeds)
        if args.n is not None and args.n != len(seeds):
            raise ConfigError(f"--n {args.n} disagrees with --seeds ({len(seeds)} seeds); give one of them")
    elif args.n is not None:
        if not 1 <= args.n <= MAX_SEEDS:
            raise ConfigError(f"--n must be from 1 to {MAX_SEEDS:,}, got {args.n}")
        seeds = list(range(args.n))
    else:
        raise ConfigError("say how many samples: --n N or --seeds A-B")
    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    out = args.out
    grid = out.lower().endswith(".png")
    npz = out.lower().endswith(".npz")
    suffix = os.path.splitext(out)[1].lower()  # "pics.jpg/" (a trailing slash) still means a folder
    if suffix in IMAGE_EXTENSIONS - {".png"} and not os.path.isdir(out):
        # Without this check `--out grid.jpg` would quietly become a folder of PNGs named grid.jpg.
        raise ConfigError(
            f"--out {out}: grids are written as PNG (lossless); use GRID.png, FILE.npz or a folder for one PNG "
            "per sample"
        )
    if suffix and not (grid or npz) and not os.path.isdir(out):
        # `--out x.npy` or `x.pt` would otherwise become a folder of PNGs with a file's name
        raise ConfigError(
            f"--out {out}: {suffix} is not an output format; write FILE.npz, GRID.png, or a folder (one PNG per "
            f"sample; end the name with / when it has a dot)"
        )
    rank, world, device = split_for_this_process(args.device)
    if world > 1 and (grid or npz):
        raise ConfigError("with several processes write to a folder (--out DIR), not one file")
    check_writable(out, directory=not (grid or npz))
    my_seeds = seeds[rank::world]
    generator, cfg = load_any_generator(
        args.checkpoint, preset=args.preset, official_args=args.official_args, device=device
    )
    if not (grid or npz) and rank == 0:
        _note_other_pngs(out, seeds)
    chunks = []
    fast = fast_from_args(args)
    batches = generate(generator, my_seeds, args.batch, cfg, device, fast=fast)  # refuses bad options before the bar
    bar = tqdm(total=len(my_seeds), unit="img", desc="sampling", disable=rank != 0)
    done = 0
    try:
        for batch in batches:
            if grid or npz:
                chunks.append(batch)
            else:
                _write_pngs(out, my_seeds[done : done + len(batch)], batch)
            done += len(batch)
            bar.update(len(batch))
    except KeyboardInterrupt:
        bar.close()
        kept = f"the {done} PNGs in {out} are complete" if not (grid or npz) else f"nothing was written to {out}"
        raise Interrupted(f"after {done} of {len(my_seeds)} samples; {kept}") from None
    bar.close()
    if npz:
        images = np.concatenate(chunks)
        atomic_write(out, lambda tmp: _savez(tmp, images=images, seeds=np.asarray(seeds)))
    elif grid:
        _write_grid(out, np.concatenate(chunks))
    if rank == 0:
        print(
            f"wrote {len(seeds)} samples ({cfg.image_size}px, T={cfg.diffusion.num_timesteps}, "
            f"{describe(fast, device, generator)}, {device}) to {out}"
        )
    return 0


def _note_other_pngs(folder: str, seeds) -> None:
    """Say so when the folder already holds samples of other seeds: `fid compute` would score them all."""
    import re

    if not os.path.isdir(folder):
        return
    mine = set(seeds)
    found = (re.fullmatch(r"seed(\d+)\.png", name) for name in os.listdir(folder))
    others = sum(1 for m in found if m and int(m.group(1)) not in mine)
    if others:
        print(
            f"note: {folder} already holds {others} PNGs of other seeds (from an earlier run?); they stay, and "
            f"`fid compute {folder}` would count them too"
        )


def _write_pngs(folder: str, seeds, batch) -> None:
    from PIL import Image

    from ..checkpoints.io import atomic_write

    for seed, img in zip(seeds, batch):  # renamed into place: Ctrl-C or a full disk never leaves half a PNG
        path = os.path.join(folder, f"seed{seed:06d}.png")
        atomic_write(path, lambda tmp, img=img: Image.fromarray(img).save(tmp, format="PNG"), fsync=False)


def _savez(path: str, **arrays) -> None:
    import numpy as np

    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a path
        np.savez(f, **arrays)


def _write_grid(path: str, images) -> None:
    import math

    import numpy as np
    from PIL import Image

    from ..checkpoints.io import atomic_write

    n, h, w, _ = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    atomic_write(path, lambda tmp: Image.fromarray(canvas).save(tmp, format="PNG"))
