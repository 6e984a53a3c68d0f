"""Atomic checkpoint files and the run-config check that guards ``--resume``."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

# Settings that may differ between a run and its resumption (they do not change the result).
RESUME_NEUTRAL = {"checkpoint_every", "log_every", "versions"}


def atomic_torch_save(obj, path) -> None:
    """torch.save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def config_mismatch(saved: dict, current: dict) -> dict:
    """{key: (saved, current)} for every result-changing setting that differs."""
    keys = (set(saved) | set(current)) - RESUME_NEUTRAL
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())
