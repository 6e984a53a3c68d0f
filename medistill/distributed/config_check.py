"""All ranks must run the same configuration: a rank with other settings would compute a different
problem and the gathered result would be garbage."""
from __future__ import annotations

import hashlib
import json

from .collectives import DistributedError, all_gather_objects
from .context import DistContext


def _digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def check_same_config(ctx: DistContext, config: dict, what: str = "run configuration") -> None:
    """All-gather a hash of ``config`` (a JSON-able dict); raise DistributedError naming the first rank
    whose configuration differs from rank 0's, and the settings that differ."""
    if not ctx.is_distributed:
        return
    digests = all_gather_objects(ctx, _digest(config), f"comparing the {what} across ranks")
    if len(set(digests)) == 1:
        return
    configs = all_gather_objects(ctx, config, f"exchanging the {what} to report the difference")
    odd = next(r for r, d in enumerate(digests) if d != digests[0])
    keys = sorted(set(configs[0]) | set(configs[odd]))
    diff = {k: (configs[0].get(k), configs[odd].get(k)) for k in keys if configs[0].get(k) != configs[odd].get(k)}
    raise DistributedError(f"rank {odd}'s {what} differs from rank 0's {{setting: (rank 0, rank {odd})}}: {diff}; "
                           "launch every rank with the same command line and data")
