"""The FID Inception network of pytorch-fid (TF 2015-12-05 weights), loaded from a local file.

Images go in as uint8 [B, H, W, 3]; pytorch-fid's `InceptionV3` turns [0, 1] floats into
[-1, 1] and resizes them to 299x299 bilinearly (`resize_input=True`), as in the paper's code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from ..errors import WaveDiffError, first_line

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"  # torch hub convention: the file name carries its hash prefix
FID_DIMS = 2048  # pool3; pytorch-fid's smaller choices (64, 192, 768) are for tests and quick looks
INCEPTION_DIMS = (64, 192, 768, 2048)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _missing(reason: str) -> WaveDiffError:
    return WaveDiffError(
        f"{reason}; download {FID_WEIGHTS_NAME} (pytorch-fid's release, {FID_WEIGHTS_URL}) "
        f"and pass it with --inception-weights PATH"
    )


def resolve_inception_weights(path: str | Path | None) -> Path:
    """`path` if given, else pytorch-fid's torch hub cache file, downloading it there if absent."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise _missing(f"Inception weights file {path} not found")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            from ..runtime import network_timeout

            with network_timeout():
                torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(cached))
        except Exception as e:  # no network, proxy, HTTP error: all mean the same to the user
            raise _missing(
                f"Inception weights not in the torch hub cache ({cached}) and the download failed "
                f"({type(e).__name__}: {e})"
            ) from None
    return cached


def load_fid_inception(
    weights: str | Path, device: str | torch.device = "cpu", dims: int = FID_DIMS
) -> torch.nn.Module:
    """pytorch-fid's `InceptionV3` (FID variant, the block giving `dims` features) with the state dict in `weights`."""
    from pytorch_fid import inception as pfi

    if dims not in INCEPTION_DIMS:
        raise WaveDiffError(f"Inception features come in {', '.join(map(str, INCEPTION_DIMS))} dimensions, not {dims}")
    try:
        state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        # PyTorch's own message for a file that is not plain tensors suggests weights_only=False, i.e. running
        # whatever code the file holds: wrong advice for a file that is not the weights at all
        why = (
            "not a file of tensors" if "Weights only load failed" in str(e) else f"{type(e).__name__}: {first_line(e)}"
        )
        raise WaveDiffError(
            f"cannot read {weights} as a PyTorch state dict ({why}); expected {FID_WEIGHTS_NAME} from {FID_WEIGHTS_URL}"
        ) from None
    try:
        with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: state_dict):
            model = pfi.InceptionV3(
                [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]],
                resize_input=True,
                normalize_input=True,
                use_fid_inception=True,
            )
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WaveDiffError(
            f"{weights} is not the FID Inception state dict ({first}); "
            f"expected {FID_WEIGHTS_NAME} from {FID_WEIGHTS_URL}"
        ) from None
    return model.eval().to(device)


class InceptionFeatures:
    """uint8 images [B, H, W, 3] -> `dims`-d features (float64 numpy), as pytorch-fid computes them
    (2048: pool3, the FID standard; smaller blocks are average-pooled over space)."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu", dims: int = FID_DIMS):
        self.dims = dims
        self.weights = resolve_inception_weights(weights)
        self.sha256 = sha256_file(self.weights)
        self.device = torch.device(device)
        self.model = load_fid_inception(self.weights, self.device, dims)

    @property
    def official(self) -> bool:
        """Whether the weights' sha256 matches the hash prefix in the official file name."""
        return self.sha256.startswith(FID_WEIGHTS_SHA256_PREFIX)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2)
        x = x.float().div(255)  # what torchvision's ToTensor does in pytorch-fid
        feats = torch.nn.functional.adaptive_avg_pool2d(self.model(x)[0], 1)
        return feats.flatten(1).double().cpu().numpy()
