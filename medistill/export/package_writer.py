"""Writing a package folder: arrays, metadata, grid, README, then the manifest; all or nothing.

The package is assembled in a temporary sibling folder and renamed into place, so a crash never
leaves a half-written package under the requested name.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..data import DataError, ImageSet
from ..ops.dsa_params import DEFAULT_STRATEGY
from ..data.imageset import environment_versions
from .image_arrays import medmnist_arrays, zca_arrays
from .manifest import write_manifest
from .package_readme import package_readme
from .run_source import RunSource, load_run_source

PACKAGE_FORMAT = "medistill.package"
PACKAGE_FORMAT_VERSION = 1
METADATA_NAME = "metadata.json"
GRID_NAME = "synthetic_grid.png"
README_NAME = "README.md"
ZCA_NAME = "zca.npz"


def _medmnist_info(name: str | None) -> dict:
    try:
        from medmnist import INFO
    except ImportError:  # pragma: no cover
        return {}
    return INFO.get(name or "", {})


def _evaluation(metrics: dict | None) -> dict | None:
    """The scores of metrics.json without per-model detail: distilled and random summaries and configs."""
    if not metrics:
        return None
    keep = {}
    for key in ("distilled", "random"):
        if metrics.get(key):
            m = metrics[key]
            keep[key] = {"summary": m["summary"], "config": m["config"], "majority_rate": m["majority_rate"],
                         "test_size": m["test_size"]}
    keep["evaluated_with_dsa"] = metrics.get("evaluated_with_dsa")
    return keep


def package_metadata(source: RunSource, arrays: dict[str, np.ndarray], npz_name: str) -> dict:
    """The metadata.json content for ``source`` (everything a data officer or a re-scoring site needs)."""
    s: ImageSet = source.image_set
    meta, config = s.metadata, source.config or {}
    name = meta.get("dataset") or config.get("dataset")
    info = _medmnist_info(name)
    pixels = arrays["train_images_float"]
    hyper = meta.get("hyperparameters") or {k: v for k, v in config.items() if k not in ("versions",)}
    if meta.get("privacy"):  # DP: the set's metadata alone (config.json keeps the data's fingerprints at the site)
        config = {k: v for k, v in config.items() if k not in ("dataset_md5", "dataset_provenance")}
    return {
        "format": PACKAGE_FORMAT,
        "format_version": PACKAGE_FORMAT_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source_run": source.name,
        "source_dataset": {"name": name, "md5": meta.get("dataset_md5") or config.get("dataset_md5"),
                           "official_md5": info.get("MD5"), "task": meta.get("task") or info.get("task"),
                           "python_class": info.get("python_class"), "license": info.get("license"),
                           "provenance": meta.get("dataset_provenance") or config.get("dataset_provenance")},
        "method": meta.get("method") or config.get("method"),
        "ipc": meta.get("ipc") or config.get("ipc"),
        "seed": meta.get("seed", config.get("seed")),
        "iterations": meta.get("iterations") or config.get("iterations"),
        "hyperparameters": hyper,
        "learned_lr": s.learned_lr,
        "evaluate_with_dsa": bool(meta.get("evaluate_with_dsa", False)),
        "dsa_strategy": hyper.get("dsa_strategy", DEFAULT_STRATEGY),
        "class_names": list(s.class_names),
        "normalization": {"mean": s.mean.tolist(), "std": s.std.tolist(),
                          "rule": "normalized = (pixels - mean[c]) / std[c]; pixels in [0, 1] scale"},
        "images": {
            "count": int(s.images.shape[0]),
            "shape_nchw": list(s.images.shape),
            "per_class": meta.get("ipc"),
            "images_per_class": s.images_per_class(),
            "float_min": float(pixels.min()) if pixels.size else 0.0,
            "float_max": float(pixels.max()) if pixels.size else 0.0,
            "clipped_fraction": float(((pixels < 0) | (pixels > 1)).mean()) if pixels.size else 0.0,
            "uint8_rule": "train_images = round(clip(train_images_float, 0, 1) * 255)",
            "keys": {"train_images": "uint8, MedMNIST layout",
                     "train_labels": ("(N, K) uint8 multi-hot (target >= 0.5), ChestMNIST layout" if s.multilabel
                                      else "(N, 1)"),
                     **({"train_labels_soft": "(N, K) float32, the exact targets networks train on (BCE)",
                         "train_groups": "(N,) int64, each image's group (finding k, or K = no finding)"}
                        if s.multilabel else {}),
                     "train_images_float": "float32 de-normalised pixels, MedMNIST layout, not clipped",
                     "train_images_normalized": "float32 (N, C, H, W), the exact distilled tensor"
                                                + (", ZCA-whitened (zca.npz)" if s.zca is not None else ""),
                     "val_/test_": "empty: no real images are shipped"},
        },
        "zca": s.zca.describe() if s.zca is not None else None,
        "evaluation": _evaluation(source.metrics),
        "privacy": meta.get("privacy"),  # the differential-privacy guarantee of a DP-DM set (docs/privacy.md)
        "versions_at_distillation": meta.get("versions") or config.get("versions"),
        "versions_at_export": environment_versions(),
        "files": {"images": npz_name, "metadata": METADATA_NAME, "grid": GRID_NAME, "readme": README_NAME,
                  **({"zca": ZCA_NAME} if s.zca is not None else {})},
    }


def export_package(source, out, force: bool = False) -> Path:
    """Write the package for ``source`` (run folder, .pt path or RunSource) into folder ``out``; returns it.

    ``out`` must not exist unless ``force`` (then it is replaced once the new package is complete).
    """
    if not isinstance(source, RunSource):
        source = load_run_source(source)
    out = Path(out)
    if out.exists() and not force:
        raise DataError(f"{out} already exists; choose another --out or pass --force to replace it")
    s = source.image_set
    if s.images.shape[0] == 0:
        raise DataError(f"{source.path}: the set holds no images")
    if not np.isfinite(s.images.detach().cpu().numpy()).all():
        raise DataError(f"{source.path}: the set holds NaN or infinite pixels; it cannot be shared")
    arrays = medmnist_arrays(s.images, s.labels, s.mean, s.std, s.num_classes, zca=s.zca,
                             groups=s.groups if s.multilabel else None)
    name = s.metadata.get("dataset") or (source.config or {}).get("dataset")
    npz_name = f"{name}.npz" if name else "synthetic.npz"
    meta = package_metadata(source, arrays, npz_name)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        np.savez_compressed(tmp / npz_name, **arrays)
        if s.zca is not None:
            np.savez(tmp / ZCA_NAME, **zca_arrays(s.zca))
        (tmp / METADATA_NAME).write_text(json.dumps(meta, indent=1))
        s.save_grid(tmp / GRID_NAME)
        (tmp / README_NAME).write_text(package_readme(meta))
        write_manifest(tmp)
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
