"""Scaling uint8 images to normalised float tensors with the train split's statistics.

Two ways to the same numbers: :func:`to_float_nchw` + :func:`channel_stats` + :func:`normalize` on a
whole float copy (the combined set, tests), and :func:`pixel_stats` + :func:`normalize_pixels` on the
uint8 pixels themselves, batch by batch, without ever holding the split as floats (MedMNIST files at
every size, :class:`~medistill.data.dataset.SplitImages`). Both give bit-identical tensors:
``(float32(x) / 255 - mean[c]) / std[c]``, each step one correctly rounded float32 operation.
"""
from __future__ import annotations

from fractions import Fraction
import math

import numpy as np
import torch

_STATS_CHUNK_BYTES = 64 << 20  # pixels counted at a time by pixel_stats


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


def pixel_channels(pixels) -> int:
    """Channels of uint8 pixels stored as MedMNIST does: (N, H, W) → 1, (N, H, W, C) → C."""
    return 1 if pixels.ndim == 3 else int(pixels.shape[-1])


def pixel_histogram(pixels: torch.Tensor) -> np.ndarray:
    """(C, 256) int64 counts of each uint8 level per channel of (N, H, W) or (N, H, W, C) pixels,
    counted on the uint8 values themselves (no float or int64 copy), a chunk of about 64 MiB at a time."""
    channels = pixel_channels(pixels)
    per_image = max(1, pixels[0].numel() if len(pixels) else 1)
    step = max(1, _STATS_CHUNK_BYTES // per_image)
    histogram = np.zeros((channels, 256), np.int64)
    for start in range(0, len(pixels), step):
        chunk = pixels[start : start + step].reshape(-1, channels)
        for c in range(channels):  # a channel's column of a chunk: one uint8 copy of a third of it at most
            histogram[c] += torch.bincount(chunk[:, c].contiguous(), minlength=256).numpy()
    return histogram


def stats_from_histogram(histogram: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased std (floored at 1e-6) of the float32 values ``x / 255`` counted in
    ``histogram`` (C, 256), as (C,) float32 tensors.

    The sums are exact (rational arithmetic over the 256 float32 levels), then rounded once to float64
    and once to float32: what :func:`channel_stats` computes in float64 over the whole float copy, up to
    that copy's own float64 summation error (~1e-16), which float32 rounding hides.
    """
    levels = (torch.arange(256, dtype=torch.float32) / 255.0).double().tolist()  # the float32 values x / 255
    exact = [Fraction(v) for v in levels]
    means, stds = [], []
    for counts in histogram.tolist():
        n = sum(counts)
        if n == 0:
            means.append(float("nan"))
            stds.append(float("nan"))
            continue
        mean = sum(c * v for c, v in zip(counts, exact) if c) / n
        squares = sum(c * (v - mean) ** 2 for c, v in zip(counts, exact) if c)
        means.append(float(mean))
        stds.append(math.sqrt(float(squares / (n - 1))) if n > 1 else float("nan"))
    return torch.tensor(means, dtype=torch.float64).float(), torch.tensor(stds, dtype=torch.float64).clamp_min(1e-6).float()


def pixel_stats(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 pixels (N, H, W) or (N, H, W, C) scaled to [0, 1], without a float
    copy: the same (C,) float32 tensors :func:`channel_stats` gives for ``to_float_nchw(pixels)``."""
    return stats_from_histogram(pixel_histogram(pixels))


def normalize_pixels(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) or (B, H, W, C) → contiguous float32 (B, C, H, W) ``(x / 255 - mean[c]) / std[c]``
    on the pixels' device, bit-identical to ``normalize(to_float_nchw(pixels), mean, std)``.

    ``mean``/``std`` must be on the pixels' device. The 255 is a tensor, not a Python number: CUDA
    divides by a CPU scalar as a multiplication by its reciprocal, which can differ in the last bit.
    """
    x = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)
    out = x.to(torch.float32, memory_format=torch.contiguous_format)
    scale = torch.full((1, 1, 1, 1), 255.0, dtype=torch.float32, device=out.device)
    return out.div_(scale).sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
