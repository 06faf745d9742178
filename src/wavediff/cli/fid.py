"""`wavediff fid`: reference statistics (`fid stats`) and FID scores (`fid compute`).

Features come from pytorch-fid's Inception-v3 (TF 2015-12-05 weights, pool3, 2048-d),
inputs resized to 299 bilinearly inside the network, as in the paper's code. `--protocol
paper` also round-trips every image through JPEG (quality 75) as the authors' scripts did.
The last line `fid compute` prints is the FID value alone.
"""

from __future__ import annotations

import sys

from .fastopts import add_fast_arguments, fast_from_args

PAPER_N = 50000


def add_arguments(p):
    sub = p.add_subparsers(dest="fid_command", metavar="SUBCOMMAND", required=True)
    s = sub.add_parser(
        "stats",
        help="reference statistics (.npz) of a dataset or an image folder",
        description="Inception mean and covariance of a dataset or image folder, saved as .npz (mu, sigma, n, meta).",
    )
    s.add_argument(
        "data",
        metavar="DATA",
        help="a folder of images (read as they are), an .npz of uint8 'images' [N,H,W,3], "
        "or with --preset the dataset path",
    )
    s.add_argument("-o", "--output", required=True, metavar="REF.npz", help="statistics file to write")
    s.add_argument(
        "--preset",
        help="read DATA through this preset's data pipeline (no flips), converted to uint8 as generated samples are",
    )
    s.add_argument("--max-images", type=int, metavar="N", help="use at most the first N images")
    s.add_argument("--batch", type=int, default=100, help="batch size (default 100)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_inception_arguments(s)

    c = sub.add_parser(
        "compute",
        help="FID of samples against reference statistics",
        description="FID of a sample folder, .npz or checkpoint against .npz statistics "
        "(ours or pytorch-fid's) or the authors' .npy. The last line is the value.",
    )
    add_sample_arguments(c, batch=100)
    c.add_argument(
        "--ref",
        required=True,
        metavar="REF",
        help="reference statistics: .npz from `wavediff fid stats`, or the authors' .npy",
    )
    c.add_argument(
        "--allow-few", action="store_true", help=f"allow fewer than {PAPER_N} samples under --protocol paper"
    )
    add_inception_arguments(c)


def add_inception_arguments(p) -> None:
    p.add_argument(
        "--inception-weights",
        metavar="PATH",
        help="local pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache, "
        "downloaded there by pytorch-fid's URL if absent)",
    )
    p.add_argument(
        "--protocol",
        choices=["lossless", "paper"],
        default="lossless",
        help="lossless: images as they are (default); paper: JPEG quality-75 round trip of every "
        "image, as the authors computed FID",
    )
    p.add_argument(
        "--dims",
        type=int,
        default=2048,
        choices=[64, 192, 768, 2048],
        help="Inception feature size, as pytorch-fid's --dims (default 2048, pool3: the FID standard)",
    )


def add_sample_arguments(p, batch: int) -> None:
    """SAMPLES and the options that say how many and how to generate them (shared with `wavediff pr`)."""
    p.add_argument(
        "samples",
        metavar="SAMPLES",
        help="a folder of images, an .npz of uint8 'images' [N,H,W,3], or a checkpoint "
        "(.safetensors/.pth/.pt) to generate them from",
    )
    p.add_argument(
        "--n",
        type=int,
        help="number of samples (checkpoint: default 50000, seeds 0..n-1; folder/.npz: default all, else the first N)",
    )
    p.add_argument("--seeds", help="checkpoint only: seed list, e.g. 0-49999")
    p.add_argument("--batch", type=int, default=batch, help=f"batch size (default {batch})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_fast_arguments(p, precision_default="fp32")  # checkpoint only; fp32 keeps FID comparable with the paper
    p.add_argument("--preset", help="checkpoint only: the paper preset of an authors' .pth")
    p.add_argument("--official-args", metavar="ARGS.json", help="checkpoint only: an authors' training arguments")


def resolve_device(name: str | None) -> str:
    """--device checked against this machine (one line for an unknown device or a missing GPU)."""
    from ..devices import resolve_device as resolve

    return str(resolve(name))


def check_positive(**values: int | None) -> None:
    from ..errors import ConfigError

    for name, v in values.items():
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def sample_source(args, default_n: int = PAPER_N):
    """The `ImageSource` that SAMPLES and --n/--seeds/... describe."""
    from ..errors import ConfigError, DataError
    from ..metrics import checkpoint_source, images_source, is_checkpoint
    from ..sampling import parse_seeds

    check_positive(n=args.n, batch=args.batch)
    device = resolve_device(args.device)
    if is_checkpoint(args.samples):
        if args.seeds:
            seeds = parse_seeds(args.seeds)
            if args.n is not None and args.n != len(seeds):
                raise ConfigError(f"--n {args.n} disagrees with --seeds ({len(seeds)} seeds); give one of them")
        else:
            seeds = list(range(args.n or default_n))
        return checkpoint_source(
            args.samples,
            seeds,
            device,
            args.precision,
            preset=args.preset,
            official_args=args.official_args,
            fast=fast_from_args(args),
        )
    sampler_flags = {  # what a given flag looks like on args (precision: anything but the default)
        "seeds": bool(args.seeds),
        "preset": bool(args.preset),
        "official_args": bool(args.official_args),
        "precision": args.precision != "fp32",
        "compile": args.compile,
        "compile_mode": args.compile_mode is not None,
        "cuda_graphs": args.cuda_graphs is not None,
        "channels_last": args.channels_last is not None,
    }
    for flag, given in sampler_flags.items():
        if given:
            raise ConfigError(
                f"--{flag.replace('_', '-')} applies to checkpoints only, and {args.samples} is not one "
                f"(.safetensors/.pth/.pt or a training run's directory): drop it"
            )
    source = images_source(args.samples, args.n)
    if args.n is not None and source.count < args.n:
        raise DataError(f"{args.samples} holds {source.count} images but --n {args.n} were asked for")
    return source


def run(args) -> int:
    return _stats(args) if args.fid_command == "stats" else _compute(args)


def _stats(args) -> int:
    from ..metrics import InceptionFeatures, dataset_source, fid_stats, images_source, save_stats
    from ..outputs import check_writable

    check_positive(batch=args.batch, max_images=args.max_images)
    device = resolve_device(args.device)
    check_writable(args.output, flag="-o")
    if args.preset:
        source = dataset_source(args.preset, args.data, args.max_images)
    else:
        source = images_source(args.data, args.max_images)
    inception = InceptionFeatures(args.inception_weights, device, args.dims)
    stats = fid_stats(source, inception, protocol=args.protocol, batch_size=args.batch, progress="fid stats")
    stats.meta["preset"] = args.preset
    _warn(inception, stats.n)
    save_stats(args.output, stats)
    h, w = stats.meta["image_size"]
    print(
        f"wrote {args.output}: {source.description}, n={stats.n}, {w}x{h}, protocol {args.protocol}, "
        f"inception weights sha256 {inception.sha256[:12]}"
    )
    return 0


def _compute(args) -> int:
    from ..errors import ConfigError, DataError
    from ..metrics import InceptionFeatures, fid_stats, frechet_distance, load_stats

    ref = load_stats(args.ref)
    if ref.dims != args.dims:
        raise DataError(
            f"{args.ref} holds statistics of {ref.dims}-d features but --dims is {args.dims}; "
            f"recompute them with `wavediff fid stats --dims {args.dims}` or pass --dims {ref.dims}"
        )
    source = sample_source(args)
    if args.protocol == "paper" and source.count < PAPER_N and not args.allow_few:
        raise ConfigError(
            f"the paper protocol uses {PAPER_N} samples but {args.samples} gives {source.count}; "
            f"pass --allow-few to score them anyway (not comparable to the paper's numbers)"
        )
    inception = InceptionFeatures(args.inception_weights, resolve_device(args.device), args.dims)
    stats = fid_stats(source, inception, protocol=args.protocol, batch_size=args.batch, progress="fid")
    value = frechet_distance(stats.mu, stats.sigma, ref.mu, ref.sigma)
    _warn(inception, stats.n, ref.meta, stats.meta)
    h, w = stats.meta["image_size"]
    ref_n = ref.n if ref.n is not None else "unknown"
    ref_how = (
        f"protocol {ref.meta['protocol']}, {ref.meta.get('dataset')}"
        if "protocol" in ref.meta
        else "made elsewhere (no pipeline description)"
    )
    layer = "pool3" if args.dims == 2048 else "block average-pooled"
    print(f"FID: pytorch-fid Inception-v3 {layer} ({args.dims}-d), protocol {args.protocol}")
    print(f"samples: {source.description}, n={stats.n}, {w}x{h}")
    print(f"reference: {args.ref}, n={ref_n}, {ref_how}")
    print(f"inception weights: {inception.weights}, sha256 {inception.sha256[:12]}")
    print(f"{0.0 if abs(value) < 5e-5 else value:.4f}")  # identical statistics: 0.0000, not the rounding's -0.0000
    return 0


def _warn(inception, n: int, ref_meta: dict | None = None, ours: dict | None = None) -> None:
    from ..metrics.fid import fid_warnings

    for message in fid_warnings(inception, n, ref_meta or {}, ours or {}):
        print(f"warning: {message}", file=sys.stderr)
