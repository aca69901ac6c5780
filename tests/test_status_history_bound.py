"""A status render reads a bounded number of valuation days, however long the journal:
it decoded every day of years of history to keep the curve's last 2,000 (a soak measured
0.3 s a render at 7,300 days, growing). The figures it shows are unchanged."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from bot.engine.journal import Journal
from bot.engine.statuses import CycleStatus


def test_daily_cycles_gives_the_latest_days_oldest_first(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state.sqlite")
    first = date(2020, 1, 1)
    for i in range(10):
        for wake in range(2):  # two valuations a day: the day's last one counts
            cid = journal.start_cycle(first + timedelta(days=i))
            journal.finish_cycle(cid, CycleStatus.FINISHED, {"equity_after": 100.0 + i + wake / 10})
    every = journal.daily_cycles(["equity_after"])
    latest = journal.daily_cycles(["equity_after"], latest=3)
    journal.close()
    assert [c["summary"]["equity_after"] for c in every] == [100.1 + i for i in range(10)]
    assert [c["asof"] for c in latest] == [str(first + timedelta(days=i)) for i in (7, 8, 9)]
    assert [c["summary"]["equity_after"] for c in latest] == [107.1, 108.1, 109.1]
