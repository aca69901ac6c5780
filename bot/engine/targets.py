"""Steps 4–5 of the cycle: the strategy's targets and the risk step on them.

On signal days (``bot.core.signal``) the strategy recomputes its weights from the price
history (and, for cost-aware strategies, the portfolio's current weights); between them
the last signal's weights are kept in the journal, so a restart changes nothing. The risk
step runs on every cycle either way: a VaR limit reacts to today's returns window.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import structlog

from bot.core.risk import RiskDecision, RiskLimits, apply_risk_limits
from bot.core.signal import EVERY_DAY, SignalSchedule, is_signal_day
from strategies import Strategy
from strategies.errors import InputDataError, StateError, StrategyError

if TYPE_CHECKING:  # `allocbot weights` needs steps 4–5 without the journal's SQLite
    from bot.config import Config
    from bot.engine.journal import Journal

log = structlog.get_logger("allocbot.targets")
SIGNAL_KEY = "signal"  # journal meta: {"asof", "strategy", "weights"} of the last signal


@dataclass(frozen=True, slots=True)
class TargetRules:
    """What steps 4–5 need besides the data: universe, exclusions, limits, signal schedule."""

    universe: tuple[str, ...]
    limits: RiskLimits
    signal: SignalSchedule = EVERY_DAY
    excluded: tuple[str, ...] = ()


def history_rows_needed(strategy: Strategy, limits: RiskLimits) -> int:
    """Price rows, the trading day's own included, a cycle needs: the strategy's warm-up
    and the risk step's ``lookback_days`` returns (the backtest's first day has as many)."""
    return max(strategy.warmup_days, limits.lookback_days) + 1


def check_history_rows(prices: pd.DataFrame, strategy: Strategy, limits: RiskLimits,
                       source: str) -> None:
    """Refuse a price history shorter than ``history_rows_needed``: on fewer rows the
    strategy and the VaR would be estimated on whatever days there are (a 252-day momentum
    ranked on 29 returns, a VaR from 2 returns that can be negative), and orders sent."""
    needed = history_rows_needed(strategy, limits)
    if len(prices) < needed:
        asof = f" up to {prices.index[-1].date()}" if len(prices) else ""
        raise InputDataError(
            f"{source} has {len(prices)} price rows{asof}; strategy {strategy.name!r} "
            f"(warm-up {strategy.warmup_days} rows) and the risk step ([risk].lookback_days "
            f"= {limits.lookback_days}) need {needed}: trade from a later day, or shorten "
            "the lookbacks")


def risk_limits(cfg: Config) -> RiskLimits:
    """The risk step's limits from ``[risk]``."""
    k = cfg.risk
    return RiskLimits(max_var=k.max_var, confidence=k.confidence, method=k.method,
                      horizon_days=k.horizon_days, lookback_days=k.lookback_days,
                      max_weight=k.max_weight, safe_asset=k.safe_asset)


def strategy_weights(strategy: Strategy, prices: pd.DataFrame, universe: tuple[str, ...],
                     excluded: tuple[str, ...] = (),
                     current_weights: pd.Series | None = None,
                     risk_lookback_days: int | None = None) -> pd.Series:
    """The strategy's weights over the universe (0 where it puts nothing). Excluded symbols
    are hidden from it, so their weight is never assigned (and a holding is sold); so is a
    symbol listed too recently for the risk step's window of ``risk_lookback_days``
    returns (``asset_excluded``): the VaR of a weight on it cannot be measured, and every
    cycle would fail until it could (a year, for a new ETF under a 252-day window)."""
    recent = _too_recent(prices, excluded, risk_lookback_days)
    hidden = list(excluded) + recent
    visible = prices.drop(columns=hidden) if hidden else prices
    try:
        raw = strategy.target_weights(visible, current_weights)
    except StrategyError as exc:
        if not recent:
            raise
        # its message says a symbol it names has no price (a view's, the safe asset): say
        # why, or the user looks for a missing column that is there
        raise StrategyError(
            f"{exc} ({', '.join(recent)}: hidden from the strategy today, listed too "
            f"recently for the risk step's {risk_lookback_days}-day window; see "
            "asset_excluded)") from None
    if not hidden and tuple(raw.index.tolist()) == universe:  # the usual case
        return raw
    return raw.reindex(list(universe), fill_value=0.0)  # a NaN of its own stays: refused


