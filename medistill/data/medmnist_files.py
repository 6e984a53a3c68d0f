"""Loading MedMNIST 2D ``.npz`` files from a local root, verified against ``medmnist.INFO``.

Root, in order: explicit argument > ``MEDISTILL_DATA`` > medmnist's default root (``~/.medmnist``).
A missing file is downloaded through medmnist when ``download=True`` and the network allows;
otherwise the error names the path, the file name, the official MD5 and how to get it.

All 12 MedMNIST 2D datasets at every size medmnist publishes (28, 64, 128, 224 px; files
``<name>.npz`` at 28 px, ``<name>_<size>.npz`` otherwise). Images stay uint8 as the file stores them
and are normalised batch by batch (:class:`~medistill.data.dataset.SplitImages`); the statistics come
from a histogram of the train split's pixels (:func:`~medistill.data.normalize.pixel_stats`), so no
float copy of a split is ever made. ChestMNIST is multi-label (14 findings): its labels are (N, 14)
float32 multi-hot (see :mod:`medistill.data.dataset` for its groups).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset, is_multilabel_task
from .errors import DataError
from .file_io import file_digest, read_npz
from .normalize import pixel_stats

SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")


def _info() -> dict:
    try:
        from medmnist import INFO
    except ImportError as exc:  # pragma: no cover - medmnist is a requirement
        raise DataError("the `medmnist` package is needed to load MedMNIST: pip install medmnist") from exc
    return INFO


def dataset_names() -> list[str]:
    """The 12 MedMNIST 2D dataset names (lower case, as files are named)."""
    return sorted(name for name in _info() if not name.endswith("3d"))


def default_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: explicit > $MEDISTILL_DATA > medmnist's default root."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("MEDISTILL_DATA"):
        return Path(os.environ["MEDISTILL_DATA"]).expanduser()
    try:
        from medmnist.info import DEFAULT_ROOT
    except ImportError:  # pragma: no cover
        DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".medmnist")
    return Path(DEFAULT_ROOT)


def file_name(name: str, size: int = 28) -> str:
    """File name medmnist uses: ``breastmnist.npz`` at 28 px, ``breastmnist_64.npz`` otherwise."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def official_md5(name: str, size: int = 28) -> str | None:
    info = _info()[name]
    return info.get("MD5" if size == 28 else f"MD5_{size}")


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def _check_name_and_size(name: str, size: int) -> str:
    key = name.lower()
    names = dataset_names()
    if key not in names:
        raise DataError(f"unknown MedMNIST dataset {name!r}; valid names: {', '.join(names)}")
    if size not in SIZES:
        raise DataError(f"unknown MedMNIST size {size}; valid sizes: {', '.join(map(str, SIZES))}")
    if official_md5(key, size) is None:
        raise DataError(f"{key} has no {size}px version in medmnist")
    return key


def _missing_file_message(path: Path, name: str, size: int) -> str:
    return (
        f"MedMNIST file not found: {path}\n"
        f"  expected file: {file_name(name, size)} (MD5 {official_md5(name, size)})\n"
        f"  put it in {path.parent} or point MEDISTILL_DATA (or --data-root) at the folder holding it.\n"
        f"  It is the file the `medmnist` package downloads ({_info()[name].get('url' if size == 28 else f'url_{size}', 'see medmnist.INFO')});"
        " on a machine without internet, copy it from one that has it."
    )


def _try_download(name: str, size: int, root: Path) -> None:
    import medmnist

    cls = getattr(medmnist, _info()[name]["python_class"])
    root.mkdir(parents=True, exist_ok=True)
    kwargs = {"split": "train", "root": str(root), "download": True}
    if size != 28:
        kwargs["size"] = size
    cls(**kwargs)


def locate(name: str, size: int = 28, root=None, download: bool = False) -> Path:
    """Path of the dataset's ``.npz`` under the root; downloads through medmnist if asked and possible."""
    key = _check_name_and_size(name, size)
    path = default_root(root) / file_name(key, size)
    if not path.exists() and download:
        try:
            _try_download(key, size, path.parent)
        except Exception as exc:
            raise DataError(_missing_file_message(path, key, size) + f"\n  download failed: {exc}") from exc
    if not path.exists():
        raise DataError(_missing_file_message(path, key, size))
    return path




