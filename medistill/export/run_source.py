"""What can be exported or audited: a run folder (its set, config and evaluation:
:mod:`medistill.data.run_folder`) or a bare :class:`~medistill.data.ImageSet` ``.pt`` file."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError, ImageSet
from ..data.run_folder import RunFolder


@dataclass
class RunSource:
    """The set and, for a run folder, its config and evaluation (None for a bare .pt)."""

    path: Path
    image_set: ImageSet
    config: dict | None
    metrics: dict | None

    @property
    def name(self) -> str:
        return self.path.name if self.path.is_dir() else self.path.stem


def _recorded(path: Path, read) -> dict | None:
    """``read()`` of the run folder's JSON file at ``path``; None when it is missing, DataError when it is not JSON."""
    if not path.exists():
        return None
    try:
        return read()
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc


def load_run_source(path) -> RunSource:
    """A run folder or a .pt set; DataError when neither is there."""
    path = Path(path)
    if path.is_dir():
        run = RunFolder.finished(path)
        return RunSource(path, ImageSet.load(run.set_path), _recorded(run.config_path, run.read_config),
                         _recorded(run.metrics_path, run.read_metrics))
    if not path.exists():
        raise DataError(f"no run folder or image set at {path}")
    return RunSource(path, ImageSet.load(path), None, None)
