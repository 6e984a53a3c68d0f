"""Real-data baselines with one interface: random, herding, k-center greedy and the full training set.

Herding and k-center work in the embedding space (``embed()``, 2048-d for ConvNet at 28 px) of a
ConvNet trained for ``embed_epochs`` epochs on the whole training split with the evaluation
protocol's optimiser, seeded: a network that has seen the data, as the DC/DM papers' baselines use.
"""
from __future__ import annotations

import torch

from ..data import ImageDataset, ImageSet
from ..evaluate import TrainConfig, train_network
from ..models import build_model
from .herding import herding_order
from .kcenter import kcenter_order
from .random_subset import random_indices

SELECTORS = ("random", "herding", "kcenter", "full")


def check_ipc(dataset: ImageDataset, ipc: int) -> None:
    """Raise ValueError when ``ipc`` is not in [1, smallest class size]."""
    counts = dataset.class_counts("train")
    if ipc < 1:
        raise ValueError(f"ipc must be ≥ 1, got {ipc}")
    if ipc > min(counts):
        smallest = counts.index(min(counts))
        raise ValueError(
            f"ipc {ipc} exceeds the smallest class of {dataset.name} "
            f"(class {smallest} '{dataset.class_names[smallest]}' has {min(counts)} training images)"
        )


@torch.no_grad()
def _embed(model, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model.embed(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def embedding_features(dataset: ImageDataset, seed: int, embed_epochs: int = 10, model: str = "convnet") -> torch.Tensor:
    """(N_train, D) features of the train split from a briefly trained, seeded network."""
    generator = torch.Generator().manual_seed(seed)
    net = build_model(model, dataset.channels, dataset.num_classes, dataset.image_size, generator=generator)
    train_network(net, dataset.train_images, dataset.train_labels, TrainConfig(epochs=embed_epochs), generator)
    return _embed(net, dataset.train_images)


def select(dataset: ImageDataset, selector: str, ipc: int | None = None, seed: int = 0,
           embed_epochs: int = 10) -> ImageSet:
    """An :class:`ImageSet` of real training images chosen by ``selector`` (``ipc`` per class; all for 'full')."""
    if selector not in SELECTORS:
        raise ValueError(f"unknown selector {selector!r}; choose one of {', '.join(SELECTORS)}")
    class_indices = dataset.class_indices("train")
    if selector == "full":
        indices = torch.cat(class_indices)
    else:
        if ipc is None:
            raise ValueError(f"selector {selector!r} needs ipc")
        check_ipc(dataset, ipc)
        if selector == "random":
            indices = random_indices(class_indices, ipc, torch.Generator().manual_seed(seed))
        else:
            features = embedding_features(dataset, seed, embed_epochs)
            order = herding_order if selector == "herding" else kcenter_order
            indices = torch.cat([idx[order(features[idx], ipc)] for idx in class_indices])
    metadata = {
        "dataset": dataset.name, "dataset_md5": dataset.md5, "method": selector, "ipc": ipc, "seed": seed,
        "hyperparameters": {"embed_epochs": embed_epochs} if selector in ("herding", "kcenter") else {},
        "source_indices": indices.tolist() if selector != "full" else None,
        "task": dataset.task,
    }
    return ImageSet(images=dataset.train_images[indices].clone(), labels=dataset.train_labels[indices].clone(),
                    mean=dataset.mean, std=dataset.std, class_names=dataset.class_names, metadata=metadata)


from .random_scores import DEFAULT_SUBSETS, random_baseline  # noqa: E402  (uses check_ipc above)

__all__ = ["DEFAULT_SUBSETS", "SELECTORS", "check_ipc", "random_baseline", "embedding_features", "herding_order", "kcenter_order", "random_indices", "select"]
