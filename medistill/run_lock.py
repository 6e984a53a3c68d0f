"""One writer per folder: an exclusive lock a run (``distill``, ``experts``, a study cell) holds for its lifetime.

The lock is ``fcntl.flock`` on ``<folder>/.medistill.lock``, taken before anything else is written to the
folder and released on every exit path: by :meth:`RunLock.release` (a ``with`` block, ``finally``), and by
the kernel when the process ends in any way, SIGKILL included. A folder is therefore never held by a dead
process. The lock file records the holder (PID, host, start time, command line), so a second process is
told who holds the folder (:class:`FolderInUse`), and a lock file left by a process that was killed is
recognised — its lock can be taken — and taken over; :meth:`RunLock.acquire` returns a notice saying so
(library code does not print: the caller shows it, e.g. with :func:`warnings.warn` and
:class:`StaleLockNotice`).

Released normally, the lock file is deleted while still locked, then unlocked: a process that opened it in
between gets the lock of a file no longer in the folder, notices, and tries again on a new one.

Imports only the standard library, so ``medistill.methods`` and ``medistill.study`` build on it.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = ".medistill.lock"


class FolderInUse(ValueError):
    """Another live process holds the folder's lock."""


class StaleLockNotice(UserWarning):
    """A lock file left by a process that no longer runs was taken over."""


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its PID yet)"
    since = holder.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    command = holder.get("command")
    return (f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {since}"
            + (f": {command}" if command else "") + ")")


def _command() -> str | None:
    """This process's command line as a person typed it ('medistill distill …'), for the lock file."""
    if not sys.argv or not sys.argv[0]:
        return None
    program = Path(sys.argv[0])
    name = program.parent.name if program.name == "__main__.py" else program.name  # python -m medistill
    return " ".join([name, *sys.argv[1:]])


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 65536)
        holder = json.loads(raw.decode()) if raw.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def read_holder(folder) -> dict:
    """The holder recorded in ``folder``'s lock file ({} when there is none or it cannot be read)."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


class RunLock:
    """The exclusive lock of ``folder`` (created with its parents when missing).

    ``what`` names the job in messages ("run folder", "expert bank"). Use :meth:`acquire` /
    :meth:`release`, or ``with RunLock(folder) as lock:`` (``lock.notice`` holds the stale-lock notice).
    """

    def __init__(self, folder, what: str = "run folder"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self.notice: str | None = None
        self._fd: int | None = None
        self._made_folder = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> str | None:
        """Take the lock or raise :class:`FolderInUse` naming the holder (never waits). Returns a notice when
        a lock file left by a process that has died was taken over, else None."""
        if self._fd is not None:
            return self.notice
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder} exists and is not a folder: choose another path for the {self.what}")
        self._made_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                for _ in range(20):  # the holder may have just taken the lock and not written its PID yet
                    if holder:
                        break
                    time.sleep(0.05)
                    holder = _read_holder(fd)
                os.close(fd)
                raise FolderInUse(
                    f"{self.folder} is in use: the {self.what} is locked by {_describe(holder)}. Wait for that "
                    f"process to finish or stop it, or choose another folder (--force does not take a folder "
                    f"another running process holds)") from None
            except BaseException:
                os.close(fd)
                raise
            if not self._same_file(fd):  # the previous holder deleted the file while we waited to lock it
                os.close(fd)
                continue
            previous = _read_holder(fd)
            me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": _command()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
            os.fsync(fd)
            self._fd = fd
            self.notice = None
            if previous:
                self.notice = (f"{self.folder}: took over the lock of {_describe(previous)}, which no longer runs "
                               f"(killed or crashed); its files are checked as usual")
            return self.notice
        raise FolderInUse(f"{self.folder}: could not take the lock of the {self.what} (its lock file keeps being "
                          "replaced by other processes)")

    def _same_file(self, fd: int) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev)

    def release(self) -> None:
        """Delete the lock file and unlock (idempotent); a folder :meth:`acquire` made and nothing else was
        written to is removed again."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._same_file(fd):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor releases the flock
        if self._made_folder:
            try:
                self.folder.rmdir()  # only when empty
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_NAME", "FolderInUse", "RunLock", "StaleLockNotice", "read_holder"]
