"""The sweep's Optuna journal file, written once per batch instead of once per operation.

Optuna's ``JournalFileBackend`` appends and fsyncs every operation (8–9 per trial: create,
each param, the slot, the result, each constraint, the state), ~3 ms each on a shared disk.
This backend keeps the appended lines in memory and writes them with one ``write`` + one
``fsync`` when the sweep calls ``flush()`` (after each batch is told). It writes the same
lines (``json.dumps(separators=(",", ":"))``, one per line) in the same order, so the file
always holds a prefix of what the unbuffered journal would hold, and Optuna's own
``JournalFileBackend`` reads it as is.

Crash safety: what survives a kill is every flushed batch; a batch killed before its
flush is simply asked again from its seed on ``--resume`` (the asks are not on disk). A
kill or power cut inside a flush can leave any prefix of its lines: the resume handles a
prefix of whole lines like the kill of the unbuffered journal (``study.abandon_stale``,
``sweep._whole_batches``), and a torn last line (no newline, or not JSON) is cut off on
open — Optuna's reader would skip it and then glue the next append onto it.

One writer: the file is ``flock``-ed for the backend's life (the OS drops it on SIGKILL),
so a second sweep on the same ``--out`` is refused instead of interleaving its batches.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from optuna.storages.journal import BaseJournalBackend

from bot.errors import ConfigError, StateError

log = structlog.get_logger("allocbot.research")


def _complete_lines(data: bytes) -> tuple[list[bytes], int]:
    """The leading lines of ``data`` that end in a newline and parse as JSON, and the byte
    length they take; whatever follows the first torn or garbled line is not counted."""
    lines: list[bytes] = []
    size = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            json.loads(line)
        except ValueError:
            break
        lines.append(line[:-1])
        size += len(line)
    return lines, size


class BatchJournal(BaseJournalBackend):
    """An Optuna journal backend whose appends reach the file on ``flush()`` only."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise ConfigError(f"{path}: another sweep is writing this study; wait for it "
                              "or choose another --out") from None
        self._lines = self._read_and_cut_torn_tail()
        self._flushed = len(self._lines)

    def _read_and_cut_torn_tail(self) -> list[bytes]:
        with open(self._fd, "rb", closefd=False) as f:
            f.seek(0)
            data = f.read()
        lines, size = _complete_lines(data)
        if size < len(data):
            if b"\n" in data[size:].rstrip(b"\n"):  # complete lines after a bad one: damage
                os.close(self._fd)
                raise StateError(f"{self._path}: line {len(lines) + 1} is not a journal "
                                 "entry and more entries follow it; the study file is damaged")
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
            log.warning("sweep_journal_torn_tail_dropped", path=str(self._path),
                        bytes=len(data) - size, entries_kept=len(lines))
        return lines

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        for line in self._lines[log_number_from:]:
            yield json.loads(line)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self._fd < 0:
            raise RuntimeError(f"{self._path}: the sweep's journal is closed")  # a bug
        self._lines.extend(json.dumps(entry, separators=(",", ":")).encode("utf-8")
                           for entry in logs)

    @property
    def pending(self) -> int:
        """Entries appended since the last flush (lost if the process dies now)."""
        return len(self._lines) - self._flushed

    def flush(self) -> None:
        """Write the pending entries with one write and one fsync."""
        if not self.pending:
            return
        data = b"".join(line + b"\n" for line in self._lines[self._flushed:])
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)
        self._flushed = len(self._lines)

    def close(self) -> None:
        """Release the file without writing what is pending (as a kill would); reads go on
        from memory."""
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1
