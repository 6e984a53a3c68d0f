"""Claim files: each cell is worked on by exactly one process at a time, across processes and hosts.

A claim is ``<out>/claims/<cell id>.claim``, created with ``O_CREAT | O_EXCL`` (atomic: one creator
wins) and holding the owner's pid, host, process start time and the time of the claim. It is removed
when the cell is finished or fails. A claim left by a process that died (same host, pid gone or
reused by another process) is stale: it is taken over under the study lock, so two processes
recovering the same stale claim cannot both win. Claims from other hosts are never taken over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

EMPTY_CLAIM_GRACE_S = 60.0  # a claim file still empty after this long was left by a crash mid-write


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_info() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start_ticks": _start_ticks(pid), "time": time.time()}


class ClaimBoard:
    """Claims of one study; ``lock`` is the study's lock context (see ResultsTable.locked)."""

    def __init__(self, folder, lock):
        self.folder = Path(folder)
        self.lock = lock

    def path(self, cell_id: str) -> Path:
        return self.folder / f"{cell_id}.claim"

    def _create(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(owner_info()))
        return True

    def claim(self, cell_id: str) -> bool:
        """True when this process now owns the cell; False while another live process does."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(cell_id)
        if self._create(path):
            return True
        with self.lock():  # re-check under the lock: only one process may replace a stale claim
            if not path.exists():
                return self._create(path)
            if not self.is_stale(path):
                return False
            path.unlink()
            return self._create(path)

    def is_stale(self, path: Path) -> bool:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            try:
                return time.time() - path.stat().st_mtime > EMPTY_CLAIM_GRACE_S
            except OSError:
                return False
        if info.get("host") != socket.gethostname():
            return False  # cannot check a pid on another host
        pid = int(info["pid"])
        if not _alive(pid):
            return True
        return info.get("start_ticks") is not None and _start_ticks(pid) != info["start_ticks"]

    def release(self, cell_id: str) -> None:
        """Remove this process's claim on the cell (a claim owned by another process is left alone)."""
        owner = self.owner(cell_id)
        if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            self.path(cell_id).unlink(missing_ok=True)

    def owner(self, cell_id: str) -> dict | None:
        try:
            return json.loads(self.path(cell_id).read_text())
        except (OSError, ValueError):
            return None
