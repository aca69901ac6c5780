"""Pre-trade guards (pure): checks on the data and on the planner's orders that block a
cycle before anything is sent.

Any breach blocks the whole cycle: no order of the plan is sent (dropping only the
offending order would send a partial rebalance, which is surprising, and could leave buys
without the cash of a dropped sell). The cycle logs each breach as ``guard_blocked``.

Data guards: the latest bar is older than ``max_stale_sessions`` NYSE sessions; a one-day
move beyond ``max_daily_move`` or beyond ``max_move_sigmas`` standard deviations of the
previous ``move_lookback_days`` daily returns (a split in "adjusted" data looks like a
−50 % day); the latest bar disagrees with the venue's latest trade by more than
``max_trade_price_deviation``. Order guards: one order above ``max_order_fraction`` of
equity; the plan's turnover (Σ|notional| / equity) above ``max_turnover_per_cycle``, or
with the same trading day's earlier turnover above ``max_turnover_per_day``; more orders
than ``max_orders_per_cycle`` (default: one per universe symbol, which the planner never
exceeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from strategies.estimators import returns_from_closes

if TYPE_CHECKING:  # (the planner's module is ~9 ms of `allocbot weights`' start)
    from bot.core.rebalance import PlannedOrder


class Guard(StrEnum):
    """The guard names, as ``guard_blocked`` events and ``[guards]`` keys give them."""

    STALE_DATA = "max_stale_sessions"
    DAILY_MOVE = "max_daily_move"
    MOVE_SIGMAS = "max_move_sigmas"
    TRADE_PRICE = "max_trade_price_deviation"
    ORDER_NOTIONAL = "max_order_fraction"
    TURNOVER_CYCLE = "max_turnover_per_cycle"
    TURNOVER_DAY = "max_turnover_per_day"
    ORDER_COUNT = "max_orders_per_cycle"


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The ``[guards]`` section; see ``config.toml`` for each default and why.

    Fractions are of equity (1.0 = 100 %); moves are simple daily returns.
    """

    enabled: bool = True
    max_order_fraction: float = 1.0
    max_turnover_per_cycle: float = 2.05
    max_turnover_per_day: float = 3.0
    max_orders_per_cycle: int | None = None
    max_stale_sessions: int = 1
    max_daily_move: float = 0.30
    max_move_sigmas: float = 20.0
    move_lookback_days: int = 63
    max_trade_price_deviation: float = 0.10


@dataclass(frozen=True, slots=True)
class GuardBreach:
    """One breach: which guard, its limit, the value seen, and where (symbol or plan)."""

    guard: Guard
    limit: float
    value: float
    subject: str  # the symbol, order or "plan" the value belongs to

    def as_log(self) -> dict[str, object]:
        return {"guard": str(self.guard), "limit": self.limit,
                "value": round(self.value, 6), "subject": self.subject}


def check_data(prices: pd.DataFrame, sessions_since_last_bar: int,
               trade_prices: Mapping[str, float], limits: GuardLimits) -> list[GuardBreach]:
    """Breaches of the data guards for a close-price window (last row = latest bar).

    Args:
        prices: wide daily closes, the as-of (latest) row last.
        sessions_since_last_bar: NYSE sessions after the latest bar's date up to today.
        trade_prices: the venue's latest trade per symbol (may be empty or partial).
    """
    if not limits.enabled or prices.empty:
        return []
    out: list[GuardBreach] = []
    if sessions_since_last_bar > limits.max_stale_sessions:
        out.append(GuardBreach(Guard.STALE_DATA, limits.max_stale_sessions,
                               sessions_since_last_bar, f"latest bar {prices.index[-1].date()}"))
    out += _move_breaches(prices, limits)
    if not trade_prices:  # the simulator reports none
        return out
    last = prices.to_numpy(dtype=float)[-1]
    column = {str(c): j for j, c in enumerate(prices.columns)}
    for symbol, trade in sorted(trade_prices.items()):
        bar = float(last[column[symbol]]) if symbol in column else math.nan
        if not (math.isfinite(bar) and bar > 0 and math.isfinite(trade) and trade > 0):
            continue
        gap = abs(trade / bar - 1.0)
        if gap > limits.max_trade_price_deviation:
            out.append(GuardBreach(Guard.TRADE_PRICE, limits.max_trade_price_deviation, gap,
                                   f"{symbol} bar {bar:g} vs trade {trade:g}"))
    return out


