"""CLI of the study (``medistill study``), and the hook that adds ``predict`` and ``report``."""
from __future__ import annotations

import argparse
import os
import sys


def _list(text: str) -> list[str]:
    return [t for t in text.replace(",", " ").split() if t]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def add_commands(sub) -> None:
    """Add ``study``, ``predict`` and ``report`` to the ``medistill`` subcommands."""
    import torch

    from .cells import BASELINES, DISTILL_METHODS

    p = sub.add_parser("study", help="grid of distillations and baselines into one results table (resumable, shardable)")
    p.add_argument("--datasets", type=_list, default=["breastmnist", "retinamnist", "simulation"],
                   help="comma-separated dataset names ('simulation': the combined dataset)")
    p.add_argument("--methods", type=_list, default=list(DISTILL_METHODS + BASELINES),
                   help=f"comma-separated methods and baselines, run in this order (default {','.join(DISTILL_METHODS + BASELINES)})")
    p.add_argument("--ipcs", type=_ints, default=[1], help="comma-separated images per class (default 1)")
    p.add_argument("--seeds", type=_ints, default=[0], help="comma-separated seeds (default 0)")
    p.add_argument("--preset", default="quick", help="quick (minutes per cell on a CPU) or paper")
    p.add_argument("--iterations", type=int, default=None, help="override every method's iteration count")
    p.add_argument("--eval-models", type=int, default=None, help="networks per score (quick 3, paper 5)")
    p.add_argument("--eval-epochs", type=int, default=None, help="epochs per network (quick 300; paper: protocol)")
    p.add_argument("--full-epochs", type=int, default=None, help="epochs for the full-training-set baseline")
    p.add_argument("--random-subsets", type=int, default=None,
                   help="R random real subsets of the random baseline next to each cell (default 5)")
    p.add_argument("--out", default="results/study", help="folder of the table (study.csv, study.json) and claims")
    p.add_argument("--runs", default="runs/study", help="folder of the cells' run folders and expert banks")
    p.add_argument("--import-runs", action="append", default=[], metavar="DIR",
                   help="also record finished run folders found here (read only) when their config matches")
    p.add_argument("--import-only", action="store_true",
                   help="record only cells whose finished run folders exist (--runs or --import-runs); compute nothing")
    p.add_argument("--rank", type=int, default=None, help="this process's shard (default $RANK or 0)")
    p.add_argument("--world-size", type=int, default=None, help="number of shards (default $WORLD_SIZE or 1)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether they are done, compute nothing")
    p.add_argument("--data-root", default=None)
    p.add_argument("--allow-md5-mismatch", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=cmd_study)

    from ..predictor.commands import add_commands as add_predictor_commands
    add_predictor_commands(sub)


def cmd_study(args) -> int:
    from .cells import Budget, grid, shard
    from .compute import CellComputer
    from .runner import run_study
    from .table import ResultsTable

    rank = args.rank if args.rank is not None else int(os.environ.get("RANK", 0))
    world_size = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", 1))
    budget = Budget(args.preset, args.iterations, args.eval_models, args.eval_epochs, args.full_epochs,
                    args.random_subsets)
    cells = grid(args.datasets, args.methods, args.ipcs, args.seeds, budget)
    mine = shard(cells, rank, world_size)
    for d in args.import_runs:
        if not os.path.isdir(d):
            raise ValueError(f"--import-runs {d}: no such folder")
    computer = CellComputer(budget, args.runs, args.import_runs, data_root=args.data_root, device=args.device,
                            verify_md5=not args.allow_md5_mismatch, import_only=args.import_only)
    computer.validate(mine)
    done = ResultsTable(args.out).finished_ids()
    print(f"study: {len(cells)} cells ({len(mine)} for rank {rank}/{world_size}), {sum(c.id in done for c in cells)} "
          f"already in {args.out}/study.csv; budget {budget.tag}; run folders in {args.runs}")
    if args.dry_run:
        for cell in mine:
            print(f"  {'done' if cell.id in done else 'todo'}  {cell.id}")
        return 0
    outcome = run_study(cells, args.out, computer, rank=rank, world_size=world_size,
                        log=lambda line: print(line, flush=True))
    print(f"study: {outcome.line()}; table: {args.out}/study.csv")
    for cell_id, error in outcome.failed.items():
        print(f"  failed {cell_id}: {error}", file=sys.stderr)
    return 1 if outcome.failed else 0
