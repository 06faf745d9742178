"""`wavediff pr`: improved precision and recall (Kynkaanniemi et al. 2019), as StyleGAN2-ADA's pr50k3.

k=3 nearest-neighbour manifolds of NVIDIA's VGG16 features; by default 50,000 generated
images against up to 200,000 real ones. The last two lines are `precision X` and `recall Y`.
"""

from __future__ import annotations

from .fid import add_sample_arguments, check_positive, resolve_device, sample_source


def add_arguments(p):
    add_sample_arguments(p, batch=64)
    p.add_argument(
        "--real",
        required=True,
        metavar="REAL",
        help="real images: a folder, an .npz of uint8 'images', or with --real-preset a dataset path",
    )
    p.add_argument(
        "--real-preset",
        metavar="PRESET",
        help="read REAL through this preset's data pipeline (no flips), as `fid stats --preset`",
    )
    p.add_argument(
        "--vgg16",
        required=True,
        metavar="PATH",
        help="NVIDIA's VGG16 TorchScript (vgg16.pt from the StyleGAN2-ADA metrics)",
    )
    p.add_argument("--max-real", type=int, default=200000, help="use at most this many real images (default 200000)")


def run(args) -> int:
    from ..metrics import PR_VARIANT, VGG16Features, collect_features, dataset_source, images_source, precision_recall

    check_positive(max_real=args.max_real)
    source = sample_source(args)
    if args.real_preset:
        real = dataset_source(args.real_preset, args.real, args.max_real)
    else:
        real = images_source(args.real, args.max_real)
    vgg = VGG16Features(args.vgg16, resolve_device(args.device))
    gen_feats = collect_features(source, vgg, batch_size=args.batch, progress="generated")
    real_feats = collect_features(real, vgg, batch_size=args.batch, progress="real")
    precision, recall = precision_recall(real_feats, gen_feats)
    print(PR_VARIANT)
    print(f"generated: {source.description}, n={len(gen_feats)}")
    print(f"real: {real.description}, n={len(real_feats)}")
    print(f"features: {args.vgg16} ({gen_feats.shape[1]}-d, {str(vgg.dtype).replace('torch.', '')})")
    print(f"precision {precision:.4f}")
    print(f"recall {recall:.4f}")
    return 0
