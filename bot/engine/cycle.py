"""One trading cycle: clock → account → data → weights → risk → plan → execute → record.

The same ``run`` drives the daemon, ``allocbot once`` and the backtest. Steps 4–6 are pure
functions (strategy, ``apply_risk_limits``, ``plan_rebalance``); everything with a side
effect goes through the broker and the journal passed in the context.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
import structlog

from bot.core.guards import GuardBreach, GuardLimits
from bot.core.rebalance import (
    RebalancePlan,
    RebalancePolicy,
    UnsupportedPositionError,
    plan_rebalance,
    plan_rebalance_aligned,
)
from bot.core.risk import RiskIntervention, RiskLimits, below_drawdown_limit
from bot.core.rounding import rounded_as_python
from bot.core.signal import EVERY_DAY, SignalSchedule
from bot.engine.cash_transfers import apply_cash_transfers
from bot.engine.execution import ExecutionReport, ExecutionSettings, execute_plan
from bot.engine.journal import Journal
from bot.engine.pretrade import data_guard_breaches, order_guard_breaches
from bot.engine.reconcile import reconcile
from bot.engine.statuses import (
    HALT_KEY,
    HALT_REMINDED_KEY,
    MARKET_CLOSED,
    PEAK_KEY,
    CycleStatus,
    record_inception,
    recorded_peak,
)
from bot.engine.targets import TargetRules, check_history_rows, cycle_targets
from bot.errors import AllocbotError, BrokerDataError
from brokers.base import EXCHANGE_TZ, Account, Broker, Position
from strategies import Strategy

log = structlog.get_logger("allocbot.cycle")
# Equity may differ from cash + positions by the prices moving between the two reads; more
# than this is a bad figure (``check_equity``).
EQUITY_MISMATCH = 0.02
VAR_FIGURE_DECIMALS = 6  # the ex-ante VaR a cycle reports (journal, logs, backtest records)


@dataclass(frozen=True, slots=True)
class CycleSettings:
    """What one cycle needs from the config, already validated."""

    mode: Literal["paper", "dry_run", "live"]
    universe: tuple[str, ...]
    order_prefix: str
    order_wait_secs: float
    policy: RebalancePolicy
    limits: RiskLimits
    signal: SignalSchedule = EVERY_DAY
    excluded: tuple[str, ...] = ()  # symbols never held ([universe].exclude)
    max_drawdown: float | None = None
    commission_min: float = 0.0
    min_history_rows: int = 0  # fetch at least this many rows ([alpaca].data_lookback_days)
    fallback: Strategy | None = None  # [strategy].fallback; None: hold when the strategy fails
    guards: GuardLimits = field(default_factory=GuardLimits)


@dataclass(slots=True)
class CycleContext:
    broker: Broker
    journal: Journal
    strategy: Strategy
    settings: CycleSettings
    fills_verified: bool = False  # set once this process has repaired missing fills
    # the risk rules that bound on this process's last cycle that ran the risk step:
    # ``risk_limited`` warns when a rule starts binding, then is info while it keeps on
    risk_bound: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CycleResult:
    cycle_id: str
    status: CycleStatus
    asof: date | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run(ctx: CycleContext) -> CycleResult:
    """Run one cycle; never raises for a cycle-level failure (it is logged and journaled)."""
    started = time.perf_counter()
    cycle_id = ctx.journal.start_cycle(None)
    with structlog.contextvars.bound_contextvars(cycle_id=cycle_id):
        log.info("cycle_started", mode=ctx.settings.mode, strategy=ctx.strategy.name,
                 broker=ctx.broker.name)
        try:
            result = _run_steps(ctx, cycle_id)
        except AllocbotError as exc:
            result = _failed(ctx, cycle_id, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must not kill the daemon; it is logged in full
            log.exception("cycle_crashed")
            result = _failed(ctx, cycle_id, f"{type(exc).__name__}: {exc}")
        figures = {**result.figures, "duration_ms": round((time.perf_counter() - started) * 1e3, 1)}
        if result.status is not CycleStatus.FAILED:
            ctx.journal.finish_cycle(cycle_id, result.status, figures)
            log.info("cycle_finished", status=result.status,
                     asof=str(result.asof) if result.asof else None, **figures)
        return CycleResult(cycle_id, result.status, result.asof, figures, result.error)


def _failed(ctx: CycleContext, cycle_id: str, error: str) -> CycleResult:
    ctx.journal.finish_cycle(cycle_id, CycleStatus.FAILED, {"error": error})
    log.error("cycle_failed", error=error)
    return CycleResult(cycle_id, CycleStatus.FAILED, error=error)


def _run_steps(ctx: CycleContext, cycle_id: str) -> CycleResult:
    # 1. clock
    clock = ctx.broker.clock()
    asof = clock.now.astimezone(EXCHANGE_TZ).date()
    ctx.journal.set_cycle_asof(cycle_id, asof)
    if not clock.is_open:
        log.info("market_closed", now=clock.now.isoformat(),
                 next_open=clock.next_open.isoformat() if clock.next_open else None)
        return CycleResult(cycle_id, CycleStatus.SKIPPED, asof, {"reason": MARKET_CLOSED})
    # the exchange date on every later line of the cycle (a backtest's warnings then say
    # which day they are about; its timestamps are the wall clock's)
    with structlog.contextvars.bound_contextvars(asof=asof.isoformat()):
        return _open_market_steps(ctx, cycle_id, asof)


def _open_market_steps(ctx: CycleContext, cycle_id: str, asof: date) -> CycleResult:
    """Steps 2–8 of a cycle on a trading day."""
    broker, journal, s = ctx.broker, ctx.journal, ctx.settings
    unknown = reconcile(broker, journal, s.order_prefix, repair_fills=not ctx.fills_verified)
    ctx.fills_verified = True
    # an order of ours still working (one this journal sent, or one sent from a state file
    # since replaced): trading on top of it would buy or sell the same shares twice
    still_open = [i.client_order_id for i in journal.open_intents()] + [
        o.client_order_id for o in unknown]
    if still_open:
        _cancel_orders_past_their_wait(broker, journal, s.order_wait_secs)
        log.warning("orders_still_open", client_order_ids=still_open,
                    note="an earlier order is still working; not trading until it is done")
        return CycleResult(cycle_id, CycleStatus.SKIPPED, asof, {"reason": "orders_still_open"})
    # 2. account
    account = broker.account()
    positions = broker.positions()
    check_equity(account, positions)  # a glitched figure must not trip or lift the peak
    record_inception(journal, account.equity)  # the baseline of "P&L since inception"
    # a deposit or withdrawal since the last cycle rescales the peak before anything
    # measures the drawdown (status, the kill switch)
    apply_cash_transfers(broker, journal, account, positions, asof)
    pos_of = _positions_of(s.universe)
    foreign = sorted(sym for sym in positions if sym not in pos_of)
    if foreign:
        log.info("foreign_position_seen", symbols=foreign, note="outside the universe; untouched")
    shorts = [f"{sym} ({positions[sym].qty:g} shares)" for sym in foreign if positions[sym].qty < 0]
    if shorts:  # its sale's proceeds sit in cash, which the planner would invest: leverage
        raise UnsupportedPositionError(
            f"short position outside the universe: {', '.join(shorts)}; its proceeds are in "
            "the cash the bot would invest (allocbot trades long-only accounts): close it at "
            "the broker, then the next cycle resumes")
    # 3. data
    lookback = max(ctx.strategy.lookback_days + 1, s.limits.lookback_days + 1, s.min_history_rows,
                   s.fallback.lookback_days + 1 if s.fallback else 0,
                   s.guards.move_lookback_days + 2 if s.guards.enabled else 0)
    # "every N sessions" counts the sessions since the last signal on the price index: the
    # history must reach back N sessions even when the steps look back less (they get
    # their own window; with N above it the strategy once never recomputed)
    every = s.signal.every_sessions or 0
    history = broker.history(list(s.universe), max(lookback, every + 1), asof)
    check_history_rows(history, ctx.strategy, s.limits, f"the {broker.name} broker's history")
    prices = history.iloc[-lookback:] if len(history) > lookback else history
    last_prices = _planning_prices(prices, s.universe, positions)  # aligned to the universe
    if log.is_enabled_for(logging.INFO):
        log.info("data_loaded", rows=len(prices), symbols=len(prices.columns),
                 first=str(prices.index[0].date()), last=str(prices.index[-1].date()))
    # halted: nothing is decided until re-armed (a data guard blocking such a cycle was
    # reported, and alerted, as a new block; the strategy ran for nothing)
    halt = journal.meta(HALT_KEY)
    if halt:
        _still_halted(journal, halt, account.equity, asof)
        return _halted(journal, cycle_id, asof, account.equity)
    # the data guards before anything uses the bars: a bad print must not become the held
    # signal, the equity peak or a kill-switch halt
    breaches = data_guard_breaches(broker, prices, asof, s.universe, s.guards)
    if breaches:
        return CycleResult(cycle_id, CycleStatus.SKIPPED, asof, {
            "reason": "guard_blocked", **_guard_figures(breaches), "orders_submitted": 0})
    # the kill switch measures the whole account (a position outside the universe, say one
    # just dropped from it, is still money; the planner manages the universe's part), on
    # every cycle the guards let through: before the strategy, whose failure (a held
    # cycle) once skipped both the trip and the peak's bookkeeping
    if _drawdown_tripped(journal, account.equity, s.max_drawdown, asof):
        return _halted(journal, cycle_id, asof, account.equity)
    held_at, held_qty = held_in_universe(positions, s.universe)
    held_values = held_qty * last_prices[held_at]
    equity = account.cash + float(held_values.sum())  # the universe's part of the account
    qty = np.zeros(len(s.universe))
    qty[held_at] = held_qty
    held_excluded = [sym for sym in s.excluded if sym in positions and sym in pos_of]
    if held_excluded:
        log.warning("excluded_symbol_held", symbols=held_excluded,
                    note="[universe].exclude: selling it back to cash")
    # 4. weights (on signal days; held between them) and 5. risk
    rules = TargetRules(s.universe, s.limits, s.signal, s.excluded)
    # the portfolio's weights for cost-aware strategies; with nothing held there are none
    # (the README's "first cycle": a turnover cap below 1 would otherwise forbid ever
    # investing the cash, and a turnover penalty is the same for every fully invested w)
    current = (pd.Series(held_values / equity, copy=False,
                         index=_index_of(tuple(s.universe[i] for i in held_at.tolist())))
               if equity > 0 and held_at.size else None)
    checked = cycle_targets(ctx.strategy, s.fallback, journal, prices, asof, rules, current,
                            session_dates=history.index)
    if checked is None:
        return CycleResult(cycle_id, CycleStatus.HELD, asof,
                           {"held": True, "reason": "strategy_failed", "orders_planned": 0})
    weights, decision, used = checked
    # the detail events' fields are built only when they will be written (a backtest logs
    # at warning: thousands of cycles, hundreds of symbols)
    detail = log.is_enabled_for(logging.INFO)
    if detail:
        log.info("weights_computed", weights=_rounded(weights),
                 cash_weight=round(1 - weights.sum(), 6), strategy=used)
    _log_interventions(ctx, decision.interventions, detail)
    if detail:
        log.info("risk_checked", var=decision.var, cvar=decision.cvar,
                 var_before=decision.var_before, confidence=s.limits.confidence,
                 horizon_days=s.limits.horizon_days, method=s.limits.method,
                 weights=_rounded(decision.weights))
    # 6. plan
    fractionable = {sym: a.fractionable for sym, a in broker.assets(list(s.universe)).items()}
    plan = _plan(s.universe, qty, account.cash, decision.weights, last_prices, s.policy,
                 fractionable)
    if detail:
        log.info("orders_planned", count=len(plan.orders), drifted=list(plan.drifted),
                 orders=[{"symbol": o.symbol, "side": o.side.value, "qty": o.qty,
                          "notional": round(o.notional, 2)} for o in plan.orders])
        ordered = {o.symbol for o in plan.orders}
        untraded = [sym for sym in plan.drifted if sym not in ordered]
        if untraded:  # "drifted" on every cycle with no order says why here
            log.info("drift_not_traded", symbols=untraded,
                     note="drifted, but no order was planned for them: a whole-share buy "
                          "short of one share rounds to none, an order under "
                          "min_order_notional is not sent, or the cash ran short")
    breaches = order_guard_breaches(journal, asof, plan.orders, plan.equity, s.universe,
                                    s.guards)
    if breaches:
        return CycleResult(cycle_id, CycleStatus.SKIPPED, asof, {
            "reason": "guard_blocked", **_guard_figures(breaches),
            "orders_planned": len(plan.orders), "orders_submitted": 0})
    # 7. execute (the day's turnover is the journal's intents: ``Journal.day_notional``)
    report = ExecutionReport(0, 0, 0, 0, 0, 0.0)
    if plan.orders:
        report = execute_plan(
            broker, journal, cycle_id, plan.orders,
            ExecutionSettings(prefix=s.order_prefix, dry_run=s.mode == "dry_run",
                              order_wait_secs=s.order_wait_secs,
                              policy=s.policy,
                              commission_min=s.commission_min, plan_equity=plan.equity),
            fractionable,
        )
    # Σ|notional|, account currency: what filled (dry run: what the plan would trade)
    traded = (sum(o.notional for o in plan.orders) if s.mode == "dry_run"
              else report.traded_notional)
    # 8. record
    after = broker.account()
    turnover = traded / equity if equity > 0 else 0.0
    return CycleResult(cycle_id, CycleStatus.FINISHED, asof, {
        "equity_before": round(account.equity, 2), "equity_after": round(after.equity, 2),
        "cash_after": round(after.cash, 2), "orders_planned": len(plan.orders),
        "orders_submitted": report.submitted, "orders_filled": report.filled,
        "orders_partially_filled": report.partially_filled, "orders_rejected": report.rejected,
        "orders_unfilled": report.unfilled, "commission": round(report.commission, 4),
        "turnover": round(turnover, 6), "var": round(decision.var, VAR_FIGURE_DECIMALS),
        "drawdown": round(_drawdown(journal, account.equity), 6),
        "max_drift": round(plan.max_drift, 6),
        "drifted": list(plan.drifted), "targets": _rounded(decision.weights),
        "strategy": used,  # whose targets: the strategy's, or the fallback's
        **({"mode": s.mode} if s.mode == "dry_run" else {}),  # orders planned, none sent
    })


def _log_interventions(ctx: CycleContext, interventions: tuple[RiskIntervention, ...],
                       detail: bool) -> None:
    """``risk_limited`` for each rule that changed the targets: a warning on the first cycle
    it binds, info with ``repeated=True`` on the next ones while it keeps binding (a VaR
    limit binding for months warned every 15 minutes; operators alert on warnings). A
    cycle whose risk step it does not bind ends the spell (one that stops before the risk
    step, the market closed or the strategy held, changes nothing); the memory is this
    process's (a restart warns again)."""
    bound = ctx.risk_bound
    for iv in interventions:
        if iv.rule not in bound:
            log.warning("risk_limited", rule=iv.rule, before=iv.before, after=iv.after,
                        repeated=False)
        elif detail:
            log.info("risk_limited", rule=iv.rule, before=iv.before, after=iv.after,
                     repeated=True)
    ctx.risk_bound = frozenset(iv.rule for iv in interventions)


