"""The indicator: R random real subsets at an IPC, scored as the study scores them.

It is :func:`medistill.selection.random_baseline` (one implementation and one cache for runs, study
and predictor) under the real-image recipe (no augmentation, the protocol's lr), with evaluation seed
``INDICATOR_SEED`` (0: subsets 0 … R−1): exactly the ``random_*`` columns of a study row, so a
dataset's indicator measured by ``medistill predict`` is comparable with the fitted ones.
"""
from __future__ import annotations

from collections import Counter

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


def table_protocol(rows: list[dict], preset: str) -> tuple[int, int, int | None]:
    """(subsets, networks, epochs) the indicator of a study table's rows at ``preset`` was measured with
    (the most common; 5 subsets, 2 networks and the protocol's epochs when the table has no indicator)."""
    mine = [r for r in rows if str(r.get("preset")) == str(preset) and r.get("random_accuracy_mean") is not None]
    subsets = Counter(r.get("random_subsets") or 5 for r in mine).most_common(1)[0][0] if mine else 5
    plain = [r for r in mine if r["method"] in ("random", "herding", "kcenter")] or mine
    models = Counter(r.get("eval_models") for r in plain).most_common(1)[0][0] if plain else 2
    epochs = Counter(r.get("eval_epochs") for r in plain).most_common(1)[0][0] if plain else None
    return subsets, models, epochs
