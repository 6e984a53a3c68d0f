"""Scaling uint8 images to normalised float tensors with the train split's statistics."""
from __future__ import annotations

import numpy as np
import torch


def to_float_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) → float32 (N, C, H, W) in [0, 1]."""
    array = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, C, H, W) images → two (C,) tensors (std floored at 1e-6)."""
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()
    return flat.mean(1).float(), flat.std(1).clamp_min(1e-6).float()


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean[c]) / std[c] for (N, C, H, W) images."""
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
