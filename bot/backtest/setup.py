"""From a Config to backtest runs: the spec, the benchmark, walk-forward, the metrics.

The backtest always trades the simulated broker with the ``[sim]`` costs, in paper mode,
whatever ``[broker]`` and ``[bot].mode`` say: it replays history, it never sends orders.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pandas as pd
import structlog

import strategies
from bot.backtest.engine import (
    BacktestInputError,
    BacktestResult,
    BacktestSpec,
    Progress,
    run_backtest,
)
from bot.backtest.report import result_metrics, with_relative_statistics
from bot.backtest.schedule import Calendar
from bot.backtest.walk_forward import WalkForward, WalkForwardStrategy, build_learner, fold_starts
from bot.config import Config
from bot.core.guards import moves_beyond_limit
from bot.core.risk import RiskLimits
from bot.core.signal import SignalSchedule
from bot.engine.preflight import BENCHMARK_KEY, build_benchmark, check_universe_fit
from bot.engine.runtime import cycle_settings, sim_costs
from bot.engine.statuses import CycleStatus
from bot.engine.targets import history_rows_needed, risk_limits
from bot.errors import ConfigError
from strategies import Strategy

log = structlog.get_logger("allocbot.backtest")
# Below this many days a backtest's annualized figures say more about the extrapolation
# than the strategy (a two-day run printed a 271 % CAGR): the summary warns.
SHORT_BACKTEST_DAYS = 63
BOND_ETFS = ("IEF", "AGG", "BND", "TLT", "GOVT", "SHY")
BACKTEST_ORDER_PREFIX = "bt"


def backtest_spec(cfg: Config, universe: tuple[str, ...], *, calendar: Calendar,
                  start: date | None, end: date | None) -> BacktestSpec:
    """The daemon's cycle settings for this config, on the simulator, in paper mode."""
    sim_cfg = cfg.model_copy(update={
        "broker": cfg.broker.model_copy(update={"kind": "sim"}),
        "bot": cfg.bot.model_copy(update={"mode": "paper", "order_prefix": BACKTEST_ORDER_PREFIX}),
    })
    settings = cycle_settings(sim_cfg, universe)
    return BacktestSpec(settings, calendar=calendar, starting_cash=cfg.sim.starting_cash,
                        costs=sim_costs(cfg), fractional=cfg.sim.fractional, start=start, end=end)


def benchmark_strategy(name: str | None, universe: tuple[str, ...],
                       source: str = BENCHMARK_KEY) -> Strategy | None:
    """``name`` (a registry name with default parameters, or a ``fixed`` preset; None for
    ``"none"``: no benchmark), else sixty_forty when the universe has SPY and a bond ETF
    (IEF via the preset, another bond ETF at the same 60/40), else equal weight.
    ``source``: where ``name`` came from, as the error names it (``--benchmark`` when the
    command line gave it).

    Raises:
        BacktestInputError: unknown name, one that needs parameters, or a preset naming a
            symbol outside the universe (``check-config`` refuses the same config value).
    """
    if name is None:
        bond = next((b for b in BOND_ETFS if b in universe), None)
        if "SPY" in universe and bond == "IEF":
            return strategies.create("fixed", preset="sixty_forty")
        if "SPY" in universe and bond is not None:
            return strategies.create("fixed", weights={"SPY": 0.6, bond: 0.4})
        return strategies.create("equal_weight")
    try:
        return build_benchmark(name, universe, source)
    except ConfigError as exc:
        raise BacktestInputError(str(exc)) from None


def benchmark_name(strategy: Strategy) -> str:
    return strategy.label


def _benchmark_spec(spec: BacktestSpec, result: BacktestResult) -> BacktestSpec:
    """Same window, calendar, costs and bands; no risk limits or halt (a plain reference)."""
    limits = RiskLimits(lookback_days=spec.settings.limits.lookback_days,
                        confidence=spec.settings.limits.confidence,
                        horizon_days=spec.settings.limits.horizon_days,
                        method=spec.settings.limits.method)
    settings = replace(spec.settings, limits=limits, max_drawdown=None)
    return replace(spec, settings=settings, start=result.dates[0].date(),
                   end=result.dates[-1].date())


def warmup_rows(strategy: Strategy, limits: RiskLimits) -> int:
    """Rows of price history before the first backtest day that ``strategy`` and the risk
    step need (the engine's default first row)."""
    return history_rows_needed(strategy, limits) - 1


