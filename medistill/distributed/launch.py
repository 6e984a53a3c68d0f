"""Joining (and leaving) the process group torchrun describes in the environment.

torchrun (``python -m torch.distributed.run``) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT for each process it starts; any launcher that sets them works the same way. Without
WORLD_SIZE (or with WORLD_SIZE=1) the job is one process and no process group is made.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .collectives import DistributedError, barrier
from .context import DistContext
from .sharding import class_shard

REQUIRED = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def start_from_environment(timeout_s: float = 300.0, device: str = "cpu",
                           num_classes: int | None = None) -> DistContext:
    """Read torchrun's variables and join the process group (gloo on CPU, NCCL on CUDA).

    ``timeout_s`` bounds every collective and the rendezvous: a rank that dies or hangs makes the
    others fail with :class:`DistributedError` after at most that long. ``num_classes`` (class-parallel
    jobs) is checked against WORLD_SIZE before any rendezvous, so too many processes fail at once.
    Returns the context; with no distributed environment, a one-process context on ``device``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=device, timeout_s=timeout_s)
    missing = [k for k in REQUIRED if k not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: launch with torchrun "
                               "(python -m torch.distributed.run --nproc-per-node N -m medistill …)")
    if timeout_s <= 0:
        raise ValueError(f"--dist-timeout must be positive seconds, got {timeout_s}")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if num_classes is not None:
        class_shard(num_classes, rank, world_size)  # raises for world_size > num_classes
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistributedError("--device cuda but no CUDA device is visible to this rank")
        torch.cuda.set_device(local_rank)
        backend, device = "nccl", f"cuda:{local_rank}"
    else:
        backend = "gloo"
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend, device=device,
                      timeout_s=timeout_s)
    try:
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
    except Exception as exc:
        raise DistributedError(
            f"rank {rank} of {world_size} could not join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within --dist-timeout {timeout_s:g} s "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
    return ctx


def shutdown(ctx: DistContext) -> None:
    """Leave the process group now, without waiting for the others (a no-op for one process, or once
    left). The error path: a rank that failed must not wait at a barrier the others never reach."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def leave_together(ctx: DistContext, what: str) -> None:
    """Every rank leaves the process group at the same point, after the job's last collective: a
    barrier, then :func:`shutdown`. A gloo rank that destroys its group while another rank still
    holds it open (rank 0 evaluating, say) can abort at exit in gloo's teardown ("terminate called
    without an active exception"), so no rank leaves early. A no-op for one process, or once left."""
    if ctx.is_distributed and dist.is_initialized():
        barrier(ctx, what)
        shutdown(ctx)
