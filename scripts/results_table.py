"""Render RESULTS.md's table of the quick-preset runs (results/methods/*.json, medistill 0.1's protocol).

Those runs compared each set with ONE random subset, so the table shows no "beats random" verdict
(docs/evaluation.md: a verdict needs the spread of several subsets).
Usage: .venv/bin/python scripts/results_table.py methods
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "results"


def fmt(summary, key):
    return f"{summary[key]['mean']:.3f} ± {summary[key]['std']:.3f}"


def methods():
    rows = []
    for path in sorted((ROOT / "methods").glob("*.json")):
        r = json.loads(path.read_text())
        name = path.stem  # <dataset>-<method>-ipc<K>-quick
        dataset, method, ipc, _ = name.split("-")
        d, rnd = r["distilled"]["summary"], r["random"]["summary"]
        rows.append(f"| {dataset} | {method.upper()} | {ipc[3:]} | {fmt(d, 'accuracy')} | {fmt(d, 'balanced_accuracy')} | "
                    f"{fmt(d, 'auc')} | {fmt(rnd, 'accuracy')} | {fmt(rnd, 'balanced_accuracy')} | {fmt(rnd, 'auc')} | "
                    f"{r['majority_rate']:.3f} |")
    head = ("| dataset | method | IPC | distilled acc. | distilled bal. acc. | distilled AUC | one random subset: acc. | "
            "bal. acc. | AUC | majority |\n"
            "|---|---|---:|---|---|---|---|---|---|---:|")
    return head + "\n" + "\n".join(rows)


if __name__ == "__main__":
    print(methods())
