"""Re-scoring a package at the receiving site: only the public test split of the source dataset is used."""
from __future__ import annotations

from ..data import DataError, ImageDataset
from ..evaluate import EvalConfig, EvalResult, check_set_matches, evaluate_set
from .package_reader import Package


def check_against_dataset(package: Package, dataset: ImageDataset, allow_md5_mismatch: bool = False) -> None:
    """DataError when the package's images, classes or source file do not match ``dataset``."""
    src = package.metadata.get("source_dataset") or {}
    check_set_matches(package.image_set, dataset, where=str(package.folder))
    if src.get("md5") and dataset.md5 and src["md5"] != dataset.md5 and not allow_md5_mismatch:
        raise DataError(f"{package.folder} was distilled from a {src.get('name')} file with MD5 {src['md5']}, "
                        f"but the file here has MD5 {dataset.md5}; pass --allow-md5-mismatch to score it anyway")


def evaluate_package(package: Package, dataset: ImageDataset, config: EvalConfig, dsa: bool | None = None,
                     allow_md5_mismatch: bool = False, progress: bool = True) -> EvalResult:
    """Train ``config.num_models`` networks on the package's float images and score them on the test split.

    The one recipe (:func:`medistill.evaluate.evaluate_set`) decides from the package's metadata: the
    learned lr (MTT), DSA as at the sending site (``dsa`` overrides), ZCA whitening of the test split
    with the package's ``zca.npz``; so the same config and seed reproduce the sending site's score.
    """
    check_against_dataset(package, dataset, allow_md5_mismatch)
    return evaluate_set(package.image_set, dataset, config, dsa=dsa, progress=progress, desc="evaluate package")