def _cancel_orders_past_their_wait(broker: Broker, journal: Journal, wait_secs: float) -> None:
    """Cancel this journal's orders still working at the venue more than ``wait_secs`` after
    they were submitted: the process that sent one would have canceled it then, and one
    left by a process that died blocked every cycle until the venue expired it (a day
    order: at the close). The next cycle's reconciliation books how each ended. Ages are
    the venue's clock less its submit time (a skewed host clock moves neither)."""
    now = broker.clock().now
    for intent in journal.open_intents():
        if intent.broker_order_id is None:  # no answer journaled yet: nothing to cancel
            continue
        order = broker.get_order_by_client_id(intent.client_order_id)
        if order is None or order.status.is_terminal or order.submitted_at is None:
            continue
        age_secs = (now - order.submitted_at).total_seconds()
        if age_secs > wait_secs:
            broker.cancel_order(order.id)
            log.warning("order_canceled_past_wait", client_order_id=intent.client_order_id,
                        symbol=order.symbol, side=order.side.value, status=order.status.value,
                        filled_qty=order.filled_qty, age_secs=round(age_secs, 1),
                        order_wait_secs=wait_secs,
                        note="still working after order_wait_secs, its sender gone: "
                             "canceled; the next cycle books how it ended and trades")


def _planning_prices(prices: pd.DataFrame, universe: tuple[str, ...],
                     positions: dict[str, Any]) -> np.ndarray:
    """Latest close per universe symbol (NaN where there is none); a held symbol without
    one is an error (never a NaN order)."""
    if prices.empty:
        raise BrokerDataError("no price history returned for the universe")
    values = prices.to_numpy(dtype=float)
    latest = values[-1]
    # forward-fill the whole window only when the latest row has a gap (rarely)
    last = prices.ffill().to_numpy(dtype=float)[-1] if np.isnan(latest).any() else latest
    columns = prices.columns.tolist()  # (iterating the Index is ~30× slower)
    if columns != list(universe):
        col_of = {str(c): j for j, c in enumerate(columns)}
        pick = [col_of.get(s, -1) for s in universe]
        last_u = np.array([last[j] if j >= 0 else np.nan for j in pick])
        latest_u = np.array([latest[j] if j >= 0 else np.nan for j in pick])
    else:
        last_u, latest_u = last, latest
    stale = [sym for sym, v in zip(universe, last_u.tolist(), strict=True)
             if sym in positions and not math.isfinite(v)] if not np.isfinite(last_u).all() else []
    if stale:
        raise BrokerDataError(f"no price for held symbol(s) {stale} as of {prices.index[-1].date()}")
    gap_today = np.isnan(latest_u) & ~np.isnan(last_u)
    if gap_today.any():
        missing_today = [universe[i] for i in np.flatnonzero(gap_today)]
        raise BrokerDataError(
            f"missing price for {missing_today} on {prices.index[-1].date()} (latest row)")
    return last_u


