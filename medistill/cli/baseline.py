"""``medistill baseline``: score a real-data baseline (random subsets, herding, k-center, the full set)."""
from __future__ import annotations

import sys
import time

from .common import _add_data_args, _add_eval_args, _eval_config, _load, _write_json


def add_commands(sub) -> None:
    p = sub.add_parser("baseline", help="score a real-data baseline (random, herding, kcenter, full)")
    _add_data_args(p)
    p.add_argument("--selector", default="random", choices=["random", "herding", "kcenter", "full"])
    p.add_argument("--ipc", type=int, default=10, help="images per class (ignored for full)")
    p.add_argument("--subsets", type=int, default=5,
                   help="random: how many random subsets R are scored (the spread over subsets is reported)")
    p.add_argument("--save", default=None, help="save the selected set (.pt) here (random: the first subset)")
    _add_eval_args(p)
    p.set_defaults(func=cmd_baseline)


def _print_random_baseline(baseline: dict, indent: str = "  ") -> None:
    from ..evaluate import result_line

    s = baseline["subsets"]
    print(f"{indent}over {baseline['num_subsets']} random subsets (mean ± spread of the subsets' means): "
          + " | ".join(f"{m} {s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in s))
    for k, sub in enumerate(baseline["per_subset"]):
        print(f"{indent}  subset {k} (seed {sub['subset_seed']}): "
              f"{result_line(sub['summary'], len(sub['per_model']), sub['majority_rate'])}")
    print(f"{indent}all networks pooled: "
          f"{result_line(baseline['summary'], len(baseline['summary']['accuracy']['values']), baseline['majority_rate'])}")


def cmd_baseline(args) -> int:
    from ..evaluate import evaluate_set
    from ..selection import random_baseline, select
    from ..selection.random_scores import subset_seed

    dataset = _load(args)
    started = time.time()
    config = _eval_config(args)
    ipc = None if args.selector == "full" else args.ipc
    if args.selector == "random":
        from ..evaluate import recipe_config

        subset = select(dataset, "random", ipc, seed=subset_seed(config.seed, 0))
        config = recipe_config(subset.metadata, None, config, dsa=args.dsa)
        result = random_baseline(dataset, ipc, config, subsets=args.subsets, progress=True)
        print(f"{dataset.name} · random, IPC {ipc} · {len(subset.labels)} images per subset · "
              f"{result['config']['epochs']} epochs{' with DSA' if config.uses_dsa else ''}")
        _print_random_baseline(result)
    else:
        subset = select(dataset, args.selector, ipc, seed=config.seed)
        result = evaluate_set(subset, dataset, config, dsa=args.dsa, desc=f"{args.selector} ipc {ipc}").to_dict()
        label = "full" if args.selector == "full" else f"{args.selector}, IPC {ipc}"
        print(f"{dataset.name} · {label} · {len(subset.labels)} images · {result['config']['epochs']} epochs"
              f"{' with DSA' if result['config']['dsa_strategy'] else ''}")
        from ..evaluate import result_line

        print("  " + result_line(result["summary"], len(result["per_model"]), result["majority_rate"]))
    payload = {"dataset": dataset.name, "selector": args.selector, "ipc": ipc, "images": len(subset.labels),
               "seconds": round(time.time() - started, 1), "command": " ".join(sys.argv), **result}
    _write_json(args.json, payload)
    if args.save:
        path = subset.save(args.save)
        print(f"saved the selected set to {path}")
    return 0
