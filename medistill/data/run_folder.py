"""The run folder: the names of the files a distillation writes into its folder, and reading and writing them.

The layout (for a person: docs/formats.md, "The run folder"). :func:`medistill.methods.distill` writes it,
rank 0 alone, holding the folder's lock ``.medistill.lock`` (:mod:`medistill.run_lock`) the whole time:

* ``config.json``: written first (method, data, settings, evaluation settings, versions); read by ``--resume``
  (:mod:`medistill.methods.checkpoint`), the study's import and export.
* ``checkpoint.pt``: every ``checkpoint_every`` iterations and at the end; read by ``--resume``.
* ``synthetic_set.pt``: at the end, the :class:`~medistill.data.ImageSet`; read by ``ImageSet.load(folder)``,
  ``medistill evaluate``, export, audit and the study.
* ``synthetic_grid.png``, ``loss_curve.png``: at the end, the images and the loss per iteration; for a person.
* ``metrics.json``: at the end, unless ``--eval-models 0``; read by ``medistill evaluate`` (its settings),
  export and the study's import.
* ``summary.txt``: at the end, the evaluation in a few lines; for a person.
* ``study_metrics.json``: written by the study (:mod:`medistill.study.compute`) when it scores a finished
  run; read by the study.

The JSON files (``indent=1``), the summary, the checkpoint and the set (``torch.save`` files) are written
atomically (:mod:`medistill.atomic_io`); the two pictures are not. A study baseline cell's folder
(``<runs>/<cell id>/``) keeps its own record (settings, result, images, seconds) under the same ``metrics.json``
name, beside ``selected_set.pt``.

Here in ``medistill.data`` because that is the lowest layer every user may import (``data.imageset`` reads
the set of a folder; ``methods`` writes the folder; ``export``, ``study`` and ``cli`` read it) that may also
use ``atomic_io``. It does not import :class:`~medistill.data.ImageSet` (which imports it): callers save and
load the set at :attr:`RunFolder.set_path`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic_io import atomic_torch_save, atomic_write_text
from .errors import DataError

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
SYNTHETIC_SET = "synthetic_set.pt"
GRID = "synthetic_grid.png"
LOSS_CURVE = "loss_curve.png"
METRICS = "metrics.json"
SUMMARY = "summary.txt"
STUDY_METRICS = "study_metrics.json"
# A distillation's own files: what makes a folder hold a run, and what --force deletes.
RUN_FILES = (CONFIG, CHECKPOINT, SYNTHETIC_SET, GRID, LOSS_CURVE, METRICS, SUMMARY)
# Beside the run folders: the random real-subset baselines' scores, cached for every run of the same data.
RANDOM_BASELINES = ".random_baselines"


def run_name(dataset: str, method: str, ipc: int | None, preset: str, seed: int | None = None) -> str:
    """The default folder name of a run: ``<dataset>-<method>-ipc<K>-<preset>-s<seed>`` (``all`` in place of
    ``ipc<K>`` for a cell without an IPC, such as full data; no ``-s<seed>`` when ``seed`` is None)."""
    name = f"{dataset}-{method}-{'all' if ipc is None else f'ipc{ipc}'}-{preset}"
    return name if seed is None else f"{name}-s{seed}"


def _read_json(path: Path):
    return json.loads(path.read_text())


def _write_json(path: Path, record) -> Path:
    return atomic_write_text(path, json.dumps(record, indent=1))


@dataclass(frozen=True)
class RunFolder:
    """The files of the run folder at ``path`` (which need not exist yet). Reads raise as ``open``/``json``/
    ``torch.load`` do; the callers decide what a missing or damaged file means to them."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def finished(cls, path) -> "RunFolder":
        """The run folder at ``path`` when it holds a distilled set, else DataError saying it is not one."""
        run = cls(path)
        if not run.set_path.exists():
            raise DataError(f"{run.path} is a folder without {SYNTHETIC_SET}: not a finished run folder "
                            "(pass a run folder or an ImageSet .pt file)")
        return run

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def set_path(self) -> Path:
        return self.path / SYNTHETIC_SET

    @property
    def grid_path(self) -> Path:
        return self.path / GRID

    @property
    def loss_curve_path(self) -> Path:
        return self.path / LOSS_CURVE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def study_metrics_path(self) -> Path:
        return self.path / STUDY_METRICS

    def existing(self) -> list[str]:
        """The names of the run's files (:data:`RUN_FILES`) the folder holds, in that order."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def remove_run_files(self) -> None:
        """Delete the run's files (``--force``); anything else in the folder stays."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)

    def read_config(self):
        return _read_json(self.config_path)

    def write_config(self, record: dict) -> Path:
        return _write_json(self.config_path, record)

    def read_checkpoint(self):
        """The checkpoint as saved (arbitrary pickled state: ``weights_only=False``), on the CPU."""
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)

    def write_checkpoint(self, state: dict) -> Path:
        return atomic_torch_save(state, self.checkpoint_path)

    def read_metrics(self):
        return _read_json(self.metrics_path)

    def write_metrics(self, metrics: dict) -> Path:
        return _write_json(self.metrics_path, metrics)

    def write_summary(self, text: str) -> Path:
        return atomic_write_text(self.summary_path, text)

    def read_study_metrics(self):
        return _read_json(self.study_metrics_path)

    def write_study_metrics(self, record: dict) -> Path:
        return _write_json(self.study_metrics_path, record)


__all__ = ["CHECKPOINT", "CONFIG", "GRID", "LOSS_CURVE", "METRICS", "RUN_FILES", "STUDY_METRICS", "SUMMARY",
           "SYNTHETIC_SET", "RunFolder"]
