"""Summarise repeated runs of a benchmark: per case, the median speedup over runs and its range.

One run's ratio moves by tens of percent on a shared 2-core machine; repeating the run and
reading the median (and the spread) is steadier. Takes the files written by
``MEDISTILL_BENCH_RATIOS=... pytest benchmarks/...`` (rows with "group" and "speedup") or by
``python -m benchmarks.dsa_paired --json ...`` (rows with "case" and "ratio_of_medians").

    python -m benchmarks.summarize_ratio_runs results/bench/dsa_cpu/default_run*.json
"""
from __future__ import annotations

import argparse
import json
import statistics


def load_ratios(paths: list[str]) -> dict[str, list[float]]:
    """Case name -> the speedup of each run that measured it, in file order."""
    ratios: dict[str, list[float]] = {}
    for path in paths:
        with open(path) as f:
            rows = json.load(f)["rows"]
        for row in rows:
            case = row.get("group") or row["case"]
            ratio = row["speedup"] if "speedup" in row else row["ratio_of_medians"]
            ratios.setdefault(case.replace("[cpu] ", "").replace("[cuda] ", ""), []).append(ratio)
    return ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    ratios = load_ratios(args.files)
    print(f"{'case':44s} {'runs':>4s} {'median':>7s} {'min':>6s} {'max':>6s}")
    for case, values in sorted(ratios.items()):
        print(f"{case:44s} {len(values):4d} {statistics.median(values):6.2f}x {min(values):5.2f}x {max(values):5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
