"""The tearsheet's charts, one matplotlib ``Figure`` each, drawn without pyplot.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, so no
display, no global pyplot state and no backend switch happen in the caller's process. Import
this module lazily (only when writing a report): matplotlib costs ~0.3 s to import.
Inputs are plain Series/DataFrames keyed by label, so compare and sweep reports reuse the
same charts for several curves; colours come from ``bot.backtest.colours``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axis import Axis
from matplotlib.dates import AutoDateFormatter, AutoDateLocator, DateFormatter, YearLocator
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, PercentFormatter, ScalarFormatter

from bot.backtest.colours import CASH_COLOUR, OTHER_COLOUR
from bot.backtest.periods import DrawdownPeriod

WIDTH_IN = 11.0
MARGIN_LEFT_IN, MARGIN_RIGHT_IN = 1.0, 1.0
DPI = 80


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _figure(height_in: float, rows: int = 1, cols: int = 1, **kw: object
            ) -> tuple[Figure, np.ndarray]:
    """Fixed margins (in inches), not constrained layout: 3× faster to draw, and every
    chart's plot area lines up with the others' in the stacked PNG."""
    fig = Figure(figsize=(WIDTH_IN, height_in))
    fig.subplots_adjust(left=MARGIN_LEFT_IN / WIDTH_IN, right=1 - MARGIN_RIGHT_IN / WIDTH_IN,
                        top=1 - 0.3 / height_in, bottom=0.45 / height_in, hspace=0.12)
    axes = fig.subplots(rows, cols, squeeze=False, **kw)  # type: ignore[call-overload]
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    return fig, axes


def _fix_date_ticks(axis: Axis) -> None:
    """Replace matplotlib's auto date locator by the one it would pick for the final view:
    the same ticks, without re-choosing among every interval each time the axis is laid out."""
    auto = axis.get_major_locator()
    if not isinstance(auto, AutoDateLocator):
        return
    chosen = auto.get_locator(*auto.viewlim_to_dt())
    axis.set_major_locator(chosen)
    axis.set_major_formatter(DateFormatter("%Y", tz=auto.tz) if isinstance(chosen, YearLocator)
                             else AutoDateFormatter(chosen, tz=auto.tz))


def _pin_ticks(axis: Axis) -> None:
    """Pin the ticks to the locations the final view draws: matplotlib builds a Tick (three
    lines, two texts, ~0.5 ms) for every location the locator returns, in view or not, and
    runs the locator at every layout pass. Left alone where the formatter reads the locator
    (ScalarFormatter's decimals see every location, AutoDateFormatter the locator's unit)."""
    transform = axis.get_transform()
    low, high = sorted(transform.transform(axis.get_view_interval()))
    pad = (high - low) * 1e-10  # the tolerance Axis._update_ticks keeps a tick within
    for minor in (False, True):
        if isinstance(axis.get_minor_formatter() if minor else axis.get_major_formatter(),
                      ScalarFormatter | AutoDateFormatter):
            continue
        locs = np.asarray(axis.get_minorticklocs() if minor else axis.get_majorticklocs(),
                          dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            at = transform.transform(locs)
        pinned = FixedLocator(locs[(at >= low - pad) & (at <= high + pad)])
        (axis.set_minor_locator if minor else axis.set_major_locator)(pinned)


def _finish(fig: Figure) -> Figure:
    """Settle what the Agg draw would otherwise recompute per layout pass (~10 % of the draw);
    call after the last artist and axis label are added: the view limits must be final."""
    for ax in fig.axes:
        _fix_date_ticks(ax.xaxis)
        for axis in (ax.xaxis, ax.yaxis):
            _pin_ticks(axis)
            if not axis.label.get_text():  # no label to place: skip measuring the tick labels
                axis.set_label_coords(*axis.label.get_position())
    return fig


def _days(index: pd.Index) -> np.ndarray:
    """Dates as datetime64 (matplotlib converts them vectorized; a DatetimeIndex is iterated
    day by day)."""
    return pd.DatetimeIndex(index).to_numpy(dtype="datetime64[ns]")


def equity_chart(curves: Mapping[str, pd.Series], colours: Mapping[str, str], title: str
                 ) -> Figure:
    """Equity curves on a log scale, each rebased to 1 at its first day (growth of $1)."""
    fig, axes = _figure(4.2)
    ax = axes[0, 0]
    for label, equity in curves.items():
        ax.plot(_days(equity.index), equity.to_numpy() / equity.iloc[0], lw=1.2,
                color=colours[label], label=label)
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_ylabel("growth of 1 (log scale)")
    ax.set_title(title, y=1.0)  # an explicit y: no search for tick labels above the axes
    ax.legend(loc="upper left")
    return _finish(fig)


def drawdown_chart(curves: Mapping[str, pd.Series], colours: Mapping[str, str],
                   worst: list[DrawdownPeriod]) -> Figure:
    """Underwater curves (fall from the running peak); the worst periods of the first curve
    shaded and numbered as in the drawdown table."""
    fig, axes = _figure(3.0)
    ax = axes[0, 0]
    for i, (label, equity) in enumerate(curves.items()):
        under = (equity / equity.cummax() - 1.0).to_numpy()
        if i == 0:
            ax.fill_between(_days(equity.index), under, 0.0, color=colours[label],
                            alpha=0.45, label=label, lw=0)
        else:
            ax.plot(_days(equity.index), under, lw=0.9, color=colours[label], label=label)
    last = _days(next(iter(curves.values())).index[-1:])[0] if curves else None
    for rank, period in enumerate(worst, start=1):
        end = np.datetime64(period.recovery, "ns") if period.recovery else last
        ax.axvspan(np.datetime64(period.start, "ns"), end, color="#fdae61", alpha=0.18, lw=0)
        ax.annotate(str(rank), (np.datetime64(period.trough, "ns"), -period.depth), fontsize=8,
                    xytext=(0, -10), textcoords="offset points", ha="center")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("drawdown")
    ax.legend(loc="lower left")
    return _finish(fig)


def yearly_chart(yearly: pd.DataFrame, colours: Mapping[str, str]) -> Figure:
    """Calendar-year returns, one bar per curve (columns of ``yearly``) per year."""
    fig, axes = _figure(3.0)
    ax = axes[0, 0]
    width = 0.8 / max(len(yearly.columns), 1)
    x = np.arange(len(yearly.index))
    for i, label in enumerate(yearly.columns):
        ax.bar(x + (i - (len(yearly.columns) - 1) / 2) * width, yearly[label].to_numpy(),
               width, color=colours[label], label=label)
    ax.set_xticks(x, [str(y) for y in yearly.index], fontsize=8,
                  rotation=45 if len(x) > 12 else 0)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("yearly return")
    ax.legend(loc="upper left")
    return _finish(fig)


def rolling_chart(sharpe: Mapping[str, pd.Series], volatility: Mapping[str, pd.Series],
                  colours: Mapping[str, str], styles: Mapping[str, str], rf_label: str
                  ) -> Figure:
    """Rolling Sharpe (top) and rolling annualized volatility (bottom); series keyed by a
    label like "strategy 6m", coloured by ``colours`` and dashed per ``styles``."""
    fig, axes = _figure(4.6, 2, 1, sharex=True)
    for ax, series in ((axes[0, 0], sharpe), (axes[1, 0], volatility)):
        for label, values in series.items():
            ax.plot(_days(values.index), values.to_numpy(), lw=1.0, color=colours[label],
                    ls=styles.get(label, "-"), label=label)
        ax.legend(loc="upper left", fontsize=8, ncol=4)
    axes[0, 0].axhline(0.0, color="black", lw=0.6)
    axes[0, 0].set_ylabel(f"Sharpe ({rf_label})")
    axes[1, 0].set_ylabel("volatility")
    axes[1, 0].yaxis.set_major_formatter(PercentFormatter(1.0))
    return _finish(fig)


def distribution_chart(returns: Mapping[str, pd.Series], colours: Mapping[str, str]
                       ) -> Figure:
    """Histograms of daily returns (shared bins), with each curve's mean marked."""
    fig, axes = _figure(3.0)
    ax = axes[0, 0]
    values = [r.to_numpy(dtype=float) for r in returns.values()]
    stacked = np.concatenate(values) if values else np.zeros(1)
    low, high = np.nanpercentile(stacked, [0.1, 99.9]) if len(stacked) else (-0.01, 0.01)
    bins = np.linspace(min(low, -1e-4), max(high, 1e-4), 80)
    for label, v in zip(returns.keys(), values, strict=True):
        ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, color=colours[label], alpha=0.5,
                label=label, histtype="stepfilled")  # one polygon, not 80 bars to draw
        ax.axvline(float(np.mean(v)), color=colours[label], lw=1.0, ls="--")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("daily return (tails clipped at the 0.1 / 99.9 percentiles)")
    ax.set_ylabel("days")
    ax.legend(loc="upper left")
    return _finish(fig)


