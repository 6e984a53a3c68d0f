"""Who this process is in a distributed job."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DistContext:
    """Rank and world of this process; the default is one process with no process group.

    ``backend`` is ``"gloo"`` (CPU) or ``"nccl"`` (CUDA) once a process group is joined, else None.
    ``device`` is the device this rank computes on (``cuda:<LOCAL_RANK>`` under NCCL).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"
    timeout_s: float = 300.0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes run folders and manifests."""
        return self.rank == 0
