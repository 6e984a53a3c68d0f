"""One writer per run folder (issue #22, case 1): the lock of :mod:`medistill.run_lock`, with real second processes.

A holder is a separate Python process that takes a folder's lock (or a real ``medistill distill`` run); the
other side is this process or another ``medistill`` subprocess. Killed holders (SIGKILL) leave a lock file
that the next writer takes over with a notice.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medistill.cli import main
from medistill.run_lock import LOCK_NAME, FolderInUse, RunLock, read_holder

TIMEOUT = 600  # seconds for any subprocess step: a loaded machine starts Python slowly

HOLD = """
import sys
from medistill.run_lock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills this process)
lock.release()
print("released", flush=True)
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MEDISTILL_TEST_FAIL")}
    return {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


class Holder:
    """A separate process holding ``folder``'s lock until :meth:`release` or :meth:`kill`."""

    def __init__(self, folder: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=_env())
        line = self._readline()
        assert line.strip() == "held", line

    def _readline(self) -> str:
        return self.proc.stdout.readline()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        self.proc.stdin.close()
        assert self._readline().strip() == "released"
        self.proc.wait(timeout=TIMEOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)
        self.proc.stdin.close()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill()


@pytest.fixture
def holder():
    made: list[Holder] = []

    def start(folder) -> Holder:
        made.append(Holder(Path(folder)))
        return made[-1]

    yield start
    for h in made:
        h.cleanup()


def test_lock_is_released_and_its_file_and_new_folder_removed(tmp_path):
    folder = tmp_path / "new" / "run"
    with RunLock(folder) as lock:
        assert lock.held and (folder / LOCK_NAME).exists()
        holder = read_holder(folder)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert not folder.exists()  # made by the lock, left empty: removed again
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "config.json").write_text("{}")
    with RunLock(tmp_path / "kept"):
        pass
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["config.json"]


def test_one_process_cannot_take_a_folder_twice(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(FolderInUse, match=f"PID {os.getpid()} on host {socket.gethostname()}"):
            RunLock(tmp_path / "run").acquire()


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        RunLock(tmp_path / "file").acquire()


def test_another_live_process_holds_the_folder(tmp_path, holder):
    h = holder(tmp_path / "run")
    with pytest.raises(FolderInUse) as err:
        RunLock(tmp_path / "run").acquire()
    message = str(err.value)
    assert f"PID {h.pid} on host {socket.gethostname()}" in message and "--force does not take" in message
    h.release()
    with RunLock(tmp_path / "run") as lock:  # free again, and nothing stale to report
        assert lock.notice is None


def test_a_killed_holder_leaves_a_stale_lock_taken_over_with_a_notice(tmp_path, holder):
    h = holder(tmp_path / "run")
    h.kill()
    assert read_holder(tmp_path / "run")["pid"] == h.pid  # the file outlives the process; its flock does not
    with RunLock(tmp_path / "run") as lock:
        assert f"took over the lock of PID {h.pid}" in lock.notice and "no longer runs" in lock.notice
        assert read_holder(tmp_path / "run")["pid"] == os.getpid()


def _distill(data_root, out, *extra) -> list[str]:
    return ["distill", "--dataset", "breastmnist", "--data-root", str(data_root), "--method", "dm", "--ipc", "1",
            "--preset", "quick", "--eval-models", "0", "--threads", "1", "--set", "batch_real=8", "--out", str(out),
            *extra]


def test_two_distill_processes_on_one_folder(data_root, tmp_path, capsys):
    """The issue's case: A (a ``medistill distill`` subprocess, lr_img 1) runs; B (this process, on the same --out
    with other settings) is refused with --force, --resume or neither, and touches nothing; once A is killed,
    B takes the stale lock over with a notice."""
    out = tmp_path / "run"
    a = subprocess.Popen([sys.executable, "-m", "medistill",
                          *_distill(data_root, out, "--iterations", "100000", "--set", "checkpoint_every=1",
                                    "--set", "log_every=1")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    threads = torch.get_num_threads()
    try:
        deadline = time.time() + TIMEOUT
        while not (out / "checkpoint.pt").exists() and time.time() < deadline and a.poll() is None:
            time.sleep(0.1)
        assert (out / "checkpoint.pt").exists() and a.poll() is None, "A did not start"
        before = (out / "config.json").read_text()
        for flags in (["--force"], ["--resume"], []):
            capsys.readouterr()
            assert main(_distill(data_root, out, "--iterations", "100", "--set", "lr_img=2", *flags)) == 2, flags
            err = capsys.readouterr().err
            error = [line for line in err.splitlines() if "error:" in line]
            assert len(error) == 1 and "Traceback" not in err, err[-2000:]
            assert f"locked by PID {a.pid} on host {socket.gethostname()}" in error[0], error[0]
        assert (out / "config.json").read_text() == before  # A's run, untouched
        assert json.loads(before)["lr_img"] == 1.0
        assert a.poll() is None  # and A still runs
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=TIMEOUT)
        torch.set_num_threads(threads)
    try:
        assert main(_distill(data_root, out, "--iterations", "2", "--set", "lr_img=2", "--force")) == 0
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert f"notice: {out}: took over the lock of PID {a.pid}" in err, err[-2000:]
    assert json.loads((out / "config.json").read_text())["lr_img"] == 2.0
    assert not (out / LOCK_NAME).exists()


def test_experts_refuse_a_bank_another_process_writes(data_root, tmp_path, holder, capsys):
    h = holder(tmp_path / "bank")
    code = main(["experts", "--dataset", "breastmnist", "--data-root", str(data_root), "--num-experts", "1",
                 "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "bank")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"the expert bank is locked by PID {h.pid}" in err, err
    assert not (tmp_path / "bank" / "manifest.json").exists()


def test_a_study_cell_folder_has_one_writer(tmp_path, holder):
    from medistill.study.cells import Budget, Cell
    from medistill.study.compute import CellComputer

    budget = Budget("quick")
    cell = Cell("breastmnist", "random", 1, 0, budget.tag)
    h = holder(tmp_path / cell.id)
    with pytest.raises(FolderInUse, match=f"PID {h.pid}"):
        CellComputer(budget, tmp_path, progress=False)(cell)
    assert sorted(p.name for p in (tmp_path / cell.id).iterdir()) == [LOCK_NAME]  # nothing written
