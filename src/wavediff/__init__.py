"""wavediff: Wavelet Diffusion Models (Phung, Dao & Tran, CVPR 2023) in clean PyTorch.

import wavediff
G = wavediff.load_generator("run/checkpoints/generator_final.safetensors")
G = wavediff.load_official_generator("netG_1300.pth", "cifar10_args.json")
images = wavediff.sample(G, seeds=range(16))     # [16, 3, 32, 32] in [-1, 1]
pixels = wavediff.to_uint8(images)                # [16, 32, 32, 3] uint8, for PIL.Image.fromarray
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ExperimentConfig": ".config",
    "get_preset": ".presets",
    "PRESETS": ".presets",
    "load_generator": ".checkpoints.io",
    "save_generator": ".checkpoints.io",
    "load_official_generator": ".checkpoints.convert",
    "load_official_discriminator": ".checkpoints.official_discriminator",
    "convert_official_checkpoint": ".checkpoints.convert",
    "build_generator": ".models.generator",
    "build_discriminator": ".models.discriminator",
    "VPDiffusion": ".diffusion",
    "sample": ".sampling",
    "generate": ".sampling",
    "to_uint8": ".sampling",
    "train_run": ".training.trainer",
    "WaveDiffError": ".errors",
    "reorder_bands": ".wavelets",
    "dwt": ".wavelets",
    "idwt": ".wavelets",
    "image_to_wavelet": ".wavelets",
    "wavelet_to_image": ".wavelets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # lazy: `import wavediff` stays cheap
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'wavediff' has no attribute {name!r}")


def __dir__() -> list[str]:  # the public names, lazy ones included: tab completion, dir() and help() show the API
    return sorted({*(n for n in globals() if n.startswith("__")), *_EXPORTS})
