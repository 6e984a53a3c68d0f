"""Real-data baselines with one interface: random, herding, k-center greedy and the full training set.

Herding and k-center work in the embedding space (``embed()``, 2048-d for ConvNet at 28 px) of a
ConvNet trained for ``embed_epochs`` epochs on the whole training split with the evaluation
protocol's optimiser, seeded: a network that has seen the data, as the DC/DM papers' baselines use.

"Per class" means per group (:meth:`~medistill.data.ImageDataset.group_indices`): the classes, or for
multi-label data (ChestMNIST) each finding's positive images plus the "no finding" images. A
multi-label subset keeps each image's real multi-hot labels and records the group it was drawn for;
groups overlap (an image with two findings is in both), and each group's draw is independent, so an
image can be drawn for two groups. ``full`` takes every training image once. Images are taken as
normalised float batches of the stored split (``dataset.images("train")``), never the whole split at once.
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
    """Raise ValueError when ``ipc`` is not in [1, smallest class (group) size]."""
    counts = dataset.group_counts("train")
    if ipc < 1:
        raise ValueError(f"ipc must be ≥ 1, got {ipc}")
    if ipc > min(counts):
        smallest = counts.index(min(counts))
        kind = "group" if dataset.multilabel else "class"
        raise ValueError(
            f"ipc {ipc} exceeds the smallest {kind} of {dataset.name} "
            f"({kind} {smallest} '{dataset.group_names[smallest]}' has {min(counts)} training images)"
        )


@torch.no_grad()
def _embed(model, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model.embed(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def embedding_features(dataset: ImageDataset, seed: int, embed_epochs: int = 10, model: str = "convnet") -> torch.Tensor:
    """(N_train, D) features of the train split from a briefly trained, seeded network."""
    generator = torch.Generator().manual_seed(seed)
    net = build_model(model, dataset.channels, dataset.num_classes, dataset.image_size, generator=generator)
    images = dataset.images("train")
    train_network(net, images, dataset.train_labels, TrainConfig(epochs=embed_epochs), generator)
    return _embed(net, images)


def select(dataset: ImageDataset, selector: str, ipc: int | None = None, seed: int = 0,
           embed_epochs: int = 10) -> ImageSet:
    """An :class:`ImageSet` of real training images chosen by ``selector`` (``ipc`` per class; all for 'full')."""
    if selector not in SELECTORS:
        raise ValueError(f"unknown selector {selector!r}; choose one of {', '.join(SELECTORS)}")
    class_indices = dataset.group_indices("train")
    groups = None
    if selector == "full":
        indices = torch.arange(len(dataset.train_labels)) if dataset.multilabel else torch.cat(class_indices)
        if dataset.multilabel:
            groups = dataset.primary_groups(dataset.train_labels)
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
        if dataset.multilabel:
            groups = torch.arange(dataset.num_groups).repeat_interleave(ipc)
    metadata = {
        "dataset": dataset.name, "dataset_md5": dataset.md5, "method": selector, "ipc": ipc, "seed": seed,
        "hyperparameters": {"embed_epochs": embed_epochs} if selector in ("herding", "kcenter") else {},
        "source_indices": indices.tolist() if selector != "full" else None,
        "task": dataset.task,
    }
    return ImageSet(images=dataset.images("train")[indices].clone(), labels=dataset.train_labels[indices].clone(),
                    mean=dataset.mean, std=dataset.std, class_names=dataset.class_names, metadata=metadata,
                    groups=groups)


from .random_scores import DEFAULT_SUBSETS, random_baseline  # noqa: E402  (uses check_ipc above)

__all__ = ["DEFAULT_SUBSETS", "SELECTORS", "check_ipc", "random_baseline", "embedding_features", "herding_order", "kcenter_order", "random_indices", "select"]
