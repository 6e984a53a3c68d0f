"""The mechanism of DP-DM: Poisson subsampling, per-example clipping, Gaussian noise on per-class sums.

Every draw comes from an explicit generator; the private ones (which images are sampled, the noise) come
from :func:`private_generators`, seeded with a secret, never from the run's public seed.
"""
from __future__ import annotations

import hashlib

import torch


def private_generators(secret: int, num_classes: int) -> list[torch.Generator]:
    """One CPU generator per class, seeded from (``secret``, class): the class's Poisson draws and noise."""
    gens = []
    for c in range(num_classes):
        digest = hashlib.sha256(f"medistill private stream {secret} {c}".encode()).digest()
        gens.append(torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)))
    return gens


def poisson_mask(n: int, sample_rate: float, generator: torch.Generator) -> torch.Tensor:
    """(n,) bool: each of n items in independently with probability ``sample_rate`` (n uniform draws, always)."""
    return torch.rand(n, generator=generator) < sample_rate


def clip_rows(rows: torch.Tensor, clip: float) -> torch.Tensor:
    """(B, D) → (B, D): each row scaled by min(1, clip / ‖row‖₂), so no row's norm exceeds ``clip``.
    Differentiable (the synthetic side is clipped alike)."""
    norms = rows.norm(dim=1, keepdim=True)
    return rows * torch.clamp(clip / norms.clamp_min(1e-12), max=1.0)


def clipped_sum(rows: torch.Tensor, clip: float) -> torch.Tensor:
    """(B, D) → (D,): the sum of the clipped rows (zeros for B = 0); changing one row moves it by ≤ 2·clip,
    adding or removing one by ≤ clip."""
    return clip_rows(rows, clip).sum(dim=0)


def noisy_mean(total: torch.Tensor, count: float, noise_multiplier: float, clip: float,
               generator: torch.Generator) -> torch.Tensor:
    """(D,) → (D,): (total + N(0, (σ·clip)² I)) / count, the noise drawn on the CPU from ``generator``.
    ``count`` must be data-independent (DP-DM: the expected count q·N_c of public class sizes)."""
    noise = torch.randn(total.shape, generator=generator, dtype=torch.float32) * (noise_multiplier * clip)
    return (total + noise.to(total.device, total.dtype)) / count


__all__ = ["clip_rows", "clipped_sum", "noisy_mean", "poisson_mask", "private_generators"]
