"""One trial of a sweep: a validated config backtested on the (in-sample) price panel.

Runs where the work runs (the driver, a local worker process or a Dask worker): inputs
and outputs are plain picklable values. The backtest is the same as ``allocbot backtest``
(``backtest_spec`` → ``run_backtest`` → ``result_metrics``), without the benchmark run.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
from threadpoolctl import threadpool_limits

from bot.backtest.engine import run_backtest
from bot.backtest.metrics import daily_returns
from bot.backtest.report import result_metrics
from bot.backtest.setup import backtest_spec, run_configured
from bot.backtest.walk_forward import WalkForward
from bot.config import parse_config
from bot.errors import AllocbotError
from bot.logs import TrialEvents, counted_trial_events

_worker_logs_quiet = False


@dataclass(frozen=True, slots=True)
class TrialTask:
    """What a worker needs for one trial: its number and the raw config to validate."""

    number: int
    slot: int
    raw_config: dict[str, Any]
    base_dir: Path
    walk_forward: WalkForward | None = None  # refit per test window (learning strategies)


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    """Metrics of the strategy block (as metrics.json), its daily returns from the first
    return day ``returns_start`` on, or the error that stopped it; wall time in seconds."""

    number: int
    slot: int
    metrics: dict[str, Any] | None
    returns: np.ndarray | None
    returns_start: pd.Timestamp | None
    error: str | None
    backtest_secs: float
    #: warning and error events the backtest logged, by name (counted, not written)
    events: dict[str, int] = field(default_factory=dict)


def quiet_worker_logs(level: int = logging.WARNING) -> None:
    """In a worker process (spawned: structlog unconfigured, its default prints to stdout):
    drop the backtest's per-cycle logs below ``level`` before they are formatted
    (thousands per trial), count the trials' warnings and errors (``TrialEvents``), and
    write any other event as a JSON line on stderr; once per process. The stdlib logging
    of the process (a Dask worker's own) is left alone."""
    global _worker_logs_quiet
    if not _worker_logs_quiet:
        structlog.configure(
            processors=[TrialEvents(), structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                        structlog.processors.JSONRenderer(default=str)],
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(level))
        _worker_logs_quiet = True


def json_number(value: Any) -> Any:
    """Metric values as plain JSON scalars (NaN/inf → None, numpy → Python)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate(prices: pd.DataFrame, task: TrialTask) -> TrialOutcome:
    """Validate the trial's config and backtest it; our own errors become the outcome."""
    started = time.perf_counter()
    with counted_trial_events() as events:
        outcome = _evaluate(prices, task, started)
    return replace(outcome, events=dict(events))


def _evaluate(prices: pd.DataFrame, task: TrialTask, started: float) -> TrialOutcome:
    try:
        cfg = parse_config(task.raw_config, task.base_dir)
        universe = tuple(str(c) for c in prices.columns)
        b = cfg.backtest
        if task.walk_forward is not None:  # the walk-forward wiring lives in run_configured
            run = run_configured(cfg, prices, universe, walk_forward=task.walk_forward)
            result, block = run.result, dict(run.metrics["strategy"])
            block.pop("name")
        else:
            spec = backtest_spec(cfg, universe, calendar=b.calendar, start=b.start, end=b.end)
            result = run_backtest(prices, cfg.build_strategy(), spec)
            block = result_metrics(result, b.risk_free_rate)
    except AllocbotError as exc:
        return TrialOutcome(task.number, task.slot, None, None, None, str(exc),
                            time.perf_counter() - started)
    metrics = {k: json_number(v) for k, v in block.items()}
    return TrialOutcome(task.number, task.slot, metrics, daily_returns(result.equity),
                        result.dates[1] if len(result.dates) > 1 else None, None,
                        time.perf_counter() - started)


def run_trials(prices: pd.DataFrame, tasks: list[TrialTask]) -> list[TrialOutcome]:
    """A batch of trials in one task (amortizes scheduling), BLAS pinned to one thread so
    N workers never oversubscribe the cores."""
    quiet_worker_logs()
    with threadpool_limits(limits=1):
        return [evaluate(prices, task) for task in tasks]
