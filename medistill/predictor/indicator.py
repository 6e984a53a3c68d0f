"""The indicator: scores of networks trained on R random real subsets at the same IPC.

Each subset k (selection seed k) trains ``eval_config.num_models`` networks under the evaluation
protocol (seed k); the indicator is the mean over subsets of their mean score, with the spread
across subsets. ``dsa=True`` trains with DSA augmentation, as the distilled sets of DSA, DM and MTT
are scored (and their random-subset columns in the study table with them).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..data import ImageDataset
from ..evaluate import EvalConfig, evaluate_images
from ..methods.config import DSA_STRATEGY
from ..methods.runner import dsa_training_augment
from ..selection import check_ipc, select
from ..study.table import METRICS


def random_subset_indicator(dataset: ImageDataset, ipc: int, subsets: int, eval_config: EvalConfig,
                            dsa: bool = False, progress: bool = True) -> dict:
    """{metric: {"mean", "std", "values"}} over ``subsets`` random subsets (values: one per subset)."""
    if subsets < 1:
        raise ValueError(f"need at least one random subset, got {subsets}")
    check_ipc(dataset, ipc)
    augment = dsa_training_augment(DSA_STRATEGY) if dsa else None
    per_subset = []
    for k in range(subsets):
        subset = select(dataset, "random", ipc, seed=k)
        config = dataclasses.replace(eval_config, seed=k, augment=dsa)
        result = evaluate_images(subset.images, subset.labels, dataset.test_images, dataset.test_labels,
                                 dataset.num_classes, dataset.task, config, augment=augment, progress=progress,
                                 desc=f"random subset {k + 1}/{subsets}{' (DSA)' if dsa else ''}")
        per_subset.append({m: result.summary[m]["mean"] for m in METRICS})
    return {m: {"mean": float(np.mean([s[m] for s in per_subset])),
                "std": float(np.std([s[m] for s in per_subset])),
                "values": [s[m] for s in per_subset]} for m in METRICS}
