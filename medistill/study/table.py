"""The study's results table: one row per finished cell, safe under crashes and concurrent writers.

``<out>/study.json`` (``{"records": [...]}``) and ``<out>/study.csv`` hold the same rows. ``source`` is
the task's source key (:func:`medistill.study.tasks.task_source`; the predictor groups by it) and
``classes`` its number of classes; the ``random_*`` columns are the task's indicator at the row's IPC. A row is
added under an exclusive ``fcntl.flock`` on ``<out>/.study.lock``: read the JSON, add the row unless
its cell is already there, rewrite both files atomically (temp file + rename). A process killed at
any point leaves the table as it was before or after the row, never half of it.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
from contextlib import contextmanager
from pathlib import Path

from ..atomic_io import atomic_write_text

METRICS = ("accuracy", "balanced_accuracy", "auc")
COLUMNS = (
    ["cell_id", "dataset", "source", "classes", "method", "kind", "ipc", "seed", "preset", "images"]
    + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    + [f"random_{m}_{s}" for m in METRICS for s in ("mean", "std", "spread")]
    + ["random_subsets", "verdict"]
    + ["majority_rate", "eval_models", "eval_epochs", "eval_augment", "wall_seconds", "reused",
       "run_folder", "host", "pid", "finished_at"]
)


class ResultsTable:
    """Rows (dicts keyed by :data:`COLUMNS`) of a study in ``folder``."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.json_path = self.folder / "study.json"
        self.csv_path = self.folder / "study.csv"
        self.lock_path = self.folder / ".study.lock"

    @contextmanager
    def locked(self):
        """Exclusive lock shared by every process writing this study (blocks until free)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def records(self) -> list[dict]:
        if not self.json_path.exists():
            return []
        return json.loads(self.json_path.read_text())["records"]

    def finished_ids(self) -> set[str]:
        return {r["cell_id"] for r in self.records()}

    def append(self, record: dict) -> bool:
        """Add ``record`` unless its cell is already in the table; True when added."""
        unknown = set(record) - set(COLUMNS)
        if unknown:
            raise ValueError(f"record has unknown columns {sorted(unknown)}")
        with self.locked():
            records = self.records()
            if any(r["cell_id"] == record["cell_id"] for r in records):
                return False
            records.append({c: record.get(c) for c in COLUMNS})
            atomic_write_text(self.json_path, json.dumps({"columns": list(COLUMNS), "records": records}, indent=1))
            atomic_write_text(self.csv_path, to_csv(records))
        return True


def to_csv(records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({c: "" if r.get(c) is None else r.get(c) for c in COLUMNS})
    return buffer.getvalue()


def read_table(path) -> list[dict]:
    """Rows of a study table from its ``.csv`` or ``.json`` (numbers typed; empty cells → None)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no study table at {path}: produce one with `medistill study --out {path.parent}` "
                         "(see README, 'Predicting distillation success')")
    if path.suffix == ".json":
        return json.loads(path.read_text())["records"]
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            rows.append({k: _typed(k, v) for k, v in raw.items()})
    return rows


def _typed(key: str, value: str):
    if value == "":
        return None
    if key in ("ipc", "seed", "images", "eval_models", "eval_epochs", "pid", "classes", "random_subsets"):
        return int(value)
    if key in ("eval_augment", "reused"):
        return value == "True"
    if key.endswith(("_mean", "_std", "_spread")) or key in ("majority_rate", "wall_seconds"):
        return float(value)
    return value
