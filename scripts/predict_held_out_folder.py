"""`medistill predict` on a dataset the fits have never seen: an image folder made here from one source,
with every task of that source (and the simulation task built from it) removed from the study table.

    python scripts/predict_held_out_folder.py [--source breastmnist] [--ipc 1] [--table results/study/study.csv]

Writes ``runs/held_out/<source>_folder/{train,val,test}/<class>/*.png`` (the source's own splits, as PNG
files: a user's folder as far as medistill can tell), ``runs/held_out/study-without-<source>.csv`` (the
table minus the source's rows), then runs ``medistill predict --dataset <folder> --ipc K --table <that csv>``
and writes its JSON to ``results/study/held_out/<source>-ipc<K>.json``. The prediction for the folder is
out of sample in the strict sense: no task of its source is in the fit, and medistill does not know where
the folder's images come from.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_folder(source: str, out: Path) -> Path:
    """The MedMNIST source's splits as class folders of PNG files (28 px, as stored)."""
    from medistill.data.medmnist_files import locate  # the same lookup as every medistill command

    npz = np.load(locate(source, 28))
    for split in ("train", "val", "test"):
        images, labels = npz[f"{split}_images"], npz[f"{split}_labels"].reshape(-1)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = out / split / f"class_{int(label)}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i:05d}.png"
            if not path.exists():
                Image.fromarray(image).save(path)
    return out


def table_without(table: Path, source: str, out: Path) -> tuple[Path, int, int]:
    """``table`` minus every row whose source (or one of the sources it is built from) is ``source``."""
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), reader.fieldnames
    from medistill.predictor.fit import row_source, sources_of

    kept = [r for r in rows if source not in sources_of(row_source(r))]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return out, len(rows), len(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="breastmnist", help="a MedMNIST source of the table")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--table", default=str(REPO / "results" / "study" / "study.csv"))
    args = parser.parse_args()
    runs = REPO / "runs" / "held_out"
    folder = write_folder(args.source, runs / f"{args.source}_folder")
    table, before, after = table_without(Path(args.table), args.source, runs / f"study-without-{args.source}.csv")
    print(f"folder {folder}; table {table}: {after} of {before} rows kept (every {args.source} row removed)")
    out = REPO / "results" / "study" / "held_out" / f"{args.source}-ipc{args.ipc}.json"
    cmd = [sys.executable, "-m", "medistill", "predict", "--dataset", str(folder), "--ipc", str(args.ipc),
           "--table", str(table), "--threads", "1", "--json", str(out)]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
