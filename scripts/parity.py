"""Parity with the published DC/DM code: medistill at the budgets of the published reference scores (RESULTS.md, parity section).

Two phases, each resumable and shardable (``--shard I/N``: cell k runs in shard k mod N):

* ``distill``: every (dataset, method, IPC, init, seed) cell distilled with ``medistill distill
  --eval-models 0`` into ``runs/parity/<cell>/`` (a killed run resumes from its checkpoint);
* ``score``: every finished set scored with ``medistill evaluate RUN_FOLDER`` (the one evaluation
  recipe) into ``results/parity/<cell>.json``, and the random / full baselines with
  ``medistill baseline``. A cell whose JSON exists is skipped.

``python scripts/parity.py table`` prints the RESULTS.md table (medistill mean ± std over seeds next
to the published number, and the difference).

    python scripts/parity.py distill --shard 0/2 &  python scripts/parity.py distill --shard 1/2
    python scripts/parity.py score --shard 0/2 &    python scripts/parity.py score --shard 1/2
    python scripts/parity.py table
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "runs" / "parity"
RESULTS = REPO / "results" / "parity"
MEDISTILL = [str(REPO / ".venv" / "bin" / "python"), "-m", "medistill"]
SEEDS = (0, 1, 2)

# The published code's reference scores on these files, as given to the project (test accuracy, mean ± std over its networks).
PUBLISHED = {
    ("breastmnist", "random", 1): (0.535, 0.094), ("breastmnist", "random", 10): (0.671, 0.044),
    ("breastmnist", "full", None): (0.843, 0.003),
    ("breastmnist", "dc-real", 1): (0.707, 0.003), ("breastmnist", "dc-noise", 1): (0.712, 0.019),
    ("breastmnist", "dc-real", 10): (0.645, 0.018),
    ("breastmnist", "dm", 1): (0.667, 0.042), ("breastmnist", "dm", 10): (0.748, 0.011),
    ("retinamnist", "random", 1): (0.256, 0.080), ("retinamnist", "random", 10): (0.370, 0.054),
    ("retinamnist", "full", None): (0.500, None),
    ("retinamnist", "dc-real", 1): (0.395, 0.004), ("retinamnist", "dc-real", 10): (0.449, 0.009),
    ("retinamnist", "dm", 1): (0.428, 0.032), ("retinamnist", "dm", 10): (0.499, 0.009),
}


@dataclass
class Cell:
    dataset: str
    kind: str  # dm, dc-real, dc-noise, random, full
    ipc: int | None
    seed: int = 0
    distill_args: list[str] = field(default_factory=list)
    eval_args: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        ipc = "" if self.ipc is None else f"-ipc{self.ipc}"
        return f"{self.dataset}-{self.kind}{ipc}-s{self.seed}"

    @property
    def distilled(self) -> bool:
        return self.kind not in ("random", "full")


def cells() -> list[Cell]:
    """Every cell of the parity table, with the budgets of the published reference table."""
    out = []
    for ds in ("breastmnist", "retinamnist"):
        breast = ds == "breastmnist"
        for seed in SEEDS:
            for ipc in (1, 10):
                iters = 500 if breast else (250 if ipc == 1 else 232)
                epochs = 300 if (not breast and ipc == 10) else 1000
                out.append(Cell(ds, "dm", ipc, seed,
                                ["--method", "dm", "--iterations", str(iters), "--set", "batch_real=256",
                                 "--set", "lr_img=1.0", "--set", "init=real"],
                                ["--models", "3", "--epochs", str(epochs), "--dsa"]))
            inits = ("real", "noise") if breast else ("real",)
            for init in inits:
                out.append(Cell(ds, f"dc-{init}", 1, seed,
                                ["--method", "dc", "--iterations", "200", "--set", "batch_real=64",
                                 "--set", f"init={init}"],
                                ["--models", "3", "--epochs", "300", "--no-dsa"]))
            out.append(Cell(ds, "dc-real", 10, seed,
                            ["--method", "dc", "--iterations", "15" if breast else "3", "--set", "batch_real=64",
                             "--set", "init=real"],
                            ["--models", "3", "--epochs", "300", "--no-dsa"]))
        for ipc in (1, 10):
            out.append(Cell(ds, "random", ipc, 0, [],
                            ["--subsets", "3", "--models", "3" if breast else "2", "--epochs", "300", "--no-dsa"]))
        out.append(Cell(ds, "full", None, 0, [], ["--models", "2" if breast else "1", "--epochs", "50"]))
    return out


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def distill(cell: Cell) -> None:
    folder = RUNS / cell.name
    if (folder / "synthetic_set.pt").exists():
        return
    resume = ["--resume"] if (folder / "config.json").exists() else []
    run(MEDISTILL + ["distill", "--dataset", cell.dataset, "--ipc", str(cell.ipc), "--preset", "paper",
                     "--seed", str(cell.seed), "--threads", "1", "--eval-models", "0", "--out", str(folder),
                     *resume, *cell.distill_args])


@contextmanager
def cell_lock(name: str):
    """Yield True when this process holds the cell's lock (another scorer holds it: False)."""
    lock_dir = RUNS / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def score(cell: Cell) -> None:
    out = RESULTS / f"{cell.name}.json"
    if out.exists():
        return
    with cell_lock(cell.name) as mine:
        if mine and not out.exists():
            _score(cell, out)


