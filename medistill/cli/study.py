"""``medistill study``: a grid of distillations and baselines into one results table (resumable, shardable)."""
from __future__ import annotations

import argparse
import os
import sys

import torch


def _list(text: str) -> list[str]:
    return [t for t in text.replace(",", " ").split() if t]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _seeds(text: str):
    """'0,1,2' (every method) or 'dm,dc=0,1,2;*=0' (per method; '*' the others)."""
    if "=" not in text:
        return _ints(text)
    out = {}
    for part in (p for p in text.split(";") if p.strip()):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"expected METHODS=SEEDS parts separated by ';', got {part!r}")
        methods, seeds = part.split("=", 1)
        for m in _list(methods):
            out[m] = _ints(seeds)
    return out


def add_commands(sub) -> None:
    from ..study.cells import BASELINES, DISTILL_METHODS, STUDY_METHODS

    p = sub.add_parser("study", help="grid of distillations and baselines into one results table (resumable, shardable)")
    p.add_argument("--datasets", type=_list, default=None,
                   help="comma-separated dataset or task names (retinamnist:0v4, brain:glioma_v_notumor, "
                        "simulation:breastmnist_v_retinamnist_v_brain; results/study/README.md) or image folders (default: "
                        "preset study: its 13 tasks; else breastmnist,retinamnist,simulation)")
    p.add_argument("--methods", type=_list, default=None,
                   help="comma-separated methods and baselines, run in this order (default: preset study: "
                        f"{','.join(STUDY_METHODS)}; else {','.join(DISTILL_METHODS + BASELINES)})")
    p.add_argument("--ipcs", type=_ints, default=None, help="comma-separated images per class (default: study 1,10; else 1)")
    p.add_argument("--seeds", type=_seeds, default=None,
                   help="comma-separated seeds for every method, or per method as 'dm,dc=0,1,2;*=0' (default: "
                        "study: dm,dc=0,1,2;*=0; else 0)")
    p.add_argument("--preset", default="quick",
                   help="quick (minutes per cell on a CPU), study (the predictor's grid: about 10.5 CPU-hours; --dry-run prints the estimate) or paper")
    p.add_argument("--steal", action="store_true",
                   help="when this shard is done, take the other shards' unclaimed cells (shards end together)")
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
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells, whether they are done and their estimated CPU cost; compute nothing")
    p.add_argument("--data-root", default=None)
    p.add_argument("--allow-md5-mismatch", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=cmd_study)


def _print_estimate(cells, done, computer, budget, world_size: int) -> None:
    from ..study.cost import TaskSize, cell_costs, summary

    sizes = {name: TaskSize.of(computer.dataset(name)) for name in {c.dataset for c in cells}}
    costs = cell_costs(cells, sizes, budget)
    todo = [x for x in costs if x["cell"].id not in done]
    for x in costs:
        parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in x["parts"].items())
        print(f"  {'done' if x['cell'].id in done else 'todo'}  {x['cell'].id:70s} ~{x['seconds'] / 60:6.1f} CPU-min ({parts})")
    whole, left = summary(costs, world_size), summary(todo, world_size)
    h = lambda hours: f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"
    print(f"estimate (CPU time at one thread; medistill/study/cost.py, constants from scripts/probe_study_costs.py): "
          f"whole grid {h(whole['cpu_hours'])} of CPU; left to do {h(left['cpu_hours'])}, about "
          f"{h(left['wall_hours'])} of wall time on {world_size} shard(s) at one thread each with --steal "
          f"(round-robin shares without it: {', '.join(h(x) for x in left['shard_hours'])})")
    print("  per method: " + ", ".join(f"{m} {h(x)}" for m, x in whole["per_method_hours"].items()))
    print("  per kind of work: " + ", ".join(f"{k} {h(x)}" for k, x in whole["per_part_hours"].items())
          + f"; longest cell {whole['longest_cell_minutes']:.0f} min")


def cmd_study(args) -> int:
    from ..study.cells import Budget, grid, grid_axes, shard
    from ..study.compute import CellComputer
    from ..study.runner import run_study
    from ..study.table import ResultsTable

    rank = args.rank if args.rank is not None else int(os.environ.get("RANK", 0))
    world_size = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", 1))
    budget = Budget(args.preset, args.iterations, args.eval_models, args.eval_epochs, args.full_epochs,
                    args.random_subsets)
    datasets, methods, ipcs, seeds = grid_axes(args.preset, args.datasets, args.methods, args.ipcs, args.seeds)
    for d in args.import_runs:
        if not os.path.isdir(d):
            raise ValueError(f"--import-runs {d}: no such folder")
    computer = CellComputer(budget, args.runs, args.import_runs, data_root=args.data_root, device=args.device,
                            verify_md5=not args.allow_md5_mismatch, import_only=args.import_only)
    cells = grid([computer.canonical(d) for d in datasets], methods, ipcs, seeds, budget)
    mine = shard(cells, rank, world_size)
    computer.validate(cells if args.dry_run else mine)
    done = ResultsTable(args.out).finished_ids()
    print(f"study: {len(cells)} cells ({len(mine)} for rank {rank}/{world_size}), {sum(c.id in done for c in cells)} "
          f"already in {args.out}/study.csv; budget {budget.tag}; run folders in {args.runs}")
    if args.dry_run:
        _print_estimate(cells, done, computer, budget, world_size)
        return 0
    outcome = run_study(cells, args.out, computer, rank=rank, world_size=world_size,
                        log=lambda line: print(line, flush=True), steal=args.steal)
    print(f"study: {outcome.line()}; table: {args.out}/study.csv")
    for cell_id, error in outcome.failed.items():
        print(f"  failed {cell_id}: {error}", file=sys.stderr)
    return 1 if outcome.failed else 0
