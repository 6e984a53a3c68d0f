"""Reading data files safely: a streamed file digest and an ``.npz`` reader with a clear error."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest (``"md5"``, ``"sha256"``, …) of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles); DataError naming the file when it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file (truncated or corrupt?): {exc}") from exc
