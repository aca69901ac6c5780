"""``allocbot sweep``: the driver. It owns the study (Optuna journal in the output dir),
builds and validates every trial's config, hands batches of trials to a runner (inline,
local processes, Dask) and records each outcome; ``finish_sweep`` writes the outputs.
"""

from __future__ import annotations

import hashlib
import logging
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog

from bot.backtest.setup import (
    SHORT_BACKTEST_DAYS,
    benchmark_strategy,
    load_backtest_prices,
)
from bot.backtest.walk_forward import WalkForward
from bot.config import Config, parse_config
from bot.errors import ConfigError, InputDataError
from bot.research.parallel import DaskRunner, InlineRunner, ProcessRunner, TrialRunner
from bot.research.space import (
    Choice,
    SweepSpace,
    apply_params,
    check_space,
    check_space_fit,
    probe_configs,
)
from bot.research.study import (
    abandon_stale,
    ask_slots,
    close_journal,
    finished_trials,
    flush_journal,
    grid_points,
    open_study,
    start_batch,
    tell_outcome,
)
from bot.research.trial import TrialOutcome, TrialTask

log = structlog.get_logger("allocbot.research")
DEFAULT_TRIALS = 100
DEFAULT_BATCH = 8
RETURNS_DIR = "returns"
MIN_WINDOW_DAYS = 3  # price rows: 2 daily returns, the fewest a Sharpe ratio needs
OnBatch = Callable[[int, int, float | None], None]  # (trials finished, total, best value)


@dataclass(frozen=True, slots=True)
class SweepOptions:
    config_path: Path
    space_path: Path
    out_dir: Path
    trials: int | None = None
    jobs: int = 1
    dask: Any = None  # scheduler address or a distributed.Client
    holdout: date | None = None
    resume: bool = False
    seed: int = 0
    sampler: str = "tpe"
    batch_size: int = DEFAULT_BATCH
    walk_forward: WalkForward | None = None


@dataclass(frozen=True, slots=True)
class SweepInputs:
    """Everything fixed before the first trial: configs, panels, space, window."""

    base_raw: dict[str, Any]  # the config file + the sweep's fixed [backtest] start/end
    base_dir: Path
    base_cfg: Config
    space: SweepSpace
    prices_in_sample: pd.DataFrame
    prices_all: pd.DataFrame
    universe: tuple[str, ...]
    settings: dict[str, Any]  # what a resume must match (hashes of config and space, seed...)
    # the in-sample or holdout window is under SHORT_BACKTEST_DAYS: what the summary says
    window_warnings: tuple[str, ...] = ()


def _longest_warmup(space: SweepSpace, raw: dict[str, Any], base_dir: Path,
                    universe: tuple[str, ...], walk_forward: WalkForward | None
                    ) -> tuple[int, str]:
    """Rows of history every trial needs before its first day, and what needs the most: the
    strategy's warm-up at the space's corners, the risk step's lookback, the benchmark's
    warm-up (it is backtested over the same window: a momentum benchmark needs 253 rows;
    "none": no benchmark), under walk-forward TRAIN."""
    needs: list[tuple[int, str]] = []
    corners = probe_configs(space, raw, base_dir)
    for corner in corners:
        strategy = corner.build_strategy()
        needs += [(strategy.warmup_days, f"the strategy {strategy.name} at the longest of "
                                         "the [space] ranges"),
                  (corner.risk.lookback_days, "the risk step ([risk].lookback_days)")]
    bench = benchmark_strategy(raw.get("backtest", {}).get("benchmark"), universe)
    if bench is not None:
        needs.append((bench.warmup_days, f"the benchmark {bench.label} ([backtest].benchmark)"))
    if walk_forward is not None:
        needs.append((walk_forward.train_days, "--walk-forward TRAIN"))
    return max(needs, key=lambda need: need[0])


def _first_day(space: SweepSpace, raw: dict[str, Any], base_dir: Path,
               prices: pd.DataFrame, walk_forward: WalkForward | None) -> tuple[date, str]:
    """One first backtest day for every trial (comparable Sharpe ratios, one return matrix
    for PBO): the configured ``[backtest].start``, else the day after the longest warm-up
    (``_longest_warmup``); and what set it, as a short-window warning names it."""
    configured = raw.get("backtest", {}).get("start")
    if configured is not None:
        return configured, f"on [backtest].start {configured}"
    warmup, source = _longest_warmup(space, raw, base_dir, tuple(prices.columns), walk_forward)
    if warmup >= len(prices) - 1:
        raise InputDataError(f"the price data has {len(prices)} in-sample days, too few for the "
                             f"{warmup}-day warm-up the space needs")
    return prices.index[warmup].date(), (f"after the {warmup}-row warm-up of {source}, "
                                         "counted from the price data's first day "
                                         f"{prices.index[0].date()}")


