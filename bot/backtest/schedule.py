"""When the backtest runs a cycle: calendar rebalance days and the next drift day (pure).

Calendars rebalance on the first trading day of each period (bt's ``RunWeekly``/
``RunMonthly``/``RunQuarterly`` convention) plus the first backtest day (the initial
purchase). The daily drift check with price-independent targets is event-driven: the next
day any asset leaves its band is found with ``bot.core.rebalance.drift_mask`` on the
days × assets weight matrix, so the cycle runs only on the days that can trade.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import date
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd

from bot.core.rebalance import RebalancePolicy, drift_mask
from bot.core.risk import below_drawdown_limit
from bot.core.signal import SignalSchedule, is_signal_day
from strategies.estimators import returns_from_closes

Calendar = Literal["daily_drift", "daily", "weekly", "monthly", "quarterly"]
CALENDARS: tuple[str, ...] = ("daily_drift", "daily", "weekly", "monthly", "quarterly")
# The fast drift scan flags a superset of the planner's drift days: its weights come from a
# differently ordered float sum (≤ a few ulps apart), so its bands are widened by this much.
DRIFT_SLACK = 1e-12
_FIRST_SCAN_ROWS = 64


def calendar_rows(dates: pd.DatetimeIndex, calendar: Calendar) -> np.ndarray:
    """Positions in ``dates`` of the first trading day of each day/week/month/quarter.

    Weeks are ISO weeks (Monday start). ``daily_drift`` checks every day. The first date
    is always included (the initial purchase).
    """
    if calendar not in CALENDARS:
        raise ValueError(f"calendar must be one of {', '.join(CALENDARS)}, got {calendar!r}")
    n = len(dates)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if calendar in ("daily", "daily_drift"):
        return np.arange(n, dtype=np.int64)
    if calendar == "weekly":
        iso = dates.isocalendar()
        key = iso["year"].to_numpy(dtype=np.int64) * 100 + iso["week"].to_numpy(dtype=np.int64)
    elif calendar == "monthly":
        key = dates.year.to_numpy(dtype=np.int64) * 100 + dates.month.to_numpy(dtype=np.int64)
    else:
        key = dates.year.to_numpy(dtype=np.int64) * 10 + dates.quarter.to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.diff(key) != 0) + 1
    return np.concatenate([[0], starts]).astype(np.int64)


def held_values(closes: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """qty × close per day and asset; 0 where nothing is held (an unlisted NaN stays out)."""
    held = qty != 0
    values = np.zeros(closes.shape, dtype=np.float64)
    values[:, held] = closes[:, held] * qty[held]
    return values


def next_drift_row(closes: np.ndarray, qty: np.ndarray, cash: float, targets: np.ndarray,
                   policy: RebalancePolicy, first: int) -> int | None:
    """First row ≥ ``first`` of ``closes`` (days × assets) where holdings ``qty`` plus
    ``cash`` leave a band around ``targets`` (same columns), or None.

    Weights are w = qty·close / (cash + Σ qty·close), the planner's definition; the bands
    are the policy's, widened by ``DRIFT_SLACK`` so no day the planner would call drifted
    is skipped (a flagged day the planner finds in band simply trades nothing). Scans in
    doubling chunks so a drift soon after a rebalance costs little.
    """
    n = closes.shape[0]
    row, chunk = first, _FIRST_SCAN_ROWS
    t = targets[np.newaxis, :]
    while row < n:
        stop = min(n, row + chunk)
        values = held_values(closes[row:stop], qty)
        equity = cash + values.sum(axis=1)
        weights = values / equity[:, np.newaxis]
        mask = drift_mask(weights, np.broadcast_to(t, weights.shape), policy.drift_abs,
                          policy.drift_rel)
        # w == 0 iff qty == 0 on both sides, so only held, targeted assets need the slack
        gap = np.abs(weights - t)
        mask |= (t > 0) & (weights > 0) & ((gap > policy.drift_abs - DRIFT_SLACK)
                                           | (gap > policy.drift_rel * t - DRIFT_SLACK))
        hit = np.flatnonzero(mask.any(axis=1))
        if hit.size:
            return row + int(hit[0])
        row, chunk = stop, chunk * 2
    return None


def drawdown_walk(equity: np.ndarray, peak: float, max_drawdown: float | None
                  ) -> tuple[int | None, float]:
    """The drawdown kill switch over days on which nothing trades: each day's cycle would
    raise the recorded ``peak`` to that day's account ``equity`` and halt when equity falls
    ``max_drawdown`` below the peak. Returns the first row that would halt (None: none)
    and the peak recorded by the rows before it. A NaN equity (a held symbol without a
    close: that cycle fails before the kill switch) neither raises the peak nor halts."""
    peaks = np.fmax.accumulate(np.concatenate([[peak], equity]))
    if max_drawdown is not None:
        hit = np.flatnonzero(below_drawdown_limit(equity, peaks[1:], max_drawdown))
        if hit.size:
            return int(hit[0]), float(peaks[hit[0]])
    return None, float(peaks[-1])


def next_signal_row(days: Sequence[date] | np.ndarray, last_signal: date,
                    schedule: SignalSchedule, first: int) -> int | None:
    """First row ≥ ``first`` of ``days`` (the backtest's trading days, sorted; the
    ``DatetimeIndex.date`` object array will do) on which the
    cycle recomputes the strategy after its signal of ``last_signal`` (``is_signal_day``,
    sessions counted as rows after it, as the cycle counts them on its price index), or
    None."""
    last_row = bisect_right(days, last_signal) - 1  # rows dated on or before the signal
    for row in range(first, len(days)):
        if is_signal_day(days[row], last_signal, schedule, row - last_row):
            return row
    return None


def rolling_var(closes: np.ndarray, weights: np.ndarray, lookback_days: int,
                confidence: float, method: str, horizon_days: int) -> np.ndarray:
    """Per row of ``closes`` (days × assets): the ex-ante VaR (horizon ``horizon_days``, √h
    rule) of fixed ``weights`` over the ``lookback_days`` returns ending that row, as the
    risk step (``bot.core.risk``) computes it on a cycle's window — historical: the linear
    quantile; parametric: normal with ddof 1 — on a rolling window (equal to the per-day
    figures up to rounding); NaN where no full window lies behind the row."""
    used = np.flatnonzero(weights != 0)
    returns = returns_from_closes(closes[:, used]) @ weights[used]
    series = pd.Series(returns).rolling(lookback_days, min_periods=lookback_days)
    scale = np.sqrt(horizon_days)
    if method == "historical":
        var = -series.quantile(1 - confidence, interpolation="linear").to_numpy() * scale
    else:
        z = NormalDist().inv_cdf(1 - confidence)
        var = -(series.mean().to_numpy() + series.std(ddof=1).to_numpy() * z) * scale
    return np.concatenate([[np.nan], var])  # row 0 has no return


def var_breach_rows(var: np.ndarray, max_var: float) -> np.ndarray:
    """True where the risk step could scale the weights whose ``rolling_var`` is ``var``
    down, i.e. where their VaR may exceed ``max_var``: flagged with a 1e-9 relative margin
    so that float differences between a rolling and a per-day computation never hide a day
    the cycle would have scaled; rows without a full window are flagged (the cycle
    decides)."""
    return ~(var <= max_var * (1 - 1e-9))
