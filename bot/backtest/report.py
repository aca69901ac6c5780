"""What a backtest leaves behind: CSVs, metrics.json, the tearsheet, the summary table.

Files (in the output directory): ``equity.csv`` (date, equity, cash per trading day),
``trades.csv`` (date, symbol, side, qty, price, commission: the simulator's fills),
``weights.csv`` (held weights per day, fractions of equity, plus cash), ``metrics.json``,
and the tearsheet ``report.html`` + ``report.png`` (``bot.backtest.tearsheet``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from bot.backtest.engine import BacktestResult
from bot.backtest.metrics import (
    aligned_returns,
    daily_returns,
    distribution_figures,
    ex_ante_var_1d,
    return_series,
    summarize,
    trading_figures,
    var_breaches,
)
from bot.backtest.periods import worst_drawdowns, yearly_returns
from bot.backtest.relative import relative_statistics
from bot.engine.statuses import CycleStatus

OUTPUT_FILES = ("equity.csv", "trades.csv", "weights.csv", "metrics.json", "report.png",
                "report.html")
WORST_DRAWDOWNS = 5


def equity_series(result: BacktestResult) -> pd.Series:
    """The run's daily equity, indexed by trading day."""
    return pd.Series(result.equity, index=result.dates, name="equity")


def result_metrics(result: BacktestResult, risk_free_rate: float) -> dict[str, Any]:
    """The metrics block of one run (see ``bot.backtest.metrics`` for the conventions)."""
    block = summarize(result.dates, result.equity, risk_free_rate)
    block |= distribution_figures(daily_returns(result.equity))
    block |= trading_figures(result.trades, result.dates, result.equity)
    var_1d = ex_ante_var_1d(result.dates, *result.var_records(), result.horizon_days)
    block |= var_breaches(daily_returns(result.equity), var_1d, result.confidence)
    block["cycles"] = len(result.cycles)
    block["cycles_failed"] = sum(1 for c in result.cycles if c.status is CycleStatus.FAILED)
    # held: the strategy could not compute (no fallback); skipped: a pre-trade guard blocked
    block["cycles_held"] = sum(1 for c in result.cycles if c.status is CycleStatus.HELD)
    block["cycles_blocked"] = sum(1 for c in result.cycles if c.status is CycleStatus.SKIPPED)
    # the drawdown kill switch: nothing traded from that day on (a backtest never re-arms)
    block["halted_on"] = next((c.day.isoformat() for c in result.cycles
                               if c.status is CycleStatus.HALTED), None)
    block["elapsed_secs"] = round(result.elapsed_secs, 3)
    equity = equity_series(result)
    block["worst_drawdowns"] = [p.as_dict() for p in worst_drawdowns(equity, WORST_DRAWDOWNS)]
    block["yearly_returns"] = {str(y): float(r) for y, r in yearly_returns(equity).items()}
    return block


def risk_free_rate_of(metrics: dict[str, Any]) -> float:
    """The annual risk-free rate the metrics were computed with (``[backtest]``)."""
    return float((metrics.get("settings") or {}).get("risk_free_rate", 0.0))


def with_relative_statistics(metrics: dict[str, Any], result: BacktestResult,
                             benchmark: BacktestResult | None) -> dict[str, Any]:
    """``metrics`` with the strategy's benchmark-relative statistics (beta, alpha, tracking
    error, information ratio, up/down capture, ...; ``bot.backtest.relative``) added to its
    ``strategy`` block; unchanged without a benchmark. Returns a new dict."""
    if benchmark is None:
        return metrics
    r, b = aligned_returns(return_series(result.dates, result.equity),
                           return_series(benchmark.dates, benchmark.equity))
    stats = relative_statistics(r, b, risk_free_rate_of(metrics))
    return {**metrics, "strategy": {**metrics["strategy"], **stats}}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_outputs(out_dir: Path, result: BacktestResult, benchmark: BacktestResult | None,
                  metrics: dict[str, Any], tearsheet: bool = True) -> list[Path]:
    """Write every output file (the relative statistics added to metrics.json when the
    caller has not; ``tearsheet`` False: not report.html/report.png, ``[backtest]
    tearsheet``); returns their paths."""
    from bot.backtest.tearsheet import write_tearsheet

    if "beta" not in metrics["strategy"]:
        metrics = with_relative_statistics(metrics, result, benchmark)
    out_dir.mkdir(parents=True, exist_ok=True)
    day = pd.Index(result.dates.strftime("%Y-%m-%d"), name="date")
    pd.DataFrame({"equity": result.equity, "cash": result.cash}, index=day).to_csv(
        out_dir / "equity.csv")
    trades = result.trades.loc[:, ["date", "symbol", "side", "qty", "price", "commission"]].copy()
    trades["date"] = pd.DatetimeIndex(trades["date"]).strftime("%Y-%m-%d")
    trades.to_csv(out_dir / "trades.csv", index=False)
    _write_float_table(out_dir / "weights.csv", day, [*result.symbols, "cash"],
                       [result.held_weights(), result.cash / result.equity],
                       "%.10g")  # not kept: the tearsheet's own days × symbols array follows
    (out_dir / "metrics.json").write_text(
        json.dumps(_json_safe(metrics), indent=2) + "\n", encoding="utf-8")
    if tearsheet:
        write_tearsheet(out_dir, result, benchmark, metrics)
    return [out_dir / name for name in OUTPUT_FILES if (out_dir / name).exists()]


