"""One writer per state dir: an ``fcntl.flock`` held for the life of the process.

The kernel releases a flock when its file descriptor closes, including on SIGKILL, so a
crashed daemon never leaves a stale lock. The lock file also records who holds it (pid,
start time, command) so a second writer, ``status`` and ``health`` can name the holder
without taking the lock.

The exclusion itself is a flock on the state directory (a directory's descriptor can be
flocked on Linux), which no one deletes: a lock file that an operator deleted as "stale"
lets no second writer in. The lock file is flocked too (``status`` and older versions probe
it), and the holder checks it every ``WATCH_SECS``: deleted, replaced or rewritten, it is put
back with the holder's record (``instance_lock_restored``, a warning).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from bot.errors import InstanceLockedError, StateError
from brokers.sqlite_state import ensure_state_dir, secure_file

LOCK_FILE_NAME = "allocbot.lock"
WATCH_SECS = 1.0  # how often the holder checks its lock file is still there and its own
_BUSY_RETRIES = 3  # a reader's probe holds a shared lock for microseconds: not a holder


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

    def __init__(self, path: Path, fd: int, holder: LockHolder, dir_fd: int | None = None,
                 record: bytes = b"") -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = fd
        self._dir_fd = dir_fd
        self._record = record
        self._guard = threading.Lock()  # the watcher swaps ``_fd``; ``release`` closes it
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if dir_fd is not None:
            self._watcher = threading.Thread(target=self._watch, name="allocbot-lock-watch",
                                             daemon=True)
            self._watcher.start()

    @classmethod
    def acquire(cls, state_dir: Path, command: str, config: Path | None = None,
                config_digest: str | None = None) -> InstanceLock:
        """Take the lock or raise ``InstanceLockedError`` naming the holder's pid and start;
        ``config``/``config_digest``: the config file this process runs with, recorded."""
        ensure_state_dir(state_dir)
        path = lock_path(state_dir)
        dir_fd = _lock_directory(state_dir)
        try:
            fd = _open_lock_file(state_dir, path)
        except BaseException:
            if dir_fd is not None:
                os.close(dir_fd)  # drops the directory's lock
            raise
        if not _flock_exclusive(fd):  # an allocbot from before the directory lock
            os.close(fd)
            if dir_fd is not None:
                os.close(dir_fd)
            raise InstanceLockedError(_locked_message(state_dir))
        secure_file(path)
        holder = LockHolder(os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"),
                            command, True, None if config is None else str(config),
                            config_digest)
        record = json.dumps({"pid": holder.pid, "started_at": holder.started_at,
                             "command": holder.command, "config": holder.config,
                             "config_digest": holder.config_digest}).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return cls(path, fd, holder, dir_fd, record)

    def release(self) -> None:
        """Drop the lock (the record stays, with ``alive`` False for readers)."""
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        with self._guard:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
            if self._dir_fd is not None:
                os.close(self._dir_fd)
                self._dir_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _watch(self) -> None:
        import structlog  # here: status and health read the lock without loading it (~0.15 s)

        log = structlog.get_logger("allocbot.lock")
        failed = False  # said once, until a restore succeeds
        while not self._stop.wait(WATCH_SECS):
            try:
                with self._guard:
                    if self._fd is None:
                        return
                    problem = self._restore_record()
            except Exception as exc:  # noqa: BLE001 - a failed restore must not end the watch
                if not failed:
                    log.warning("instance_lock_restored", path=str(self.path), restored=False,
                                reason=f"cannot restore the lock file: {type(exc).__name__}: "
                                       f"{exc}", pid=self.holder.pid,
                                note="the state dir stays locked while this process runs; "
                                     "status and health may say no daemon runs")
                failed = True
                continue
            failed = False
            if problem is not None:
                log.warning("instance_lock_restored", path=str(self.path), restored=True,
                            reason=problem, pid=self.holder.pid,
                            note="the state dir stays locked while this process runs; its lock "
                                 "file names the holder: do not delete it")

    def _restore_record(self) -> str | None:
        """Put the lock file back as this process wrote it; why it had to, or None."""
        assert self._fd is not None
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            at_path = None
        mine = os.fstat(self._fd)
        if at_path is not None and (at_path.st_dev, at_path.st_ino) == (mine.st_dev, mine.st_ino):
            if os.pread(self._fd, len(self._record) + 1, 0) == self._record:
                return None
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, self._record, 0)
            return "the lock file's text was changed"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".tmp")
        try:
            os.write(fd, self._record)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(self._fd)
        self._fd = fd
        return "the lock file was deleted" if at_path is None else "the lock file was replaced"


def _lock_directory(state_dir: Path) -> int | None:
    """The state dir's descriptor, flocked exclusively; ``InstanceLockedError`` when another
    process holds it. None where a directory cannot be flocked (NFS emulates flock with
    byte-range locks, which a read-only descriptor cannot take): the lock file alone then
    keeps a second writer out, as before the directory lock, and is not watched."""
    try:
        dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        locked = _flock_exclusive(dir_fd)
    except OSError:
        os.close(dir_fd)
        return None
    if not locked:
        os.close(dir_fd)
        raise InstanceLockedError(_locked_message(state_dir))
    return dir_fd


def _flock_exclusive(fd: int) -> bool:
    """Take an exclusive flock without waiting; False when another process holds one.
    A reader's probe (``_is_locked``) holds a shared lock for microseconds: retried."""
    for attempt in range(_BUSY_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < _BUSY_RETRIES:
                time.sleep(0.02)
    return False


def _open_lock_file(state_dir: Path, path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(
            f"state dir {state_dir}: cannot open the lock file {path}: {exc.strerror}; "
            "make the directory writable by this user or point [bot].state_dir elsewhere"
        ) from exc


def _locked_message(state_dir: Path) -> str:
    holder = read_lock_holder(state_dir)
    deadline = time.monotonic() + 3 * WATCH_SECS
    while (holder is None or not holder.alive) and time.monotonic() < deadline:
        time.sleep(0.05)  # the holder is writing its record, or restoring a deleted one
        holder = read_lock_holder(state_dir)
    who = (f"pid {holder.pid} ({holder.command}, started {holder.started_at})"
           if holder is not None else "another process (no holder recorded yet)")
    return (f"state dir {state_dir} is in use by {who}; stop that process first, or point "
            "[bot].state_dir elsewhere to run a second bot")
