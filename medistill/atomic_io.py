"""Crash-safe file writes: write to a temp file in the same folder, then rename over the target.

A process killed at any point leaves either the old file or the new one, never half of one. The file gets
the permissions an ordinary ``open(path, "w")`` would give it (0666 less the umask), not the private 0600
of a temp file, so results and export packages can be shared like any other file.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import torch


def _new_temp_file(path: Path) -> Path:
    """An empty file beside ``path``, created with mode 0666 so the kernel applies the umask (as ``open`` does;
    ``tempfile.mkstemp`` would force 0600)."""
    while True:
        tmp = path.with_name(f"{path.name}{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path, write) -> Path:
    """Call ``write(tmp)`` to write a temp file beside ``path`` (any writer: torch.save, savefig, …), then
    rename it over ``path``; the temp file is removed when ``write`` fails."""
    path = Path(path)
    tmp = _new_temp_file(path)
    try:
        write(str(tmp))
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
