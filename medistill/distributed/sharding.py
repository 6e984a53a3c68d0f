"""Which classes (distillation) and which experts (MTT) each rank owns.

Classes are split **contiguously**: rank r owns classes ``[r·K//W, (r+1)·K//W)`` (sizes differ by
at most one, e.g. K=5, W=2 → rank 0: 0–1, rank 1: 2–4), so the concatenation of the ranks' image
blocks in rank order is the single-process synthetic set in its class order. Experts are split
**round-robin**: rank r trains experts r, r+W, r+2W, … (balanced when ranks start at different times
because some experts already exist).
"""
from __future__ import annotations

SHARDING = "contiguous"


def class_shard(num_classes: int, rank: int, world_size: int) -> range:
    """The classes rank ``rank`` of ``world_size`` owns; raises ValueError when a rank would own none."""
    if world_size > num_classes:
        raise ValueError(f"{world_size} processes for {num_classes} classes: class-parallel distillation gives "
                         f"every rank at least one class, so launch at most {num_classes} processes "
                         f"(torchrun --nproc-per-node {num_classes}, or fewer nodes)")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
    return range(rank * num_classes // world_size, (rank + 1) * num_classes // world_size)


def expert_shard(num_experts: int, rank: int, world_size: int) -> list[int]:
    """Expert indices rank ``rank`` trains: ``rank, rank + world_size, …`` below ``num_experts``."""
    return list(range(rank, num_experts, world_size))
