"""The indicator: R random real subsets at an IPC, scored as the study scores them.

It is :func:`medistill.selection.random_baseline` (one implementation and one cache for runs, study
and predictor) under the real-image recipe (no augmentation, the protocol's lr), with evaluation seed
``INDICATOR_SEED`` (0: subsets 0 … R−1): exactly the ``random_*`` columns of a study row, so a
dataset's indicator measured by ``medistill predict`` is comparable with the fitted ones.
"""
from __future__ import annotations

from ..data import ImageDataset
from ..evaluate import EvalConfig
from ..selection import random_baseline

INDICATOR_SEED = 0


def indicator_config(models: int, epochs: int | None, device: str = "cpu") -> EvalConfig:
    return EvalConfig(num_models=models, epochs=epochs, seed=INDICATOR_SEED, device=device)


def measure_indicator(dataset: ImageDataset, ipc: int, subsets: int, models: int, epochs: int | None,
                      device: str = "cpu", cache_dir=None, progress: bool = True) -> dict:
    """{metric: {"mean", "std", "values"}} over ``subsets`` random subsets (``std``: the spread over subsets)."""
    config = indicator_config(models, epochs, device)
    return random_baseline(dataset, ipc, config, subsets=subsets, cache_dir=cache_dir, progress=progress)["subsets"]