def weights_chart(weights: pd.DataFrame, colours: Mapping[str, str]) -> Figure:
    """Stacked held weights per day (fractions of equity); cash and "other" in greys."""
    fig, axes = _figure(3.4)
    ax = axes[0, 0]
    fixed = {"cash": CASH_COLOUR, "other": OTHER_COLOUR}
    cols = list(weights.columns)
    ax.stackplot(_days(weights.index), weights.to_numpy().T.clip(min=0.0), labels=cols,
                 colors=[fixed.get(c) or colours[c] for c in cols], lw=0)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("held weight")
    handles, labels = ax.get_legend_handles_labels()  # top of the stack first
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0),
              fontsize=8, frameon=False)
    return _finish(fig)


def turnover_chart(monthly: pd.DataFrame, starting_equity: float) -> Figure:
    """Monthly one-sided turnover (bars) and cumulative costs paid (line, right axis)."""
    fig, axes = _figure(3.0)
    ax = axes[0, 0]
    x = _days(monthly.index.to_timestamp())
    ax.vlines(x, 0.0, monthly["turnover"].to_numpy(), lw=2.5, color="#6baed6",
              label="turnover (one-sided, of equity)")
    ax.set_ylim(bottom=0.0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("monthly turnover")
    right = ax.twinx()
    cumulative = monthly["costs"].cumsum()
    right.plot(x, cumulative.to_numpy(), color="#d62728", lw=1.2,
               label=f"cumulative costs ({cumulative.iloc[-1] / starting_equity:.2%} of "
                     "starting equity)" if len(cumulative) else "cumulative costs")
    right.set_ylabel("costs paid")
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    return _finish(fig)


def var_chart(returns: pd.Series, var_1d: pd.Series, var_limit_1d: float | None,
              confidence: float) -> Figure:
    """Daily losses against the ex-ante 1-day VaR in force the evening before; breaches
    (loss beyond the VaR) marked in red."""
    fig, axes = _figure(3.0)
    ax = axes[0, 0]
    loss = -returns
    ax.plot(_days(loss.index), loss.to_numpy(), lw=0.5, color="#969696", label="daily loss")
    ax.plot(_days(var_1d.index), var_1d.to_numpy(), lw=1.0, color="#08519c",
            label=f"ex-ante 1-day VaR ({confidence:.0%})")
    breach = (loss > var_1d).to_numpy()
    ax.scatter(_days(loss.index[breach]), loss[breach].to_numpy(), s=8, color="#d62728",
               zorder=3,
               label=f"breaches ({int(breach.sum())})")
    if var_limit_1d is not None:
        ax.axhline(var_limit_1d, color="#d62728", ls="--", lw=0.9,
                   label=f"VaR limit (1-day) {var_limit_1d:.2%}")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("loss")
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    return _finish(fig)
