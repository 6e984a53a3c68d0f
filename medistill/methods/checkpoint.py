"""The run-config check that guards ``--resume``."""
from __future__ import annotations

import json
from pathlib import Path

# Settings that may differ between a run and its resumption (they do not change the result;
# class_batching changes how DC/DSA compute the same gradients, so float rounding only).
RESUME_NEUTRAL = {"checkpoint_every", "log_every", "versions", "class_batching"}
# Settings added after runs were made: a saved config without one was made with this value.
ADDED_SETTINGS = {"amp": "off", "zca": False}


def config_mismatch(saved: dict, current: dict) -> dict:
    """{key: (saved, current)} for every result-changing setting that differs."""
    saved = {**{k: v for k, v in ADDED_SETTINGS.items() if k in current}, **saved}
    keys = (set(saved) | set(current)) - RESUME_NEUTRAL
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())