def _check_window(prices: pd.DataFrame, first: date, end: date | None,
                  options: SweepOptions, space: SweepSpace) -> None:
    """Refuse a window with fewer than ``MIN_WINDOW_DAYS`` price rows: every trial would
    end with an undefined objective (a Sharpe ratio or volatility needs 2 daily returns)."""
    window = prices.loc[pd.Timestamp(first):]
    if end is not None:
        window = window.loc[:pd.Timestamp(end)]
    if len(window) >= MIN_WINDOW_DAYS:
        return
    span = (f"{window.index[0].date()} to {window.index[-1].date()}" if len(window)
            else f"from {first}")
    need = (f"a sweep needs at least {MIN_WINDOW_DAYS} (2 daily returns) to compute its "
            f"objective {space.objective.metric}")
    if options.holdout is not None:
        raise InputDataError(f"--holdout {options.holdout}: the in-sample window {span} has "
                             f"{len(window)} trading day(s) of prices; {need}: choose a later "
                             "--holdout or an earlier [backtest].start")
    raise InputDataError(f"the sweep's window {span} ([backtest] start/end) has {len(window)} "
                         f"trading day(s) of prices; {need}: widen [backtest] start/end")


def _window_end_cause(options: SweepOptions, configured_end: date | None,
                      last_day: date) -> str:
    """What ends the in-sample window, as a short-window warning names it: ``last_day`` is
    the last day of the prices the trials see (up to ``--holdout``, if given)."""
    if options.holdout is not None and (configured_end is None or configured_end > last_day):
        return f"--holdout {options.holdout}"
    if configured_end is not None:
        return f"[backtest].end {configured_end}"
    return "the last day of the price data"


def _short_window_warning(kind: str, window: pd.DatetimeIndex, because: str) -> str | None:
    """Log ``sweep_window_short`` and return its summary line when ``window`` (the trading
    days of the in-sample or holdout backtests) is under ``SHORT_BACKTEST_DAYS``: its
    annualized figures (a Sharpe over three weeks) extrapolate a few days to a year."""
    days = len(window)
    if days == 0 or days >= SHORT_BACKTEST_DAYS:
        return None
    start, end = window[0].date(), window[-1].date()
    log.warning("sweep_window_short", window=kind, days=days, minimum=SHORT_BACKTEST_DAYS,
                start=str(start), end=str(end), because=because)
    return (f"the {kind} window {start} → {end} has {days} trading day(s) (under "
            f"{SHORT_BACKTEST_DAYS}): {because}; the annualized figures (Sharpe, CAGR, "
            "volatility, turnover / yr) extrapolate them to a year")


def _window_warnings(options: SweepOptions, prices: pd.DataFrame, prices_all: pd.DataFrame,
                     first: date, end: date | None, start_cause: str) -> tuple[str, ...]:
    """The short-window warnings of the trials' in-sample window (``first`` to ``end`` of
    ``prices``, the days up to the holdout) and of the holdout (the days after them)."""
    in_sample = prices.loc[pd.Timestamp(first):pd.Timestamp(end or prices.index[-1])].index
    end_cause = _window_end_cause(options, end, prices.index[-1].date())
    notes = [_short_window_warning("in-sample", in_sample,
                                   f"it starts {start_cause}, and ends at {end_cause}")]
    if options.holdout is not None:
        holdout = prices_all.index[len(prices):]
        notes.append(_short_window_warning(
            "holdout", holdout, f"it is the days after --holdout {options.holdout} to the "
                                "last day of the price data"))
    return tuple(note for note in notes if note is not None)


