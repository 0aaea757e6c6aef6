"""An exclusive lock on a dataset being written, that says who holds it and survives kill -9.

The lock is a JSON file (pid, host, start time, command) held with ``flock``. The kernel drops a
``flock`` when its process dies, however it dies, so a lock whose file exists but whose ``flock``
can be taken is stale: its holder is gone and the lock is taken over with a warning. A lock file
written on another host cannot be checked from here and is refused, with the file to delete.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from omrl_data.errors import LockedError

LOCK_FILE = "lock.json"


class StaleLockWarning(UserWarning):
    """A lock left by a dead process was taken over."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def describe(info: dict[str, Any]) -> str:
    return (
        f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('started', '?')}"
        f" (command: {info.get('command') or '?'})"
    )


def read_lock_info(path: str | Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file, or None if there is none or it is unreadable."""
    try:
        text = Path(path).read_text()
        info = json.loads(text) if text.strip() else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


def holder(path: str | Path) -> dict[str, Any] | None:
    """Who holds the lock at ``path`` right now (its recorded info), or None if nobody does.

    Only looks: the lock file is not changed and the lock is not kept.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_lock_info(path) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        info = read_lock_info(path)
        if info and info.get("host") not in (None, socket.gethostname()):
            return info  # another host's lock cannot be checked here: treat it as held
        return None
    finally:
        os.close(fd)


def _try_flock(fd: int, attempts: int = 5) -> bool:
    # A few quick retries: `holder()` takes a shared flock for an instant to look.
    for i in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if i + 1 < attempts:
                time.sleep(0.02)
    return False


class FileLock:
    """Exclusive lock at ``path`` (a file). ``acquire()`` raises LockedError naming the holder."""

    def __init__(self, path: str | Path, what: str = "this dataset", command: str | None = None):
        self.path = Path(path)
        self.what = what  # named in the error, e.g. "omrl/ant_dir/replay-v2"
        self.command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self._fd: int | None = None
        self._owner_pid: int | None = None  # a forked child must never release its parent's lock

    @property
    def held(self) -> bool:
        return self._fd is not None and self._owner_pid == os.getpid()

    def acquire(self) -> "FileLock":
        if self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_flock(fd):
                os.close(fd)
                info = read_lock_info(self.path) or {}
                raise LockedError(
                    f"{self.what} is locked by {describe(info)}; wait for it to finish or stop that process"
                ) from None
            # The file may have been unlinked by a releasing holder between our open and flock;
            # then we locked a dead inode and must try again on the current file.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = read_lock_info(self.path)
        if previous:
            host = socket.gethostname()
            if previous.get("host") not in (None, host):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise LockedError(
                    f"{self.what} is locked by {describe(previous)}, which cannot be checked from {host}; "
                    f"if that process is gone, delete {self.path}"
                )
            if previous.get("pid") != os.getpid():
                warnings.warn(
                    f"taking over the stale lock of {self.what} left by {describe(previous)} (that process is gone)",
                    StaleLockWarning,
                    stacklevel=2,
                )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        self._owner_pid = os.getpid()
        return self

    def release(self) -> None:
        """Drop the lock and remove its file (removed first, while still held, so nobody reads a
        released lock as stale)."""
        if self._fd is None or self._owner_pid != os.getpid():
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock still goes away with its object
        try:
            self.release()
        except Exception:
            pass
