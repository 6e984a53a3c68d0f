"""Scale-out on torch.distributed: process-group setup from torchrun's environment, class sharding,
guarded collectives and the same-configuration check.

Imports only torch (below ``methods`` in the layering), so the methods and the CLI build on it.
A :class:`DistContext` with ``world_size == 1`` (the default) means one process and no process
group: every collective is then the identity and nothing is communicated.
"""
from .collectives import (DistributedError, all_gather_objects, all_gather_rows, all_reduce_max, all_reduce_sum,
                          barrier, main_then_share)
from .config_check import check_same_config
from .context import DistContext
from .fault_injection import maybe_inject_failure
from .launch import leave_together, shutdown, start_from_environment
from .sharding import SHARDING, class_shard, expert_shard

__all__ = ["DistContext", "DistributedError", "SHARDING", "all_gather_objects", "all_gather_rows", "all_reduce_max",
           "all_reduce_sum", "barrier", "check_same_config", "class_shard", "expert_shard", "leave_together", "main_then_share",
           "maybe_inject_failure", "shutdown", "start_from_environment"]
