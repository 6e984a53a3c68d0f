"""Re-scoring a package at the receiving site: only the public test split of the source dataset is used."""
from __future__ import annotations

import dataclasses

from ..data import DataError, ImageDataset, whiten_dataset
from ..evaluate import EvalConfig, EvalResult, evaluate_images
from ..methods.runner import dsa_training_augment
from .package_reader import Package


def check_against_dataset(package: Package, dataset: ImageDataset, allow_md5_mismatch: bool = False) -> None:
    """DataError when the package's images, classes or source file do not match ``dataset``."""
    s, src = package.image_set, package.metadata.get("source_dataset") or {}
    shape, expected = tuple(s.images.shape[1:]), tuple(dataset.test_images.shape[1:])
    if shape != expected:
        raise DataError(f"{package.folder}: images are {shape} (C, H, W) but {dataset.name} test images are "
                        f"{expected}; the package was not made from this dataset (or at another size)")
    if s.num_classes != dataset.num_classes:
        raise DataError(f"{package.folder}: {s.num_classes} classes, {dataset.name} has {dataset.num_classes}")
    if src.get("md5") and dataset.md5 and src["md5"] != dataset.md5 and not allow_md5_mismatch:
        raise DataError(f"{package.folder} was distilled from a {src.get('name')} file with MD5 {src['md5']}, "
                        f"but the file here has MD5 {dataset.md5}; pass --allow-md5-mismatch to score it anyway")


def evaluate_package(package: Package, dataset: ImageDataset, config: EvalConfig, force_dsa: bool = False,
                     allow_md5_mismatch: bool = False, progress: bool = True) -> EvalResult:
    """Train ``config.num_models`` networks on the package's float images and score them on the test split.

    The learning rate is the package's learned lr (MTT) when it has one, else ``config.lr``; DSA
    augmentation is on when the package was scored with it (or ``force_dsa``), with the same
    augmentation the run used (:func:`medistill.methods.runner.dsa_training_augment`), so the same
    config and seed reproduce the sending site's score. A ZCA package is scored on the test split
    whitened with its ``zca.npz``.
    """
    check_against_dataset(package, dataset, allow_md5_mismatch)
    s, meta = package.image_set, package.metadata
    if s.zca is not None:  # distilled in ZCA space: test on the test split whitened with the package's zca.npz
        dataset = whiten_dataset(dataset, s.zca)
    use_dsa = force_dsa or bool(meta.get("evaluate_with_dsa"))
    config = dataclasses.replace(config, lr=s.learned_lr or config.lr, augment=use_dsa)
    augment = dsa_training_augment(meta.get("dsa_strategy") or "color_crop_cutout_flip_scale_rotate") if use_dsa else None
    return evaluate_images(s.images, s.labels, dataset.test_images, dataset.test_labels, dataset.num_classes,
                           dataset.task, config, augment=augment, progress=progress, desc="evaluate package")
