"""What a backtest leaves behind: CSVs, metrics.json, report.png/html, the summary table.

Files (in the output directory): ``equity.csv`` (date, equity, cash per trading day),
``trades.csv`` (date, symbol, side, qty, price, commission: the simulator's fills),
``weights.csv`` (held weights per day, fractions of equity, plus cash), ``metrics.json``,
``report.png`` (equity vs benchmark, drawdowns, stacked weights, rolling volatility with
the VaR limit) and ``report.html`` (the figure and the metrics on one page).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from bot.backtest.engine import BacktestResult
from bot.backtest.metrics import (
    daily_returns,
    drawdowns,
    ex_ante_var_1d,
    summarize,
    trading_figures,
    var_breaches,
)
from bot.engine.statuses import CycleStatus
from strategies.estimators import ANNUALIZATION_DAYS

ROLLING_VOL_DAYS = 63
TOP_WEIGHTS = 10  # the stacked-area panel shows this many assets, then "other"
OUTPUT_FILES = ("equity.csv", "trades.csv", "weights.csv", "metrics.json", "report.png",
                "report.html")


def result_metrics(result: BacktestResult, risk_free_rate: float) -> dict[str, Any]:
    """The metrics block of one run (see ``bot.backtest.metrics`` for the conventions)."""
    block = summarize(result.dates, result.equity, risk_free_rate)
    block |= trading_figures(result.trades, result.dates, result.equity)
    var_1d = ex_ante_var_1d(result.dates, [c.day for c in result.cycles],
                            [c.var for c in result.cycles], result.horizon_days)
    block |= var_breaches(daily_returns(result.equity), var_1d, result.confidence)
    block["cycles"] = len(result.cycles)
    block["cycles_failed"] = sum(1 for c in result.cycles if c.status is CycleStatus.FAILED)
    # held: the strategy could not compute (no fallback); skipped: a pre-trade guard blocked
    block["cycles_held"] = sum(1 for c in result.cycles if c.status is CycleStatus.HELD)
    block["cycles_blocked"] = sum(1 for c in result.cycles if c.status is CycleStatus.SKIPPED)
    block["elapsed_secs"] = round(result.elapsed_secs, 3)
    return block


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
                  metrics: dict[str, Any]) -> list[Path]:
    """Write every output file; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    day = pd.Index(result.dates.strftime("%Y-%m-%d"), name="date")
    pd.DataFrame({"equity": result.equity, "cash": result.cash}, index=day).to_csv(
        out_dir / "equity.csv")
    trades = result.trades.loc[:, ["date", "symbol", "side", "qty", "price", "commission"]].copy()
    trades["date"] = pd.DatetimeIndex(trades["date"]).strftime("%Y-%m-%d")
    trades.to_csv(out_dir / "trades.csv", index=False)
    weights = pd.DataFrame(result.held_weights(), index=day, columns=list(result.symbols))
    weights["cash"] = result.cash / result.equity
    weights.to_csv(out_dir / "weights.csv", float_format="%.10g")
    (out_dir / "metrics.json").write_text(
        json.dumps(_json_safe(metrics), indent=2) + "\n", encoding="utf-8")
    write_figure(out_dir / "report.png", result, benchmark, metrics)
    write_html(out_dir / "report.html", metrics)
    return [out_dir / name for name in OUTPUT_FILES]


def _rolling_vol(equity: np.ndarray) -> np.ndarray:
    r = pd.Series(daily_returns(equity))
    vol = r.rolling(ROLLING_VOL_DAYS).std(ddof=1) * math.sqrt(ANNUALIZATION_DAYS)
    return np.concatenate([[np.nan], vol.to_numpy()])


def _top_weights(result: BacktestResult) -> pd.DataFrame:
    """Held weights of the largest assets (by mean weight), the rest as "other", and cash."""
    w = pd.DataFrame(result.held_weights(), index=result.dates, columns=list(result.symbols))
    order = w.mean().sort_values(ascending=False).index
    top = w[order[:TOP_WEIGHTS]].copy()
    if len(order) > TOP_WEIGHTS:
        top["other"] = w[order[TOP_WEIGHTS:]].sum(axis=1)
    top["cash"] = result.cash / result.equity
    return top.clip(lower=0.0)


