"""The Alpaca close-price cache (brokers/alpaca_data.py) with a recording fake fetcher."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from brokers.alpaca.data import (
    NEW_YORK,
    CachedDailyCloses,
    DailyCloseCache,
    RawBars,
    closes_from_bars,
    lookback_start,
)
from brokers.errors import BrokerDataError
from tests.conftest import capture_logs


def ny_midnight(day: date) -> datetime:
    """How Alpaca stamps a daily bar: midnight New York, expressed in UTC."""
    return datetime.combine(day, datetime.min.time(), NEW_YORK).astimezone(UTC)


class Venue:
    """Bars keyed by New York date; records every (symbols, start, end) fetched."""

    def __init__(self, closes: pd.DataFrame) -> None:
        self.closes = closes
        self.calls: list[tuple[tuple[str, ...], date, date]] = []

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> RawBars:
        self.calls.append((tuple(symbols), start, end))
        out: dict[str, list[tuple[datetime, float]]] = {}
        for sym in symbols:
            col = self.closes[sym].dropna() if sym in self.closes else pd.Series(dtype=float)
            out[sym] = [
                (ny_midnight(d.date()), float(c))
                for d, c in col.items()
                if start <= d.date() <= end
            ]
        return out


def frame(days: Sequence[str], **cols: Sequence[float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(list(days)), name="date")
    return pd.DataFrame(cols, index=index, dtype=float)


DAYS = ["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13"]  # spans DST


def make(tmp_path: Path, venue: Venue, today: date) -> CachedDailyCloses:
    return CachedDailyCloses(DailyCloseCache(tmp_path, "iex"), venue.fetch, lambda: today)


def test_closes_from_bars_keys_by_new_york_date_across_dst() -> None:
    winter, summer = date(2024, 3, 8), date(2024, 3, 11)  # EST (05:00Z), EDT (04:00Z)
    closes = closes_from_bars({"SPY": [(ny_midnight(winter), 1.0), (ny_midnight(summer), 2.0)]})
    assert [d.date() for d in closes["SPY"].index] == [winter, summer]


def test_closes_from_bars_two_bars_same_day_raises_naming_symbol() -> None:
    stamp = ny_midnight(date(2024, 3, 8))
    with pytest.raises(BrokerDataError, match="two daily bars for SPY on 2024-03-08"):
        closes_from_bars({"SPY": [(stamp, 1.0), (stamp, 1.0)]})


def test_lookback_start_covers_trading_days_with_slack() -> None:
    assert len(pd.bdate_range(lookback_start(date(2024, 12, 31), 252), "2024-12-31")) >= 262


def test_closes_todays_forming_bar_returned_but_never_cached(tmp_path: Path) -> None:
    venue = Venue(frame(DAYS, SPY=[1, 2, 3, 4, 5]))
    today = date(2024, 3, 13)
    first = make(tmp_path, venue, today).closes(["SPY"], date(2024, 3, 7), today)
    assert first["SPY"].iloc[-1] == 5
    venue.closes.loc["2024-03-13", "SPY"] = 5.5  # intraday move
    venue.calls.clear()
    again = make(tmp_path, venue, today).closes(["SPY"], date(2024, 3, 7), today)
    assert again["SPY"].iloc[-1] == 5.5
    assert venue.calls == [(("SPY",), date(2024, 3, 12), today)]  # from the last cached day


def test_closes_symbol_missing_todays_bar_drops_only_today(tmp_path: Path) -> None:
    venue = Venue(frame(DAYS, SPY=[1, 2, 3, 4, 5], DBC=[1, 2, 3, 4, float("nan")]))
    today = date(2024, 3, 13)
    with capture_logs() as logs:
        prices = make(tmp_path, venue, today).closes(["SPY", "DBC"], date(2024, 3, 7), today)
    assert prices.index[-1].date() == date(2024, 3, 12)
    assert [e["missing"] for e in logs if e["event"] == "bars_partial_day_dropped"] == [["DBC"]]


def test_closes_symbol_missing_past_day_raises_naming_symbol_and_date(tmp_path: Path) -> None:
    venue = Venue(frame(DAYS, SPY=[1, 2, 3, 4, 5], DBC=[1, float("nan"), 3, 4, 5]))
    with pytest.raises(BrokerDataError, match="DBC on 2024-03-08"):
        make(tmp_path, venue, date(2024, 6, 1)).closes(
            ["SPY", "DBC"], date(2024, 3, 7), date(2024, 3, 13)
        )


def test_closes_new_symbol_fetched_in_full_others_only_tail(tmp_path: Path) -> None:
    venue = Venue(frame(DAYS, SPY=[1, 2, 3, 4, 5], TLT=[6, 7, 8, 9, 10]))
    today = date(2024, 6, 1)
    make(tmp_path, venue, today).closes(["SPY"], date(2024, 3, 7), date(2024, 3, 11))
    venue.calls.clear()
    prices = make(tmp_path, venue, today).closes(
        ["SPY", "TLT"], date(2024, 3, 7), date(2024, 3, 13)
    )
    assert sorted(venue.calls) == [
        (("SPY",), date(2024, 3, 11), date(2024, 3, 13)),
        (("TLT",), date(2024, 3, 7), date(2024, 3, 13)),
    ]
    assert prices.to_numpy().tolist() == venue.closes.to_numpy().tolist()


def test_closes_corrupt_coverage_file_refetches_everything(tmp_path: Path) -> None:
    venue = Venue(frame(DAYS, SPY=[1, 2, 3, 4, 5]))
    cached = make(tmp_path, venue, date(2024, 6, 1))
    cached.closes(["SPY"], date(2024, 3, 7), date(2024, 3, 13))
    (cached.cache.root / "coverage.json").write_text("{not json")
    venue.calls.clear()
    with capture_logs() as logs:
        prices = cached.closes(["SPY"], date(2024, 3, 7), date(2024, 3, 13))
    assert venue.calls == [(("SPY",), date(2024, 3, 7), date(2024, 3, 13))]
    assert any(e["event"] == "bars_cache_discarded" for e in logs)
    assert prices["SPY"].tolist() == [1, 2, 3, 4, 5]


def test_a_cycle_that_only_refetches_today_leaves_the_cache_files_untouched(tmp_path: Path) -> None:
    """Each open-market cycle asks again for the day not final yet: the cached days did not
    change, so neither do the files (they were rewritten and fsynced on every wake)."""
    venue = Venue(frame(DAYS, SPY=[1, 2, 3, 4, 5]))
    today = date(2024, 3, 13)
    make(tmp_path, venue, today).closes(["SPY"], date(2024, 3, 7), today)
    root = tmp_path / "alpaca-iex"
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    venue.closes.loc["2024-03-13", "SPY"] = 5.5  # today's bar moves; the past does not
    again = make(tmp_path, venue, today).closes(["SPY"], date(2024, 3, 7), today)
    assert again["SPY"].iloc[-1] == 5.5
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before
    later = date(2024, 3, 14)  # a new final day: stored
    venue.closes.loc[pd.Timestamp("2024-03-14"), "SPY"] = 6.0
    make(tmp_path, venue, later).closes(["SPY"], date(2024, 3, 7), later)
    assert (root / "SPY.csv").stat().st_mtime_ns != before["SPY.csv"]
