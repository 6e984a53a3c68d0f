"""A test hook that makes one rank die or hang, to check that the others stop with a clear error.

Set ``MEDISTILL_TEST_FAIL=<rank>:<iteration>:<exit|hang>``: after finishing that iteration, that
rank exits abruptly (``os._exit(3)``, no clean-up, like a killed process) or sleeps for an hour.
Unset (always, outside tests) it does nothing.
"""
from __future__ import annotations

import os
import sys
import time

from .context import DistContext

ENV = "MEDISTILL_TEST_FAIL"


def maybe_inject_failure(ctx: DistContext, iteration: int) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    rank, at, mode = spec.split(":")
    if int(rank) != ctx.rank or int(at) != iteration:
        return
    print(f"[{ENV}] rank {ctx.rank}: simulated failure '{mode}' after iteration {iteration}", file=sys.stderr,
          flush=True)
    if mode == "exit":
        os._exit(3)
    if mode == "hang":
        time.sleep(3600)
    raise ValueError(f"{ENV}: mode must be exit or hang, got {mode!r}")
