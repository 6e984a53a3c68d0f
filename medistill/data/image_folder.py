"""Loading a user's own labelled image folder: ``root/<class name>/<image files>``.

If ``root`` holds ``train/`` (and optionally ``val/``, ``test/``) sub-folders, each is a split laid
out the same way; otherwise the images are split at random (seeded) into train/val/test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataError
from .normalize import channel_stats, normalize

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"}


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise DataError(f"{root}: no class folders found; expected {root}/<class name>/<images>")
    return dirs


def _read_images(files: list[Path], size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), size, size) + (() if channels == 1 else (3,)), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                out[i] = np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{f}: not a readable image ({exc})") from exc
    return out


def _scan(root: Path, class_names: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if class_names is not None and names != class_names:
        raise DataError(f"{root}: class folders {names} differ from the train split's {class_names}")
    files, labels = [], []
    for label, d in enumerate(dirs):
        found = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{d}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += found
        labels += [label] * len(found)
    return files, labels, names


def load_image_folder(
    root,
    size: int = 28,
    channels: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """Read ``root/<class>/<image>`` into an :class:`ImageDataset` of ``channels`` × ``size`` × ``size`` images."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if (root / "train").is_dir():
        files, labels, class_names = _scan(root / "train", None)
        splits["train"] = (_read_images(files, size, channels), np.array(labels))
        for split in ("val", "test"):
            if (root / split).is_dir():
                files, labels, _ = _scan(root / split, class_names)
                splits[split] = (_read_images(files, size, channels), np.array(labels))
    else:
        files, labels, class_names = _scan(root, None)
        images, labels = _read_images(files, size, channels), np.array(labels)
        order = np.random.default_rng(seed).permutation(len(labels))
        n_test, n_val = int(len(order) * test_fraction), int(len(order) * val_fraction)
        parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        splits = {k: (images[idx], labels[idx]) for k, idx in parts.items()}
    empty = (np.zeros((0, size, size) + (() if channels == 1 else (3,)), np.uint8), np.zeros(0, np.int64))
    tensors = {}
    for split in ("train", "val", "test"):
        images, labels = splits.get(split, empty)
        array = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        tensors[split] = (torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0, torch.as_tensor(labels, dtype=torch.int64))
    if len(tensors["train"][1]) == 0:
        raise DataError(f"{root}: the train split is empty")
    mean, std = channel_stats(tensors["train"][0])
    return ImageDataset(
        name=root.name,
        train_images=normalize(tensors["train"][0], mean, std),
        train_labels=tensors["train"][1],
        val_images=normalize(tensors["val"][0], mean, std),
        val_labels=tensors["val"][1],
        test_images=normalize(tensors["test"][0], mean, std),
        test_labels=tensors["test"][1],
        mean=mean,
        std=std,
        class_names=class_names,
        task="multi-class",
        source=str(root),
        extra={"size": size},
    )
