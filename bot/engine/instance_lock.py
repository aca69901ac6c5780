"""One writer per state dir: an ``fcntl.flock`` held for the life of the process.

The kernel releases a flock when its file descriptor closes, including on SIGKILL, so a
crashed daemon never leaves a stale lock. The lock file also records who holds it (pid,
start time, command) so a second writer, ``status`` and ``health`` can name the holder
without taking the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from bot.errors import InstanceLockedError, StateError
from brokers.sqlite_state import ensure_state_dir, secure_file

LOCK_FILE_NAME = "allocbot.lock"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or last held) the state dir's lock; ``alive`` = the lock is held now."""

    pid: int
    started_at: str  # UTC ISO 8601
    command: str
    alive: bool
    config: str | None = None  # the config file it started from (path)
    config_digest: str | None = None  # that file's text as it read it (``config_digest``)


__all__ = ["InstanceLock", "InstanceLockedError", "LockHolder", "lock_path", "read_lock_holder"]


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_FILE_NAME


def _parse_holder(text: str, alive: bool) -> LockHolder | None:
    try:
        data = json.loads(text)
        config, digest = data.get("config"), data.get("config_digest")
        return LockHolder(int(data["pid"]), str(data["started_at"]), str(data["command"]), alive,
                          None if config is None else str(config),
                          None if digest is None else str(digest))
    except (ValueError, KeyError, TypeError):
        return None


def _is_locked(path: Path) -> bool:
    """True when some process holds the flock on ``path`` (probed with a shared, non-blocking
    lock on a read-only descriptor, released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's shared lock, if it got one
    return False


def read_lock_holder(state_dir: Path) -> LockHolder | None:
    """The recorded holder of ``state_dir``'s lock (None if no lock file or unreadable);
    never takes the lock nor creates anything."""
    path = lock_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    return _parse_holder(text, _is_locked(path))


class InstanceLock:
    """The exclusive lock on a state dir; use ``with InstanceLock.acquire(dir, "run"):``."""

    def __init__(self, path: Path, fd: int, holder: LockHolder) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path, command: str, config: Path | None = None,
                config_digest: str | None = None) -> InstanceLock:
        """Take the lock or raise ``InstanceLockedError`` naming the holder's pid and start;
        ``config``/``config_digest``: the config file this process runs with, recorded."""
        ensure_state_dir(state_dir)
        path = lock_path(state_dir)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"state dir {state_dir}: cannot open the lock file {path}: {exc.strerror}; "
                "make the directory writable by this user or point [bot].state_dir elsewhere"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceLockedError(_locked_message(state_dir)) from None
        secure_file(path)
        holder = LockHolder(os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"),
                            command, True, None if config is None else str(config),
                            config_digest)
        record = json.dumps({"pid": holder.pid, "started_at": holder.started_at,
                             "command": holder.command, "config": holder.config,
                             "config_digest": holder.config_digest}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)
        return cls(path, fd, holder)

    def release(self) -> None:
        """Drop the lock (the record stays, with ``alive`` False for readers)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _locked_message(state_dir: Path) -> str:
    holder = read_lock_holder(state_dir)
    who = (f"pid {holder.pid} ({holder.command}, started {holder.started_at})"
           if holder is not None else "another process (no holder recorded yet)")
    return (f"state dir {state_dir} is in use by {who}; stop that process first, or point "
            "[bot].state_dir elsewhere to run a second bot")
