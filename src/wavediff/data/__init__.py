"""Data pipeline: the paper's datasets, image folders and bundled digits as
[-1, 1] image tensors, resumable DataLoaders, and raw folder readers for evaluation."""

from .base import ImageDataset
from .build import DATASET_NAMES, build_dataset
from .digits import load_digits_arrays
from .folder import IMAGE_EXTENSIONS, iter_image_folder_uint8, list_images, load_image_folder_uint8
from .loader import ResumableSampler, build_dataloader

__all__ = [
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "ResumableSampler",
    "build_dataloader",
    "build_dataset",
    "iter_image_folder_uint8",
    "list_images",
    "load_digits_arrays",
    "load_image_folder_uint8",
]