def validate_arrays(arrays: dict[str, np.ndarray], path, num_classes: int, channels: int | None,
                    multilabel: bool = False, size: int | None = None) -> None:
    """Check keys, shapes, dtypes and label ranges of a MedMNIST-layout archive; raise DataError.

    Single-label: labels (N, 1) or (N,) in [0, num_classes). Multi-label: labels (N, num_classes) of 0/1.
    ``size``: the side every image must have (None: not checked).
    """
    for split in SPLITS:
        for kind in ("images", "labels"):
            if f"{split}_{kind}" not in arrays:
                raise DataError(
                    f"{path}: missing key '{split}_{kind}' (found {sorted(arrays)}); a MedMNIST file holds "
                    "train_/val_/test_ images and labels"
                )
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8:
            raise DataError(f"{path}: {split}_images must be uint8, got {images.dtype}")
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
            raise DataError(f"{path}: {split}_images must be (N, H, W) or (N, H, W, 3), got {images.shape}")
        if channels is not None and (3 if images.ndim == 4 and images.shape[-1] == 3 else 1) != channels:
            raise DataError(f"{path}: {split}_images has shape {images.shape}, expected {channels} channel(s)")
        if size is not None and images.shape[1:3] != (size, size):
            raise DataError(f"{path}: {split}_images are {images.shape[1]}×{images.shape[2]} px, expected {size}×{size} "
                            "(the file name's size)")
        if labels.ndim not in (1, 2) or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{path}: {split}_labels shape {labels.shape} does not match {images.shape[0]} images"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: {split}_labels must be integers, got {labels.dtype}")
        if multilabel:
            if labels.ndim != 2 or labels.shape[1] != num_classes:
                raise DataError(f"{path}: {split}_labels must be (N, {num_classes}) for multi-label data (one 0/1 "
                                f"column per finding), got {labels.shape}")
            if labels.size and (labels.min() < 0 or labels.max() > 1):
                raise DataError(f"{path}: {split}_labels of multi-label data must be 0 or 1: min {labels.min()}, "
                                f"max {labels.max()}")
            continue
        if labels.ndim == 2 and labels.shape[1] != 1:
            raise DataError(f"{path}: {split}_labels must be (N, 1) for single-label data, got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"{path}: {split}_labels out of range [0, {num_classes}): min {labels.min()}, max {labels.max()}"
            )


def load_medmnist(
    name: str,
    size: int = 28,
    root=None,
    *,
    verify_md5: bool = True,
    download: bool = False,
) -> ImageDataset:
    """Load a MedMNIST 2D dataset as an :class:`ImageDataset` (normalised with train statistics).

    The images are held as the file's uint8 arrays and normalised per batch (``dataset.images(split)``);
    labels are (N,) int64, or (N, K) float32 multi-hot for ChestMNIST.
    ``verify_md5=False`` accepts a file whose MD5 differs from ``medmnist.INFO`` (not the official file).
    """
    key = _check_name_and_size(name, size)
    path = locate(key, size, root, download)
    expected = official_md5(key, size)
    actual = file_md5(path)
    if verify_md5 and actual != expected:
        raise DataError(
            f"{path}: MD5 {actual} differs from the official {expected} (medmnist.INFO['{key}']); this is not "
            "the official file. Replace it, or pass verify_md5=False (--allow-md5-mismatch) to use it anyway."
        )
    info = _info()[key]
    class_names = [info["label"][str(i)] for i in range(len(info["label"]))]
    multilabel = is_multilabel_task(info["task"])
    arrays = read_npz(path)
    validate_arrays(arrays, path, len(class_names), int(info["n_channels"]), multilabel, size)
    pixels = {s: torch.from_numpy(arrays.pop(f"{s}_images")) for s in SPLITS}  # uint8, no copy
    if multilabel:
        labels = {s: torch.from_numpy(arrays[f"{s}_labels"].astype(np.float32)) for s in SPLITS}
    else:
        labels = {s: torch.from_numpy(arrays[f"{s}_labels"].reshape(-1).astype(np.int64)) for s in SPLITS}
    mean, std = pixel_stats(pixels["train"])
    return ImageDataset(
        name=key,
        train_images=pixels["train"],
        train_labels=labels["train"],
        val_images=pixels["val"],
        val_labels=labels["val"],
        test_images=pixels["test"],
        test_labels=labels["test"],
        mean=mean,
        std=std,
        class_names=class_names,
        task=info["task"],
        md5=actual,
        source=str(path),
        extra={"size": size, "license": info.get("license"), "storage": "uint8, normalised per batch"},
    )