def leave_benchmark_warmup(spec: BacktestSpec, prices: pd.DataFrame, strategy: Strategy,
                           bench: Strategy | None) -> BacktestSpec:
    """The benchmark is backtested over the strategy's window (``_benchmark_spec``), so the
    window's first day must leave the benchmark its warm-up too: without a start, the first
    day is the later of the two warm-ups; a given start too early for the benchmark (but not
    for the strategy: the engine names that) is refused naming the benchmark. No benchmark:
    the spec as it is.

    Raises:
        BacktestInputError: the start, the end or the price data leave the benchmark too
            few rows of history.
    """
    if bench is None:
        return spec
    dates = prices.index
    limits = spec.settings.limits
    need, own = warmup_rows(bench, limits), warmup_rows(strategy, limits)
    who = (f"the benchmark {benchmark_name(bench)!r} (warm-up {bench.warmup_days} rows) and "
           f"the risk step ([risk].lookback_days = {limits.lookback_days}) need {need}")
    hint = "or choose another --benchmark / [backtest].benchmark"
    rows = len(dates) if spec.end is None else int(
        dates.searchsorted(pd.Timestamp(spec.end), side="right"))  # rows up to the end
    if spec.start is None:
        if need <= own or own >= rows:  # the engine's own first row, or its error
            return spec
        if need >= rows:
            raise BacktestInputError(
                f"the price data has {rows} rows up to {dates[rows - 1].date()}; {who} rows of "
                f"history before the first backtest day: end later, {hint}")
        return replace(spec, start=dates[need].date())
    if not dates[0].date() <= spec.start <= dates[-1].date():
        return spec  # the engine names a start outside the price data
    row = int(dates.searchsorted(pd.Timestamp(spec.start)))
    if own <= row < need:
        raise BacktestInputError(
            f"start date {spec.start} has {row} trading days of history before it; {who} "
            f"(start on {dates[need].date()} or later, {hint})")
    return spec


@dataclass(frozen=True, slots=True)
class BacktestRun:
    result: BacktestResult
    benchmark: BacktestResult | None
    metrics: dict[str, Any]


def run_configured(cfg: Config, prices: pd.DataFrame, universe: tuple[str, ...], *,
                   start: date | None = None, end: date | None = None,
                   benchmark: str | None = None, walk_forward: WalkForward | None = None,
                   progress: Progress | None = None) -> BacktestRun:
    """Backtest the config's strategy (walk-forward if asked) and its benchmark."""
    b = cfg.backtest
    spec = backtest_spec(cfg, universe, calendar=b.calendar, start=start or b.start,
                         end=end or b.end)
    strategy: Strategy = cfg.build_strategy()
    bench_strategy = (benchmark_strategy(benchmark, universe, "--benchmark") if benchmark
                      else benchmark_strategy(b.benchmark, universe))  # None: "none"
    wf_strategy = None
    if walk_forward is not None:
        dates = prices.index
        if spec.end is not None:
            dates = dates[dates <= pd.Timestamp(spec.end)]
        first = max(walk_forward.train_days, spec.settings.limits.lookback_days)
        if spec.start is not None:
            row = int(dates.searchsorted(pd.Timestamp(spec.start)))
            if row < first < len(dates):  # (it once moved the start on, saying nothing)
                raise BacktestInputError(
                    f"start date {spec.start} has {row} trading days of history before it; "
                    f"--walk-forward {walk_forward.train_days}:{walk_forward.test_days} and the "
                    f"risk step need {first} (start on {dates[first].date()} or later)")
            first = max(first, row)
        elif bench_strategy is not None:  # the default first day leaves the benchmark its warm-up
            first = max(first, warmup_rows(bench_strategy, spec.settings.limits))
        if first >= len(dates):
            raise BacktestInputError(
                f"--walk-forward {walk_forward.train_days}:{walk_forward.test_days}: the price "
                f"data has {len(dates)} days, too few for the training window")
        learner = build_learner(cfg.strategy.name, dict(cfg.strategy.params), walk_forward)
        wf_strategy = WalkForwardStrategy(learner, walk_forward,
                                          fold_starts(dates, first, walk_forward.test_days))
        # each fold's fit trades from its first day: the signal comes every TEST sessions
        # from the first (under the config's monthly signal a fold's weights waited for
        # the next month's first session, weeks into the fold)
        spec = replace(spec, start=dates[first].date(), settings=replace(
            spec.settings, signal=SignalSchedule(None, walk_forward.test_days)))
        strategy = wf_strategy
    spec = leave_benchmark_warmup(spec, prices, strategy, bench_strategy)
    result = run_backtest(prices, strategy, spec, progress)
    bench = (None if bench_strategy is None
             else run_backtest(prices, bench_strategy, _benchmark_spec(spec, result)))
    metrics: dict[str, Any] = {
        "title": f"allocbot backtest: {strategy.name}, {spec.calendar}",
        "settings": {"calendar": spec.calendar, "starting_cash": spec.starting_cash,
                     "commission_bps": spec.costs.commission_bps,
                     "commission_min": spec.costs.commission_min,
                     "slippage_bps": spec.costs.slippage_bps, "risk_free_rate": b.risk_free_rate,
                     "universe": list(universe), "fast_drift_scan": result.fast_drift},
        "strategy": {"name": strategy.name, **result_metrics(result, b.risk_free_rate)},
    }
    if bench_strategy is not None and bench is not None:  # "none": no benchmark block
        metrics["benchmark"] = {"name": benchmark_name(bench_strategy),
                                **result_metrics(bench, b.risk_free_rate)}
    if wf_strategy is not None:
        metrics["walk_forward"] = {
            "train_days": walk_forward.train_days if walk_forward else None,
            "test_days": walk_forward.test_days if walk_forward else None,
            "out_of_sample": True,
            "folds": wf_strategy.folds(result.dates[-1], prices.index),
        }
    return BacktestRun(result, bench, with_relative_statistics(metrics, result, bench))


