"""A closed market's wakes are one journal row per closed stretch: each wake that finds the
market closed right after another takes that one's place, carrying the count and the first
wake's start, so an interval schedule's nights and weekends no longer grow the journal by
~1,000 rows a day. Any other cycle ends the stretch."""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

from bot.engine.journal import Journal
from bot.engine.statuses import CycleStatus


def wake(journal: Journal, status: CycleStatus, reason: str | None = None) -> str:
    cycle_id = journal.start_cycle(None)
    journal.set_cycle_asof(cycle_id, date(2024, 3, 2))
    journal.finish_cycle(cycle_id, status, {"reason": reason} if reason else {"equity": 1.0})
    return cycle_id


def rows(path: Path) -> list[tuple[str, str, dict]]:
    db = sqlite3.connect(path)
    found = [(c, s, json.loads(m)) for c, s, m in db.execute(
        "SELECT cycle_id, status, summary FROM cycles ORDER BY seq")]
    db.close()
    return found


def test_closed_wakes_fold_into_one_row_per_stretch_and_any_other_cycle_ends_it(tmp_path):
    path = tmp_path / "allocbot.sqlite"
    journal = Journal(path)
    first = journal.start_cycle(None)
    journal.finish_cycle(first, CycleStatus.SKIPPED, {"reason": "market_closed"})
    first_started = journal.recent_cycles(1)[0]["started_at"]
    closed = [wake(journal, CycleStatus.SKIPPED, "market_closed") for _ in range(3)]
    traded = wake(journal, CycleStatus.FINISHED)
    reopened = [wake(journal, CycleStatus.SKIPPED, "market_closed") for _ in range(2)]
    failed = wake(journal, CycleStatus.FAILED, "venue down")
    last = wake(journal, CycleStatus.SKIPPED, "market_closed")
    blocked = wake(journal, CycleStatus.SKIPPED, "guard_blocked")
    journal.close()

    found = rows(path)
    assert [c for c, _, _ in found] == [closed[-1], traded, reopened[-1], failed, last, blocked]
    stretch = found[0][2]
    assert stretch["closed_wakes"] == 4 and stretch["closed_since"] == first_started
    assert found[2][2]["closed_wakes"] == 2
    assert "closed_wakes" not in found[4][2]  # after a failed wake: a stretch of its own
    assert "closed_wakes" not in found[5][2]  # a guard's skip is not a closed market


def test_a_closed_wake_after_an_unreadable_summary_keeps_that_row(tmp_path):
    """A hand-edited summary that is not JSON is left alone (never deleted by folding)."""
    path = tmp_path / "allocbot.sqlite"
    journal = Journal(path)
    edited = wake(journal, CycleStatus.SKIPPED, "market_closed")
    db = sqlite3.connect(path)
    db.execute("UPDATE cycles SET summary = 'oops' WHERE cycle_id = ?", (edited,))
    db.commit()
    db.close()
    after = wake(journal, CycleStatus.SKIPPED, "market_closed")
    journal.close()
    db = sqlite3.connect(path)
    assert [c for (c,) in db.execute("SELECT cycle_id FROM cycles ORDER BY seq")] == [edited,
                                                                                    after]
    db.close()
