"""The one evaluation recipe: how a saved set is scored, decided from the set's own metadata.

Every caller that scores a set — a run's final score, ``medistill evaluate`` on a ``.pt`` file, a
run folder or a package, the study, ``predict`` and ``export`` — goes through :func:`evaluate_set`:

* DSA training when the set says so (``metadata["evaluate_with_dsa"]``: DSA, DM and MTT sets), with
  the set's own strategy and ``align_corners`` (its ``hyperparameters``); ``dsa=True/False`` overrides;
* the set's learned learning rate (MTT) instead of ``config.lr``;
* a set distilled in ZCA space is scored on the test split whitened with the set's transform.
"""
from __future__ import annotations

import dataclasses

from ..data import DataError, ImageDataset, ImageSet, whiten_dataset
from ..ops.dsa_params import DEFAULT_STRATEGY
from .protocol import EvalConfig, EvalResult, evaluate_images


def recipe_config(metadata: dict, learned_lr: float | None, config: EvalConfig, dsa: bool | None = None) -> EvalConfig:
    """``config`` with the set's evaluation decided: DSA (strategy, align_corners) and lr."""
    hyper = metadata.get("hyperparameters") or {}
    use_dsa = bool(metadata.get("evaluate_with_dsa")) if dsa is None else bool(dsa)
    strategy = hyper.get("dsa_strategy") or config.dsa_strategy or DEFAULT_STRATEGY
    return dataclasses.replace(config, dsa_strategy=strategy if use_dsa else None,
                               dsa_align_corners=bool(hyper.get("align_corners", False)) if use_dsa else False,
                               lr=learned_lr or config.lr)


def check_set_matches(image_set: ImageSet, dataset: ImageDataset, where: str = "the set") -> None:
    """DataError when the set's image shape, class count or label kind does not fit ``dataset``."""
    shape, expected = tuple(image_set.images.shape[1:]), tuple(dataset.image_shape)
    if shape != expected:
        raise DataError(f"{where}: images are {shape} (C, H, W) but {dataset.name} test images are {expected}; "
                        "it was not made from this dataset (or at another --size)")
    if image_set.num_classes != dataset.num_classes:
        raise DataError(f"{where}: {image_set.num_classes} classes, {dataset.name} has {dataset.num_classes}")
    if image_set.multilabel != dataset.multilabel:
        raise DataError(f"{where}: {'multi-label' if image_set.multilabel else 'single-label'} labels, but {dataset.name} "
                        f"is {dataset.task}")


def evaluate_set(image_set: ImageSet, dataset: ImageDataset, config: EvalConfig, *, dsa: bool | None = None,
                 progress: bool = True, desc: str = "evaluate") -> EvalResult:
    """Score ``image_set`` on ``dataset``'s test split under the recipe (see the module doc)."""
    check_set_matches(image_set, dataset)
    if image_set.zca is not None:
        dataset = whiten_dataset(dataset, image_set.zca)
    cfg = recipe_config(image_set.metadata or {}, image_set.learned_lr, config, dsa)
    return evaluate_images(image_set.images, image_set.labels, dataset.images("test"), dataset.test_labels,
                           dataset.num_classes, dataset.task, cfg, progress=progress, desc=desc)
