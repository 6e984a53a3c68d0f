"""Random real subset: ``ipc`` images drawn uniformly without replacement from each class (or group)."""
from __future__ import annotations

import torch


def random_indices(class_indices: list[torch.Tensor], ipc: int, generator: torch.Generator) -> torch.Tensor:
    """Indices (G*ipc,) into the train split, class (group) by class, each group's draw on its own."""
    picks = [idx[torch.randperm(len(idx), generator=generator)[:ipc]] for idx in class_indices]
    return torch.cat(picks)
