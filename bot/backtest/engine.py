"""The backtest: the daemon's own cycle replayed over history on the simulated broker.

Every rebalance check is ``cycle.run(ctx)`` — strategy, ``apply_risk_limits``,
``plan_rebalance``, ``execute_plan`` — against an in-memory ``SimulatedBroker`` whose
replayed clock is moved with ``advance_to(day)``; orders fill at that day's close plus
slippage. Nothing else trades. Speed comes from doing only what a day needs: between two
checks the holdings cannot change, so the books (equity = cash + Σ qty × close) are marked
for the whole span at once, and while the targets cannot move (a static strategy, or a held
signal between signal days) the daily drift check runs the cycle only on the days that can
trade (``_DriftScan``, see ``static_targets_reason``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import pandas as pd
import structlog
from threadpoolctl import threadpool_limits

from bot.backtest.schedule import (
    Calendar,
    calendar_rows,
    drawdown_walk,
    next_drift_row,
    next_signal_row,
    rolling_var,
    var_breach_rows,
)
from bot.core.drift import buffered_targets
from bot.core.guards import move_suspect_rows
from bot.core.risk import apply_risk_limits
from bot.core.rounding import rounded_as_python
from bot.engine import cycle
from bot.engine.cycle import VAR_FIGURE_DECIMALS, CycleContext, CycleSettings
from bot.engine.memory_journal import MemoryJournal
from bot.engine.statuses import PEAK_KEY, CycleStatus, recorded_peak
from bot.engine.targets import TargetRules, held_signal, history_rows_needed, strategy_weights
from bot.errors import InputDataError
from brokers.base import EXCHANGE_TZ, validate_price_frame
from brokers.sim.broker import SimulatedBroker
from brokers.sim.pricing import SimCosts
from strategies import Strategy
from strategies.errors import StrategyError

log = structlog.get_logger("allocbot.backtest")
Progress = Callable[[int, int], None]  # (trading days done, total)


class BacktestInputError(InputDataError):
    """The backtest cannot start with these inputs (dates, universe): fix the named one."""


@dataclass(frozen=True, slots=True)
class BacktestSpec:
    """What to replay, besides prices and strategy.

    Args:
        settings: the daemon's cycle settings (universe, policy, risk limits, ...).
        calendar: ``daily_drift`` (check the bands every day) or a calendar on whose days
            every asset is traded back to target (bands set to 0: bt's ``Rebalance``).
        starting_cash: account currency.
        costs: the simulator's commission (bps, minimum) and slippage (bps).
        fractional: fractional shares (else whole shares).
        start, end: first/last backtest day (None: first day with the strategy's and the
            risk step's lookback behind it / last data day).
        blas_threads: BLAS/OpenMP threads while replaying (None: the library default).
            Thousands of small solves gain nothing from threads and, on a busy 2-core host,
            lose 100× to oversubscription (risk_parity, 500 assets: 24 ms a call with 1
            thread, 2.5 s with 2; ``benchmarks/bench_backtest.py``).
        drift_scan: with ``daily_drift``, run the cycle only on the days that can trade
            (see ``static_targets_reason``); False runs it on every day, the reference the
            scan is tested and benchmarked against.
    """

    settings: CycleSettings
    calendar: Calendar = "daily_drift"
    starting_cash: float = 100_000.0
    costs: SimCosts = field(default_factory=SimCosts)
    fractional: bool = True
    start: date | None = None
    end: date | None = None
    blas_threads: int | None = 1
    drift_scan: bool = True


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """One cycle the backtest ran: its day, status, orders filled and ex-ante VaR."""

    day: date
    status: CycleStatus
    orders_filled: int
    var: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Books per trading day and what traded. ``qty`` is days × symbols (shares held after
    the day's trades), ``closes`` the same shape; equity = fsum(cash, qty × close)."""

    dates: pd.DatetimeIndex
    symbols: tuple[str, ...]
    equity: np.ndarray
    cash: np.ndarray
    qty: np.ndarray
    closes: np.ndarray
    trades: pd.DataFrame  # date, symbol, side, qty, price, commission, close
    cycles: tuple[CycleRecord, ...]
    var_limit: float | None
    confidence: float
    horizon_days: int
    starting_cash: float
    fast_drift: bool
    elapsed_secs: float
    #: the risk step's VaR on each day the drift scan ran no cycle, as that day's cycle
    #: would have reported it (NaN on cycle days): the VaR backtest reads every day's
    skipped_var: np.ndarray | None = None

    def var_records(self) -> tuple[list[date], list[float | None]]:
        """(day, ex-ante VaR) of every cycle and of every day the scan skipped: the VaR in
        force each evening, whether or not a cycle ran (``metrics.ex_ante_var_1d``)."""
        days = [c.day for c in self.cycles]
        values: list[float | None] = [c.var for c in self.cycles]
        if self.skipped_var is not None:
            rows = np.flatnonzero(np.isfinite(self.skipped_var))
            days = [*self.dates[rows].date, *days]  # a cycle's own figure comes last: it wins
            values = [*self.skipped_var[rows].tolist(), *values]
        return days, values

    def held_weights(self) -> np.ndarray:
        """qty × close / equity per day and symbol (fractions of equity; the rest is cash)."""
        values = self.qty * self.closes  # in place from here: one days × symbols array
        values[self.qty == 0] = 0.0  # (a NaN close where nothing is held is no weight)
        values /= self.equity[:, np.newaxis]
        return values


def static_targets_reason(strategy: Strategy, spec: BacktestSpec) -> str | None:
    """Why the event-driven drift scan cannot be used (None: it can).

    It needs targets that no price can change between two cycles: a strategy declaring
    ``targets_are_static`` (``fixed``), or one recomputing only on signal days (a
    ``signal`` schedule other than daily: in between, the cycle keeps the journal's
    signal, ``held_signal``, and every signal day gets a full cycle). A VaR limit is
    allowed: the days on which it may scale the targets are found beforehand
    (``var_breach_rows``) and get a full cycle. So is the drawdown kill switch: the scan
    records the equity peak the skipped days' cycles would have recorded, and the first
    day that would halt gets a full cycle (``drawdown_walk``).
    """
    if spec.calendar != "daily_drift":
        return f"calendar {spec.calendar}"
    if not spec.drift_scan:
        return "drift_scan off"
    if not strategy.targets_are_static and spec.settings.signal.frequency == "daily":
        return f"strategy {strategy.name!r} recomputes its targets from prices every day"
    return None


def _window(prices: pd.DataFrame, strategy: Strategy, spec: BacktestSpec) -> tuple[int, int]:
    """(first, last) row of the backtest; errors name the offending date."""
    dates = prices.index
    first_day, last_day = dates[0].date(), dates[-1].date()
    warmup = history_rows_needed(strategy, spec.settings.limits) - 1  # rows before day one
    if spec.start is not None and not first_day <= spec.start <= last_day:
        raise BacktestInputError(
            f"start date {spec.start} is outside the price data ({first_day} to {last_day})")
    if spec.end is not None and not first_day <= spec.end <= last_day:
        raise BacktestInputError(
            f"end date {spec.end} is outside the price data ({first_day} to {last_day})")
    if spec.start is not None and spec.end is not None and spec.end < spec.start:
        raise BacktestInputError(f"end date {spec.end} is before start date {spec.start}")
    if warmup >= len(dates):  # whatever the dates, too few rows for the warm-up
        raise BacktestInputError(
            f"the price data has {len(dates)} rows ({first_day} to {last_day}); the strategy "
            f"and risk step need {warmup} rows of history before the first backtest day, so "
            f"at least {warmup + 1}")
    start = warmup if spec.start is None else int(dates.searchsorted(pd.Timestamp(spec.start)))
    end = len(dates) - 1 if spec.end is None else int(
        dates.searchsorted(pd.Timestamp(spec.end), side="right")) - 1
    if start < warmup:
        earliest = dates[warmup].date()
        raise BacktestInputError(
            f"start date {spec.start} has {start} trading days of history before it; the "
            f"strategy and risk step need {warmup} (start on {earliest} or later)")
    if start > end and spec.start is not None:  # start ≥ warmup: the dates hold no row
        raise BacktestInputError(
            f"no trading day in the price data between start date {spec.start} and end date "
            f"{spec.end}")
    if start > end:  # only an end given, too early for the warm-up
        raise BacktestInputError(
            f"end date {spec.end} leaves {end + 1} rows of price data; the strategy and risk "
            f"step need {warmup} rows of history before the first backtest day (end on "
            f"{dates[warmup].date()} or later)")
    return start, end


def _mark(closes: np.ndarray, qty: np.ndarray, cash: float) -> np.ndarray:
    """Equity per row = cash + Σ qty × close, summed exactly rounded (``math.fsum``, as
    ``SimulatedBroker.account``), so the books match the broker's to the last bit."""
    held = np.flatnonzero(qty)
    if held.size == 0:
        return np.full(closes.shape[0], cash)
    terms = closes[:, held] * qty[held]
    return np.fromiter((math.fsum([cash, *row]) for row in terms.tolist()), dtype=np.float64,
                       count=closes.shape[0])


def run_backtest(prices: pd.DataFrame, strategy: Strategy, spec: BacktestSpec,
                 progress: Progress | None = None) -> BacktestResult:
    """Replay ``strategy`` over ``prices`` (wide daily closes) with the daemon's cycle.

    Raises:
        BacktestInputError: dates outside the data, too little history, symbols missing.
    """
    started = time.perf_counter()
    universe = list(spec.settings.universe)
    missing = [s for s in universe if s not in prices.columns]
    if missing:
        raise BacktestInputError(f"universe symbol(s) {missing} not in the price data")
    prices = validate_price_frame(prices.loc[:, universe], "backtest prices")
    start, end = _window(prices, strategy, spec)
    prices = prices.iloc[: end + 1]  # the broker cannot show what it does not have
    dates = prices.index[start:]
    closes = prices.to_numpy(dtype=np.float64)[start:]
    broker = SimulatedBroker(":memory:", prices, starting_cash=spec.starting_cash,
                             costs=spec.costs, fractional=spec.fractional,
                             replay_start=dates[0].date())
    ctx = CycleContext(broker, MemoryJournal(), strategy, spec.settings)
    if spec.calendar != "daily_drift":  # a calendar day trades everything back to target
        policy = replace(spec.settings.policy, drift_abs=0.0, drift_rel=0.0,
                         mode="all_when_any")
        ctx.settings = replace(spec.settings, policy=policy)
    fast = static_targets_reason(strategy, spec) is None
    log.info("backtest_started", strategy=strategy.name, calendar=spec.calendar,
             first=str(dates[0].date()), last=str(dates[-1].date()), symbols=len(universe),
             fast_drift=fast, slow_reason=static_targets_reason(strategy, spec))
    try:
        with threadpool_limits(limits=spec.blas_threads):
            books = _replay(broker, ctx, dates, prices.to_numpy(dtype=np.float64), spec, fast,
                            progress)
        fills = broker.fills_table()
    finally:
        broker.close()
        ctx.journal.close()
    qty, cash, records, skipped_var = books
    equity = np.empty(len(dates))
    for lo, hi in _segments(qty, cash):
        equity[lo:hi] = _mark(closes[lo:hi], qty[lo], float(cash[lo]))
    trades = _trades_frame(fills, prices)
    limits = spec.settings.limits
    result = BacktestResult(dates, tuple(universe), equity, cash, qty, closes, trades,
                            tuple(records), limits.max_var, limits.confidence,
                            limits.horizon_days, spec.starting_cash, fast,
                            time.perf_counter() - started, skipped_var)
    log.info("backtest_finished", days=len(dates), cycles=len(records), trades=len(trades),
             equity=round(float(equity[-1]), 2), secs=round(result.elapsed_secs, 3))
    return result


def _replay(broker: SimulatedBroker, ctx: CycleContext, dates: pd.DatetimeIndex,
            history: np.ndarray, spec: BacktestSpec, fast: bool, progress: Progress | None
            ) -> tuple[np.ndarray, np.ndarray, list[CycleRecord], np.ndarray]:
    """Run the cycle on each check day; return held qty and cash per day, the cycles, and
    the VaR each day the drift scan skipped would have had from its cycle (NaN elsewhere).
    ``history`` holds every close up to the last day; its last ``len(dates)`` rows are the
    backtest's days."""
    closes = history[-len(dates):]
    n, universe = len(dates), list(spec.settings.universe)
    qty_now, cash_now = np.zeros(len(universe)), float(spec.starting_cash)
    qty = np.empty((n, len(universe)))
    cash = np.empty(n)
    scheduled = calendar_rows(dates, spec.calendar)
    days = dates.date  # datetime.date per row, built once (indexing the DatetimeIndex is slow)
    records: list[CycleRecord] = []
    scan = _DriftScan(history, days, ctx) if fast else None
    row = 0
    while row < n:
        if scan is not None and (scan.targets is not None or scan.halted):
            nxt = scan.next_row(closes, qty_now, cash_now, row)
        else:
            k = int(np.searchsorted(scheduled, row))
            nxt = int(scheduled[k]) if k < len(scheduled) else None
        stop = n if nxt is None else nxt
        qty[row:stop], cash[row:stop] = qty_now, cash_now
        if scan is not None:
            scan.skip(row, stop)
        if nxt is None:
            break
        day = broker.advance_to(days[nxt])
        result = cycle.run(ctx)
        records.append(_record(day, result))
        if result.figures.get("orders_submitted", 0) or result.status is CycleStatus.FAILED:
            qty_now = broker.held_qty(universe)
            cash_now = broker.account().cash
        if scan is not None:
            scan.after_cycle(broker, nxt, day, result.status, result.figures.get("strategy"))
        qty[nxt], cash[nxt] = qty_now, cash_now
        row = nxt + 1
        if progress is not None:
            progress(row, n)
    if progress is not None:
        progress(n, n)
    return qty, cash, records, (scan.skipped_var if scan is not None else np.full(n, np.nan))


class _DriftScan:
    """The daily drift check's state between cycles (``static_targets_reason``): the
    targets in force, the rows on which the VaR limit may scale them, the next signal day,
    the VaR a cycle would have reported on each day skipped, and (with ``max_drawdown``
    set) the equity peak the skipped days' cycles would have recorded and the days whose
    bar the data guard may block."""

    def __init__(self, history: np.ndarray, days: np.ndarray, ctx: CycleContext) -> None:
        self.history, self.days, self.ctx = history, days, ctx
        self.static = ctx.strategy.targets_are_static
        n = len(days)
        self.targets: np.ndarray | None = None  # None: the next day gets a cycle
        self.forced = np.zeros(0, dtype=np.int64)
        self.signal_row: int | None = None  # the next signal day (held signals only)
        self.held: date | None = None  # the signal date ``targets`` were built from
        self.skipped_var = np.full(n, np.nan)
        self._span_var, self._span_first = np.zeros(0), 0  # the targets' VaR from that row
        # the risk rules binding on every skipped day of the span: max_weight when it caps
        # the targets (max_var binds only on ``forced`` rows, which get a cycle)
        self._span_rules: frozenset[str] = frozenset()
        self.halted = False  # the kill switch halted a cycle: nothing trades again
        self._peak: float | None = None  # the peak recorded through the span next_row walked
        # under a kill switch, the days whose bar the data guard may block get a cycle: a
        # blocked cycle records no peak, where the walk over skipped days would
        self.guarded = np.zeros(0, dtype=np.int64)
        if ctx.settings.max_drawdown is not None:
            suspect = move_suspect_rows(history, ctx.settings.guards)[len(history) - n:]
            self.guarded = np.flatnonzero(suspect).astype(np.int64)

    def next_row(self, closes: np.ndarray, qty: np.ndarray, cash: float, row: int
                 ) -> int | None:
        """The next row ≥ ``row`` that needs a cycle: a band breach, a day the VaR limit
        may bind, the next signal day, the first day the drawdown kill switch would halt
        (None: none before the end; none at all once halted: a backtest never re-arms)."""
        if self.halted:
            return None
        assert self.targets is not None
        nxt = next_drift_row(closes, qty, cash, self.targets, self.ctx.settings.policy, row)
        for forced in (self.forced, self.guarded):
            k = int(np.searchsorted(forced, row))
            if k < len(forced) and (nxt is None or forced[k] < nxt):
                nxt = int(forced[k])
        if self.signal_row is not None and (nxt is None or self.signal_row < nxt):
            nxt = self.signal_row
        max_drawdown = self.ctx.settings.max_drawdown
        if max_drawdown is None:  # no kill switch: the peak decides nothing (a book's
            return nxt            # marks are ~0.3 s a pass at 500 assets)
        # the account's equity each day before it (the sim values it as ``_mark`` does, bit
        # for bit): the peak those days' cycles record, and the first one that would halt
        breach, self._peak = drawdown_walk(
            _mark(closes[row:len(closes) if nxt is None else nxt], qty, cash),
            recorded_peak(self.ctx.journal), max_drawdown)
        if breach is not None:
            nxt = row + breach
        return nxt

    def skip(self, row: int, stop: int) -> None:
        """Rows [row, stop) run no cycle: record the VaR each one's cycle would have
        reported (rounded as a cycle rounds it), and the equity peak they would have
        recorded under a kill switch (a halted cycle reports neither)."""
        if self.targets is not None and stop > row:
            span = self._span_var[row - self._span_first:stop - self._span_first]
            self.skipped_var[row:stop] = rounded_as_python(span, VAR_FIGURE_DECIMALS)
            # a rule those days' cycles would not have seen binding ends its episode: the
            # next cycle it binds on warns again, as the daemon's would
            self.ctx.risk_bound &= self._span_rules
            if self._peak is not None:
                self.ctx.journal.set_meta_json(PEAK_KEY, self._peak)
        self._peak = None

    def after_cycle(self, broker: SimulatedBroker, row: int, day: date,
                    status: CycleStatus, used: str | None = None) -> None:
        """Update the targets after the cycle on ``row``: a static strategy's once, after
        its first finished cycle whose targets were its own (``used``: the strategy that
        produced them; a fallback's, while a symbol is not listed yet, say, leaves the next
        day to a cycle); a held signal's after each new signal (or the next day cycles: no
        signal kept, or one still due because its day could not compute it)."""
        settings, n = self.ctx.settings, len(self.days)
        universe = list(settings.universe)
        if status is CycleStatus.HALTED:
            self.halted, self.targets = True, None
            return
        if self.static:
            if (self.targets is None and status is CycleStatus.FINISHED
                    and used == self.ctx.strategy.name):
                strategy = self.ctx.strategy
                hist = broker.history(
                    universe, max(strategy.lookback_days, settings.limits.lookback_days) + 1, day)
                try:  # (a fallback of the same name: the next day cycles, as above)
                    weights = strategy_weights(strategy, hist, settings.universe,
                                               settings.excluded,
                                               risk_lookback_days=settings.limits.lookback_days)
                except StrategyError:
                    return
                self._start(hist, weights, row + 1, n)
            return
        signal = held_signal(self.ctx.journal, self.ctx.strategy, _rules(settings))
        if signal is None:
            self.targets = self.held = None
            return
        if (signal.asof == self.held and self.targets is not None
                and (self.signal_row is None or self.signal_row > row)):
            return  # the same signal, still in force
        self.held = signal.asof
        self.signal_row = next_signal_row(self.days, self.held, settings.signal, row + 1)
        self.targets = None  # the next day is a signal day: it cycles anyway
        if self.signal_row is None or self.signal_row > row + 1:
            hist = broker.history(universe, settings.limits.lookback_days + 1, day)
            self._start(hist, signal.weights(), row + 1,
                        n if self.signal_row is None else self.signal_row)

    def _start(self, hist: pd.DataFrame, weights: pd.Series, first: int, stop: int) -> None:
        """Targets in force over rows [first, stop): ``weights`` through the cycle's own risk
        step without its VaR scaling (that happens only on ``var_breach_rows`` days, which
        get a cycle), then the planner's cash buffer; and their VaR over the span."""
        settings = self.ctx.settings
        decision = apply_risk_limits(weights, hist, replace(settings.limits, max_var=None))
        unscaled = decision.weights.reindex(list(settings.universe)).fillna(0.0).to_numpy(
            dtype=float)
        self.targets = buffered_targets(unscaled, settings.policy.cash_buffer)
        self._span_rules = frozenset(iv.rule for iv in decision.interventions)
        self._span_first = first
        self._span_var, self.forced = _span_var(self.history, unscaled, settings,
                                                len(self.days), first, stop)


def _rules(settings: CycleSettings) -> TargetRules:
    return TargetRules(settings.universe, settings.limits, settings.signal, settings.excluded)


def _span_var(history: np.ndarray, weights: np.ndarray, settings: CycleSettings, days: int,
              first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """For backtest rows [``first``, ``stop``) (0 = first backtest day): the risk step's VaR
    of ``weights`` each day (what a cycle there would report), and the rows on which the
    VaR limit may scale them (each gets a cycle). ``history`` is every close up to the last
    backtest day; only the span's windows are computed."""
    limits = settings.limits
    offset = len(history) - days  # history row of backtest row 0 (≥ the risk lookback)
    lo = max(0, offset + first - limits.lookback_days)
    var = rolling_var(history[lo:offset + stop], weights, limits.lookback_days,
                      limits.confidence, limits.method, limits.horizon_days)[offset + first - lo:]
    if limits.max_var is None:
        return var, np.zeros(0, dtype=np.int64)
    forced = np.flatnonzero(var_breach_rows(var, limits.max_var)).astype(np.int64) + first
    return var, forced


def _record(day: date, result: cycle.CycleResult) -> CycleRecord:
    var = result.figures.get("var")
    return CycleRecord(day, result.status, int(result.figures.get("orders_filled", 0)),
                       None if var is None else float(var), result.error)


def _segments(qty: np.ndarray, cash: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) row spans over which the held quantities and cash do not change."""
    if len(qty) == 0:
        return []
    change = np.flatnonzero(np.any(qty[1:] != qty[:-1], axis=1) | (cash[1:] != cash[:-1])) + 1
    bounds = [0, *change.tolist(), len(qty)]
    return list(itertools.pairwise(bounds))


def _trades_frame(fills: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """The sim's fills as rows (date, symbol, side, qty, price, commission, close)."""
    at = pd.DatetimeIndex(fills["at"]).tz_convert(EXCHANGE_TZ)
    days = at.normalize().tz_localize(None)
    rows = prices.index.get_indexer(days)
    cols = prices.columns.get_indexer(fills["symbol"])
    return pd.DataFrame({
        "date": days, "symbol": fills["symbol"].to_numpy(), "side": fills["side"].to_numpy(),
        "qty": fills["qty"].to_numpy(dtype=float), "price": fills["price"].to_numpy(dtype=float),
        "commission": fills["commission"].to_numpy(dtype=float),
        "close": prices.to_numpy(dtype=np.float64)[rows, cols],
    })