def _move_breaches(prices: pd.DataFrame, limits: GuardLimits) -> list[GuardBreach]:
    """Latest one-day move per symbol against a fixed fraction and k σ of the lookback
    (sample standard deviation, ddof 1, of the previous ``move_lookback_days`` returns;
    σ needs at least 10 of them)."""
    if len(prices) < 2:
        return []
    closes = prices.to_numpy(dtype=float)[-(limits.move_lookback_days + 2):]
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = returns_from_closes(closes)
        latest, past = np.abs(returns[-1]), returns[:-1]
        seen = np.isfinite(past)
        if seen.all():  # a full window (the usual case): the same sums, no masking
            count = np.full(past.shape[1], past.shape[0])
            mean = past.sum(axis=0) / count
            var = ((past - mean) ** 2).sum(axis=0) / (count - 1)
        else:
            count = seen.sum(axis=0)
            mean = np.where(seen, past, 0.0).sum(axis=0) / count
            var = np.where(seen, (past - mean) ** 2, 0.0).sum(axis=0) / (count - 1)
        sigmas = latest / np.sqrt(var)
        flagged = np.isfinite(latest) & (
            (latest > limits.max_daily_move)
            | ((count >= 10) & (var > 0) & (sigmas > limits.max_move_sigmas)))
    out: list[GuardBreach] = []
    for j in np.flatnonzero(flagged):
        symbol, move = str(prices.columns[j]), float(latest[j])
        if move > limits.max_daily_move:
            out.append(GuardBreach(Guard.DAILY_MOVE, limits.max_daily_move, move, symbol))
        else:
            out.append(GuardBreach(Guard.MOVE_SIGMAS, limits.max_move_sigmas, float(sigmas[j]),
                                   symbol))
    return out


def moves_beyond_limit(prices: pd.DataFrame, limits: GuardLimits) -> list[tuple[str, str, float]]:
    """(symbol, date, move) of every one-day move in ``prices`` beyond ``max_daily_move``,
    largest first: the bad prints the data guard would block a cycle on (a backtest marks
    its books at these closes all the same, so it says so up front)."""
    if not limits.enabled or len(prices) < 2:
        return []
    closes = prices.to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        moves = returns_from_closes(closes)
        rows, cols = np.nonzero(np.abs(np.nan_to_num(moves)) > limits.max_daily_move)
    found = [(str(prices.columns[j]), str(prices.index[i + 1].date()), float(moves[i, j]))
             for i, j in zip(rows.tolist(), cols.tolist(), strict=True)]
    return sorted(found, key=lambda m: -abs(m[2]))


def move_suspect_rows(closes: np.ndarray, limits: GuardLimits) -> np.ndarray:
    """Per row of a days × symbols close array, whether ``_move_breaches`` may flag that row
    as the latest bar: a superset (σ from running sums, compared at 0.9 × the limit), for
    the backtest's drift scan, which gives such days a full cycle and lets it decide."""
    flagged = np.zeros(len(closes), dtype=bool)
    if not limits.enabled or len(closes) < 2:
        return flagged
    window = limits.move_lookback_days
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = returns_from_closes(closes)  # row t − 1: the return into row t
        seen = np.isfinite(returns)
        values = np.where(seen, returns, 0.0)
        sums = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
        squares = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values ** 2, axis=0)])
        counts = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(seen, axis=0)])
        end = np.arange(len(returns))  # returns before index ``end``: the window of row end
        start = np.maximum(end - window, 0)
        count = counts[end] - counts[start]
        mean = (sums[end] - sums[start]) / count
        var = ((squares[end] - squares[start]) - count * mean ** 2) / (count - 1)
        latest = np.abs(returns)
        sigmas = latest / np.sqrt(np.maximum(var, 0.0))
        rows = seen & ((latest > limits.max_daily_move)
                       | ((count >= 10) & (sigmas > 0.9 * limits.max_move_sigmas)))
    flagged[1:] = rows.any(axis=1)
    return flagged


def check_orders(orders: Sequence[PlannedOrder], equity: float, day_notional_before: float,
                 universe_size: int, limits: GuardLimits) -> list[GuardBreach]:
    """Breaches of the order guards for a plan.

    Args:
        orders: the planner's orders for this cycle.
        equity: account currency, the planner's equity (cash + holdings at planning prices).
        day_notional_before: account currency, Σ|notional| of the orders earlier cycles
            of the same trading day sent (from the journal).
        universe_size: symbols the bot manages (the default order-count limit).
    """
    if not limits.enabled or not orders or equity <= 0:
        return []
    out: list[GuardBreach] = []
    notionals = [o.notional for o in orders]
    # x ↦ x / equity is monotonic (equity > 0): the largest order tells whether any breaches
    for order in orders if max(notionals) / equity > limits.max_order_fraction else ():
        fraction = order.notional / equity
        if fraction > limits.max_order_fraction:
            out.append(GuardBreach(Guard.ORDER_NOTIONAL, limits.max_order_fraction, fraction,
                                   f"{order.side.value} {order.symbol}"))
    notional = sum(notionals)
    if notional / equity > limits.max_turnover_per_cycle:
        out.append(GuardBreach(Guard.TURNOVER_CYCLE, limits.max_turnover_per_cycle,
                               notional / equity, "plan"))
    day = (day_notional_before + notional) / equity
    if day > limits.max_turnover_per_day:
        out.append(GuardBreach(Guard.TURNOVER_DAY, limits.max_turnover_per_day, day, "plan"))
    max_orders = limits.max_orders_per_cycle or universe_size
    if len(orders) > max_orders:
        out.append(GuardBreach(Guard.ORDER_COUNT, max_orders, len(orders), "plan"))
    return out
