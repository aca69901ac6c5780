"""The sweep's report: optimization history, parameter importances, parallel coordinates,
in-sample vs holdout, the overfitting verdict (PNGs via matplotlib's Agg backend, and
``report.html`` with them inlined)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from bot.research.pages import png_tag, table, write_page
from bot.research.results import SweepSummary
from bot.research.space import SweepSpace
from bot.research.study import FinishedTrial

COMPARED_METRICS = ("sharpe", "cagr", "volatility", "max_drawdown", "turnover", "calmar")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(path: Path, rows: list[FinishedTrial], metric: str, maximize: bool) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ok = [r for r in rows if r.outcome == "complete" and r.value is not None]
    bad = [r for r in rows if r.outcome == "infeasible" and r.value is not None]
    ax.scatter([r.slot for r in ok], [r.value for r in ok], s=14, label="feasible")
    ax.scatter([r.slot for r in bad], [r.value for r in bad], s=14, marker="x", color="0.6",
               label="infeasible (constraint broken)")
    best, xs, ys = None, [], []
    for r in sorted(ok, key=lambda r: r.slot):
        v = float(r.value or 0.0)
        if best is None or (v > best if maximize else v < best):
            best = v
        xs.append(r.slot)
        ys.append(best)
    ax.step(xs, ys, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title("optimization history")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def param_importances(study: Any) -> dict[str, float]:
    """fANOVA importances (Hutter et al. 2014, Optuna's evaluator; seeded) of the complete
    trials; empty when there are too few trials or only one parameter varied."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    try:
        return dict(optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0)))
    except (ValueError, RuntimeError):
        return {}


