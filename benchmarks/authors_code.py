"""Run the authors' WaveDiff code from a local checkout the user points to, for side-by-side benchmarks.

Nothing of theirs is vendored here: `load(repo)` puts the checkout on sys.path
and applies the two shims a machine without their CUDA build needs:

* their custom ops (`score_sde/op`) are JIT-compiled with nvcc at import time;
  `torch.utils.cpp_extension.load` is replaced by a stub so the import
  succeeds, and (unless `cuda_ops=True`) both ops dispatch to the plain PyTorch
  fallbacks their code already ships for the CPU, on every device;
* `pytorch_wavelets` imports `pkg_resources`, which current setuptools no
  longer provides: a minimal stand-in serves its one call (`resource_stream`);
* their training script imports `lmdb` through their dataset modules; where
  it is not installed (GPU images often lack it) an empty module stands in,
  since no dataset is read.

Their training arguments come from their own argument parser: the training
script is executed with the preset's command line and stopped as soon as its
arguments are parsed, so every default is theirs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import runpy
import sys
import types
from pathlib import Path

import torch


class _ParsedArgs(Exception):
    def __init__(self, namespace: argparse.Namespace):
        self.namespace = namespace


def _pkg_resources_stand_in() -> None:
    try:
        import pkg_resources  # noqa: F401

        return
    except ImportError:
        pass
    mod = types.ModuleType("pkg_resources")

    def resource_stream(package: str, resource: str):
        return importlib.resources.files(package).joinpath(resource).open("rb")

    mod.resource_stream = resource_stream
    sys.modules["pkg_resources"] = mod


def _lmdb_stand_in() -> None:
    """Their training script imports their dataset modules, which import lmdb; the benchmark reads no dataset."""
    try:
        import lmdb  # noqa: F401
    except ImportError:
        sys.modules["lmdb"] = types.ModuleType("lmdb")


def load(repo: str | Path, cuda_ops: bool = False) -> types.SimpleNamespace:
    """Import the authors' modules from `repo`; returns them as attributes."""
    repo = Path(repo).resolve()
    for name in ("train_wddgan.py", "diffusion.py", "score_sde/models/ncsnpp_generator_adagn.py"):
        if not (repo / name).is_file():
            raise SystemExit(
                f"error: {repo} is not a checkout of the authors' WaveDiff (no {name}); "
                f"clone github.com/VinAIResearch/WaveDiff and pass its path to --authors-repo"
            )
    _pkg_resources_stand_in()
    _lmdb_stand_in()
    if not cuda_ops:
        import torch.utils.cpp_extension as cpp

        cpp.load = lambda *a, **k: types.SimpleNamespace()
    sys.path.insert(0, str(repo))
    op_up = importlib.import_module("score_sde.op.upfirdn2d")
    op_act = importlib.import_module("score_sde.op.fused_act")
    sampling = importlib.import_module("score_sde.models.up_or_down_sampling")
    if not cuda_ops:

        def upfirdn2d_any_device(x, kernel, up=1, down=1, pad=(0, 0)):
            return op_up.upfirdn2d_native(x, kernel, up, up, down, down, pad[0], pad[1], pad[0], pad[1])

        def leaky_relu_any_device(x, bias, negative_slope=0.2, scale=2**0.5):
            shape = (1, bias.shape[0]) + (1,) * (x.ndim - 2)
            return torch.nn.functional.leaky_relu(x + bias.view(shape), negative_slope=0.2) * scale

        op_up.upfirdn2d = sampling.upfirdn2d = upfirdn2d_any_device
        op_act.fused_leaky_relu = leaky_relu_any_device
    ns = types.SimpleNamespace(repo=repo)
    ns.generators = importlib.import_module("score_sde.models.ncsnpp_generator_adagn")
    ns.discriminators = importlib.import_module("score_sde.models.discriminator")
    ns.diffusion = importlib.import_module("diffusion")
    ns.dwt_idwt = importlib.import_module("DWT_IDWT.DWT_IDWT_layer")
    ns.EMA = importlib.import_module("EMA").EMA
    import pytorch_wavelets

    ns.pytorch_wavelets = pytorch_wavelets
    return ns


def training_args(repo: str | Path, argv: list[str]) -> argparse.Namespace:
    """Their resolved arguments for `argv` (as in their run.sh), adjusted as their train() does."""
    original_parse = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        raise _ParsedArgs(original_parse(self, argv))

    argparse.ArgumentParser.parse_args = capture
    saved_argv = sys.argv
    try:
        sys.argv = ["train_wddgan.py", *argv]
        runpy.run_path(str(Path(repo) / "train_wddgan.py"), run_name="__main__")
    except _ParsedArgs as parsed:
        args = parsed.namespace
    else:
        raise RuntimeError("the authors' training script did not parse its arguments")
    finally:
        argparse.ArgumentParser.parse_args = original_parse
        sys.argv = saved_argv
    args.ori_image_size = args.image_size
    args.image_size = args.current_resolution
    return args


def build_generator(authors: types.SimpleNamespace, args: argparse.Namespace) -> torch.nn.Module:
    classes = {"normal": authors.generators.NCSNpp, "wavelet": authors.generators.WaveletNCSNpp}
    return classes[args.net_type](args)


def build_discriminator(authors: types.SimpleNamespace, args: argparse.Namespace) -> torch.nn.Module:
    small = args.dataset in ("cifar10", "stl10")
    cls = authors.discriminators.Discriminator_small if small else authors.discriminators.Discriminator_large
    return cls(
        nc=2 * args.num_channels,
        ngf=args.ngf,
        t_emb_dim=args.t_emb_dim,
        act=torch.nn.LeakyReLU(0.2),
        num_layers=args.num_disc_layers,
    )


def wavelet_transforms(authors: types.SimpleNamespace, args: argparse.Namespace, device: torch.device):
    """(image -> 12-channel bands, 12-channel bands -> image) with the backend the preset was trained with."""
    if args.use_pytorch_wavelet:
        fwd = authors.pytorch_wavelets.DWTForward(J=1, mode="zero", wave="haar").to(device)
        inv = authors.pytorch_wavelets.DWTInverse(mode="zero", wave="haar").to(device)

        def to_bands(x):
            ll, highs = fwd(x)
            return torch.cat([ll, *torch.unbind(highs[0], dim=2)], dim=1)

        def to_image(y):
            return inv((y[:, :3], [torch.stack((y[:, 3:6], y[:, 6:9], y[:, 9:12]), dim=2)]))

    else:
        fwd, inv = authors.dwt_idwt.DWT_2D("haar"), authors.dwt_idwt.IDWT_2D("haar")

        def to_bands(x):
            return torch.cat(fwd(x), dim=1)

        def to_image(y):
            return inv(y[:, :3], y[:, 3:6], y[:, 6:9], y[:, 9:12])

    return to_bands, to_image