def _guard_figures(breaches: list[GuardBreach]) -> dict[str, Any]:
    """A blocked cycle's summary figures: the guards, and what breached them (``status``
    shows it: the guard's name alone left the operator to find the log line)."""
    detail = "; ".join(f"{b.guard} {b.value:.4g} vs limit {b.limit:.4g} ({b.subject})"
                       for b in breaches[:3])
    more = f"; and {len(breaches) - 3} more" if len(breaches) > 3 else ""
    return {"guards": sorted({str(b.guard) for b in breaches}), "guard_detail": detail + more}


@lru_cache(maxsize=16)
def _positions_of(universe: tuple[str, ...]) -> dict[str, int]:
    """Symbol → position in the universe (one dict per universe, not per cycle)."""
    return {sym: i for i, sym in enumerate(universe)}


@lru_cache(maxsize=64)
def _index_of(symbols: tuple[str, ...]) -> pd.Index:
    """An object-dtype Index of ``symbols``, built once per distinct set of holdings."""
    return pd.Index(symbols, dtype=object)


def _plan(universe: tuple[str, ...], qty: np.ndarray, cash: float, weights: pd.Series,
          last_prices: np.ndarray, policy: RebalancePolicy,
          fractionable: dict[str, bool]) -> RebalancePlan:
    """Step 6 on universe-aligned arrays; targets outside the universe (none after the
    config's checks) take the Series planner's path."""
    whole = np.array([not fractionable.get(sym, False) for sym in universe], dtype=bool)
    if tuple(weights.index.tolist()) == universe:  # (iterating the Index is ~8× slower)
        return plan_rebalance_aligned(universe, qty, cash, weights.to_numpy(dtype=float),
                                      last_prices, policy, whole)
    holdings = pd.Series(qty, index=_index_of(universe))
    return plan_rebalance(holdings[qty > 0], cash, weights,
                          pd.Series(last_prices, index=_index_of(universe)),
                          policy, fractionable=fractionable)


