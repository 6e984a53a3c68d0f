"""The indicator: the random-subset baseline at the same IPC, as the study measured it.

It is :func:`medistill.selection.random_baseline` (one implementation and one cache for runs, study
and predictor): R random subsets (selection and evaluation seed k for subset k), each scored by
``eval_config.num_models`` networks; the indicator is the mean over subsets of their mean score,
with the spread across subsets. ``dsa=True`` trains with DSA augmentation, as the distilled sets of
DSA, DM and MTT are scored (and their random-subset columns in the study table with them).
"""
from __future__ import annotations

import dataclasses

from ..data import ImageDataset
from ..evaluate import EvalConfig
from ..ops.dsa_params import DEFAULT_STRATEGY
from ..selection import random_baseline


def random_subset_indicator(dataset: ImageDataset, ipc: int, subsets: int, eval_config: EvalConfig,
                            dsa: bool = False, progress: bool = True, cache_dir=None) -> dict:
    """{metric: {"mean", "std", "values"}} over ``subsets`` random subsets (values: one per subset)."""
    config = dataclasses.replace(eval_config, dsa_strategy=DEFAULT_STRATEGY if dsa else None)
    return random_baseline(dataset, ipc, config, subsets=subsets, cache_dir=cache_dir, progress=progress)["subsets"]
