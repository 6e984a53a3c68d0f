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


@dataclass
class TrainConfig:
    """REFERENCE.md evaluation protocol: SGD lr 0.01, momentum 0.9, wd 5e-4, batch 256, lr ×0.1 at half."""

    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    decay_at_half: bool = True


def train_network(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                  generator: torch.Generator, augment: Augment | None = None,
                  on_epoch: Callable[[int], None] | None = None) -> nn.Module:
    """Train ``model`` in place on images (N, C, H, W) and labels (N,); returns the model.

    Shuffling (and augmentation) draws from ``generator``; the global RNG is not used.
    """
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    n = len(labels)
    model.train()
    for epoch in range(config.epochs):
        if config.decay_at_half and epoch == config.epochs // 2 and epoch > 0:
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
