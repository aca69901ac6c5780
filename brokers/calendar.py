"""The NYSE calendar (sessions, holidays, early closes) from ``exchange_calendars``' XNYS.

``exchange_calendars`` builds a window of sessions (default: 20 years back, 1 ahead, so a
date outside raises ``DateOutOfBounds``); this module always passes start AND end, widened
to whole years and cached, and turns the schedule into sorted arrays so every question is
a binary search (no pandas in the hot path). Dates are exchange (New York) calendar dates;
open/close times are aware UTC datetimes.

Windows inside ``brokers.xnys_schedule`` (the same library's XNYS for STATIC_FIRST_YEAR …
STATIC_LAST_YEAR, stored as its weekday closures and non-regular hours) are built from that
snapshot: importing exchange_calendars and building its schedule costs ~0.4 s per process
(every backtest, ``run`` and ``once`` on the simulator). A test checks the snapshot against
the installed library; regenerate it with ``python -m brokers.calendar``. Other windows
import the library on first use.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

EXCHANGE = "XNYS"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)
_ZERO = timedelta(0)
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
    from brokers import xnys_schedule as static

    if first_year >= static.FIRST_YEAR and last_year <= static.LAST_YEAR:
        return _table_from_snapshot(first_year, last_year)
    return library_table(first_year, last_year)


def library_table(first_year: int, last_year: int) -> SessionTable:
    """The sessions of whole years ``first_year`` … ``last_year`` from exchange_calendars."""
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


def _table_from_snapshot(first_year: int, last_year: int) -> SessionTable:
    """The sessions of whole years from ``brokers.xnys_schedule``: every weekday but its
    closures, at REGULAR_HOURS unless SPECIAL_HOURS says otherwise (New York time). On
    arrays: 39 years are ~10⁴ sessions, built in every backtest and daemon process."""
    from brokers import xnys_schedule as static

    all_days = np.arange(np.datetime64(f"{first_year}-01-01"),
                         np.datetime64(f"{last_year + 1}-01-01"), dtype="datetime64[D]")
    weekday = (all_days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (3)
    closed = np.array(static.WEEKDAY_CLOSURES, dtype="datetime64[D]")
    sessions = all_days[(weekday < 5) & ~np.isin(all_days, closed)]
    ordinal = sessions.astype(np.int64)  # days since 1970-01-01
    minutes = np.empty((len(sessions), 2), dtype=np.int64)  # New York open, close
    minutes[:] = [_minutes(hhmm) for hhmm in static.REGULAR_HOURS]
    if static.SPECIAL_HOURS:
        special = np.array(list(static.SPECIAL_HOURS), dtype="datetime64[D]")
        at = np.searchsorted(sessions, special)
        inside = (at < len(sessions)) & (sessions[np.minimum(at, len(sessions) - 1)] == special)
        hours = [[_minutes(o), _minutes(c)] for o, c in static.SPECIAL_HOURS.values()]
        minutes[at[inside]] = np.array(hours, dtype=np.int64)[inside]
    # one offset a week: clocks change at 2 a.m. on a Sunday, never within a session week
    week = (ordinal + 3) // 7  # weeks since the Monday before the epoch
    first_of_week, back = np.unique(week, return_inverse=True)
    new_york = ZoneInfo(static.TIMEZONE)
    offset_min = np.array([
        (new_york.utcoffset(datetime(1969, 12, 29, 12) + timedelta(weeks=int(w))) or _ZERO)
        // timedelta(minutes=1) for w in first_of_week.tolist()], dtype=np.int64)[back]
    utc_secs = ((ordinal * 1440 - offset_min)[:, None] + minutes) * 60  # NY - offset = UTC
    opens, closes = (tuple(datetime.fromtimestamp(t, UTC) for t in column.tolist())
                     for column in utc_secs.T)
    return SessionTable(days=tuple(sessions.tolist()), opens=opens, closes=closes)


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def snapshot_source(first_year: int, last_year: int) -> str:
    """The text of ``brokers/xnys_schedule.py`` for those years, from exchange_calendars."""
    import exchange_calendars

    table = library_table(first_year, last_year)
    new_york = ZoneInfo("America/New_York")
    sessions = set(table.days)
    closures, day = [], date(first_year, 1, 1)
    while day <= date(last_year, 12, 31):
        if day.weekday() < 5 and day not in sessions:
            closures.append(day.isoformat())
        day += _ONE_DAY
    hours = {d: (o.astimezone(new_york).strftime("%H:%M"), c.astimezone(new_york)
                 .strftime("%H:%M")) for d, o, c in zip(table.days, table.opens, table.closes,
                                                        strict=True)}
    regular = max(set(hours.values()), key=list(hours.values()).count)
    lines = [
        f'"""XNYS sessions {first_year}–{last_year} as exchange_calendars '
        f"{exchange_calendars.__version__} computes them.",
        "",
        "Generated by ``python -m brokers.calendar``; do not edit.",
        "Sessions are the weekdays not in WEEKDAY_CLOSURES; their New York open and close are",
        "REGULAR_HOURS unless SPECIAL_HOURS (early closes, late opens) says otherwise.",
        '"""',
        "",
        f"FIRST_YEAR, LAST_YEAR = {first_year}, {last_year}",
        'TIMEZONE = "America/New_York"',
        f"REGULAR_HOURS = {_hours_literal(regular)}",
        "WEEKDAY_CLOSURES = (",
        *(f'    "{d}",' for d in closures),
        ")",
        "SPECIAL_HOURS = {",
        *(f'    "{d.isoformat()}": {_hours_literal(h)},' for d, h in hours.items()
          if h != regular),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _hours_literal(hours: tuple[str, str]) -> str:
    return f'("{hours[0]}", "{hours[1]}")'


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


SNAPSHOT_YEARS = (FIRST_YEAR, 2040)
SNAPSHOT_PATH = Path(__file__).with_name("xnys_schedule.py")

if __name__ == "__main__":  # regenerate the snapshot after upgrading exchange_calendars
    SNAPSHOT_PATH.write_text(snapshot_source(*SNAPSHOT_YEARS), encoding="utf-8")
    print(f"wrote {SNAPSHOT_PATH}")
