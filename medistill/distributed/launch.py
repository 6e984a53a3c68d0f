"""Joining (and leaving) the process group torchrun describes in the environment.

torchrun (``python -m torch.distributed.run``) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT for each process it starts; any launcher that sets them works the same way. Without
WORLD_SIZE (or with WORLD_SIZE=1) the job is one process and no process group is made.
"""
from __future__ import annotations

import atexit
import itertools
import os
import signal
import threading
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from .collectives import DistributedError, _guard, barrier
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
    _install_exit_handlers()
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
    """Leave the process group now, without waiting for the others (a no-op for one process, or once left).
    The error path: a rank that failed must not wait at a barrier the others never reach. The group is
    destroyed here, while the interpreter is alive, so none of its threads outlives it into the
    interpreter's exit (where a gloo worker still holding a tensor aborts the process)."""
    if ctx.is_distributed and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: the group is unusable; the error that brought us here matters
            pass


_leaves = itertools.count()


def _store_barrier(ctx: DistContext, what: str) -> None:
    """Every rank reaches this point, agreed over the rendezvous store, not over the gloo/NCCL connections.

    Two rounds: all ranks arrive; then every rank but 0 says it is done with the store, and rank 0 (whose
    process serves the store when launched by hand) waits for that before it may shut the store down with
    its process group. Bounded by --dist-timeout like every collective.
    """
    try:
        store = dist.distributed_c10d._get_default_store()
    except Exception:  # no store to agree on: the gloo barrier before is all there is
        return
    key = f"medistill/leave/{next(_leaves)}"
    deadline = time.monotonic() + ctx.timeout_s

    def wait_for(name: str, count: int) -> None:
        with _guard(ctx, what):
            while store.add(name, 0) < count:
                if time.monotonic() > deadline:
                    raise DistributedError(f"rank {ctx.rank} of {ctx.world_size}: {what} failed — the other ranks "
                                           f"did not get there within --dist-timeout {ctx.timeout_s:g} s")
                time.sleep(0.01)

    with _guard(ctx, what):
        store.add(f"{key}/arrived", 1)
    wait_for(f"{key}/arrived", ctx.world_size)
    if ctx.is_main:
        wait_for(f"{key}/done", ctx.world_size - 1)
    else:
        with _guard(ctx, what):
            store.add(f"{key}/done", 1)


def leave_together(ctx: DistContext, what: str) -> None:
    """Every rank leaves the process group at the same point, after the job's last collective (a no-op for
    one process, or once left).

    Teardown with no traffic in flight: a gloo barrier (every rank has finished its collectives), then a
    barrier over the rendezvous store (every rank has *returned* from that gloo barrier, so no rank still
    reads or writes a connection the others close), then each rank destroys its group. Without the second
    barrier a rank returns from the gloo barrier once its own messages are sent, and may close its
    connections while a slower rank (a loaded machine) still takes the barrier's last message off one;
    torn down under it, that rank could abort at exit ("terminate called without an active exception")."""
    if ctx.is_distributed and dist.is_initialized():
        barrier(ctx, what)
        _store_barrier(ctx, what)
        shutdown(ctx)


def _destroy_at_exit() -> None:
    """atexit: a group still alive when the interpreter starts to exit (an exit path that skipped
    :func:`shutdown`) is destroyed first, while its threads can still finish."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:
            pass


def _exit_on_sigterm(signum, frame) -> None:
    """torchrun stops the other ranks of a failed job with SIGTERM: leave through the normal exit path
    (``finally`` blocks, :func:`shutdown`) instead of dying with the group alive."""
    raise SystemExit(128 + signum)


def _install_exit_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_destroy_at_exit)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


_handlers_installed = False