def load_backtest_prices(cfg: Config, prices_path: Any | None) -> tuple[pd.DataFrame,
                                                                         tuple[str, ...]]:
    """The price file (``--prices`` or ``[sim].prices``) cut to the configured universe."""
    from brokers.prices import load_universe_prices

    prices, universe = load_universe_prices(prices_path or cfg.sim.prices, cfg.universe.symbols)
    return prices.loc[:, list(universe)], universe


def warn_moves_beyond_limit(cfg: Config, prices: pd.DataFrame, start: date | None,
                            end: date | None) -> None:
    """Say up front which one-day moves between ``start`` and ``end`` exceed
    ``[guards].max_daily_move``: the cycle is blocked on those days, as the daemon's would
    be, but the books are marked at those closes (a ×100 typo showed a 3,113 % best day
    and a CAGR to match)."""
    row = (warmup_rows(cfg.build_strategy(), risk_limits(cfg)) if start is None
           else int(prices.index.searchsorted(pd.Timestamp(start))))
    first = max(row - 1, 0)  # the close before the first day: its move into that day
    last = len(prices) if end is None else int(
        prices.index.searchsorted(pd.Timestamp(end), side="right"))
    moves = moves_beyond_limit(prices.iloc[first:last], cfg.guards.limits())
    if moves:
        log.warning("price_moves_beyond_limit", count=len(moves),
                    largest=[f"{sym} {day} {move:+.1%}" for sym, day, move in moves[:10]],
                    limit=cfg.guards.max_daily_move,
                    note="cycles on these days are blocked by the data guard, but equity is "
                         "marked at these closes: check the price file if one is a bad print")


def run_command(cfg: Config, prices_path: Any | None, start: date | None, end: date | None,
                out_dir: Any, benchmark: str | None, walk_forward: WalkForward | None,
                show_progress: bool) -> BacktestRun:
    """What ``allocbot backtest`` does: refuse a strategy the prices' universe cannot fit
    (``PreflightError``, as ``run``), run, write every file, print the summary table."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from bot.backtest.report import summary_table, write_outputs

    prices, universe = load_backtest_prices(cfg, prices_path)
    check_universe_fit(cfg, universe, from_cash=True)
    warn_moves_beyond_limit(cfg, prices, start or cfg.backtest.start, end or cfg.backtest.end)
    console = Console()
    if show_progress:
        with Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.completed}/"
                      "{task.total} days"), TimeRemainingColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("backtest", total=None)
            run = run_configured(cfg, prices, universe, start=start, end=end,
                                 benchmark=benchmark, walk_forward=walk_forward,
                                 progress=lambda done, total: bar.update(task, completed=done,
                                                                         total=total))
    else:
        run = run_configured(cfg, prices, universe, start=start, end=end, benchmark=benchmark,
                             walk_forward=walk_forward)
    write_outputs(out_dir, run.result, run.benchmark, run.metrics, cfg.backtest.tearsheet)
    console.print(summary_table(run.metrics))
    failed = run.metrics["strategy"]["cycles_failed"]
    if failed:
        first = next(c for c in run.result.cycles if c.status is CycleStatus.FAILED)
        console.print(f"[yellow]warning: {failed} of {len(run.result.cycles)} cycles failed; "
                      f"first on {first.day}: {escape(str(first.error))}[/yellow]")
    held, blocked = run.metrics["strategy"]["cycles_held"], run.metrics["strategy"]["cycles_blocked"]
    if held or blocked:
        console.print(f"[yellow]warning: {held} cycle(s) held (strategy_failed) and {blocked} "
                      f"blocked by a pre-trade guard (guard_blocked); see the logs[/yellow]")
    if run.result.trades.empty:  # 19 years in cash said nothing (drift_not_traded is info)
        console.print("[yellow]warning: no order filled over the whole backtest: whole shares "
                      "(\\[sim] fractional = false) with cash below one share's price, "
                      "\\[rebalance] min_order_notional above every order, or every cycle "
                      "held[/yellow]")  # (\\[: a literal bracket, not a rich style)
    days = len(run.result.dates)
    if days < SHORT_BACKTEST_DAYS:
        console.print(f"[yellow]warning: {days} trading day(s): the annualized figures (CAGR, "
                      f"volatility, turnover / yr) extrapolate them to a year[/yellow]")
    console.print(f"wrote {', '.join(sorted(p.name for p in out_dir.iterdir()))} to {out_dir}")
    return run
