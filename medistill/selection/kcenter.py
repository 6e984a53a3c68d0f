"""k-center greedy selection (Sener & Savarese 2018).

Per class, start from the sample nearest the class mean feature, then repeatedly add the sample
farthest from everything selected so far (a 2-approximation of the k-center cover).
"""
from __future__ import annotations

import torch


def kcenter_order(features: torch.Tensor, count: int) -> torch.Tensor:
    """features: (N, D) of one class → indices (count,) into it, in selection order."""
    count = min(count, len(features))
    first = int(torch.argmin((features - features.mean(0)).pow(2).sum(1)))
    selected = [first]
    min_dist = (features - features[first]).pow(2).sum(1)
    for _ in range(count - 1):
        nxt = int(torch.argmax(min_dist))
        selected.append(nxt)
        min_dist = torch.minimum(min_dist, (features - features[nxt]).pow(2).sum(1))
    return torch.tensor(selected, dtype=torch.int64)
