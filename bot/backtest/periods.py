"""Returns over periods: drawdown episodes, calendar months and years, rolling windows.

Pure functions of a daily equity curve (``pd.Series`` indexed by trading day) or its simple
daily returns; 252 trading days a year; the risk-free rate an annual rate compounded daily
(as ``bot.backtest.metrics``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from bot.backtest.metrics import daily_risk_free
from strategies.estimators import ANNUALIZATION_DAYS

ROLLING_WINDOWS_DAYS = (126, 252)  # 6 and 12 months of trading days


@dataclass(frozen=True, slots=True)
class DrawdownPeriod:
    """One fall from a running peak and its way back (pyfolio's drawdown table).

    ``start`` is the peak day, ``trough`` the lowest day, ``recovery`` the first day the
    equity is back at or above the peak (None: not recovered by the last day); ``depth`` the
    fall at the trough as a positive fraction of the peak; ``length_days`` the trading days
    from the peak to the recovery (or to the last day when not recovered).
    """

    start: date
    trough: date
    recovery: date | None
    depth: float
    length_days: int

    def as_dict(self) -> dict[str, object]:
        return {"start": str(self.start), "trough": str(self.trough),
                "recovery": str(self.recovery) if self.recovery else None,
                "depth": self.depth, "length_days": self.length_days}


def worst_drawdowns(equity: pd.Series, count: int = 5) -> list[DrawdownPeriod]:
    """The ``count`` deepest drawdown periods, deepest first (ties: earlier first). Periods do
    not overlap: each runs from a running peak to its recovery."""
    e = equity.to_numpy(dtype=float)
    if len(e) < 2:
        return []
    peak = np.maximum.accumulate(e)
    under = e < peak
    edges = np.flatnonzero(np.diff(np.concatenate([[0], under.astype(np.int8), [0]])))
    days = equity.index
    periods = []
    for first, end in zip(edges[::2], edges[1::2], strict=True):  # under on [first, end)
        start_row = first - 1  # the peak day
        trough_row = first + int(np.argmin(e[first:end] / peak[first:end]))
        recovered = end < len(e)
        periods.append(DrawdownPeriod(
            start=days[start_row].date(), trough=days[trough_row].date(),
            recovery=days[end].date() if recovered else None,
            depth=float(1.0 - e[trough_row] / peak[trough_row]),
            length_days=int((end if recovered else len(e) - 1) - start_row)))
    periods.sort(key=lambda p: (-p.depth, p.start))
    return periods[:count]


def _period_returns(equity: pd.Series, freq: str) -> pd.Series:
    """Compound return of each calendar period: last equity of the period over the last of
    the one before (the first period from the first day's equity)."""
    ends = equity.groupby(equity.index.to_period(freq)).last()
    before = ends.shift(1)
    before.iloc[0] = equity.iloc[0]
    return ends / before - 1.0


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Years × months (1..12) table of calendar-month returns (NaN where no data)."""
    monthly = _period_returns(equity, "M")
    table = pd.DataFrame({"year": monthly.index.year, "month": monthly.index.month,
                          "ret": monthly.to_numpy()})
    return table.pivot(index="year", columns="month", values="ret").reindex(
        columns=range(1, 13))


def yearly_returns(equity: pd.Series) -> pd.Series:
    """Calendar-year returns indexed by year (the first and last years may be partial)."""
    yearly = _period_returns(equity, "Y")
    return pd.Series(yearly.to_numpy(), index=yearly.index.year, name="return")


def rolling_sharpe(returns: pd.Series, window_days: int, rate_annual: float) -> pd.Series:
    """Sharpe of each trailing window: mean(r − rf_d) / σ(r − rf_d, ddof = 1) × √252."""
    x = returns - daily_risk_free(rate_annual)
    roll = x.rolling(window_days)
    sd = roll.std(ddof=1)
    return (roll.mean() / sd.where(sd > 0)) * math.sqrt(ANNUALIZATION_DAYS)


def rolling_volatility(returns: pd.Series, window_days: int) -> pd.Series:
    """σ(r, ddof = 1) × √252 over each trailing window."""
    return returns.rolling(window_days).std(ddof=1) * math.sqrt(ANNUALIZATION_DAYS)


def turnover_and_costs(trades: pd.DataFrame, equity: pd.Series) -> pd.DataFrame:
    """Per month: one-sided turnover (Σ |traded| / 2 / the trade day's equity) and costs paid
    (commission + qty × |fill − close|), in account currency; months without trades are 0."""
    months = equity.index.to_period("M").unique()
    if trades.empty:
        return pd.DataFrame({"turnover": 0.0, "costs": 0.0}, index=months)
    day = pd.DatetimeIndex(trades["date"])
    qty = trades["qty"].to_numpy(dtype=float)
    price = trades["price"].to_numpy(dtype=float)
    cost = trades["commission"].to_numpy(dtype=float) + qty * np.abs(
        price - trades["close"].to_numpy(dtype=float))
    traded = pd.Series(qty * price / 2.0, index=day) / equity.reindex(day).to_numpy()
    frame = pd.DataFrame({"turnover": traded.to_numpy(), "costs": cost},
                         index=day.to_period("M"))
    return frame.groupby(level=0).sum().reindex(months, fill_value=0.0)
