"""The few collectives medistill uses, each failing with a message that says what went wrong.

Every function takes a :class:`DistContext`; in one process (``world_size == 1``) it is the identity
and touches no process group. A collective that fails — a peer crashed, was killed, or did not reach
the same point within the process group's timeout (``--dist-timeout``) — raises
:class:`DistributedError` naming this rank, the step and the timeout, instead of hanging.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable

import torch
import torch.distributed as dist

from .context import DistContext


class DistributedError(ValueError):
    """A collective failed: another rank died, hung or diverged from this one."""


@contextmanager
def _guard(ctx: DistContext, what: str):
    try:
        yield
    except DistributedError:
        raise
    except Exception as exc:  # gloo/NCCL raise RuntimeError subclasses (DistBackendError, DistNetworkError, …)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size}: {what} failed — another rank crashed, was killed or did not "
            f"get there within --dist-timeout {ctx.timeout_s:g} s; see that rank's output "
            f"({type(exc).__name__}: {first_line})") from exc


def _all_reduce(ctx: DistContext, tensor: torch.Tensor, what: str, op) -> torch.Tensor:
    """``tensor`` reduced element-wise over ranks with ``op``; a new tensor (``tensor`` itself in one process)."""
    if not ctx.is_distributed:
        return tensor
    out = tensor.detach().clone()
    with _guard(ctx, what):
        dist.all_reduce(out, op=op)
    return out


def all_reduce_sum(ctx: DistContext, tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Element-wise sum over ranks of ``tensor`` (any shape); returns a new tensor."""
    return _all_reduce(ctx, tensor, what, dist.ReduceOp.SUM)


def all_reduce_max(ctx: DistContext, tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Element-wise maximum over ranks of ``tensor`` (any shape); returns a new tensor."""
    return _all_reduce(ctx, tensor, what, dist.ReduceOp.MAX)


def all_gather_rows(ctx: DistContext, tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Concatenate every rank's (N_r, …) tensor along dim 0 in rank order; N_r may differ by rank.

    Rows are padded to the largest N_r for the transfer (all_gather needs equal shapes) and the
    padding is dropped again. Returns (Σ N_r, …), detached.
    """
    if not ctx.is_distributed:
        return tensor.detach()
    local = tensor.detach().contiguous()
    with _guard(ctx, what):
        counts = torch.tensor([local.shape[0]], dtype=torch.long, device=local.device)
        gathered_counts = [torch.empty_like(counts) for _ in range(ctx.world_size)]
        dist.all_gather(gathered_counts, counts)
        sizes = [int(c) for c in gathered_counts]
        most = max(sizes)
        padded = local.new_zeros((most,) + tuple(local.shape[1:]))
        padded[: local.shape[0]] = local
        blocks = [torch.empty_like(padded) for _ in range(ctx.world_size)]
        dist.all_gather(blocks, padded)
    return torch.cat([b[:n] for b, n in zip(blocks, sizes)])


def all_gather_objects(ctx: DistContext, obj: Any, what: str) -> list:
    """Every rank's picklable ``obj``, as a list indexed by rank."""
    if not ctx.is_distributed:
        return [obj]
    out: list = [None] * ctx.world_size
    with _guard(ctx, what):
        dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext, what: str) -> None:
    if ctx.is_distributed:
        with _guard(ctx, what):
            dist.barrier()


def main_then_share(ctx: DistContext, fn: Callable[[], Any], what: str) -> Any:
    """Run ``fn`` on rank 0 only and hand its result (or the exception it raised) to every rank.

    Used for the file-system steps only rank 0 may do (check or clear a run folder, load a
    checkpoint, write a manifest): the other ranks wait for it, then return the same value or raise
    the same error, so a bad folder stops every rank with one clear message instead of leaving the
    others to time out.
    """
    if not ctx.is_distributed:
        return fn()
    payload = [None]
    if ctx.is_main:
        try:
            payload[0] = ("ok", fn())
        except Exception as exc:  # shared, then re-raised on every rank
            payload[0] = ("error", exc)
    with _guard(ctx, what):
        dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise value
    return value
