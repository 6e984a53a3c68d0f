"""Reading a package back: manifest first, then the files, then consistency of arrays and metadata."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import DataError, ImageSet
from ..data.file_io import read_npz
from .image_arrays import channels_first
from .manifest import MANIFEST_NAME, verify_manifest
from ..data.zca import ZCA
from .package_writer import GRID_NAME, METADATA_NAME, PACKAGE_FORMAT, README_NAME

REQUIRED_KEYS = ("train_images", "train_labels", "train_images_float", "train_images_normalized")


@dataclass
class Package:
    """A verified package: its folder, metadata, arrays and the set as an ImageSet (normalised float images)."""

    folder: Path
    metadata: dict
    arrays: dict[str, np.ndarray]
    image_set: ImageSet


def is_package(path) -> bool:
    """A folder that looks like a package (has a manifest or a package metadata.json)."""
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST_NAME).exists() or (path / METADATA_NAME).exists())


def _read_metadata(folder: Path) -> dict:
    path = folder / METADATA_NAME
    if not path.exists():
        raise DataError(f"{folder}: missing {METADATA_NAME}; the package is incomplete")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    if meta.get("format") != PACKAGE_FORMAT:
        raise DataError(f"{path}: not a medistill package (format {meta.get('format')!r})")
    return meta




def _read_zca(folder: Path, meta: dict) -> ZCA | None:
    """The package's ZCA transform (None when it has none); DataError when it is missing or does not match."""
    recorded = meta.get("zca")
    if not recorded:
        return None
    name = (meta.get("files") or {}).get("zca")
    if not name or not (folder / name).is_file():
        raise DataError(f"{folder}: the set was distilled on ZCA-whitened images but the transform "
                        f"('{name or 'zca.npz'}') is missing; without it the set cannot be evaluated")
    arrays = read_npz(folder / name)
    missing = [k for k in ("mean", "matrix", "eps", "image_shape") if k not in arrays]
    if missing:
        raise DataError(f"{folder / name}: missing array(s) {', '.join(missing)}")
    zca = ZCA(torch.from_numpy(arrays["mean"]), torch.from_numpy(arrays["matrix"]), float(arrays["eps"]),
              tuple(int(v) for v in arrays["image_shape"]))
    if zca.fingerprint != recorded.get("fingerprint"):
        raise DataError(f"{folder / name}: ZCA fingerprint {zca.fingerprint} differs from metadata.json's "
                        f"{recorded.get('fingerprint')}; the package is inconsistent")
    return zca


def _check_arrays(arrays: dict[str, np.ndarray], meta: dict, path: Path, zca: ZCA | None = None) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)} (found {sorted(arrays)})")
    shape = tuple(meta["images"]["shape_nchw"])
    normalized = arrays["train_images_normalized"]
    if normalized.shape != shape:
        raise DataError(f"{path}: train_images_normalized has shape {normalized.shape}, metadata says {shape}")
    for key in ("train_images", "train_images_float"):
        if channels_first(arrays[key]).shape != shape:
            raise DataError(f"{path}: {key} has shape {arrays[key].shape}, which does not match {shape} (N, C, H, W)")
    labels = arrays["train_labels"]
    k = len(meta["class_names"])
    if "train_labels_soft" in arrays:  # a multi-label set: (N, K) targets and each image's group
        soft, groups = arrays["train_labels_soft"], arrays.get("train_groups")
        if labels.shape != (shape[0], k) or soft.shape != (shape[0], k):
            raise DataError(f"{path}: multi-label arrays train_labels {labels.shape} / train_labels_soft {soft.shape}, "
                            f"expected ({shape[0]}, {k})")
        if groups is None or groups.shape != (shape[0],) or (groups.size and (groups.min() < 0 or groups.max() > k)):
            raise DataError(f"{path}: train_groups missing or not (N,) groups in [0, {k}]")
        if soft.size and (not np.isfinite(soft).all() or soft.min() < 0 or soft.max() > 1):
            raise DataError(f"{path}: train_labels_soft outside [0, 1]")
    else:
        if labels.shape != (shape[0], 1):
            raise DataError(f"{path}: train_labels has shape {labels.shape}, expected ({shape[0]}, 1)")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise DataError(f"{path}: labels outside [0, {k}) (min {labels.min()}, max {labels.max()})")
    mean = np.asarray(meta["normalization"]["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(meta["normalization"]["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    renormalized = (channels_first(arrays["train_images_float"]) - mean) / std
    tolerance = 1e-4
    if zca is not None:  # the float pixels are de-whitened: whiten them again (float32 round trip: looser)
        renormalized = zca.apply(torch.from_numpy(np.ascontiguousarray(renormalized))).numpy()
        tolerance = 1e-3
    if not np.allclose(renormalized, normalized, rtol=tolerance, atol=tolerance):
        raise DataError(f"{path}: train_images_float and train_images_normalized disagree under the recorded "
                        "mean/std; the package is inconsistent")


def load_package(folder, verify: bool = True) -> Package:
    """Verify the manifest (unless ``verify=False``), read and check everything; DataError names the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"no package folder at {folder}")
    if verify:
        verify_manifest(folder)
    meta = _read_metadata(folder)
    files = meta.get("files") or {}
    for name in (files.get("images"), GRID_NAME, README_NAME):
        if not name or not (folder / name).is_file():
            raise DataError(f"{folder}: missing file '{name}'; the package is incomplete")
    npz_path = folder / files["images"]
    arrays = read_npz(npz_path)
    zca = _read_zca(folder, meta)
    _check_arrays(arrays, meta, npz_path, zca)
    src = meta.get("source_dataset") or {}
    image_set = ImageSet(
        images=torch.from_numpy(np.ascontiguousarray(arrays["train_images_normalized"])),
        labels=(torch.from_numpy(arrays["train_labels_soft"].astype(np.float32)) if "train_labels_soft" in arrays
                else torch.from_numpy(arrays["train_labels"].reshape(-1).astype(np.int64))),
        groups=torch.from_numpy(arrays["train_groups"].astype(np.int64)) if "train_groups" in arrays else None,
        mean=torch.tensor(meta["normalization"]["mean"], dtype=torch.float32),
        std=torch.tensor(meta["normalization"]["std"], dtype=torch.float32),
        class_names=list(meta["class_names"]),
        metadata={"dataset": src.get("name"), "dataset_md5": src.get("md5"), "task": src.get("task"),
                  "method": meta.get("method"), "ipc": meta.get("ipc"), "seed": meta.get("seed"),
                  "hyperparameters": meta.get("hyperparameters"), "learned_lr": meta.get("learned_lr"),
                  "evaluate_with_dsa": meta.get("evaluate_with_dsa"), "versions": meta.get("versions_at_distillation"),
                  "package": str(folder), "privacy": meta.get("privacy")},
        zca=zca,
    )
    return Package(folder, meta, arrays, image_set)
