"""Reference of ``channel_normalize``."""
import torch


def channel_normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean[c]) / std[c] for x of shape (B, C, H, W) and mean, std of shape (C,)."""
    return (x - mean.to(x.dtype).view(1, -1, 1, 1)) / std.to(x.dtype).view(1, -1, 1, 1)
