"""Bad inputs get a clear answer (issue #22): one table of every case, each run through ``medistill.cli.main``
with its exit code and the words its message must hold.

A row: (id, arguments, exit code, regular expressions the error must match, setup, check). ``{out}`` is a
fresh path for the row; ``{data}`` the real MedMNIST folder; ``{npz:<kind>}`` a folder with a generated bad
``breastmnist.npz``; ``{stopped}`` a copy of a run stopped after 1 of 3 iterations (made once, with
``--eval-models 1 --eval-epochs 1``); ``{finished}`` a copy of a finished run; ``{set}`` a saved image set.
An error must be one ``error:`` line on stderr and never a traceback (main() raising fails the row).
Case 1's second process is a real one (a Python process holding the folder's lock); the two-process
``distill`` scenario itself is in tests/test_run_lock.py.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from medistill.cli import main
from medistill.run_lock import LOCK_NAME

DISTILL = ["distill", "--dataset", "breastmnist", "--data-root", "{data}", "--method", "dm", "--ipc", "1", "--preset",
           "quick", "--threads", "1", "--set", "batch_real=8", "--out", "{out}"]
NO_EVAL = ["--eval-models", "0"]
STOPPED_RUN = ["--iterations", "3", "--set", "checkpoint_every=1"]
STOPPED_EVAL = ["--eval-models", "1", "--eval-epochs", "1", "--random-subsets", "1"]
STOPPED = STOPPED_RUN + STOPPED_EVAL  # the settings {stopped} was started with
BASELINE = ["baseline", "--dataset", "breastmnist", "--data-root", "{data}", "--ipc", "1", "--subsets", "1", "--models",
            "1", "--epochs", "1", "--threads", "1"]
EVALUATE = ["evaluate", "{set}", "--data-root", "{data}", "--models", "1", "--epochs", "1", "--threads", "1"]
# a device this machine does not have: cuda without a GPU, else one GPU past the last
NO_SUCH_CUDA = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
NO_CUDA_WORDS = "no such GPU" if torch.cuda.is_available() else "no CUDA device is usable"
HOLD = """
import sys
from medistill.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


@dataclass
class Row:
    id: str
    args: list[str]
    code: int
    words: list[str] = field(default_factory=list)
    setup: str | None = None  # comma-separated: "stopped" ({out} is a copy of {stopped}), "truncate"/"foreign" (its
    # checkpoint cut short / not a checkpoint), "hold" (another process holds {out})
    check: Callable[[Path], None] | None = None


def nothing_written(out: Path) -> None:
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def checkpoint_at(iteration: int) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        assert torch.load(out / "checkpoint.pt", weights_only=False)["method"]["iteration"] == iteration
    return check


def no_metrics(out: Path) -> None:
    assert (out / "synthetic_set.pt").exists() and not (out / "metrics.json").exists()


def held_folder_untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


