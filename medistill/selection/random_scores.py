"""The random-subset baseline: R random real subsets at an IPC, each scored by N networks, with its spread.

One implementation and one cache for everything that compares with random real images (per class, or
per group for multi-label data: :mod:`medistill.selection`): a run's
``metrics.json``, ``medistill baseline --selector random``, the study and ``predict`` (whose
indicator it is). Subset k of seed s draws its images with selection seed ``s * 1000 + k`` and is
scored with evaluation seed ``s * 1000 + k`` (so seed 0 gives subsets 0, 1, …). Each subset's result
is cached on its own in ``cache_dir`` under a key of everything that decides it (the dataset's
MD5/content hash, IPC, the subset's seed, the evaluation config, the ZCA transform's fingerprint):
R = 3 and R = 5 share their first three subsets, and every method's run with the same settings
shares them all.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..atomic_io import atomic_write_text
from ..data import ImageDataset, whiten_dataset
from ..data.zca import ZCA
from ..evaluate import EvalConfig, evaluate_images
from ..evaluate.protocol import summarize
from .random_subset import random_indices

DEFAULT_SUBSETS = 5


def subset_seed(seed: int, k: int) -> int:
    """Selection and evaluation seed of subset k of a baseline with seed ``seed``."""
    return seed * 1000 + k


def _cache_path(cache_dir: Path, dataset: ImageDataset, ipc: int, seed: int, config: EvalConfig,
                zca: ZCA | None) -> Path:
    keyed = {"dataset": dataset.name, "md5": dataset.md5, "ipc": ipc, "subset_seed": seed,
             "eval": dataclasses.asdict(config), "zca": zca.fingerprint if zca is not None else None}
    key = hashlib.sha1(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"random-{dataset.name}-ipc{ipc}-{key}.json"


def score_subset(dataset: ImageDataset, ipc: int, seed: int, config: EvalConfig, progress: bool = True,
                 desc: str = "random subset") -> dict:
    """One random subset (selection seed ``seed``) scored with ``config`` (its seed replaced by ``seed``)."""
    indices = random_indices(dataset.group_indices("train"), ipc, torch.Generator().manual_seed(seed))
    result = evaluate_images(dataset.images("train")[indices], dataset.train_labels[indices], dataset.images("test"),
                             dataset.test_labels, dataset.num_classes, dataset.task,
                             dataclasses.replace(config, seed=seed), progress=progress, desc=desc).to_dict()
    result["subset_seed"] = seed
    result["source_indices"] = indices.tolist()
    return result


def random_baseline(dataset: ImageDataset, ipc: int, config: EvalConfig, subsets: int = DEFAULT_SUBSETS,
                    cache_dir=None, zca: ZCA | None = None, progress: bool = True) -> dict:
    """R = ``subsets`` random real subsets of ``ipc`` images per class, each scored with ``config``.

    ``zca``: score in that whitened space (both the subset and the test split), as a ZCA set is.
    Returns a dict with:
      * ``subsets``: {metric: {"mean", "std", "values"}} over the subsets' mean scores (the spread that
        decides "beats random", :mod:`medistill.evaluate.comparison`);
      * ``summary``: {metric: {"mean", "std", "values"}} over every network of every subset;
      * ``per_subset``: each subset's full result (per-network metrics, confusion matrix, its indices);
      * ``confusion_matrix`` summed over all networks, ``majority_rate``, ``test_size``, ``config``,
        ``ipc``, ``num_subsets``, ``seed``.
    """
    from . import check_ipc  # (selection/__init__ imports this module)

    if subsets < 1:
        raise ValueError(f"the random baseline needs at least one subset, got {subsets}")
    check_ipc(dataset, ipc)
    if zca is not None:
        dataset = whiten_dataset(dataset, zca)
    per_subset = []
    for k in range(subsets):
        seed = subset_seed(config.seed, k)
        cached = _cache_path(cache_dir, dataset, ipc, seed, config, zca) if cache_dir is not None else None
        if cached is not None and cached.exists():
            result = json.loads(cached.read_text())
        else:
            result = score_subset(dataset, ipc, seed, config, progress,
                                  desc=f"random subset {k + 1}/{subsets}")
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(cached, json.dumps(result))
        per_subset.append(result)
    metrics = list(per_subset[0]["summary"])
    means = {m: [r["summary"][m]["mean"] for r in per_subset] for m in metrics}
    networks = [model for r in per_subset for model in r["per_model"]]
    return {
        "ipc": ipc, "num_subsets": subsets, "seed": config.seed,
        "subsets": {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v} for m, v in means.items()},
        "summary": summarize(networks),
        "per_subset": per_subset,
        "confusion_matrix": np.sum([r["confusion_matrix"] for r in per_subset], axis=0).astype(int).tolist(),
        "majority_rate": per_subset[0]["majority_rate"], "test_size": per_subset[0]["test_size"],
        "config": per_subset[0]["config"],
    }
