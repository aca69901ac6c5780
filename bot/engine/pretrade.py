"""The I/O side of the pre-trade guards: gather what the pure checks in
``bot/core/guards.py`` need (the venue's latest trades, the NYSE sessions since the latest
bar, the trading day's earlier turnover from the journal's intents), run them, and log
each breach as ``guard_blocked``. The data guards run before the strategy, the order
guards on the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache

import pandas as pd
import structlog

from bot.core.guards import GuardBreach, GuardLimits, check_data, check_orders
from bot.core.rebalance import PlannedOrder
from bot.engine.journal import Journal
from brokers.base import Broker, TradePriceSource
from brokers.calendar import sessions_after

log = structlog.get_logger("allocbot.guards")


def day_notional_before(journal: Journal, day: date) -> float:
    """Σ|notional| the orders of earlier cycles on ``day`` count toward the day's turnover
    cap (``Journal.day_notional``; 0 on a new day)."""
    return journal.day_notional(day)


def last_bar_date(index: pd.Index) -> date:
    """The date of a daily index's last row (a naive index without building a Timestamp)."""
    if isinstance(index, pd.DatetimeIndex) and index.tz is None:
        last: date = index.values[-1].astype("datetime64[D]").item()  # .values: no copy
        return last
    return pd.Timestamp(index[-1]).date()


def sessions_since(last_bar: date, asof: date) -> int:
    """NYSE sessions after the latest bar up to ``asof`` (0 when the bar is today's)."""
    return 0 if last_bar >= asof else sessions_after(last_bar, asof)


@lru_cache(maxsize=16)
def reports_latest_trades(broker_type: type) -> bool:
    """Whether the broker reports latest trades (a protocol check, once per broker class)."""
    return issubclass(broker_type, TradePriceSource)


def data_guard_breaches(broker: Broker, prices: pd.DataFrame, asof: date,
                        universe: Sequence[str], limits: GuardLimits) -> list[GuardBreach]:
    """The data guards' breaches (stale bars, one-day moves, the venue's trade against the
    bar), each logged as ``guard_blocked``. They run before the strategy: a bar that fails
    them must not become a held signal or an equity peak (a ×100 typo once set a peak 30×
    the account and halted trading for good)."""
    if not limits.enabled or prices.empty:
        return []
    trades: dict[str, float] = {}
    if reports_latest_trades(type(broker)):
        trades = broker.latest_trade_prices(list(universe))  # type: ignore[attr-defined]
    stale = sessions_since(last_bar_date(prices.index), asof)
    return _logged(check_data(prices, stale, trades, limits), [])


def order_guard_breaches(journal: Journal, asof: date, orders: Sequence[PlannedOrder],
                         equity: float, universe: Sequence[str],
                         limits: GuardLimits) -> list[GuardBreach]:
    """The order guards' breaches for a plan, each logged as ``guard_blocked``; any one
    blocks the whole plan."""
    if not limits.enabled:
        return []
    breaches = check_orders(orders, equity, day_notional_before(journal, asof), len(universe),
                            limits)
    return _logged(breaches, [f"{o.side.value} {o.symbol} {o.qty:g}" for o in orders]
                   if breaches else [])


def _logged(breaches: list[GuardBreach], blocked: list[str]) -> list[GuardBreach]:
    for breach in breaches:
        log.warning("guard_blocked", **breach.as_log(), blocked=blocked or "cycle",
                    note="nothing is sent this cycle; see [guards] in the config")
    return breaches
