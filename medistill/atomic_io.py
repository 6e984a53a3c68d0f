"""Crash-safe file writes: write to a temp file in the same folder, then rename over the target.

A process killed at any point leaves either the old file or the new one, never half of one. The file gets
the permissions an ordinary ``open(path, "w")`` would give it (0666 less the umask), not the private 0600
of a temp file, so results and export packages can be shared like any other file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask



def atomic_write(path, write) -> Path:
    """Call ``write(tmp)`` to write a temp file beside ``path`` (any writer: torch.save, savefig, …), then
    rename it over ``path``; the temp file is removed when ``write`` fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_torch_save(obj, path) -> Path:
    """torch.save(obj) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
