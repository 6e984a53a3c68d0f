"""Render the accuracy tables of RESULTS.md from the JSON files under results/.

Usage: .venv/bin/python scripts/results_table.py > /tmp/tables.md
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "results"


def fmt(summary, key):
    return f"{summary[key]['mean']:.3f} ± {summary[key]['std']:.3f}"


def baselines():
    rows = []
    for path in sorted((ROOT / "baselines").glob("*.json")):
        r = json.loads(path.read_text())
        label = "full" if r["selector"] == "full" else f"random IPC {r['ipc']}"
        rows.append(f"| {r['dataset']} | {label} | {r['images']} | {r['config']['epochs']} | {len(r['per_model'])} | "
                    f"{fmt(r['summary'], 'accuracy')} | {fmt(r['summary'], 'balanced_accuracy')} | "
                    f"{fmt(r['summary'], 'auc')} | {r['majority_rate']:.3f} |")
    head = ("| dataset | set | images | epochs | models | accuracy | balanced acc. | AUC | majority rate |\n"
            "|---|---|---:|---:|---:|---|---|---|---:|")
    return head + "\n" + "\n".join(rows)


def methods():
    rows = []
    for path in sorted((ROOT / "methods").glob("*.json")):
        r = json.loads(path.read_text())
        name = path.stem  # <dataset>-<method>-ipc<K>-quick
        dataset, method, ipc, _ = name.split("-")
        d, rnd = r["distilled"]["summary"], r["random"]["summary"]
        better = "yes" if (d["balanced_accuracy"]["mean"] > rnd["balanced_accuracy"]["mean"]
                           and d["auc"]["mean"] > rnd["auc"]["mean"]) else "no"
        rows.append(f"| {dataset} | {method.upper()} | {ipc[3:]} | {fmt(d, 'accuracy')} | {fmt(d, 'balanced_accuracy')} | "
                    f"{fmt(d, 'auc')} | {fmt(rnd, 'accuracy')} | {fmt(rnd, 'balanced_accuracy')} | {fmt(rnd, 'auc')} | "
                    f"{r['majority_rate']:.3f} | {better} |")
    head = ("| dataset | method | IPC | distilled acc. | distilled bal. acc. | distilled AUC | random acc. | "
            "random bal. acc. | random AUC | majority | beats random (bal. acc. and AUC) |\n"
            "|---|---|---:|---|---|---|---|---|---|---:|---|")
    return head + "\n" + "\n".join(rows)


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("all", "baselines"):
        print(baselines())
    if which in ("all", "methods"):
        print()
        print(methods())