def _score(cell: Cell, out: Path) -> None:
    if cell.distilled:
        folder = RUNS / cell.name
        if not (folder / "synthetic_set.pt").exists():
            print(f"skip {cell.name}: not distilled yet", flush=True)
            return
        run(MEDISTILL + ["evaluate", str(folder), "--threads", "1", "--seed", "0", "--json", str(out),
                         *cell.eval_args])
    elif cell.kind == "random":
        run(MEDISTILL + ["baseline", "--dataset", cell.dataset, "--selector", "random", "--ipc", str(cell.ipc),
                         "--threads", "1", "--seed", "0", "--json", str(out), *cell.eval_args])
    else:
        run(MEDISTILL + ["baseline", "--dataset", cell.dataset, "--selector", "full", "--threads", "1",
                         "--seed", "0", "--json", str(out), *cell.eval_args])


def _fmt(mean, std) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _verdict(kind, ipc, ds, bal, auc, groups) -> str:
    """DC sets are scored like the random rows (3 networks x 300 epochs, no augmentation): the rule of
    docs/evaluation.md on the mean over seeds. DM sets train with DSA for 1000 epochs: no like-for-like row."""
    if not kind.startswith("dc") or (ds, "random", ipc) not in groups:
        return "—"
    sub = groups[(ds, "random", ipc)][0]["subsets"]
    verdicts = [m > sub[k]["mean"] + sub[k]["std"] for m, k in ((bal.mean(), "balanced_accuracy"), (auc.mean(), "auc"))]
    return "beats random" if all(verdicts) else "does not beat random"


def table() -> str:
    """The parity table: medistill (mean ± std over seeds of each seed's mean over networks) vs published."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for cell in cells():
        path = RESULTS / f"{cell.name}.json"
        if path.exists():
            groups.setdefault((cell.dataset, cell.kind, cell.ipc), []).append(json.loads(path.read_text()))
    lines = ["| dataset | cell | medistill accuracy | seeds | spread over networks (mean std) | published | "
             "difference | medistill bal. acc. | medistill AUC | vs random (bal. acc., AUC) |",
             "|---|---|---|---:|---|---|---|---|---|---|"]
    for key, (pub_mean, pub_std) in PUBLISHED.items():
        found = groups.get(key)
        ds, kind, ipc = key
        label = kind if ipc is None else f"{kind} IPC {ipc}"
        if not found:
            lines.append(f"| {ds} | {label} | (not run) | 0 | | {_fmt(pub_mean, pub_std)} | | | | |")
            continue
        summaries = [r["summary"] for r in found]
        acc = np.array([s["accuracy"]["mean"] for s in summaries])
        within = np.mean([s["accuracy"]["std"] for s in summaries])
        bal = np.array([s["balanced_accuracy"]["mean"] for s in summaries])
        auc = np.array([s["auc"]["mean"] for s in summaries])
        if kind == "random":  # one row: the spread is over the subsets
            sub = found[0]["subsets"]
            acc_txt = f"{sub['accuracy']['mean']:.3f} ± {sub['accuracy']['std']:.3f} (over {len(sub['accuracy']['values'])} subsets)"
            diff = sub["accuracy"]["mean"] - pub_mean
        else:
            acc_txt = _fmt(acc.mean(), acc.std() if len(acc) > 1 else None)
            diff = acc.mean() - pub_mean
        lines.append(f"| {ds} | {label} | {acc_txt} | {len(found)} | {within:.3f} | {_fmt(pub_mean, pub_std)} | "
                     f"{diff:+.3f} | {bal.mean():.3f} | {auc.mean():.3f} | {_verdict(kind, ipc, ds, bal, auc, groups)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["distill", "score", "table", "list"])
    parser.add_argument("--shard", default="0/1", help="I/N: run the cells k with k mod N == I")
    args = parser.parse_args()
    if args.phase == "table":
        print(table())
        return 0
    index, count = (int(v) for v in args.shard.split("/"))
    mine = [c for k, c in enumerate(c for c in cells() if args.phase != "distill" or c.distilled)
            if k % count == index]
    if args.phase == "list":
        print("\n".join(c.name for c in mine))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MEDISTILL_DATA", str((REPO.parent / "shared" / "data" / "medmnist").resolve()))
    failed = []
    for cell in mine:
        try:
            if args.phase == "distill" and cell.distilled:
                distill(cell)
            elif args.phase == "score":
                score(cell)
        except subprocess.CalledProcessError as exc:  # go on with the other cells; rerun to retry this one
            print(f"FAILED {cell.name}: {exc}", flush=True)
            failed.append(cell.name)
    if failed:
        print(f"{len(failed)} cell(s) failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