def _too_recent(prices: pd.DataFrame, excluded: tuple[str, ...],
                risk_lookback_days: int | None) -> list[str]:
    """Symbols with a price today but a gap in the risk step's window (not listed yet at
    its start), each logged as ``asset_excluded``."""
    if risk_lookback_days is None:
        return []
    values = prices.to_numpy(dtype=float)
    short = _window_start_gaps(values, risk_lookback_days) & ~np.isnan(values[-1])
    if not short.any():
        return []
    names = [str(c) for c in prices.columns[short] if str(c) not in excluded]
    for symbol in names:
        log.warning("asset_excluded", symbol=symbol, asof=str(prices.index[-1].date()),
                    reason="listed too recently for the risk step's window",
                    rows_needed=risk_lookback_days + 1,
                    rows=int(np.count_nonzero(~np.isnan(prices[symbol].to_numpy()))))
    return names


def risk_checked_targets(strategy: Strategy, prices: pd.DataFrame, universe: tuple[str, ...],
                         limits: RiskLimits, excluded: tuple[str, ...] = (),
                         current_weights: pd.Series | None = None,
                         ) -> tuple[pd.Series, RiskDecision]:
    """Steps 4–5, pure, on a signal day: the strategy's weights and the risk step's
    decision on them. ``allocbot weights`` shows exactly this."""
    weights = strategy_weights(strategy, prices, universe, excluded, current_weights,
                               limits.lookback_days)
    return weights, apply_risk_limits(weights, prices, limits)


def _window_start_gaps(values: np.ndarray, risk_lookback_days: int) -> np.ndarray:
    """Per column, no price at the first row of the risk step's window of
    ``risk_lookback_days`` returns. A gap can only lead (price data refuses a NaN after a
    symbol's first price), so that row tells which symbols the window does not cover."""
    return np.isnan(values[-(risk_lookback_days + 1):][0])


def _held_outside_risk_window(weights: pd.Series, prices: pd.DataFrame,
                              risk_lookback_days: int | None) -> bool:
    """Whether a held weight sits on a symbol the risk step's window does not cover
    (listed later): its VaR cannot be measured, and the risk step refused the held signal
    on every cycle until the next signal day."""
    if risk_lookback_days is None:
        return False
    gaps = _window_start_gaps(prices.to_numpy(dtype=float), risk_lookback_days)
    if not gaps.any():  # (the usual case: every symbol covers the window)
        return False
    aligned = weights.reindex(prices.columns, fill_value=0.0).to_numpy(dtype=float)
    return bool(gaps[aligned != 0].any())


def _strategy_key(strategy: Strategy) -> str:
    """Changes when the strategy or its parameters change (the held weights are then stale)."""
    return hashlib.sha256(repr(strategy).encode()).hexdigest()[:16]


@lru_cache(maxsize=16)
def _symbol_set(universe: tuple[str, ...]) -> frozenset[str]:
    return frozenset(universe)


def _memo(asof: date, key: str, weights: pd.Series, seen: tuple[str, ...]
          ) -> dict[str, Any]:
    """The signal memo: its day, the strategy's key, the symbols it could hold (``seen``)
    and the non-zero weights at full precision (JSON in the journal; the backtest's
    journal keeps the object)."""
    values = weights.to_numpy(dtype=float).tolist()
    return {"asof": asof.isoformat(), "strategy": key, "universe": list(seen),
            "weights": {str(s): w for s, w in zip(weights.index.tolist(), values, strict=True)
                        if w != 0}}


@lru_cache(maxsize=16)
def _seen_symbols(universe: tuple[str, ...], excluded: tuple[str, ...]) -> tuple[str, ...]:
    """The symbols the strategy may weigh: the universe less ``[universe].exclude``."""
    return tuple(s for s in universe if s not in excluded)


