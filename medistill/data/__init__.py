"""Datasets served as normalised float batches: MedMNIST files from a local root (any size, uint8 in memory), or a
user's image folder."""
from __future__ import annotations

import os

from .dataset import NO_FINDING, ImageDataset, SplitImages, is_multilabel_task
from .combined import NAME as COMBINED_NAME, load_combined
from .errors import DataError
from .image_folder import load_image_folder, reload_image_folder
from .imageset import ImageSet
from .medmnist_files import dataset_names, default_root, file_md5, load_medmnist, locate, official_md5
from .zca import ZCA, fit_zca, whiten_dataset


def is_folder_path(name_or_path: str) -> bool:
    """Whether ``load_dataset`` reads ``name_or_path`` as an image folder rather than a dataset name."""
    text = str(name_or_path)
    if os.sep in text or "/" in text or text.startswith(("~", ".")):  # a path, even a missing one
        return True
    if text.lower() == COMBINED_NAME or not os.path.isdir(text):
        return False
    return text.lower() not in dataset_names()  # a bare folder name in the working directory


def load_dataset(name_or_path: str, size: int = 28, root=None, **kwargs) -> ImageDataset:
    """A MedMNIST dataset by name, "simulation" (:mod:`.combined`), or an image folder by path.

    For a folder, ``kwargs`` go to :func:`load_image_folder` (channels, resize, split_dirs, test_fraction,
    split_seed, skip_unreadable; the MedMNIST-only verify_md5 and download are dropped); a path that
    does not exist is reported as a missing folder.
    """
    if str(name_or_path).lower() == COMBINED_NAME:
        return load_combined(root=root, size=size, **kwargs)
    if is_folder_path(name_or_path):
        if not os.path.isdir(os.path.expanduser(str(name_or_path))):
            raise DataError(f"image folder not found: {name_or_path} (nor is it a MedMNIST name: {', '.join(dataset_names())})")
        for medmnist_only in ("verify_md5", "download"):  # callers pass these for any name; a folder has no official file
            kwargs.pop(medmnist_only, None)
        return load_image_folder(name_or_path, size=size, **kwargs)
    return load_medmnist(name_or_path, size=size, root=root, **kwargs)


__all__ = [
    "DataError",
    "ImageDataset",
    "ImageSet",
    "NO_FINDING",
    "SplitImages",
    "is_multilabel_task",
    "dataset_names",
    "default_root",
    "file_md5",
    "load_combined",
    "load_dataset",
    "load_image_folder",
    "reload_image_folder",
    "load_medmnist",
    "locate",
    "official_md5",
    "whiten_dataset",
    "ZCA",
    "fit_zca",
    "is_folder_path",
]