def _halted(journal: Journal, cycle_id: str, asof: date, equity: float) -> CycleResult:
    """A halted cycle's result (``_drawdown_tripped`` or ``_still_halted`` has said why)."""
    return CycleResult(cycle_id, CycleStatus.HALTED, asof, {
        "equity": round(equity, 2), "drawdown": round(_drawdown(journal, equity), 6)})


def _still_halted(journal: Journal, reason: str, equity: float, asof: date) -> None:
    """A cycle while halted: ``still_halted`` with the drawdown now, a warning on the first
    cycle of each trading day and info on the others (a warning and an alert every cycle
    repeated the trip's figure for months)."""
    figures = {"since": reason, "peak_equity": round(recorded_peak(journal), 2),
               "equity": round(equity, 2), "drawdown": round(_drawdown(journal, equity), 6),
               "rearm": "allocbot rearm"}
    if journal.meta(HALT_REMINDED_KEY) != asof.isoformat():
        journal.set_meta(HALT_REMINDED_KEY, asof.isoformat())
        log.warning("still_halted", **figures)
    else:
        log.info("still_halted", **figures)


def _drawdown_tripped(journal: Journal, equity: float, max_drawdown: float | None,
                      asof: date) -> bool:
    """Kill switch: once equity falls ``max_drawdown`` below its peak, stop trading until
    re-armed with ``allocbot rearm`` (which resets the peak); it trips with one
    ``trading_halted`` error (one alert). Records the peak otherwise."""
    peak = max(recorded_peak(journal), equity)
    journal.set_meta_json(PEAK_KEY, peak)  # the same text as repr(peak) in SQLite
    if max_drawdown is not None and below_drawdown_limit(equity, peak, max_drawdown):
        reason = (f"drawdown {1 - equity / peak:.2%} from peak {peak:.2f} exceeds "
                  f"max_drawdown {max_drawdown:.2%}")
        journal.set_meta(HALT_KEY, reason)
        journal.set_meta(HALT_REMINDED_KEY, asof.isoformat())
        log.error("trading_halted", reason=reason, rearm="allocbot rearm")
        return True
    return False


