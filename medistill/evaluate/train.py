"""Training a network on an image set and scoring it (the inner piece of the evaluation protocol)."""
from __future__ import annotations

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


def _optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train_network(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                  generator: torch.Generator, augment: Augment | None = None,
                  on_epoch: Callable[[int], None] | None = None) -> nn.Module:
    """Train ``model`` in place on images (N, C, H, W) and labels (N,); returns the model.

    ``config.epochs_run()`` passes; shuffling (and augmentation) draw from ``generator``; the global
    RNG is not used.
    """
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    lr = config.lr
    opt = _optimizer(model, config, lr)
    n = len(labels)
    model.train()
    for epoch in range(config.epochs_run()):
        if config.schedule == "half" and epoch == config.epochs // 2 and epoch > 0:
            for group in opt.param_groups:
                group["lr"] *= 0.1
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x, generator)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if config.schedule == "published" and epoch == config.epochs // 2 + 1:
            lr *= 0.1
            opt = _optimizer(model, config, lr)
        if on_epoch is not None:
            on_epoch(epoch)
    return model


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities (N, K) as a numpy array."""
    model.eval()
    device = next(model.parameters()).device
    out = [F.softmax(model(images[i : i + batch_size].to(device)), dim=1).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()
