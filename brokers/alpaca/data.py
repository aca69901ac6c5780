"""Daily adjusted closes from Alpaca bars, cached on disk so each cycle fetches only the tail.

Alpaca stamps a daily bar at midnight New York time, expressed in UTC; we key closes by
that New York date. The cache holds, per feed, one ``<SYMBOL>.csv`` (``date,close``) and a
``coverage.json`` recording the date range fetched completely for each symbol. Because
``adjustment="all"`` rewrites past prices after a split or dividend, every tail fetch
re-reads the last cached day: if its close changed, that symbol is refetched in full.
Today's bar (still forming) is returned but never cached.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import structlog

from brokers.base import EXCHANGE_TZ, validate_price_frame
from brokers.errors import BrokerDataError
from strategies.estimators import ANNUALIZATION_DAYS as TRADING_DAYS_PER_YEAR

log = structlog.get_logger("brokers.alpaca")

NEW_YORK = EXCHANGE_TZ
_OVERLAP_REL_TOL = 1e-6

RawBars = Mapping[str, Sequence[tuple[datetime, float]]]
"""symbol → [(bar timestamp, aware), close]: what one bars request returned."""

BarFetcher = Callable[[Sequence[str], date, date], RawBars]
"""Fetch daily bars for symbols over [start, end] (New York dates, inclusive)."""


def lookback_start(end: date, lookback_days: int) -> date:
    """First calendar date to request so that ``lookback_days`` trading days end at ``end``:
    252 trading days per 365 calendar days, plus 10 days of slack for holidays."""
    return end - timedelta(days=math.ceil(lookback_days * 365 / TRADING_DAYS_PER_YEAR) + 10)


def closes_from_bars(bars: RawBars) -> dict[str, pd.Series]:
    """Turn raw bars into per-symbol close series indexed by New York exchange date."""
    out: dict[str, pd.Series] = {}
    for symbol, rows in bars.items():
        if not rows:
            continue
        days = [pd.Timestamp(ts.astimezone(NEW_YORK).date()) for ts, _ in rows]
        series = pd.Series([float(c) for _, c in rows], index=pd.DatetimeIndex(days), name=symbol)
        dup = series.index[series.index.duplicated()]
        if len(dup):
            raise BrokerDataError(f"alpaca bars: two daily bars for {symbol} on {dup[0].date()}")
        out[symbol] = series.sort_index()
    return out


class DailyCloseCache:
    """Files under ``cache_dir/alpaca-<feed>/``: one CSV per symbol and ``coverage.json``."""

    def __init__(self, cache_dir: Path, feed: str) -> None:
        self.root = Path(cache_dir) / f"alpaca-{feed}"

    def _csv(self, symbol: str) -> Path:
        return self.root / f"{symbol.replace('/', '_')}.csv"

    def coverage(self) -> dict[str, tuple[date, date]]:
        path = self.root / "coverage.json"
        if not path.exists():
            return {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return {s: (date.fromisoformat(a), date.fromisoformat(b)) for s, (a, b) in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("bars_cache_discarded", path=str(path), reason=str(exc))
            with contextlib.suppress(OSError):  # once: the next store writes it afresh
                path.unlink()
            return {}

    def load(self, symbol: str) -> pd.Series:
        """The symbol's cached closes (empty when none are cached). A file that cannot be read
        as this cache writes it (empty, truncated, binary or text junk, a power loss's zero
        bytes) is discarded: ``bars_cache_discarded`` names it and why, the file is removed and
        its coverage forgotten, so the closes are fetched again instead of every cycle failing."""
        path = self._csv(symbol)
        empty = pd.Series(dtype=float, index=pd.DatetimeIndex([]), name=symbol)
        if not path.exists():
            return empty
        try:
            frame = pd.read_csv(path, parse_dates=["date"], index_col="date", date_format="ISO8601",
                                encoding="utf-8")
            closes = frame["close"].astype(float).rename(symbol)
            problem = _cache_file_problem(closes)
        except (OSError, ValueError, KeyError) as exc:  # pandas' parser errors are ValueErrors
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return empty if closes.empty else closes  # a header alone: no closes yet
        log.warning("bars_cache_discarded", path=str(path), reason=problem)
        # an unwritable cache dir must not fail the cycle here: the next store replaces both
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            self.forget(symbol)
        return empty

    def forget(self, symbol: str) -> None:
        """Drop the symbol from ``coverage.json``: its closes are fetched again in full."""
        coverage = self.coverage()
        if symbol in coverage:
            del coverage[symbol]
            self._write_coverage(coverage)

    def store(self, symbol: str, closes: pd.Series, covered: tuple[date, date]) -> None:
        """Write the symbol's closes and its fully-fetched range (atomically, via rename;
        the closes reach the disk before the coverage that vouches for them)."""
        self.root.mkdir(parents=True, exist_ok=True)
        frame = closes.rename("close").to_frame()
        frame.index.name = "date"
        _write_atomic(self._csv(symbol), frame.to_csv())
        coverage = self.coverage()
        coverage[symbol] = covered
        self._write_coverage(coverage)

    def _write_coverage(self, coverage: Mapping[str, tuple[date, date]]) -> None:
        cov = {s: (a.isoformat(), b.isoformat()) for s, (a, b) in coverage.items()}
        _write_atomic(self.root / "coverage.json", json.dumps(cov, indent=1, sort_keys=True))


def _cache_file_problem(closes: pd.Series) -> str | None:
    """Why closes read from a cache file are not what ``store`` writes, or None."""
    index = closes.index
    if closes.empty:
        return None
    if not isinstance(index, pd.DatetimeIndex) or index.hasnans:
        return "a row whose date is not a date"
    if not index.is_unique or not index.is_monotonic_increasing:
        return "dates out of order or repeated"
    bad = ~np.isfinite(closes.to_numpy())
    if bad.any():
        return f"no close on {index[bad][0].date()}"
    return None


def _write_atomic(path: Path, text: str) -> None:
    """Write through a unique temporary file in the same directory, fsync it, then
    ``os.replace`` and fsync the directory: readers see the old or the new file, two writers
    never share a temporary name, and a power loss cannot leave a renamed but empty file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename's durability; not every filesystem can
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class CachedDailyCloses:
    """Daily closes for any date range, fetching only what ``DailyCloseCache`` lacks."""

    def __init__(
        self,
        cache: DailyCloseCache,
        fetch: BarFetcher,
        today_ny: Callable[[], date],
        source: str = "alpaca bars",
    ) -> None:
        """``today_ny``: the current New York date (its bar is still forming); ``source``
        names the data in error messages (e.g. with the feed)."""
        self.cache = cache
        self._fetch = fetch
        self._today_ny = today_ny
        self.source = source

    def closes(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """Wide frame of closes on [start, end] (one column per symbol, in the given order).

        Raises ``BrokerDataError`` naming any symbol with no bars in the range, or (via
        ``validate_price_frame``) a symbol missing a day the others have.
        """
        today = self._today_ny()
        cutoff = min(end, today - timedelta(days=1))  # last date final enough to cache
        loaded = {symbol: self.cache.load(symbol) for symbol in symbols}  # may forget coverage
        coverage = self.cache.coverage()
        series: dict[str, pd.Series] = {}
        requests: dict[tuple[date, date], list[str]] = {}
        for symbol in symbols:
            cached = loaded[symbol]
            span = coverage.get(symbol)
            if span is None or cached.empty or start < span[0]:
                lo, hi = (start, end) if span is None else (min(start, span[0]), max(end, span[1]))
                requests.setdefault((lo, hi), []).append(symbol)
                series[symbol] = cached.iloc[0:0]
            elif end > span[1]:
                requests.setdefault((cached.index[-1].date(), end), []).append(symbol)
                series[symbol] = cached
            else:
                series[symbol] = cached
        refetch: dict[tuple[date, date], list[str]] = {}
        for (lo, hi), group in requests.items():
            fetched = closes_from_bars(self._fetch(group, lo, hi))
            for symbol in group:
                new = fetched.get(symbol, pd.Series(dtype=float, index=pd.DatetimeIndex([])))
                old = series[symbol]
                if not old.empty and not _overlap_matches(old, new):
                    log.info(
                        "bars_cache_invalidated", symbol=symbol, reason="adjusted close changed"
                    )
                    full = (min(start, coverage[symbol][0]), max(end, coverage[symbol][1]))
                    refetch.setdefault(full, []).append(symbol)
                    continue
                series[symbol] = self._merge_and_store(symbol, old, new, lo, cutoff, coverage)
        for (lo, hi), group in refetch.items():
            fetched = closes_from_bars(self._fetch(group, lo, hi))
            for symbol in group:
                new = fetched.get(symbol, pd.Series(dtype=float, index=pd.DatetimeIndex([])))
                series[symbol] = self._merge_and_store(symbol, new.iloc[0:0], new, lo, cutoff, {})
        return self._assemble(symbols, series, start, end, today)

    def _merge_and_store(
        self,
        symbol: str,
        old: pd.Series,
        new: pd.Series,
        fetched_from: date,
        cutoff: date,
        coverage: Mapping[str, tuple[date, date]],
    ) -> pd.Series:
        merged = pd.concat([old[~old.index.isin(new.index)], new]).sort_index().rename(symbol)
        span = coverage.get(symbol)
        covered_from = fetched_from if span is None or old.empty else min(span[0], fetched_from)
        covered_to = cutoff if span is None or old.empty else max(span[1], cutoff)
        if covered_from <= covered_to:
            keep = merged[merged.index <= pd.Timestamp(covered_to)]
            # a cycle re-fetches the day not final yet: the file changes only when the
            # cached days do (it was rewritten, fsynced, on every open-market wake)
            if span != (covered_from, covered_to) or not keep.equals(old):
                self.cache.store(symbol, keep, (covered_from, covered_to))
        return merged

    def _assemble(
        self,
        symbols: Sequence[str],
        series: Mapping[str, pd.Series],
        start: date,
        end: date,
        today: date,
    ) -> pd.DataFrame:
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        window = {s: series[s][(series[s].index >= lo) & (series[s].index <= hi)] for s in symbols}
        empty = [s for s in symbols if window[s].empty]
        if empty:
            raise BrokerDataError(
                f"{self.source}: no daily bars for {', '.join(empty)} between {start} and "
                f"{end} (check the symbol and the data feed)"
            )
        frame = pd.concat([window[s].rename(s) for s in symbols], axis=1).sort_index()
        frame.index = pd.DatetimeIndex(frame.index, name="date").as_unit("us")  # as read_csv
        frame.columns = list(symbols)
        frame = frame.astype(float)
        last = frame.index[-1]
        if last.date() >= today and frame.iloc[-1].isna().any():
            # Today's bars are still forming; a symbol without a trade yet on this feed
            # would read as a gap. Plan on the last complete day instead, and say so.
            missing = [str(s) for s in frame.columns[frame.iloc[-1].isna()]]
            log.warning("bars_partial_day_dropped", date=str(last.date()), missing=missing)
            frame = frame.iloc[:-1]
        return validate_price_frame(frame, self.source)


def _overlap_matches(old: pd.Series, new: pd.Series) -> bool:
    """True when the refetched bar for the last cached day has the cached close."""
    last_day = old.index[-1]
    if last_day not in new.index:
        return False
    a, b = float(old.iloc[-1]), float(new.loc[last_day])
    return abs(a - b) <= _OVERLAP_REL_TOL * max(abs(a), abs(b))
