"""Evaluation metrics: FID (pytorch-fid's Inception, lossless or the paper's JPEG protocol) and
improved precision/recall (k=3, VGG16 features, as StyleGAN2-ADA's pr50k3)."""

from .features import PROTOCOLS, collect_features, fid_stats, iter_images
from .fid import GaussianStats, frechet_distance
from .inception import FID_WEIGHTS_URL, InceptionFeatures, load_fid_inception, resolve_inception_weights
from .precision_recall import VARIANT as PR_VARIANT
from .precision_recall import VGG16_URL, VGG16Features, fraction_inside, manifold_radii, precision_recall
from .sources import (
    ImageSource,
    checkpoint_source,
    dataset_source,
    folder_source,
    images_source,
    is_checkpoint,
    npz_source,
)
from .stats import FIDStats, load_stats, save_stats

__all__ = [
    "PROTOCOLS",
    "collect_features",
    "fid_stats",
    "iter_images",
    "GaussianStats",
    "frechet_distance",
    "FID_WEIGHTS_URL",
    "InceptionFeatures",
    "load_fid_inception",
    "resolve_inception_weights",
    "PR_VARIANT",
    "VGG16_URL",
    "VGG16Features",
    "fraction_inside",
    "manifold_radii",
    "precision_recall",
    "ImageSource",
    "checkpoint_source",
    "dataset_source",
    "folder_source",
    "images_source",
    "is_checkpoint",
    "npz_source",
    "FIDStats",
    "load_stats",
    "save_stats",
]
