"""What can be exported or audited: a run folder (``synthetic_set.pt`` + ``config.json`` + ``metrics.json``)
or a bare :class:`~medistill.data.ImageSet` ``.pt`` file."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError, ImageSet


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


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc


def load_run_source(path) -> RunSource:
    """A run folder or a .pt set; DataError when neither is there."""
    path = Path(path)
    if path.is_dir():
        if not (path / "synthetic_set.pt").exists():
            raise DataError(f"{path} is a folder without synthetic_set.pt: not a finished run folder "
                            "(pass a run folder or an ImageSet .pt file)")
        return RunSource(path, ImageSet.load(path / "synthetic_set.pt"),
                         _read_json(path / "config.json"), _read_json(path / "metrics.json"))
    if not path.exists():
        raise DataError(f"no run folder or image set at {path}")
    return RunSource(path, ImageSet.load(path), None, None)