ROWS = [
    # 1. one writer per run folder: another live process holds --out (--force does not take it)
    Row("1 folder held by another process, --force", DISTILL + NO_EVAL + ["--iterations", "2", "--force"], 2,
        [r"is in use: the run folder is locked by PID \d+ on host \S+", "--force does not take"], "hold",
        held_folder_untouched),
    Row("1 run held by another process, --resume", DISTILL + STOPPED + ["--resume"], 2,
        [r"locked by PID \d+"], "stopped,hold", checkpoint_at(1)),
    # 2. resume checks the evaluation settings; --resume needs a run
    Row("2 resume with another --eval-epochs", DISTILL + STOPPED_RUN + ["--eval-models", "1", "--eval-epochs", "2",
                                                                          "--random-subsets", "1", "--resume"], 2,
        ["other evaluation settings", r"'epochs': \(1, 2\)", "medistill evaluate"], "stopped"),
    Row("2 resume with --eval-models 0", DISTILL + STOPPED_RUN + ["--eval-models", "0", "--resume"], 2,
        ["other evaluation settings", r"'num_models': \(1, 0\)"], "stopped"),
    Row("2 resume with the same settings", DISTILL + STOPPED + ["--resume"], 0, [], "stopped", checkpoint_at(3)),
    Row("2 resume on a missing folder", DISTILL + NO_EVAL + ["--resume"], 2,
        ["does not exist", "nothing to resume", "--resume-or-start"], None, nothing_written),
    Row("2 resume-or-start on a missing folder", DISTILL + NO_EVAL + ["--iterations", "1", "--resume-or-start"], 0,
        [], None, checkpoint_at(1)),
    Row("2 --resume with --force", DISTILL + NO_EVAL + ["--resume", "--force"], 2, ["--force contradicts --resume"],
        None, nothing_written),
    Row("2 resume with another lr_img", DISTILL + STOPPED + ["--set", "lr_img=2", "--resume"], 2,
        ["different configuration", r"'lr_img': \(1.0, 2.0\)"], "stopped"),
    Row("2 a run without --resume or --force", DISTILL + STOPPED, 2, ["already holds a run", "--resume", "--force"],
        "stopped"),
    # 3. devices checked up front: what was asked, what exists
    Row("3 distill --device cuda", DISTILL + NO_EVAL + ["--device", NO_SUCH_CUDA], 2,
        [f"--device {NO_SUCH_CUDA}", NO_CUDA_WORDS, "this machine has cpu"], None, nothing_written),
    Row("3 distill --device foo", DISTILL + NO_EVAL + ["--device", "foo"], 2,
        ["--device 'foo' is not a device", "cpu, cuda or cuda:N", "this machine has cpu"], None, nothing_written),
    Row("3 baseline --device cuda", BASELINE + ["--device", NO_SUCH_CUDA], 2, [f"--device {NO_SUCH_CUDA}", NO_CUDA_WORDS]),
    Row("3 baseline --device foo", BASELINE + ["--device", "foo"], 2, ["--device 'foo' is not a device"]),
    Row("3 evaluate --device cuda", EVALUATE + ["--device", NO_SUCH_CUDA], 2, [f"--device {NO_SUCH_CUDA}", NO_CUDA_WORDS]),
    Row("3 evaluate --device foo", EVALUATE + ["--device", "foo"], 2, ["--device 'foo' is not a device"]),
    Row("3 experts --device mps", ["experts", "--dataset", "breastmnist", "--data-root", "{data}", "--out", "{out}",
                                   "--device", "mps"], 2, ["runs on cpu or cuda, not mps"], None, nothing_written),
    # 4. checkpoint_every=0: refused before anything is written
    Row("4 checkpoint_every=0", DISTILL + NO_EVAL + ["--set", "checkpoint_every=0"], 2,
        ["setting checkpoint_every must be at least 1, got 0"], None, nothing_written),
    Row("4 log_every=-1", DISTILL + NO_EVAL + ["--set", "log_every=-1"], 2, ["setting log_every must be at least 1"],
        None, nothing_written),
    # 5. a truncated checkpoint is named, with the way out
    Row("5 resume on a truncated checkpoint", DISTILL + STOPPED + ["--resume"], 2,
        [r"checkpoint\.pt cannot be read, it is truncated or corrupt", "--force"], "truncate"),
    Row("5 resume on a checkpoint that is not one", DISTILL + STOPPED + ["--resume"], 2,
        [r"checkpoint\.pt is not a medistill checkpoint", "--force"], "foreign"),
    # 6. the divergence guard: exploding images; non-finite learning rates refused up front
    Row("6 lr_img=1e30", DISTILL + NO_EVAL + ["--iterations", "40", "--set", "lr_img=1e30"], 2,
        [r"dm diverged at iteration 20: the synthetic images reached \|x\| = \S+, beyond 1000 × the real images' "
         "largest magnitude", "lower lr_img", "No checkpoint was written"], None, nothing_written),
    Row("6 lr_img=nan", DISTILL + NO_EVAL + ["--set", "lr_img=nan"], 2,
        ["setting lr_img must be a finite number > 0, got nan"], None, nothing_written),
    Row("6 lr_img=inf", DISTILL + NO_EVAL + ["--set", "lr_img=inf"], 2, ["setting lr_img must be a finite number"],
        None, nothing_written),
    Row("6 momentum_img=1.5", DISTILL + NO_EVAL + ["--set", "momentum_img=1.5"], 2,
        [r"momentum_img must be in \[0, 1\)"], None, nothing_written),
    # 7. counts and values of flags and settings
    Row("7 --iterations -5", DISTILL + NO_EVAL + ["--iterations", "-5"], 2, ["--iterations -5: must be at least 1"],
        None, nothing_written),
    Row("7 --set iterations=0", DISTILL + NO_EVAL + ["--set", "iterations=0"], 2,
        ["setting iterations must be at least 1, got 0"], None, nothing_written),
    Row("7 baseline --models 0", BASELINE[:-6] + ["--models", "0", "--epochs", "1", "--threads", "1"], 2,
        ["--models 0: must be at least 1"]),
    Row("7 evaluate --models 0", EVALUATE[:-6] + ["--models", "0", "--epochs", "1", "--threads", "1"], 2,
        ["--models 0: must be at least 1"]),
    Row("7 distill --eval-models 0 does not evaluate", DISTILL + NO_EVAL + ["--iterations", "1"], 0, [], None,
        no_metrics),
    Row("7 distill --eval-models -1", DISTILL + ["--eval-models", "-1"], 2, ["--eval-models -1: must be at least 0"],
        None, nothing_written),
    Row("7 --set lr_img=abc", DISTILL + NO_EVAL + ["--set", "lr_img=abc"], 2,
        ["--set lr_img=abc: lr_img takes a number, got 'abc'"], None, nothing_written),
    Row("7 --set align_corners=maybe", DISTILL + NO_EVAL + ["--set", "align_corners=maybe"], 2,
        ["align_corners takes true or false, got 'maybe'"], None, nothing_written),
    Row("7 --set without =", DISTILL + NO_EVAL + ["--set", "lr_img"], 2, ["must look like key=value"], None,
        nothing_written),
    Row("7 experts --num-experts 0", ["experts", "--dataset", "breastmnist", "--data-root", "{data}", "--out", "{out}",
                                      "--num-experts", "0"], 2, ["--num-experts 0: must be at least 1"], None,
        nothing_written),
    Row("7 experts --lr nan", ["experts", "--dataset", "breastmnist", "--data-root", "{data}", "--out", "{out}",
                               "--lr", "nan"], 2, ["--lr nan: must be a finite number above 0"], None, nothing_written),
    # 8. --stop-after: the message and the checkpoint agree
    Row("8 --stop-after 3 of 5, checkpoints every 2", DISTILL + NO_EVAL + ["--iterations", "5", "--set",
                                                                            "checkpoint_every=2", "--stop-after", "3"],
        0, [r"stopped at iteration 3/5; the checkpoint holds iteration 3: continue with --resume"], None,
        checkpoint_at(3)),
    Row("8 --stop-after 0", DISTILL + NO_EVAL + ["--stop-after", "0"], 2, ["--stop-after 0: must be at least 1"],
        None, nothing_written),
    # the tour's clear-error cases: data files, IPC, method, preset, settings
    Row("data: file missing", DISTILL + NO_EVAL + ["--data-root", "{npz:empty}"], 2,
        ["MedMNIST file not found", "breastmnist.npz"], None, nothing_written),
    Row("data: unknown dataset", ["baseline", "--dataset", "nosuchmnist", "--data-root", "{data}"], 2,
        ["unknown MedMNIST dataset 'nosuchmnist'"]),
    Row("data: truncated file", DISTILL + NO_EVAL + ["--data-root", "{npz:truncated}", "--allow-md5-mismatch"], 2,
        [r"breastmnist\.npz is not a readable \.npz file \(truncated or corrupt"], None, nothing_written),
    Row("data: wrong MD5", DISTILL + NO_EVAL + ["--data-root", "{npz:good}"], 2,
        ["MD5 [0-9a-f]+ differs from the official", "--allow-md5-mismatch"], None, nothing_written),
    Row("data: wrong MD5 allowed", DISTILL + NO_EVAL + ["--data-root", "{npz:good}", "--allow-md5-mismatch",
                                                        "--iterations", "1"], 0, [], None, checkpoint_at(1)),
    Row("data: missing key", DISTILL + NO_EVAL + ["--data-root", "{npz:no_val_labels}", "--allow-md5-mismatch"], 2,
        ["missing key 'val_labels'"], None, nothing_written),
    Row("data: labels out of range", DISTILL + NO_EVAL + ["--data-root", "{npz:labels_1_2}", "--allow-md5-mismatch"],
        2, [r"train_labels out of range \[0, 2\)"], None, nothing_written),
    Row("ipc above the smallest class", DISTILL[:8] + ["500"] + DISTILL[9:] + NO_EVAL, 2,
        ["ipc 500 exceeds the smallest class of breastmnist"], None, nothing_written),
    Row("ipc 0", DISTILL[:8] + ["0"] + DISTILL[9:] + NO_EVAL, 2, ["--ipc 0: must be at least 1"], None,
        nothing_written),
    Row("unknown method", DISTILL[:6] + ["gan"] + DISTILL[7:] + NO_EVAL, 2, ["unknown method 'gan'", "dc, dsa, dm"],
        None, nothing_written),
    Row("unknown preset", DISTILL[:10] + ["fast"] + DISTILL[11:] + NO_EVAL, 2, ["unknown preset 'fast'", "paper"],
        None, nothing_written),
    Row("unknown setting", DISTILL + NO_EVAL + ["--set", "lr_imgg=1"], 2,
        ["unknown dm setting 'lr_imgg'", r"lr_img \(float\)", r"checkpoint_every \(int\)"], None, nothing_written),
    Row("out is a file", DISTILL[:-1] + ["{file}"] + NO_EVAL, 2, ["exists and is not a folder"]),
]


