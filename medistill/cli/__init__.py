"""The ``medistill`` command line: the only layer that parses arguments or prints tables.

One module per subcommand group (``info``, ``baseline``, ``evaluate``, ``distill``, ``experts``, ``study``,
``predict``/``report``, ``export``, ``audit``), each adding its subcommands with ``add_commands``; the flags
they share and the dataset they load are in :mod:`.common`, the checks made before any work in :mod:`.checks`.
"""
from __future__ import annotations

import argparse
import sys
import warnings

import torch

from . import audit, baseline, distill, evaluate, experts, export, info, predict, study
from .checks import _check_counts, _check_device, _show_notice
from .common import (DEFAULT_RUNS, _add_data_args, _add_dist_args, _add_eval_args, _eval_config, _load,
                     _recorded_folder, _write_json)
from .distill import _method_config

# In the order ``medistill --help`` lists them.
_GROUPS = (info, baseline, evaluate, distill, experts, study, predict, export, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medistill", description="Dataset distillation for medical images.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.add_commands(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..data.errors import DataError
    from ..run_lock import StaleLockNotice

    try:  # flags checked before any work: the device asked for, counts
        if getattr(args, "device", None) is not None:
            _check_device(str(args.device))
        _check_counts(args)
    except ValueError as exc:
        print(f"medistill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if str(getattr(args, "device", "cpu")).startswith("cpu"):
        from ..cpu_allocator import keep_freed_memory

        keep_freed_memory()  # large activations are not page-faulted in again every pass
    else:
        torch.backends.cudnn.benchmark = True  # a run's network shapes are fixed: pick each conv's fastest algorithm once
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", StaleLockNotice)
            warnings.showwarning = _show_notice(args.command)
            return args.func(args)
    except (DataError, ValueError) as exc:  # RunFolderError, FolderInUse, DivergenceError: ValueErrors
        print(f"medistill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be made, read or written (permissions, a full disk, …)
        print(f"medistill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# main and build_parser are the interface; the underscore names stay importable from medistill.cli (tests and
# scripts use them) though each lives in the module of its concern.
__all__ = ["build_parser", "main"]
