"""The NYSE calendar (sessions, holidays, early closes) from ``exchange_calendars``' XNYS.

``exchange_calendars`` builds a window of sessions (default: 20 years back, 1 ahead, so a
date outside raises ``DateOutOfBounds``); this module always passes start AND end, widened
to whole years and cached, and turns the schedule into sorted arrays so every question is
a binary search (no pandas in the hot path). Dates are exchange (New York) calendar dates;
open/close times are aware UTC datetimes. The library is imported on first use only.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

EXCHANGE = "XNYS"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_YEAR = 1990  # every calendar covers at least 1990 ... today + YEARS_AHEAD
YEARS_AHEAD = 2
# exchange_calendars 4.x under pandas ≥ 3.1 warns from inside pandas; match the message
_PANDAS4_WARNINGS = ("Series.values returning", "DatetimeIndex.values returning",
                     "Series.dt.weekday is deprecated")


@dataclass(frozen=True, slots=True)
class SessionTable:
    """Sessions in ``[first, last]`` in order, with their open and close (aware UTC)."""

    days: tuple[date, ...]
    opens: tuple[datetime, ...]
    closes: tuple[datetime, ...]

    def covers(self, day: date) -> bool:
        return self.days[0] <= day <= self.days[-1]

    def index(self, day: date) -> int | None:
        """Position of ``day`` if it is a session."""
        i = bisect_left(self.days, day)
        return i if i < len(self.days) and self.days[i] == day else None

    def sessions_after(self, day: date, through: date) -> int:
        """Sessions strictly after ``day`` up to and including ``through``."""
        if through <= day:
            return 0
        return bisect_right(self.days, through) - bisect_right(self.days, day)

    def next_event_index(self, after: datetime, closes: bool) -> int:
        """Index of the first session whose open (or close) is at or after ``after``."""
        times = self.closes if closes else self.opens
        return bisect_left(times, after)


def _year_window(first: date, last: date) -> tuple[int, int]:
    today = datetime.now(UTC).date()
    return min(FIRST_YEAR, first.year), max(today.year + YEARS_AHEAD, last.year + 1)


@lru_cache(maxsize=4)
def _table(first_year: int, last_year: int) -> SessionTable:
    with warnings.catch_warnings():
        for message in _PANDAS4_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        import exchange_calendars as xcals

        cal = xcals.get_calendar(EXCHANGE, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
        schedule = cal.schedule
        opens_ns = schedule["open"].dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
        closes_ns = schedule["close"].dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
        days = schedule.index.to_numpy().astype("datetime64[D]")
    return SessionTable(
        days=tuple(d.item() for d in days),
        opens=tuple(_utc(v) for v in opens_ns.astype(np.int64).tolist()),
        closes=tuple(_utc(v) for v in closes_ns.astype(np.int64).tolist()),
    )


def _utc(nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def xnys_sessions(first: date, last: date | None = None) -> SessionTable:
    """A session table covering at least ``first`` … ``last`` (default: ``first``)."""
    return _table(*_year_window(first, last or first))


def sessions_in_range(first: date, last: date) -> list[date]:
    """The NYSE sessions from ``first`` to ``last`` inclusive."""
    table = xnys_sessions(first, last)
    return list(table.days[bisect_left(table.days, first):bisect_right(table.days, last)])


def sessions_after(day: date, through: date) -> int:
    """How many NYSE sessions fall after ``day`` up to and including ``through``."""
    if through <= day:
        return 0
    return xnys_sessions(day, through).sessions_after(day, through)