def _write_npz(path: Path, label_shift: int = 0, drop: str | None = None) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 10), ("test", 10)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2 + label_shift).reshape(n, 1).astype(np.uint8)
    if drop:
        arrays.pop(drop)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def made(data_root, tmp_path_factory):
    """Generated bad data folders, a stopped run, a finished run and a saved set, made once."""
    root = tmp_path_factory.mktemp("bad_inputs")
    npz = {"empty": root / "npz-empty", "good": root / "npz-good", "truncated": root / "npz-truncated",
           "no_val_labels": root / "npz-nokey", "labels_1_2": root / "npz-range"}
    npz["empty"].mkdir()
    _write_npz(npz["good"] / "breastmnist.npz")
    _write_npz(npz["no_val_labels"] / "breastmnist.npz", drop="val_labels")
    _write_npz(npz["labels_1_2"] / "breastmnist.npz", label_shift=1)
    whole = (npz["good"] / "breastmnist.npz").read_bytes()
    (npz["truncated"]).mkdir()
    (npz["truncated"] / "breastmnist.npz").write_bytes(whole[: len(whole) // 2])
    paths = {"data": str(data_root), "stopped": root / "stopped", "set": str(root / "set.pt"),
             "file": str(root / "a-file"), **{f"npz:{k}": str(v) for k, v in npz.items()}}
    Path(paths["file"]).write_text("not a folder")
    stopped = [a.format(data=data_root, out=paths["stopped"]) for a in DISTILL + STOPPED + ["--stop-after", "1"]]
    assert main(stopped) == 0
    assert main(["baseline", "--dataset", "breastmnist", "--data-root", str(data_root), "--ipc", "1", "--subsets", "1",
                 "--models", "1", "--epochs", "1", "--threads", "1", "--save", paths["set"]]) == 0
    return paths


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _fill(args: list[str], paths: dict, out: Path) -> list[str]:
    filled = []
    for a in args:
        for key, value in paths.items():
            a = a.replace("{" + key + "}", str(value))
        filled.append(a.replace("{out}", str(out)))
    return filled


def _hold(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_rows_are_unique():
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, made, tmp_path, capsys, keep_threads):
    out = tmp_path / "out"
    holder = None
    setups = (row.setup or "").split(",")
    if {"stopped", "truncate", "foreign"} & set(setups):
        shutil.copytree(made["stopped"], out)
        if "truncate" in setups:
            data = (out / "checkpoint.pt").read_bytes()
            (out / "checkpoint.pt").write_bytes(data[: len(data) // 3])
        elif "foreign" in setups:
            torch.save({"weights": torch.zeros(3)}, out / "checkpoint.pt")
    if "hold" in setups:
        holder = _hold(out)
    try:
        capsys.readouterr()
        code = main(_fill(row.args, made, out))
        err = capsys.readouterr().err
    finally:
        if holder is not None:
            holder.kill()
            holder.wait(timeout=60)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == row.code, f"exit {code}, expected {row.code}; stderr: {err[-2000:]}"
    if row.code == 0:
        assert not errors, err[-2000:]
    else:
        assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
        for words in row.words:
            assert re.search(words, errors[0]), f"{words!r} not in: {errors[0]}"
    if row.check is not None:
        row.check(out)


def test_stop_after_message_matches_the_checkpoint(made, tmp_path, capsys, keep_threads):
    out = tmp_path / "out"
    args = _fill(DISTILL + NO_EVAL + ["--iterations", "5", "--set", "checkpoint_every=2", "--stop-after", "3"], made, out)
    assert main(args) == 0
    assert "stopped at iteration 3/5; the checkpoint holds iteration 3" in capsys.readouterr().out
    assert torch.load(out / "checkpoint.pt", weights_only=False)["method"]["iteration"] == 3
    assert main(args[:-2] + ["--resume"]) == 0  # continues at 3, not 2
    assert torch.load(out / "checkpoint.pt", weights_only=False)["method"]["iteration"] == 5


def test_divergence_names_the_last_checkpoint_that_exists(breast, tmp_path, monkeypatch):
    """Images that turn non-finite after a checkpoint: the error names that checkpoint (it exists and is finite)."""
    from medistill.methods import DM, distill, make_config
    from medistill.methods.runner import DivergenceError

    step = DM.step

    def poisoned(self):
        loss = step(self)
        if self.iteration == 3:
            with torch.no_grad():
                self.images.fill_(float("nan"))
        return loss

    monkeypatch.setattr(DM, "step", poisoned)
    cfg = make_config("dm", 1, "quick", iterations=6, batch_real=8, checkpoint_every=2, log_every=1)
    with pytest.raises(DivergenceError, match=r"iteration 3: the synthetic images are no longer finite.*"
                                              r"last finite checkpoint is iteration 2"):
        distill(breast, "dm", cfg, tmp_path / "run", progress=False)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert saved["method"]["iteration"] == 2 and torch.isfinite(saved["method"]["images"]).all()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr_img"] == 1.0
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_failure_before_the_first_checkpoint_leaves_nothing(breast, tmp_path, monkeypatch):
    """A run that stops before its first checkpoint (here: interrupted) does not leave a config.json that would
    block the re-run; a folder it made is removed."""
    from medistill.methods import DM, distill, make_config

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(DM, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill(breast, "dm", make_config("dm", 1, "quick", iterations=3), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
