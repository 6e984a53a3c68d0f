"""Herding selection (Welling 2009, as the DC/DM papers' coreset baseline).

Per class, greedily add the sample that brings the mean of the selected features closest to the
class mean feature.
"""
from __future__ import annotations

import torch


def herding_order(features: torch.Tensor, count: int) -> torch.Tensor:
    """features: (N, D) of one class → indices (count,) into it, in selection order."""
    mu = features.mean(0)
    selected: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(len(features), dtype=torch.bool)
    for step in range(min(count, len(features))):
        # Mean after adding candidate i: (running + f_i) / (step + 1); pick the one closest to mu.
        candidate_means = (running.unsqueeze(0) + features) / (step + 1)
        dist = (candidate_means - mu).pow(2).sum(1)
        dist[~available] = float("inf")
        best = int(torch.argmin(dist))
        selected.append(best)
        available[best] = False
        running += features[best]
    return torch.tensor(selected, dtype=torch.int64)
