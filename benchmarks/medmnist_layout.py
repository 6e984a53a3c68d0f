"""Generated data in MedMNIST's file layout, for tests and benchmarks at every size without the real files.

``write_medmnist_layout(root, "pathmnist", 224, (n_train, n_val, n_test))`` writes ``root/pathmnist_224.npz``
(``pathmnist.npz`` at 28 px: the names :func:`medistill.data.medmnist_files.locate` expects) with the keys,
dtypes and shapes of the real file: ``<split>_images`` uint8 (N, S, S) or (N, S, S, 3) as ``medmnist.INFO``
gives the channels, ``<split>_labels`` uint8 (N, 1), or (N, K) of 0/1 for the multi-label ChestMNIST.
Its MD5 is not the official one: load it with ``verify_md5=False`` (``--allow-md5-mismatch``).

Images are noise around a brightness that depends on the label, so a network can learn something:
class c of K sits at level 40 + 160·c/(K−1); a multi-label image gets 12 levels brighter per finding it
shows, and each finding adds a bright square at its own place. Labels: every class appears in every
split (N ≥ K); multi-label rows are drawn with each finding present with probability 0.12, and the first
rows of each split are one finding each, then one row with none, so every group has images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _info(name: str) -> dict:
    from medmnist import INFO

    return INFO[name]


def file_name(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def _labels(rng: np.random.Generator, n: int, num_classes: int, multilabel: bool) -> np.ndarray:
    if not multilabel:
        return (np.arange(n) % num_classes)[rng.permutation(n)].astype(np.uint8).reshape(-1, 1)
    labels = (rng.random((n, num_classes)) < 0.12).astype(np.uint8)
    first = min(n, num_classes + 1)
    labels[:first] = 0
    for k in range(min(first, num_classes)):
        labels[k, k] = 1
    return labels


def _images(rng: np.random.Generator, labels: np.ndarray, size: int, channels: int, multilabel: bool,
            chunk: int = 256) -> np.ndarray:
    n = len(labels)
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    out = np.empty(shape, np.uint8)
    num_classes = labels.shape[1] if multilabel else int(labels.max()) + 1
    side = max(2, size // 8)
    for start in range(0, n, chunk):
        rows = labels[start : start + chunk]
        if multilabel:
            level = 60.0 + 12.0 * rows.sum(1)
        else:
            level = 40.0 + 160.0 * rows[:, 0] / max(1, num_classes - 1)
        noise = rng.normal(0.0, 30.0, (len(rows),) + shape[1:]).astype(np.float32)
        x = noise + level.reshape((-1,) + (1,) * (len(shape) - 1)).astype(np.float32)
        if multilabel:
            for k in range(num_classes):
                y0 = (k * side) % max(1, size - side)
                x0 = ((k * 5) * side) % max(1, size - side)
                hit = rows[:, k] == 1
                x[hit, y0 : y0 + side, x0 : x0 + side] += 80.0
        out[start : start + len(rows)] = np.clip(x, 0, 255).astype(np.uint8)
    return out


def write_medmnist_layout(root, name: str, size: int = 28, counts=(60, 20, 40), seed: int = 0) -> Path:
    """Write ``root/<name>[_<size>].npz`` in MedMNIST's layout with ``counts`` = (train, val, test) images."""
    info = _info(name)
    multilabel = "multi-label" in info["task"]
    num_classes, channels = len(info["label"]), int(info["n_channels"])
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        if not multilabel and n < num_classes:
            raise ValueError(f"{name}: {split} needs at least {num_classes} images (one per class), got {n}")
        labels = _labels(rng, n, num_classes, multilabel)
        arrays[f"{split}_images"] = _images(rng, labels, size, channels, multilabel)
        arrays[f"{split}_labels"] = labels
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / file_name(name, size)
    np.savez(path, **arrays)
    return path