def _sessions_after(index: pd.Index, last: date) -> int:
    """Rows of a sorted daily index dated after ``last`` (one binary search)."""
    if isinstance(index, pd.DatetimeIndex) and index.tz is None:  # the usual daily index
        values = index.values  # datetime64 in the index's own unit (no copy)
        stamp = np.datetime64(last).astype(values.dtype)
        return len(index) - int(np.searchsorted(values, stamp, side="right"))
    return len(index) - int(index.searchsorted(pd.Timestamp(last), side="right"))


def _memo_parts(journal: Journal, memo: Any) -> tuple[date, dict[str, Any]]:
    """The memo's signal date and weights; a memo of another shape (a hand edit) raises
    ``Journal.corrupt_meta``'s error (``_memo_weights`` checks the weights' values)."""
    try:
        last, held, strategy = date.fromisoformat(memo["asof"]), memo["weights"], memo["strategy"]
    except (KeyError, TypeError, ValueError):
        held = strategy = None
    if isinstance(held, dict) and isinstance(strategy, str):
        return last, held
    raise _bad_memo(journal)


def _memo_weights(journal: Journal, held: dict[str, Any], universe: tuple[str, ...]
                  ) -> pd.Series:
    """The memo's weights over the universe: it lists the non-zero ones, every other
    symbol is at 0 (a NaN or infinite value stays one, for the risk step to refuse)."""
    try:
        weights = pd.Series(held, dtype=float)
    except (TypeError, ValueError):
        raise _bad_memo(journal) from None
    return weights.reindex(list(universe), fill_value=0.0)


def _bad_memo(journal: Journal) -> StateError:
    return journal.corrupt_meta(SIGNAL_KEY, 'is not a signal memo {"asof": ISO date, '
                                '"strategy": key, "weights": {symbol: fraction}}')


def _checked_memo(journal: Journal, key: str, rules: TargetRules
                  ) -> tuple[date | None, dict[str, Any] | None, str]:
    """The journal's last signal: its date (None: no signal yet), its non-zero weights by
    symbol when they may be held (else None: recompute) and, then, why not
    (``signal_recomputed``'s reason). They may be held when the signal is the strategy
    ``key``'s, names only universe symbols and was computed over the symbols the strategy
    sees now, in any order. A symbol excluded or let back in since changes what the
    strategy would hold: keeping the signal parked an excluded symbol's weight in cash,
    and sold a re-admitted one, until the next signal day. (A memo from before the symbols
    were recorded is kept.)"""
    memo = journal.meta_json(SIGNAL_KEY)
    if memo is None:
        return None, None, "no_signal_yet"
    last, held = _memo_parts(journal, memo)
    if memo["strategy"] != key:
        return last, None, "strategy_changed"
    if not _symbol_set(rules.universe).issuperset(held):
        return last, None, "universe_changed"
    seen = memo.get("universe")  # (as a set: listing the same symbols in another order
    # recomputed a monthly signal mid-month, and could trade on a non-signal day)
    if isinstance(seen, (list, tuple)) and _symbol_set(tuple(seen)) != _symbol_set(
            _seen_symbols(rules.universe, rules.excluded)):
        return last, None, "universe_changed"
    return last, held, ""


def _held_memo(journal: Journal, key: str, rules: TargetRules
               ) -> tuple[date, dict[str, Any]] | None:
    """The journal's last signal (its date and its non-zero weights by symbol) when it may
    be held (``_checked_memo``); else None (recompute)."""
    last, held, _ = _checked_memo(journal, key, rules)
    return None if last is None or held is None else (last, held)


def _held_weights(journal: Journal, held: dict[str, Any], rules: TargetRules) -> pd.Series:
    """The held signal's weights over the universe, excluded symbols at 0."""
    weights = _memo_weights(journal, held, rules.universe)
    for symbol in rules.excluded:
        weights[symbol] = 0.0
    return weights


@dataclass(frozen=True, slots=True)
class HeldSignal:
    """The journal's last signal of a strategy: its date, and (``weights()``) the weights
    ``cycle_targets`` keeps until the next signal day, before the risk step."""

    asof: date
    _held: dict[str, Any]
    _journal: Journal
    _rules: TargetRules

    def weights(self) -> pd.Series:
        return _held_weights(self._journal, self._held, self._rules)


