"""The run folder's checks: the run-config check that guards ``--resume``, the evaluation settings a run
was started with, and reading a checkpoint back with a message that says what to do when it cannot be read."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..data.run_folder import RunFolder

# Settings that may differ between a run and its resumption (they do not change the result;
# class_batching changes how DC/DSA compute the same gradients, so float rounding only).
# dataset_provenance: where an image folder lies may change between calls; its content is dataset_md5's.
RESUME_NEUTRAL = {"checkpoint_every", "log_every", "versions", "class_batching", "dataset_provenance"}
# Recorded in config.json but compared on their own (:func:`evaluation_mismatch`), not as method settings.
CHECKED_APART = {"evaluation"}
# Settings added after runs were made: a saved config without one was made with this value.
ADDED_SETTINGS = {"amp": "off", "zca": False}
# DM's differential-privacy settings (medistill.privacy), None = not private, added with DP-DM.
ADDED_SETTINGS.update(dict.fromkeys(("dp_epsilon", "dp_delta", "dp_clip", "dp_sample_rate", "dp_secret_seed")))
# Recorded in config.json beside the settings: the resolved privacy guarantee; the settings that make it are
# compared as settings, and a resumed run keeps the σ its checkpoint holds.
CHECKED_APART = CHECKED_APART | {"privacy"}
# EvalConfig fields that do not change the scores (where they are computed).
EVAL_NEUTRAL = {"device"}


class RunFolderError(ValueError):
    """The run folder holds something that this run must not overwrite or cannot resume."""


def config_mismatch(saved: dict, current: dict) -> dict:
    """{key: (saved, current)} for every result-changing setting that differs."""
    saved = {**{k: v for k, v in ADDED_SETTINGS.items() if k in current}, **saved}
    keys = (set(saved) | set(current)) - RESUME_NEUTRAL - CHECKED_APART
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def evaluation_record(eval_config, random_subsets: int) -> dict | None:
    """What config.json records of how the run's set is scored at its end (None: not evaluated)."""
    if eval_config is None or eval_config.num_models < 1:
        return None
    settings = {k: v for k, v in dataclasses.asdict(eval_config).items() if k not in EVAL_NEUTRAL}
    return {**settings, "random_subsets": random_subsets}


def evaluation_mismatch(saved: dict, current: dict | None) -> dict:
    """{setting: (saved, current)} between the evaluation config.json records and this call's; {} when the
    folder predates the record (nothing to compare)."""
    if "evaluation" not in saved:
        return {}
    before = saved["evaluation"]
    if before is None or current is None:  # one side does not evaluate: --eval-models 0
        return {} if before == current else {"num_models": ((before or {}).get("num_models", 0),
                                                            (current or {}).get("num_models", 0))}
    keys = sorted(set(before) | set(current))
    return {k: (before.get(k), current.get(k)) for k in keys if before.get(k) != current.get(k)}


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())


def read_run_config(folder) -> dict:
    """config.json of a run folder, or RunFolderError saying it cannot be read and what to do."""
    run = RunFolder(folder)
    path = run.config_path
    try:
        saved = run.read_config()
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path} cannot be read ({type(exc).__name__}: {exc}): the folder's run cannot be "
                             "checked or resumed; start it over with --force, or choose another --out") from None
    if not isinstance(saved, dict):
        raise RunFolderError(f"{path} is not a run configuration: start the run over with --force")
    return saved


def load_checkpoint(folder) -> dict:
    """The run's checkpoint, or RunFolderError naming the file and the way out when it is truncated or corrupt."""
    run = RunFolder(folder)
    path = run.checkpoint_path
    try:
        checkpoint = run.read_checkpoint()
    except Exception as exc:  # zip reader, unpickling, EOF: all mean the file is damaged
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(f"{path} cannot be read, it is truncated or corrupt ({first}); it cannot be resumed: "
                             "start the run over with --force (or put back a good copy of the file)") from None
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("method"), dict) and "losses" in checkpoint
            and "iteration" in checkpoint["method"]):
        raise RunFolderError(f"{path} is not a medistill checkpoint (keys missing); start the run over with --force")
    return checkpoint