def plot_importances(path: Path, importances: dict[str, float]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * max(1, len(importances))))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set_xlabel("fANOVA importance (share of objective variance)")
    ax.set_title("parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _axis(values: list[Any]) -> tuple[np.ndarray, list[str]]:
    """Values mapped onto [0, 1] (numbers by range, other values by sorted label)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        x = np.asarray(values, dtype=float)
        lo, hi = float(x.min()), float(x.max())
        scaled = (x - lo) / (hi - lo) if hi > lo else np.full(len(x), 0.5)
        return scaled, [f"{lo:.4g}", f"{hi:.4g}"]
    labels = sorted({str(v) for v in values})
    pos = {label: i / max(1, len(labels) - 1) for i, label in enumerate(labels)}
    return np.array([pos[str(v)] for v in values]), [labels[0][:18], labels[-1][:18]]


def plot_parallel(path: Path, rows: list[FinishedTrial], space: SweepSpace, metric: str) -> None:
    """Parallel coordinates: one line per feasible trial, coloured by the objective."""
    plt = _plt()
    ok = [r for r in rows if r.outcome == "complete" and r.value is not None]
    names = [p.path for p in space.params]
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * (len(names) + 1)), 5))
    if ok:
        cols = [_axis([r.params[n] for r in ok]) for n in names]
        value_axis = _axis([float(r.value or 0.0) for r in ok])
        ys = np.column_stack([c[0] for c in cols] + [value_axis[0]])
        vals = np.array([float(r.value or 0.0) for r in ok])
        norm = plt.Normalize(vals.min(), vals.max())
        cmap = plt.get_cmap("viridis")
        for i in np.argsort(vals):
            ax.plot(range(len(names) + 1), ys[i], color=cmap(norm(vals[i])), alpha=0.6, lw=1)
        for j, (_, ends) in enumerate([*cols, value_axis]):
            ax.text(j, -0.06, ends[0], ha="center", va="top", fontsize=7)
            ax.text(j, 1.04, ends[1], ha="center", va="bottom", fontsize=7)
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    ax.set_xticks(range(len(names) + 1), [*names, metric], rotation=15, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    ax.set_title("parallel coordinates (feasible trials; colour = objective)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_in_vs_out(path: Path, summary: SweepSummary) -> None:
    """The best config's equity in sample, then on the holdout (scaled to continue from
    the in-sample end), each against the benchmark."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ins, out = summary.in_sample, summary.holdout
    for run, tag in ((ins, "in-sample"), (out, "holdout, chained")):
        if run is None or ins is None:
            continue
        chain = ins.result.equity[-1] / run.result.equity[0] if run is out else 1.0
        ax.plot(run.result.dates, run.result.equity * chain, lw=1.2, label=f"best, {tag}")
        if run.benchmark is not None and ins.benchmark is not None:
            chain = ins.benchmark.equity[-1] / run.benchmark.equity[0] if run is out else 1.0
            ax.plot(run.benchmark.dates, run.benchmark.equity * chain, lw=0.9, alpha=0.7,
                    label=f"benchmark ({run.metrics['benchmark']['name']}), {tag}")
    if summary.holdout is not None:
        ax.axvline(summary.holdout.result.dates[0], color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_ylabel("equity (log)")
    ax.set_title("best config: in-sample vs holdout")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _overfitting_html(stats: dict[str, Any]) -> str:
    if "deflated_sharpe_ratio" not in stats:
        return f"<p>{html.escape(stats.get('note', 'not computed'))}</p>"
    if stats.get("identical_trials"):  # no statistic to show: no selection happened
        return f'<p class="verdict">{html.escape(stats["verdict"])}</p>'
    # green only for a verdict that clears the winner (an undefined DSR clears nothing)
    cleared = "likely luck" not in stats["verdict"] and stats["deflated_sharpe_ratio"] is not None
    cls = "verdict ok" if cleared else "verdict"
    rows = [("trials (N)", stats["n_trials"]), ("daily observations (T)", stats["n_obs"]),
            ("best Sharpe (daily)", _fmt(stats["best_daily_sharpe"])),
            ("variance of trial Sharpes (daily)", _fmt(stats["sharpe_variance_daily"])),
            ("expected max Sharpe of N zero-skill trials (annual)",
             _fmt(stats["expected_max_sharpe_annual"])),
            ("skewness / kurtosis of best's returns",
             f"{_fmt(stats['skewness'])} / {_fmt(stats['kurtosis'])}"),
            ("Deflated Sharpe Ratio (Bailey & López de Prado 2014)",
             _fmt(stats["deflated_sharpe_ratio"]) if stats["deflated_sharpe_ratio"] is not None
             else f"— ({stats.get('dsr_note', 'undefined')})"),
            ("PBO by CSCV, S = 16 (Bailey, Borwein, López de Prado & Zhu 2017)",
             _fmt(stats.get("pbo", stats.get("pbo_note"))))]
    return (f'<p class="{cls}">{html.escape(stats["verdict"])}</p>'
            + table(("statistic", "value"), rows))


def write_sweep_report(out_dir: Path, summary: SweepSummary, space: SweepSpace, study: Any,
                       settings: dict[str, Any], charts: bool = True) -> list[Path]:
    """PNGs and report.html in ``out_dir``; returns the files written. ``charts`` False
    (``[backtest] tearsheet = false``, for scripted runs) writes the page's tables only."""
    obj = space.objective
    pngs = {"history.png": "optimization history", "importances.png": "parameter importances",
            "parallel.png": "parallel coordinates", "in_vs_out.png": "in-sample vs holdout"}
    if charts:
        plot_history(out_dir / "history.png", summary.rows, obj.metric,
                     obj.direction == "maximize")
        importances = param_importances(study)
        if importances:
            plot_importances(out_dir / "importances.png", importances)
        plot_parallel(out_dir / "parallel.png", summary.rows, space, obj.metric)
        if summary.in_sample is not None:
            plot_in_vs_out(out_dir / "in_vs_out.png", summary)
    # [backtest] tearsheet = false: the best run has metrics.json, no report.html
    own = "report.html" if (out_dir / "best" / "report.html").exists() else "metrics.json"
    parts = [f"<p>Objective: {obj.direction} <b>{html.escape(obj.metric)}</b> (net of costs, "
             f"in sample), constraints: {html.escape(', '.join(map(str, obj.constraints)) or 'none')}"
             f". Sampler {html.escape(str(settings['sampler']))}, seed {settings['seed']}, "
             f"{len(summary.rows)} trials. Files: <a href=\"trials.csv\">trials.csv</a>"
             + (f" · <a href=\"best.toml\">best.toml</a> · <a href=\"best/{own}\">best "
                "config's backtest</a>" if summary.best is not None else
                " (no feasible trial: no best.toml)")
             + (f" · <a href=\"holdout/{own}\">holdout backtest</a>"
                if summary.holdout is not None else "") + "</p>"]
    parts += [f'<p class="note"><b>Warning:</b> {html.escape(note)}</p>'
              for note in summary.window_warnings]
    parts += _best_sections(summary)
    parts.append("<h2>Is the winner luck?</h2>" + _overfitting_html(summary.overfitting))
    for name, alt in pngs.items() if charts else ():
        if (out_dir / name).exists():
            parts.append(f"<h2>{html.escape(alt)}</h2>" + png_tag(out_dir / name, alt))
    if not charts:
        parts.append('<p class="note">Charts left out: [backtest] tearsheet = false.</p>')
    write_page(out_dir / "report.html", f"allocbot sweep: {obj.metric}", parts)
    return [out_dir / n for n in [*(pngs if charts else ()), "report.html"]
            if (out_dir / n).exists()]


def _best_sections(s: SweepSummary) -> list[str]:
    if s.best is None or s.in_sample is None:
        return ["<p><b>No feasible trial.</b> Loosen the constraints or widen the space.</p>"]
    params = table(("parameter", "value"), sorted(s.best.params.items()))
    ins = s.in_sample.metrics
    bench = "benchmark" in ins  # [backtest].benchmark = "none": no benchmark columns
    header = ["metric", f"in-sample ({ins['strategy']['start']} → {ins['strategy']['end']})"]
    header += [f"benchmark in-sample ({ins['benchmark']['name']})"] if bench else []
    out = s.holdout.metrics if s.holdout is not None else None
    if out is not None:
        header += [f"holdout ({out['strategy']['start']} → {out['strategy']['end']})"]
        header += ["benchmark holdout"] if bench else []
    rows = []
    for m in COMPARED_METRICS:
        blocks = [ins["strategy"], *([ins["benchmark"]] if bench else [])]
        if out is not None:
            blocks += [out["strategy"], *([out["benchmark"]] if bench else [])]
        rows.append([m, *(_fmt(block.get(m)) for block in blocks)])
    rf = ins["settings"]["risk_free_rate"]
    return [f"<h2>Best trial: #{s.best.slot}</h2>", params,
            f"<h2>In-sample vs holdout</h2><p>Sharpe at risk-free rate {rf:.2%}.</p>",
            table(header, rows)]


SUMMARY_PERCENTS = frozenset({"cagr", "volatility", "max_drawdown", "turnover"})


def figures_text(block: dict[str, Any]) -> str:
    """``COMPARED_METRICS`` of one metrics block on one line ("sharpe 0.812, cagr 7.20%,
    ..."); a figure that is not finite is "undefined", never nan."""
    parts = []
    for metric in COMPARED_METRICS:
        value = block.get(metric)
        if value is None or not math.isfinite(value):
            parts.append(f"{metric} undefined")
        else:
            parts.append(f"{metric} {value:.2%}" if metric in SUMMARY_PERCENTS
                         else f"{metric} {value:.3f}")
    return ", ".join(parts)


def window_figures(kind: str, metrics: dict[str, Any]) -> list[str]:
    """The best config's figures over one window (in-sample or holdout), then its
    benchmark's when it has one."""
    s = metrics["strategy"]
    lines = [f"{kind} {s['start']} → {s['end']} ({s['days']:,d} trading days): "
             f"{figures_text(s)}"]
    bench = metrics.get("benchmark")
    if bench is not None:
        lines.append(f"  benchmark {bench['name']}: {figures_text(bench)}")
    return lines


def _no_feasible_lines(summary: SweepSummary, constraints: tuple[Any, ...]) -> list[str]:
    states: dict[str, int] = {}
    for r in summary.rows:
        states[r.outcome] = states.get(r.outcome, 0) + 1
    why = [f"{states[s]} {label}" for s, label in
           (("infeasible", f"broke a constraint ({', '.join(map(str, constraints))})"),
            ("failed", "failed or had no objective value (the error column of trials.csv)"))
           if states.get(s)]
    return [f"[yellow]no feasible trial[/yellow] among {len(summary.rows)}: "
            + escape("; ".join(why) or "none finished")
            + ". No best.toml was written; loosen the constraints or widen the space."]


def _best_lines(summary: SweepSummary, best: FinishedTrial) -> list[str]:
    m = best.result["metrics"]
    sharpe = "undefined" if m.get("sharpe") is None else f"{m['sharpe']:.3f}"
    lines = [f"best trial #{best.slot}: value {best.value:.6g}, sharpe {sharpe}, "
             f"max_drawdown {m['max_drawdown']:.2%}; params {best.params}"]
    for kind, run in (("in-sample", summary.in_sample), ("holdout", summary.holdout)):
        if run is not None:
            lines += window_figures(kind, run.metrics)
    return [escape(line) for line in lines]


def console_summary(summary: SweepSummary, out_dir: Path, constraints: tuple[Any, ...] = ()
                    ) -> list[str]:
    """The lines (rich markup) ``allocbot sweep`` prints on stdout when it ends: the best
    trial and its in-sample and holdout figures (each beside the benchmark's), the
    short-window warnings, the overfitting verdict, the files written."""
    best = summary.best
    lines = (_best_lines(summary, best) if best is not None
             else _no_feasible_lines(summary, constraints))
    lines += [f"[yellow]warning: {escape(note)}[/yellow]" for note in summary.window_warnings]
    verdict = summary.overfitting.get("verdict")
    if verdict:
        lines.append(escape(verdict))
    best_toml = "best.toml, " if best is not None else ""  # none without a feasible trial
    lines.append(escape(f"wrote trials.csv, {best_toml}sweep.json, report.html to {out_dir}"))
    return lines
