"""CLI of the predictor: ``medistill predict`` and ``medistill report``."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

DEFAULT_TABLE = "results/study/study.csv"


def add_commands(sub) -> None:
    import torch

    p = sub.add_parser("predict", help="predict each method's distilled score on a dataset from random real subsets")
    p.add_argument("--dataset", required=True, help="MedMNIST name, 'simulation' or an image folder")
    p.add_argument("--ipc", type=int, default=None, help="images per class (default: the IPC with most points in the table)")
    p.add_argument("--method", default=None, help="one method (default: every method in the table)")
    p.add_argument("--metric", default="accuracy", choices=["accuracy", "balanced_accuracy", "auc"])
    p.add_argument("--table", default=DEFAULT_TABLE, help=f"study table to fit on (default {DEFAULT_TABLE})")
    p.add_argument("--subsets", type=int, default=3, help="random real subsets trained (R ≥ 3)")
    p.add_argument("--models", type=int, default=1, help="networks per subset")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per network (default: the epochs of the table's random-subset scores, so they compare)")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.add_argument("--data-root", default=None)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--allow-md5-mismatch", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="Markdown report + scatter plot of a study table (correlations, LODO, validity)")
    p.add_argument("--table", default=DEFAULT_TABLE)
    p.add_argument("--out", required=True, help="folder for report.md and scatter.png")
    p.set_defaults(func=cmd_report)


def _table_rows(path: str) -> list[dict]:
    from ..study.table import read_table

    if not Path(path).exists():
        raise ValueError(f"no study table at {path}. Produce one with `medistill study --out {Path(path).parent}` "
                         "(e.g. --datasets breastmnist,retinamnist,simulation --ipcs 1 --preset quick), or pass "
                         "--table PATH")
    rows = read_table(path)
    if not rows:
        raise ValueError(f"the study table {path} has no finished cells yet")
    return rows


def cmd_predict(args) -> int:
    from ..data import load_dataset
    from ..evaluate import EvalConfig
    from .indicator import random_subset_indicator
    from .predict import predict_all, table_methods

    rows = _table_rows(args.table)
    if args.subsets < 3:
        raise ValueError(f"--subsets must be ≥ 3 (an indicator from fewer random subsets is too noisy), got {args.subsets}")
    available = table_methods(rows)
    if args.method is not None and args.method not in available:
        raise ValueError(f"method {args.method!r} has no rows in {args.table}; methods there: {', '.join(available)}")
    methods = [args.method] if args.method else available
    ipcs = Counter(r["ipc"] for r in rows if r["method"] in methods and r["ipc"] is not None)
    ipc = args.ipc if args.ipc is not None else ipcs.most_common(1)[0][0]
    dataset = load_dataset(args.dataset, size=args.size, root=args.data_root,
                           **({} if Path(args.dataset).is_dir() else {"verify_md5": not args.allow_md5_mismatch}))
    # Measure the indicator the way each method's table rows measured theirs (with or without DSA, same epochs).
    protocol = {}
    for method in methods:
        own = [r for r in rows if r["method"] == method and r.get("random_accuracy_mean") is not None]
        at_ipc = [r for r in own if r["ipc"] == ipc] or own
        dsa = Counter(bool(r.get("eval_augment")) for r in at_ipc).most_common(1)[0][0]
        epochs = args.epochs or Counter(r["eval_epochs"] for r in at_ipc).most_common(1)[0][0]
        protocol[method] = (dsa, epochs)
    measured = {}
    for dsa, epochs in sorted(set(protocol.values())):
        config = EvalConfig(num_models=args.models, epochs=epochs, device=args.device)
        measured[(dsa, epochs)] = random_subset_indicator(dataset, ipc, args.subsets, config, dsa=dsa)
    indicators = {m: measured[protocol[m]][args.metric]["mean"] for m in methods}
    predictions = predict_all(rows, methods, args.metric, ipc, indicators, dataset=dataset.name)

    print(f"{dataset.name} · IPC {ipc} · {args.metric} · {args.subsets} random subsets × {args.models} network(s) · "
          f"fitted on {args.table} ({len(rows)} cells)")
    for (dsa, epochs), values in sorted(measured.items()):
        v = values[args.metric]
        print(f"  indicator ({epochs} epochs{', DSA' if dsa else ''}): {v['mean']:.3f} ± {v['std']:.3f} "
              f"(subsets: {', '.join(f'{x:.3f}' for x in v['values'])})")
    for p in predictions:
        if p.predicted is None:
            print(f"  {p.method:8s} no prediction: {p.note}")
            continue
        interval = "no interval" if p.interval is None else f"95% PI [{p.interval[0]:.3f}, {p.interval[1]:.3f}]"
        lodo = "" if p.lodo_mae is None else f", LODO MAE {p.lodo_mae:.3f}"
        status = "validated" if p.validated else "NOT VALIDATED"
        print(f"  {p.method:8s} predicted {p.predicted:.3f}  {interval}  ({status}; {p.points} points from "
              f"{p.datasets} dataset(s){lodo})" + (f"\n           {p.note}" if p.note else ""))
    if args.json:
        payload = {"dataset": dataset.name, "ipc": ipc, "metric": args.metric, "table": args.table,
                   "subsets": args.subsets, "models": args.models, "command": " ".join(sys.argv),
                   "indicator": [{"dsa": dsa, "epochs": epochs, **values} for (dsa, epochs), values in measured.items()],
                   "predictions": [p.to_dict() for p in predictions]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    rows = _table_rows(args.table)
    md, png = write_report(rows, args.out, args.table, command="medistill report " + " ".join(sys.argv[2:]))
    print(f"wrote {md} and {png} ({len(rows)} cells)")
    return 0
