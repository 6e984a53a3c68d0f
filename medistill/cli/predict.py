"""``medistill predict`` and ``medistill report``: the predictor, fitted on a study table.

The predictor imports nothing from :mod:`medistill.study`; what these commands need from the study (reading
its table, loading a task name, a task's source) is joined here, in the CLI above both.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..data.run_folder import RANDOM_BASELINES

DEFAULT_TABLE = "results/study/study.csv"
DEFAULT_CACHE = f"runs/study/{RANDOM_BASELINES}"


def add_commands(sub) -> None:
    from ..predictor.fit import DEFAULT_METRIC, METRICS

    p = sub.add_parser("predict", help="predict each method's score on a dataset from its random-subset indicator")
    p.add_argument("--dataset", required=True,
                   help="MedMNIST name, task name (retinamnist:0v4, brain:glioma_v_notumor; results/study/README.md) or an "
                        "image folder path")
    p.add_argument("--ipc", type=int, required=True, help="images per class (the table must have fits at this IPC)")
    p.add_argument("--method", default=None, help="one method (default: every method in the table)")
    p.add_argument("--metric", default=DEFAULT_METRIC, choices=list(METRICS))
    p.add_argument("--table", default=DEFAULT_TABLE, help=f"study table to fit on (default {DEFAULT_TABLE})")
    p.add_argument("--preset", default=None, help="the table's budget preset to fit on (default: its most common)")
    p.add_argument("--subsets", type=int, default=None,
                   help="random subsets R (default: the table's, 5 with the study preset; fewer than 5 is noted)")
    p.add_argument("--models", type=int, default=None, help="networks per subset (default: the table's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per network (default: the table's)")
    p.add_argument("--cache", default=DEFAULT_CACHE, help=f"random-subset cache folder (default {DEFAULT_CACHE})")
    p.add_argument("--json", default=None, help="also write everything as JSON to this path")
    p.add_argument("--data-root", default=None)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--allow-md5-mismatch", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="study report: fits, leave-one-source-out, validity, scatter and calibration plots")
    p.add_argument("--table", default=DEFAULT_TABLE)
    p.add_argument("--out", required=True, help="folder for report.md, scatter.png and calibration.png")
    p.add_argument("--metric", default=DEFAULT_METRIC, choices=list(METRICS), help="the primary metric")
    p.add_argument("--preset", default=None, help="the budget preset to report (default: the table's most common)")
    p.set_defaults(func=cmd_report)


def _table_rows(path: str) -> list[dict]:
    from ..study.table import read_table

    if not Path(path).exists():
        raise ValueError(f"no study table at {path}. Produce one with `medistill study --preset study` "
                         "(results/study/README.md), or pass --table PATH")
    rows = read_table(path)
    if not rows:
        raise ValueError(f"the study table {path} has no finished cells yet")
    return rows


def _interval(iv, signed: bool = False) -> str:
    if iv is None:
        return "no interval"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"[{f.format(iv[0])}, {f.format(iv[1])}]"


def cmd_predict(args) -> int:
    from ..predictor.fit import MIN_SUBSETS, fit_table, ordered_methods, resolve_preset
    from ..predictor.indicator import measure_indicator, table_protocol
    from ..predictor.predict import predict_all, recommend
    from ..selection import check_ipc
    from ..study.tasks import TaskLoader, task_source

    rows = _table_rows(args.table)
    preset = resolve_preset(rows, args.preset)
    if preset is None:
        raise ValueError(f"{args.table} has no method rows to fit (only random/full cells)")
    fits = fit_table(rows, args.metric, preset)
    methods = ordered_methods({f.method for f in fits})
    if args.method is not None and args.method not in methods:
        raise ValueError(f"method {args.method!r} has no rows in {args.table}; methods there: {', '.join(methods)}")
    subsets, models, epochs = table_protocol(rows, preset)  # the flags override the table's
    subsets, models, epochs = args.subsets or subsets, args.models or models, args.epochs or epochs
    if subsets < 2:
        raise ValueError(f"--subsets must be ≥ 2 (the indicator needs a spread over subsets), got {subsets}")
    dataset = TaskLoader(args.data_root, args.size, not args.allow_md5_mismatch).load(args.dataset)
    for notice in dataset.notices:
        print(f"{dataset.name}: {notice}")
    check_ipc(dataset, args.ipc)
    source = task_source(args.dataset)
    print(f"{dataset.name} (source {source}) · IPC {args.ipc} · {args.metric} · indicator: {subsets} random subsets × "
          f"{models} network(s) × {epochs} epochs · fits: {args.table}, preset {preset}")
    measured = measure_indicator(dataset, args.ipc, subsets, models, epochs, device=args.device,
                                 cache_dir=args.cache or None)
    ind = measured[args.metric]
    if subsets < MIN_SUBSETS:
        print(f"  note: an indicator from {subsets} random subsets is noisier than the {MIN_SUBSETS} a fit needs "
              "to be validated")
    predictions = predict_all(fits, args.ipc, ind["mean"], ind["std"], source,
                              methods=[args.method] if args.method else None, metric=args.metric)
    advice = recommend(predictions, args.ipc)
    print(f"  indicator {ind['mean']:.3f} ± {ind['std']:.3f} (spread over subsets: "
          f"{', '.join(f'{v:.3f}' for v in ind['values'])})")
    level = predictions[0].level if predictions else 0.9
    print(f"  {'method':8s} {'predicted':>9s} {level:.0%} interval     gain over random, {level:.0%} interval   fit")
    for p in predictions:
        if p.predicted is None:
            print(f"  {p.method:8s} no prediction: {p.note}")
            continue
        status = "validated" if p.validated else "NOT VALIDATED"
        print(f"  {p.method:8s} {p.predicted:9.3f} {_interval(p.interval):17s} {p.gain:+.3f} "
              f"{_interval(p.gain_interval, True):20s} {p.tasks} task(s), {len(p.sources)} source(s), {status}")
        if p.note:
            print(f"  {'':8s} {p.note}")
        if p.validated:
            print(f"  {'':8s} validated by leave-one-source-out on the whole table ({p.validation_tasks} tasks, "
                  f"{p.validation_sources} source groups): held-out MAE {p.loso_mae:.3f} vs {p.loso_mae_mean_only:.3f} "
                  f"ignoring the indicator, {p.level:.0%} intervals covered {p.loso_coverage:.0%}")
    print(f"recommendation: {advice.line}")
    print(f"  the advice rests on {advice.basis}")
    if args.json:
        payload = {"dataset": dataset.name, "source": source, "ipc": args.ipc, "metric": args.metric,
                   "table": args.table, "preset": preset, "command": " ".join(sys.argv),
                   "indicator": {"subsets": subsets, "models": models, "epochs": epochs, **ind,
                                 "all_metrics": measured},
                   "predictions": [p.to_dict() for p in predictions], "recommendation": advice.to_dict(),
                   "fits": [f.to_dict() for f in fits if f.ipc == args.ipc]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 0


def cmd_report(args) -> int:
    from ..predictor.report import write_report

    rows = _table_rows(args.table)
    paths = write_report(rows, args.out, args.table, metric=args.metric, preset=args.preset,
                         command="medistill report " + " ".join(sys.argv[2:]))
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({len(rows)} cells)")
    return 0