def prepare(options: SweepOptions, space: SweepSpace) -> SweepInputs:
    """Read the config, validate the space against it, load and cut the prices."""
    path = options.config_path
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base_dir = path.resolve().parent
    cfg = parse_config(raw, base_dir, source=path.resolve())
    # the window's dates as the config validated them (a quoted "2020-03-02" is a date too)
    raw = apply_params(raw, {f"backtest.{key}": value for key, value in (
        ("start", cfg.backtest.start), ("end", cfg.backtest.end)) if value is not None})
    check_space(space, raw, base_dir)
    prices_all, universe = load_backtest_prices(cfg, None)
    check_space_fit(space, raw, base_dir, universe, path)
    prices = prices_all
    if options.holdout is not None:
        prices = prices_all.loc[:pd.Timestamp(options.holdout)]
        if len(prices) < 2 or len(prices) == len(prices_all):
            raise InputDataError(f"--holdout {options.holdout}: leaves no in-sample or no "
                                 f"out-of-sample days (data {prices_all.index[0].date()} to "
                                 f"{prices_all.index[-1].date()})")
        end = raw.get("backtest", {}).get("end")
        if end is None or end > prices.index[-1].date():
            raw = apply_params(raw, {"backtest.end": prices.index[-1].date()})
    first, start_cause = _first_day(space, raw, base_dir, prices, options.walk_forward)
    if first > prices.index[-1].date():
        raise InputDataError(f"[backtest].start {first} is after the last in-sample day "
                             f"{prices.index[-1].date()}")
    _check_window(prices, first, raw.get("backtest", {}).get("end"), options, space)
    warnings = _window_warnings(options, prices, prices_all, first, cfg.backtest.end,
                                start_cause)
    raw = apply_params(raw, {"backtest.start": first})
    settings = {"space_sha256": hashlib.sha256(space.text.encode()).hexdigest(),
                "config_sha256": hashlib.sha256(text).hexdigest(),
                "prices_sha256": prices_digest(prices), "seed": options.seed,
                "sampler": options.sampler, "batch_size": options.batch_size,
                "holdout": None if options.holdout is None else str(options.holdout),
                "walk_forward": None if options.walk_forward is None else
                f"{options.walk_forward.train_days}:{options.walk_forward.test_days}"}
    return SweepInputs(raw, base_dir, cfg, space, prices, prices_all, universe, settings,
                       warnings)


def prices_digest(prices: pd.DataFrame) -> str:
    """SHA-256 of the price panel the trials see (dates, symbols, closes): a resume on a
    price file changed since would mix trials scored on two markets."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, prices.columns)).encode())
    digest.update(prices.index.to_numpy(dtype="datetime64[ns]").tobytes())
    digest.update(np.ascontiguousarray(prices.to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def make_runner(options: SweepOptions, prices: pd.DataFrame) -> TrialRunner:
    if options.dask is not None:
        return DaskRunner(prices, options.dask)
    if options.jobs <= 1:
        return InlineRunner(prices)
    return ProcessRunner(prices, options.jobs)


def trial_values(space: SweepSpace, labels: dict[str, Any]) -> dict[str, Any]:
    """Optuna's param values → config values (choice labels back to their TOML value)."""
    values = {}
    for p in space.params:
        label = labels[p.path]
        values[p.path] = p.domain.value_of(label) if isinstance(p.domain, Choice) else label
    return values


def _save_returns(out_dir: Path, outcome: TrialOutcome) -> None:
    if outcome.returns is not None:
        np.save(out_dir / RETURNS_DIR / f"slot_{outcome.slot:06d}.npy", outcome.returns)


def _best_value(study_rows: list[Any], direction: str) -> float | None:
    values = [r.value for r in study_rows if r.outcome == "complete" and r.value is not None]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


@dataclass(slots=True)
class SweepClock:
    """Where a run's wall time went, in seconds (``benchmarks/bench_sweep.py`` prints it):
    starting the runner, opening and planning the study, asking the batches (workers run
    the first chunks meanwhile), waiting for the rest of each batch, the tells and the
    journal flushes. ``backtest_secs`` sums the trials' own backtest times (in workers);
    ``trial_events`` the warning and error events the trials counted (``TrialOutcome``)."""

    start_secs: float = 0.0
    open_secs: float = 0.0
    ask_secs: float = 0.0
    run_secs: float = 0.0
    tell_secs: float = 0.0
    flush_secs: float = 0.0
    backtest_secs: float = 0.0
    trials: int = 0
    trial_events: dict[str, int] = field(default_factory=dict)


def run_sweep(options: SweepOptions, inputs: SweepInputs, on_batch: OnBatch | None = None
              ) -> tuple[Any, SweepClock]:
    """Run the sweep to ``trials`` finished trials; returns (study, where this run's time
    went). The journal is flushed once per batch: Ctrl-C/SIGKILL leave every finished
    batch, which ``--resume`` continues."""
    space = inputs.space
    grid = grid_points(space) if options.sampler == "grid" else None
    clock = SweepClock()
    mark = time.perf_counter()
    runner = make_runner(options, inputs.prices_in_sample)  # connect before touching --out
    clock.start_secs, mark = _lap(mark)
    study = None
    try:
        study = open_study(options.out_dir, space.objective.direction, inputs.settings,
                           options.resume)
        (options.out_dir / RETURNS_DIR).mkdir(exist_ok=True)
        total, pending, fixed = _plan(study, options, space, grid)
        flush_journal(study)  # the stale trials' FAIL
        clock.open_secs, _ = _lap(mark)
        log.info("sweep_started", trials=total, already_finished=total - len(pending),
                 sampler=options.sampler, seed=options.seed, workers=runner.workers,
                 out=str(options.out_dir))
        for batch_no, slots in _batches(pending, options.batch_size):
            _run_batch(study, options, inputs, runner, batch_no, slots, fixed, clock)
            rows = finished_trials(study)
            best = _best_value(rows, space.objective.direction)
            log.info("sweep_batch_finished", batch=batch_no, finished=len(rows), trials=total,
                     best=best)
            if on_batch is not None:
                on_batch(len(rows), total, best)
    except KeyboardInterrupt:
        runner.abort()  # the batch under way is not journaled: --resume runs it again
        raise
    finally:
        if study is not None:
            close_journal(study)
        runner.close()
    return study, clock


