"""The journal as monitoring reads it: read-only, never creating or writing anything.

Used to seed the gauges at daemon start (a restart must not show zeros) and to render the
status page. A separate read-only SQLite connection per read: WAL lets it run beside the
daemon's writer without waiting for a cycle.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.engine.cycle import HALT_KEY, PEAK_KEY

CURVE_CYCLES = 2000  # cycles drawn on the status page's equity curve, newest kept


@dataclass(frozen=True, slots=True)
class CycleRow:
    cycle_id: str
    asof: str | None
    started_at: str
    finished_at: str | None
    status: str
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JournalView:
    """What the journal holds for an observer: newest cycle first."""

    cycles: tuple[CycleRow, ...]
    halt_reason: str | None
    peak_equity: float | None

    def last_with(self, key: str) -> CycleRow | None:
        """The newest cycle whose summary has ``key`` (e.g. ``equity_after``)."""
        return next((c for c in self.cycles if key in c.summary), None)


@contextmanager
def _read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=2.0)) as db:
        yield db


def read_journal(db_path: Path, limit: int = CURVE_CYCLES) -> JournalView | None:
    """The last ``limit`` cycles and the kill-switch state, or None when there is no
    journal yet (a first start) or it cannot be read (then the page says so)."""
    if not db_path.is_file():
        return None
    try:
        with _read_only(db_path) as db:
            rows = db.execute(
                "SELECT cycle_id, asof, started_at, finished_at, status, summary FROM cycles "
                "ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
            meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN (?, ?)",
                                   (HALT_KEY, PEAK_KEY)).fetchall())
    except sqlite3.Error:
        return None
    cycles = tuple(CycleRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else {})
                   for r in rows)
    peak = meta.get(PEAK_KEY)
    return JournalView(cycles, meta.get(HALT_KEY) or None, float(peak) if peak else None)