_ROWS_PER_CHUNK = 256  # 500 symbols × 20 years as one list of floats was ~80 MB of peak


def _write_float_table(path: Path, index: pd.Index, columns: list[str],
                       blocks: Sequence[np.ndarray], fmt: str) -> None:
    """A CSV of ``blocks`` side by side (days × k arrays or day columns) as
    ``DataFrame.to_csv(float_format=fmt)`` writes it, byte for byte, ~4× faster: one ``%``
    per row instead of pandas' per-cell formatter (weights.csv of 500 symbols × 20 years
    is 2.5 million cells). The blocks are joined a chunk of rows at a time: joining them
    whole was a second days × symbols copy, the backtest report's memory peak."""
    parts = [b.reshape(len(b), -1) for b in blocks]
    if not all(np.isfinite(p).all() for p in parts):  # pandas writes NaN as an empty field
        frame = pd.DataFrame(np.hstack(parts), index=index, columns=columns)
        frame.to_csv(path, float_format=fmt)
        return
    row_fmt = ",".join([fmt] * len(columns))
    header = ",".join([str(index.name or ""), *columns])
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(header + "\n")
        labels = index.tolist()
        for lo in range(0, len(index), _ROWS_PER_CHUNK):  # a chunk of Python floats at a time
            hi = lo + _ROWS_PER_CHUNK
            rows = np.hstack([p[lo:hi] for p in parts]).tolist()
            out.writelines(f"{label},{row_fmt % tuple(row)}\n"
                           for label, row in zip(labels[lo:hi], rows, strict=True))


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if kind == "text":
        return str(value)
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "int":
        return f"{int(value):,d}"
    return f"{value:.2f}"


def _rows(metrics: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    rf = f"rf {risk_free_rate_of(metrics):.2%}"
    return (
        ("cagr", "CAGR", "pct"), ("total_return", "Total return", "pct"),
        ("volatility", "Volatility", "pct"), ("sharpe", f"Sharpe ({rf})", "num"),
        ("sortino", f"Sortino ({rf})", "num"), ("max_drawdown", "Max drawdown", "pct"),
        ("calmar", "Calmar", "num"), ("best_day", "Best day", "pct"),
        ("worst_day", "Worst day", "pct"), ("skew", "Skew (daily)", "num"),
        ("kurtosis", "Excess kurtosis (daily)", "num"), ("turnover", "Turnover / yr", "pct"),
        ("costs", "Costs paid", "money"), ("rebalances", "Rebalance days", "int"),
        ("var_breaches", "VaR breaches", "int"), ("var_breaches_expected", "  expected", "num"),
        ("final_equity", "Final equity", "money"),
        ("halted_on", "Halted (max_drawdown) on", "text"),
    )


RELATIVE_ROWS = (
    ("beta", "Beta", "num"), ("alpha", "Alpha (Jensen, annualized)", "pct"),
    ("correlation", "Correlation", "num"), ("tracking_error", "Tracking error", "pct"),
    ("information_ratio", "Information ratio", "num"), ("up_capture", "Up capture", "num"),
    ("down_capture", "Down capture", "num"), ("active_return", "Active return (CAGR)", "pct"),
)


def summary_header(metrics: dict[str, Any]) -> tuple[str, ...]:
    """The summary's column titles: metric, strategy and, when one ran, the benchmark
    (``--benchmark none``: no column of dashes)."""
    head = ("metric", f"strategy: {metrics['strategy']['name']}")
    bench = metrics.get("benchmark")
    return (*head, f"benchmark: {bench.get('name', '?')}") if bench else head


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """(label, strategy[, benchmark]) rows of the one-screen summary, as
    ``summary_header``; Sharpe and Sortino labels carry the risk-free rate they were
    computed with."""
    bench = metrics.get("benchmark")
    return [(label, _fmt(metrics["strategy"].get(key), kind))
            + ((_fmt(bench.get(key), kind),) if bench else ())
            for key, label, kind in _rows(metrics)]


def relative_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the strategy-vs-benchmark statistics (empty if absent)."""
    s = metrics["strategy"]
    return [(label, _fmt(s.get(key), kind)) for key, label, kind in RELATIVE_ROWS if key in s]


def summary_table(metrics: dict[str, Any]) -> Table:
    """The rich table printed at the end of ``allocbot backtest``."""
    s = metrics["strategy"]
    table = Table(title=f"{metrics.get('title', 'backtest')}  ({s['start']} → {s['end']})",
                  caption=None if metrics.get("benchmark") else 'no benchmark ("none")')
    header = summary_header(metrics)
    table.add_column(header[0])
    for title in header[1:]:
        table.add_column(title, justify="right")
    for row in summary_rows(metrics):
        table.add_row(*row)
    relative = relative_rows(metrics)
    if relative:
        table.add_section()
        table.add_row("[b]strategy vs benchmark[/b]", "", "")
    for label, value in relative:
        table.add_row(label, value, "")
    return table