def write_figure(path: Path, result: BacktestResult, benchmark: BacktestResult | None,
                 metrics: dict[str, Any]) -> None:
    """Four panels, shared date axis; matplotlib's Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(12, 13), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.5, 2, 1.5]})
    x = result.dates
    title = metrics.get("title", "backtest")
    ax = axes[0]
    ax.plot(x, result.equity, label=f"strategy ({metrics['strategy']['name']})", lw=1.3)
    if benchmark is not None:
        ax.plot(benchmark.dates, benchmark.equity, lw=1.1, alpha=0.8,
                label=f"benchmark ({metrics['benchmark']['name']})")
    ax.set_ylabel("equity")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.fill_between(x, -drawdowns(result.equity) * 100, 0, alpha=0.5, label="strategy")
    if benchmark is not None:
        ax.plot(benchmark.dates, -drawdowns(benchmark.equity) * 100, lw=0.9, color="C1",
                label="benchmark")
    ax.set_ylabel("drawdown %")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    ax = axes[2]
    top = _top_weights(result)
    palette = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    colors = [palette[i % len(palette)] for i in range(len(top.columns))]
    fixed_colors = {"other": "0.55", "cash": "0.85"}  # greys: never confused with an asset
    colors = [fixed_colors.get(c, col) for c, col in zip(top.columns, colors, strict=True)]
    ax.stackplot(x, top.to_numpy().T * 100, labels=list(top.columns), colors=colors,
                 alpha=0.9)
    ax.set_ylabel("held weight %")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", fontsize=7, ncol=min(len(top.columns), 6))
    ax = axes[3]
    ax.plot(x, _rolling_vol(result.equity) * 100, lw=1.0,
            label=f"rolling {ROLLING_VOL_DAYS}-day volatility (annualized)")
    ax.set_ylabel("volatility %")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    var = pd.Series(np.nan, index=x)
    for c in result.cycles:
        if c.var is not None:
            var.loc[pd.Timestamp(c.day)] = c.var
    right.plot(x, var.ffill().to_numpy() * 100, color="C3", lw=0.9,
               label=f"ex-ante VaR ({result.confidence:.0%}, {result.horizon_days}d)")
    if result.var_limit is not None:
        right.axhline(result.var_limit * 100, color="C3", ls="--", lw=1.0,
                      label=f"VaR limit {result.var_limit:.2%}")
    right.set_ylabel("VaR %")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


_ROWS = (
    ("cagr", "CAGR", "pct"), ("volatility", "Volatility", "pct"), ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"), ("max_drawdown", "Max drawdown", "pct"),
    ("calmar", "Calmar", "num"), ("turnover", "Turnover / yr", "pct"),
    ("costs", "Costs paid", "money"), ("rebalances", "Rebalance days", "int"),
    ("var_breaches", "VaR breaches", "int"), ("var_breaches_expected", "  expected", "num"),
    ("final_equity", "Final equity", "money"),
)


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "int":
        return f"{int(value):,d}"
    return f"{value:.2f}"


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, strategy, benchmark) rows of the one-screen summary."""
    bench = metrics.get("benchmark") or {}
    return [(label, _fmt(metrics["strategy"].get(key), kind), _fmt(bench.get(key), kind))
            for key, label, kind in _ROWS]


def summary_table(metrics: dict[str, Any]) -> Table:
    """The rich table printed at the end of ``allocbot backtest``."""
    s, b = metrics["strategy"], metrics.get("benchmark") or {}
    table = Table(title=f"{metrics.get('title', 'backtest')}  ({s['start']} → {s['end']})")
    table.add_column("metric")
    table.add_column(f"strategy: {s['name']}", justify="right")
    table.add_column(f"benchmark: {b.get('name', '—')}", justify="right")
    for row in summary_rows(metrics):
        table.add_row(*row)
    return table


def write_html(path: Path, metrics: dict[str, Any]) -> None:
    """One self-contained page: the figure (inline PNG) and the metrics table."""
    png = base64.b64encode((path.parent / "report.png").read_bytes()).decode("ascii")
    s, b = metrics["strategy"], metrics.get("benchmark") or {}
    rows = "\n".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(sv)}</td><td>{html.escape(bv)}"
        "</td></tr>" for label, sv, bv in summary_rows(metrics))
    files = " · ".join(f'<a href="{n}">{n}</a>' for n in OUTPUT_FILES if n.endswith(".csv")
                       or n == "metrics.json")
    title = html.escape(str(metrics.get("title", "backtest")))
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>{title}</h1>
<p>{html.escape(s['start'])} → {html.escape(s['end'])}, {s['days']} trading days.
Files: {files}</p>
<table><tr><th>metric</th><th>strategy: {html.escape(str(s['name']))}</th>
<th>benchmark: {html.escape(str(b.get('name', '—')))}</th></tr>
{rows}
</table>
<p><img src="data:image/png;base64,{png}" alt="equity, drawdowns, weights, volatility"
 style="max-width:100%"></p>
</body></html>
""", encoding="utf-8")
