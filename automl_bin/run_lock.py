"""The run folder lock: one live process per run folder.

A run holds an exclusive ``fcntl.flock`` on ``run.lock`` in its folder, with its pid written
inside, from the moment the folder exists until the run ends. The kernel drops the lock when
the process dies (even by ``kill -9``), so a folder whose lock can be taken belongs to no live
process: `lock_holder` tells a live run (its pid) from a dead one (None), and `acquire_run_lock`
refuses a second process (``--resume`` of a run still running) with exit 2 naming the holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import attrs

from automl_bin.errors import UsageError

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError", "acquire_run_lock", "live_run_error",
           "lock_holder"]

LOCK_FILE = "run.lock"


class RunLockedError(UsageError):
    """Another live process holds the run folder (exit 2)."""


@attrs.define(eq=False)
class RunLock:
    """A held run folder lock; `release` (or the process ending) frees it."""

    path: Path
    fd: int | None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip() or "x")
    except (OSError, ValueError):
        return None


def acquire_run_lock(run_dir: Path) -> RunLock:
    """Lock ``run_dir`` for this process, or raise `RunLockedError` naming the holder's pid."""
    path = Path(run_dir) / LOCK_FILE
    # O_CLOEXEC: child processes (torchrun workers, data loaders) must not inherit the lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise live_run_error(run_dir, _read_pid(path)) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    os.fsync(fd)
    return RunLock(path=path, fd=fd)


def live_run_error(run_dir: Path, pid: int | None) -> RunLockedError:
    """The refusal to touch the live run in ``run_dir`` held by process ``pid``."""
    who = f"process {pid}" if pid is not None and pid > 0 else "another process"
    kill = f"kill {pid}" if pid is not None and pid > 0 else "kill PID"
    return RunLockedError(
        f"The run in {str(run_dir)!r} is still running ({who} holds its {LOCK_FILE}); two "
        "processes writing one run would duplicate its epochs and tracked runs. Wait for it to "
        f"end, or stop it first ({kill}: it is marked KILLED and keeps its checkpoint), then "
        "resume it.")


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the live process holding ``run_dir`` (-1 when its pid is unreadable), or
    None when no live process holds it (never locked, finished, or its process died)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(path)
        return pid if pid is not None else -1
    finally:
        os.close(fd)  # closing drops the shared lock taken to probe
    return None
