"""The XNYS snapshot (brokers/xnys_schedule.py) is exchange_calendars' own schedule: every
session, open and close over its years; windows outside it still come from the library."""

from __future__ import annotations

from datetime import date

from brokers import xnys_schedule
from brokers.calendar import (
    SNAPSHOT_YEARS,
    _table_from_snapshot,
    library_table,
    xnys_sessions,
)


def test_snapshot_equals_exchange_calendars_over_its_years():
    first, last = xnys_schedule.FIRST_YEAR, xnys_schedule.LAST_YEAR
    assert (first, last) == SNAPSHOT_YEARS
    snapshot, library = _table_from_snapshot(first, last), library_table(first, last)
    assert snapshot.days == library.days, "regenerate: python -m brokers.calendar"
    assert snapshot.opens == library.opens, "regenerate: python -m brokers.calendar"
    assert snapshot.closes == library.closes, "regenerate: python -m brokers.calendar"


def test_snapshot_keeps_holidays_early_closes_and_daylight_saving():
    table = _table_from_snapshot(2024, 2024)
    assert table.index(date(2024, 7, 4)) is None  # Independence Day
    assert table.index(date(2024, 6, 19)) is None  # Juneteenth (a holiday since 2022)
    early = table.index(date(2024, 11, 29))  # the day after Thanksgiving: 13:00 New York
    assert early is not None and table.closes[early].strftime("%H:%M") == "18:00"
    summer, winter = table.index(date(2024, 7, 1)), table.index(date(2024, 12, 2))
    assert summer is not None and table.opens[summer].strftime("%H:%M") == "13:30"
    assert winter is not None and table.opens[winter].strftime("%H:%M") == "14:30"


def test_xnys_sessions_before_the_snapshot_come_from_the_library():
    table = xnys_sessions(date(1989, 7, 3))
    assert table.covers(date(1989, 7, 3))
    assert table.index(date(1989, 7, 4)) is None and table.index(date(1989, 7, 5)) is not None
