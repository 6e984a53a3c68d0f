"""Datasets as normalised tensors: MedMNIST files from a local root, or a user's image folder."""
from __future__ import annotations

import os

from .dataset import ImageDataset
from .combined import NAME as COMBINED_NAME, load_combined
from .errors import DataError
from .image_folder import load_image_folder
from .imageset import ImageSet
from .medmnist_files import dataset_names, default_root, file_md5, load_medmnist, locate, official_md5
from .zca import ZCA, fit_zca, whiten_dataset


def load_dataset(name_or_path: str, size: int = 28, root=None, **kwargs) -> ImageDataset:
    """A MedMNIST dataset by name, "simulation" (:mod:`.combined`), or an image folder by path."""
    if name_or_path.lower() == COMBINED_NAME:
        return load_combined(root=root, size=size, **kwargs)
    if os.path.isdir(name_or_path) and name_or_path.lower() not in dataset_names():
        return load_image_folder(name_or_path, size=size, **kwargs)
    return load_medmnist(name_or_path, size=size, root=root, **kwargs)


__all__ = [
    "DataError",
    "ImageDataset",
    "ImageSet",
    "dataset_names",
    "default_root",
    "file_md5",
    "load_combined",
    "load_dataset",
    "load_image_folder",
    "load_medmnist",
    "locate",
    "official_md5",
    "whiten_dataset",
    "ZCA",
    "fit_zca",
]