def _lap(mark: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - mark, now


def _run_batch(study: Any, options: SweepOptions, inputs: SweepInputs, runner: TrialRunner,
               batch_no: int, slots: list[int], fixed: dict[int, dict[str, Any]],
               clock: SweepClock) -> None:
    """Ask one batch chunk by chunk, each chunk going to the workers as soon as it is
    asked (the same asks as asking the whole batch first), tell every outcome in slot
    order, then flush the journal once."""
    space = inputs.space
    mark = time.perf_counter()
    start_batch(study, batch_no, options.seed, options.sampler)
    asked: list[tuple[Any, dict[str, Any]]] = []
    handles = []
    for size in runner.plan(len(slots)):
        part = slots[len(asked):len(asked) + size]
        chunk = ask_slots(study, space, part, fixed)
        asked += chunk
        handles.append(runner.submit([TrialTask(
            t.number, slot, apply_params(inputs.base_raw, trial_values(space, labels)),
            inputs.base_dir, options.walk_forward)
            for slot, (t, labels) in zip(part, chunk, strict=True)]))
        if len(handles) == 1:
            log.info("sweep_batch_started", batch=batch_no, slots=len(slots))
    lap, mark = _lap(mark)
    clock.ask_secs += lap
    outcomes = runner.gather(handles)
    lap, mark = _lap(mark)
    clock.run_secs += lap
    for (trial, _), outcome in zip(asked, outcomes, strict=True):
        _save_returns(options.out_dir, outcome)
        tell_outcome(study, trial, outcome, space)
        clock.backtest_secs += outcome.backtest_secs
        for event, count in outcome.events.items():
            clock.trial_events[event] = clock.trial_events.get(event, 0) + count
    lap, mark = _lap(mark)
    clock.tell_secs += lap
    flush_journal(study)
    lap, _ = _lap(mark)
    clock.flush_secs += lap
    clock.trials += len(slots)


def _plan(study: Any, options: SweepOptions, space: SweepSpace,
          grid: list[dict[str, Any]] | None
          ) -> tuple[int, list[int], dict[int, dict[str, Any]]]:
    """(trials in total, slots still to run, slot → fixed params): stale trials of a
    crashed run are abandoned and their slots re-run with the params they had."""
    stale = abandon_stale(study)
    total = options.trials or (len(grid) if grid is not None else DEFAULT_TRIALS)
    done = {r.slot for r in finished_trials(study)}
    if grid is not None:
        total = min(total, len(grid))
        fixed = {slot: grid[slot] for slot in range(total)}
    else:
        fixed = _whole_batches(stale, done, total, options.batch_size, len(space.params))
    return total, [s for s in range(total) if s not in done], fixed


def _whole_batches(stale: dict[int, dict[str, Any]], done: set[int], total: int, size: int,
                   n_params: int) -> dict[int, dict[str, Any]]:
    """The stale slots whose whole batch was asked: a batch is asked slot by slot before
    any of it runs, so a kill can land between two asks. Such a batch is asked again from
    its seed as a whole; re-asking only its tail would draw from another point of the
    sampler's RNG and give other trials than an uninterrupted sweep."""
    keep: dict[int, dict[str, Any]] = {}
    for batch in {slot // size for slot in stale}:
        slots = [s for s in range(batch * size, min((batch + 1) * size, total)) if s not in done]
        if all(len(stale.get(s, {})) == n_params for s in slots):
            keep |= {s: stale[s] for s in slots}
    return keep


def _batches(pending: list[int], size: int) -> list[tuple[int, list[int]]]:
    """Pending slots grouped by their batch number (slot // size), in order."""
    groups: dict[int, list[int]] = {}
    for slot in pending:
        groups.setdefault(slot // size, []).append(slot)
    return sorted(groups.items())


def driver_log_levels(backtest_level: str, sweep_level: str = "info") -> None:
    """In the driver: the sweep's own events at ``sweep_level``, inline backtests' at
    ``backtest_level`` (``[backtest].log_level``)."""
    for name in ("allocbot", "brokers", "strategies"):
        logging.getLogger(name).setLevel(getattr(logging, backtest_level.upper()))
    logging.getLogger("allocbot.research").setLevel(getattr(logging, sweep_level.upper()))
