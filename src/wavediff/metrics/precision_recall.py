"""Improved precision and recall (Kynkaanniemi et al. 2019) as StyleGAN2-ADA's pr50k3 computes it.

Each feature set spans a manifold: the union of balls around its points whose radius is
the distance to the k-th nearest other point (the (k+1)-th smallest distance, the point
itself included). Precision is the fraction of generated points inside the real manifold,
recall the fraction of real points inside the generated one. Features come from NVIDIA's
VGG16 TorchScript; they are kept in fp16 on a GPU (as pr50k3 does) and fp32 on the CPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import WaveDiffError

VGG16_URL = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/metrics/vgg16.pt"
VARIANT = "precision/recall (Kynkaanniemi et al. 2019, k=3, VGG16 features, as StyleGAN2-ADA pr50k3)"
PR_K = 3
CPU_DISTANCE_BYTES = 1 << 30  # at most this much for one block of distances on the CPU
GPU_ROW_BATCH = 10000  # pr50k3's row_batch_size


class VGG16Features:
    """uint8 images [B, H, W, 3] -> VGG16 features [B, D] on `device` (fp16 on GPU, fp32 on CPU)."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise WaveDiffError(
                f"VGG16 feature network {path} not found; download vgg16.pt (StyleGAN2-ADA's "
                f"metrics network) from {VGG16_URL} and pass it with --vgg16 PATH"
            )
        self.device = torch.device(device)
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format NVIDIA ships
                warnings.simplefilter("ignore", FutureWarning)
                self.model = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as e:
            raise WaveDiffError(
                f"cannot load {path} as a TorchScript module ({type(e).__name__}); expected vgg16.pt from {VGG16_URL}"
            ) from None
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).contiguous()
        return self.model(x, return_features=True).to(self.dtype)


def _row_batch(n_cols: int, device: torch.device) -> int:
    if device.type == "cuda":
        return GPU_ROW_BATCH
    return max(1, min(GPU_ROW_BATCH, CPU_DISTANCE_BYTES // (4 * n_cols)))


def _distances(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return torch.cdist(rows.unsqueeze(0), cols.unsqueeze(0))[0]


@torch.inference_mode()
def manifold_radii(features: torch.Tensor, k: int = PR_K, row_batch: int | None = None) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in `features` (itself excluded)."""
    if len(features) <= k:
        raise WaveDiffError(f"a k={k} manifold needs more than {k} points, got {len(features)}")
    rb = row_batch or _row_batch(len(features), features.device)
    return torch.cat(
        [
            _distances(rows, features).float().kthvalue(k + 1, dim=1).values.to(features.dtype)
            for rows in features.split(rb)
        ]
    )


@torch.inference_mode()
def fraction_inside(
    probes: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, row_batch: int | None = None
) -> float:
    """Fraction of `probes` within radius of at least one point of `manifold`."""
    rb = row_batch or _row_batch(len(manifold), manifold.device)
    inside = torch.cat([(_distances(rows, manifold) <= radii.unsqueeze(0)).any(dim=1) for rows in probes.split(rb)])
    return float(inside.double().mean())


def precision_recall(
    real: torch.Tensor, gen: torch.Tensor, k: int = PR_K, row_batch: int | None = None
) -> tuple[float, float]:
    """(precision, recall) of generated features `gen` [N, D] against real features `real` [M, D]."""
    if real.shape[1:] != gen.shape[1:]:
        raise WaveDiffError(f"real and generated features differ in size: {list(real.shape)} vs {list(gen.shape)}")
    precision = fraction_inside(gen, real, manifold_radii(real, k, row_batch), row_batch)
    recall = fraction_inside(real, gen, manifold_radii(gen, k, row_batch), row_batch)
    return precision, recall
