"""An embedding space for nearest-neighbour search: a ConvNet trained briefly on the real training split.

Seeded (``torch.Generator(seed)`` for the initialisation and the shuffling), trained with the
evaluation protocol's optimiser (SGD lr 0.01, momentum 0.9, wd 5e-4, batch 256) for ``epochs``
epochs (10 by default, as herding/k-center use); features are ``embed()``: 2048-d for ConvNet at 28 px.
"""
from __future__ import annotations

import torch

from ..data import ImageDataset
from ..evaluate import TrainConfig, train_network
from ..models import build_model


def train_embedding_network(dataset: ImageDataset, seed: int = 0, epochs: int = 10, model: str = "convnet",
                            device: str = "cpu") -> torch.nn.Module:
    """A network trained ``epochs`` epochs on dataset.train_images, seeded from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    net = build_model(model, dataset.channels, dataset.num_classes, dataset.image_size, generator=generator).to(device)
    train_network(net, dataset.train_images, dataset.train_labels, TrainConfig(epochs=epochs), generator)
    return net.eval()


@torch.no_grad()
def embed_images(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Normalised images (N, C, H, W) → features (N, D) on the CPU."""
    device = next(net.parameters()).device
    net.eval()
    return torch.cat([net.embed(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])