def held_signal(journal: Journal, strategy: Strategy, rules: TargetRules) -> HeldSignal | None:
    """The last signal ``cycle_targets`` keeps, or None when the next cycle recomputes
    whatever the day (no signal yet, or another strategy's). The backtest's drift scan
    reads it after every cycle, and builds the weights only for a new signal."""
    memo = _held_memo(journal, _strategy_key(strategy), rules)
    if memo is None:
        return None
    return HeldSignal(memo[0], memo[1], journal, rules)


# with no fallback a failing strategy holds the account as it is, cycle after cycle (a
# symbol listed after the replay's start held an operator's account in cash for a year)
NO_FALLBACK_HINT = ("the account is held as it is until the strategy computes again; "
                    "[strategy] fallback (e.g. \"equal_weight\") trades meanwhile")


def cycle_targets(strategy: Strategy, fallback: Strategy | None, journal: Journal,
                  prices: pd.DataFrame, asof: date, rules: TargetRules,
                  current_weights: pd.Series | None,
                  session_dates: pd.Index | None = None,
                  ) -> tuple[pd.Series, RiskDecision, str] | None:
    """Today's strategy weights (recomputed on a signal day, else the journal's), the risk
    step's decision on them and the name of the strategy that produced them; a new signal
    is logged as ``signal_recomputed`` with why, a held one as ``signal_held``. When the
    strategy cannot compute (StrategyError) the configured ``fallback`` is used for this
    cycle (the strategy is asked again next cycle); with none, or if it fails too, None:
    hold, never trade on weights the strategy could not produce."""
    key = _strategy_key(strategy)
    last, held, reason = _checked_memo(journal, key, rules)
    signal_asof = asof  # the signal's date the memo keeps
    if last is not None and held is not None:
        sessions = (_sessions_after(prices.index if session_dates is None else session_dates,
                                    last)  # only "every N sessions" counts
                    if rules.signal.every_sessions is not None else 0)
        reason = "signal_day"
        if not is_signal_day(asof, last, rules.signal, sessions):
            weights = _held_weights(journal, held, rules)
            if not _held_outside_risk_window(weights, prices, rules.limits.lookback_days):
                log.info("signal_held", signal_asof=last.isoformat(),
                         schedule=rules.signal.describe())
                return weights, apply_risk_limits(weights, prices, rules.limits), strategy.name
            # else recompute today: the held signal weighs a symbol the risk step's window
            # no longer covers ([risk].lookback_days raised since), which it refuses; the
            # schedule keeps counting from the held signal's day
            signal_asof, reason = last, "held_outside_risk_window"
    for candidate in (strategy, fallback):
        if candidate is None:
            continue
        try:
            if candidate is fallback:  # the cycle checked the strategy's history, not its
                _check_fallback_rows(prices, candidate, rules.limits)
            weights, decision = risk_checked_targets(candidate, prices, rules.universe,
                                                     rules.limits, rules.excluded,
                                                     current_weights)
        except StrategyError as exc:
            action = "fallback" if candidate is strategy and fallback is not None else "hold"
            log.warning("strategy_failed", strategy=candidate.name, reason=str(exc),
                        action=action, fallback=fallback.name if fallback else None,
                        **({} if fallback is not None else {"hint": NO_FALLBACK_HINT}))
            continue
        if candidate is strategy:
            journal.set_meta_json(SIGNAL_KEY, _memo(signal_asof, key, weights, _seen_symbols(
                rules.universe, rules.excluded)))
            if log.is_enabled_for(logging.INFO):  # (a backtest logs at warning)
                log.info("signal_recomputed", reason=reason, signal_asof=signal_asof.isoformat(),
                         previous_asof=last.isoformat() if last is not None else None,
                         schedule=rules.signal.describe())
        return weights, decision, candidate.name
    return None


def _check_fallback_rows(prices: pd.DataFrame, fallback: Strategy, limits: RiskLimits) -> None:
    """StrategyError (the fallback fails: hold) when the history is shorter than the
    fallback needs: it estimated on whatever rows there were and traded (a 1,000-day
    min_variance on 254 rows), which ``check_history_rows`` refuses for the strategy."""
    try:
        check_history_rows(prices, fallback, limits, "the price history")
    except InputDataError as exc:
        raise StrategyError(str(exc)) from None