def check_equity(account: Account, positions: dict[str, Position]) -> None:
    """``BrokerDataError`` when the venue's equity disagrees with its own cash plus
    positions by more than ``EQUITY_MISMATCH``: one glitched read of the equity would
    otherwise trip the kill switch (a figure far below the peak) or record a false peak
    that trips it on the next true read. The cycle fails before anything uses it; the
    next one reads again (a failure streak alerts)."""
    if any(p.market_value == 0 and p.qty for p in positions.values()):
        return  # a position the venue gave no value (Alpaca's null): nothing to compare
    parts = math.fsum([account.cash, *(p.market_value for p in positions.values())])
    scale = max(abs(account.equity), abs(parts), 1.0)
    if abs(account.equity - parts) > EQUITY_MISMATCH * scale:
        raise BrokerDataError(
            f"the venue's account equity {account.equity:,.2f} disagrees with its cash "
            f"{account.cash:,.2f} plus positions {parts - account.cash:,.2f} (= {parts:,.2f}) "
            f"by more than {EQUITY_MISMATCH:.0%}; not trading on it (a wrong equity would "
            "trip or lift the drawdown kill switch); the next cycle reads the account again "
            "(if every cycle says this, compare the account's figures at the venue)")


def held_in_universe(positions: dict[str, Any], universe: tuple[str, ...]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(universe position, shares) of each held symbol of ``universe``, in the broker's
    order (positions outside the universe are left out: the bot never trades them)."""
    pos_of = _positions_of(universe)
    managed = [(pos_of[sym], p.qty) for sym, p in positions.items() if sym in pos_of]
    return (np.array([i for i, _ in managed], dtype=np.intp),
            np.array([q for _, q in managed], dtype=float))


def _drawdown(journal: Journal, equity: float) -> float:
    """Fraction of equity below the recorded peak (0 at a new high), as the kill switch sees it."""
    peak = recorded_peak(journal)
    return max(0.0, 1 - equity / peak) if peak > 0 else 0.0


def _rounded(weights: pd.Series) -> dict[str, float]:
    """The non-zero weights, rounded to 6 decimals (for logs and the journal)."""
    values = weights.to_numpy(dtype=float)
    held = np.flatnonzero(values != 0)
    names = weights.index.tolist()
    return {str(names[i]): v for i, v in zip(held.tolist(), rounded_as_python(values[held], 6),
                                             strict=True)}
