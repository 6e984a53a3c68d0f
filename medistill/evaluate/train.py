"""Training a network on an image set and scoring it (the inner piece of the evaluation protocol).

The loss follows the labels: (N,) int64 class indices → cross-entropy; (N, K) float targets in [0, 1]
(multi-label data, ChestMNIST) → binary cross-entropy with logits averaged over samples and labels, as
MedMNIST's own multi-label training does (``nn.BCEWithLogitsLoss``). Images may be a tensor or any
tensor-like split that ``.to(device)`` and ``[indices]`` serve (:class:`~medistill.data.SplitImages`).

:func:`train_epoch` is the package's one SGD epoch loop: :func:`train_network` runs it under the evaluation
schedule, and the methods' DC/DSA inner loop and MTT expert trainer run it with their own optimisers.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""An augmentation applied to each training batch: (x (B, C, H, W), generator) → (B, C, H, W)."""

SCHEDULES = ("published", "half")


@dataclass
class TrainConfig:
    """The evaluation protocol's optimiser: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256.

    ``schedule`` (how ``epochs`` = E and the one lr cut are read):
      * ``"published"`` (default): the published ``evaluate_synset`` of DC/DSA/DM and MTT: E + 1 epochs
        (0 … E); after epoch E // 2 + 1 the lr is multiplied by 0.1 and the optimiser is made anew
        (its momentum starts again from zero).
      * ``"half"``: medistill ≤ 0.1: E epochs, lr × 0.1 from epoch E // 2 on, momentum kept.
    """

    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    schedule: str = "published"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown training schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")

    def epochs_run(self) -> int:
        """How many passes over the data ``train_network`` makes."""
        return self.epochs + 1 if self.schedule == "published" else self.epochs


def training_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (B,) class indices; BCE with logits (mean over B·K) for (B, K) float targets."""
    if targets.dim() == 2 and targets.is_floating_point():
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
    return F.cross_entropy(logits, targets)


def _optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                batch_size: int, generator: torch.Generator,
                augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                autocast: Callable[[], AbstractContextManager] | None = None) -> None:
    """One SGD pass over images (N, C, H, W) and labels (N,) or (N, K) targets (:func:`training_loss`),
    ``model`` in training mode (batch norm on batch statistics). The one epoch loop of evaluation
    (:func:`train_network`), DC/DSA's inner loop and MTT's experts.

    Order: ``torch.randperm(N, generator=generator)``, copied to ``labels``' device; batches of
    ``batch_size`` in that order, the last one smaller. Per batch: ``augment(x)`` when given (it draws its
    own randomness; every caller's augmentation draws from this same ``generator``, so the draws
    interleave: the permutation, then batch 1's, batch 2's, …), the forward pass (inside ``autocast()``
    when given, the logits then cast to float32), the loss, ``zero_grad(set_to_none=True)``, backward,
    ``optimizer.step()``. Learning rate, momentum and any schedule are the optimiser's and the caller's.
    """
    model.train()
    n = len(labels)
    order = torch.randperm(n, generator=generator).to(labels.device, non_blocking=True)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x = images[idx]
        if augment is not None:
            x = augment(x)
        if autocast is None:
            logits = model(x)
        else:
            with autocast():
                logits = model(x)
            logits = logits.float()
        loss = training_loss(logits, labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def train_network(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                  generator: torch.Generator, augment: Augment | None = None,
                  on_epoch: Callable[[int], None] | None = None) -> nn.Module:
    """Train ``model`` in place on images (N, C, H, W) and labels (N,) or (N, K) multi-label targets
    (:func:`training_loss`); returns the model.

    ``config.epochs_run()`` passes of :func:`train_epoch` under ``config.schedule``; shuffling (and
    augmentation) draw from ``generator``; the global RNG is not used.
    """
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    lr = config.lr
    opt = _optimizer(model, config, lr)
    batch_augment = None if augment is None else (lambda x: augment(x, generator))
    for epoch in range(config.epochs_run()):
        if config.schedule == "half" and epoch == config.epochs // 2 and epoch > 0:
            for group in opt.param_groups:
                group["lr"] *= 0.1
        train_epoch(model, images, labels, opt, config.batch_size, generator, batch_augment)
        if config.schedule == "published" and epoch == config.epochs // 2 + 1:
            lr *= 0.1
            opt = _optimizer(model, config, lr)
        if on_epoch is not None:
            on_epoch(epoch)
    return model


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 512, multilabel: bool = False) -> np.ndarray:
    """Softmax probabilities (N, K) as a numpy array; ``multilabel``: per-label sigmoid probabilities."""
    model.eval()
    device = next(model.parameters()).device
    squash = torch.sigmoid if multilabel else (lambda logits: F.softmax(logits, dim=1))
    out = [squash(model(images[i : i + batch_size].to(device))).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()
