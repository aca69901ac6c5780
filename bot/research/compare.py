"""``allocbot compare``: several strategies backtested on the same prices, costs,
calendar, risk step and window, with one benchmark (``[backtest].benchmark``; ``"none"``:
no benchmark column or curve); a table, ``compare.csv`` and a report with equity curves,
drawdowns and metrics side by side.

A SPEC is ``name`` or ``name:key=value,key=value`` (values are TOML: ``k=2``,
``weighting="inverse_volatility"`` or ``weighting=inverse_volatility`` (bare words are
strings), ``base={name="fixed", params={preset="sixty_forty"}}``), or the path of a
config file ending in ``.toml`` whose whole ``[strategy]`` table is used (name, params,
``signal`` or ``every_sessions``, ``fallback``: the file backtests as it would alone). A
name spec replaces the base config's strategy name and params and keeps the rest of its
``[strategy]`` table (``signal``/``every_sessions``, ``fallback``), as it keeps the
calendar and the risk step: every name spec runs on the base config's schedule (when the
base config sets none, each strategy's own default signal).
"""

from __future__ import annotations

import hashlib
import html
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from bot.backtest.metrics import drawdowns
from bot.backtest.report import write_outputs
from bot.backtest.setup import (
    BacktestRun,
    benchmark_strategy,
    load_backtest_prices,
    run_configured,
)
from bot.config import Config, parse_config
from bot.engine.preflight import config_fit_problems
from bot.errors import ConfigError
from bot.research.pages import png_tag, table, write_page
from bot.research.space import strategy_table

TABLE_METRICS = (("cagr", "CAGR", "{:.2%}"), ("volatility", "Volatility", "{:.2%}"),
                 ("sharpe", "Sharpe", "{:.2f}"), ("sortino", "Sortino", "{:.2f}"),
                 ("max_drawdown", "Max drawdown", "{:.2%}"), ("calmar", "Calmar", "{:.2f}"),
                 ("turnover", "Turnover / yr", "{:.2%}"), ("costs", "Costs paid", "{:,.2f}"),
                 ("final_equity", "Final equity", "{:,.2f}"))


@dataclass(frozen=True, slots=True)
class StrategySpec:
    label: str
    name: str
    params: dict[str, Any]
    # a config file's whole [strategy] table (it replaces the base config's); None for a
    # name spec (name and params replace the base config's, its other keys stay)
    table: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CompareResult:
    labels: list[str]
    runs: list[BacktestRun]
    benchmark_name: str | None  # None: [backtest].benchmark = "none"
    risk_free_rate: float


def _split_top(text: str) -> list[str]:
    """Split on commas outside braces, brackets and quotes."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _toml_value(key: str, text: str, spec: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text.replace("_", "").replace("-", "").isalnum():
            return text  # a bare word: a string
        raise ConfigError(f"compare spec {spec!r}: {key}={text} is not a TOML value") from None


def parse_spec(spec: str) -> StrategySpec:
    """``name[:k=v,...]`` or ``path.toml`` → a strategy spec (validated later)."""
    if spec.endswith(".toml"):
        path = Path(spec)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"compare spec {spec!r}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"compare spec {spec!r}: not valid TOML: {exc}") from None
        strat = doc.get("strategy")
        if not isinstance(strat, dict) or "name" not in strat:
            raise ConfigError(f"compare spec {spec!r}: no [strategy] name in the file")
        return StrategySpec(path.stem, str(strat["name"]), dict(strat.get("params", {})),
                            dict(strat))
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in _split_top(rest):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"compare spec {spec!r}: {item!r} is not key=value")
        if key.strip() in params:  # (the last one silently won)
            raise ConfigError(f"compare spec {spec!r}: {key.strip()!r} is given twice")
        params[key.strip()] = _toml_value(key.strip(), value.strip(), spec)
    return StrategySpec(spec, name.strip(), params)


def spec_config(cfg: Config, spec: StrategySpec) -> Config:
    """The base config with this strategy, validated like ``allocbot run``: a config
    file's whole ``[strategy]`` table, or the base ``[strategy]`` table with the spec's name
    and params (its ``signal``/``every_sessions`` and ``fallback`` kept: the sweep's rule,
    ``strategy_table``)."""
    raw = cfg.model_dump(mode="python", exclude_none=True)
    if spec.table is not None:
        raw["strategy"] = dict(spec.table)
    else:
        raw["strategy"] = strategy_table(raw["strategy"], {"name": spec.name,
                                                           "params": spec.params})
    try:
        return parse_config(raw, cfg.source.parent if cfg.source else Path.cwd())
    except ConfigError as exc:
        raise ConfigError(f"compare spec {spec.label!r}: {exc}") from None


def common_start(configs: list[Config], prices: pd.DataFrame) -> Any:
    """The first day every strategy and the benchmark (backtested over the same window) can
    trade (the longest warm-up wins), unless ``[backtest].start`` is set."""
    if configs[0].backtest.start is not None:
        return configs[0].backtest.start
    bench = benchmark_strategy(configs[0].backtest.benchmark, tuple(prices.columns))
    warmup = max(max(c.build_strategy().warmup_days, c.risk.lookback_days) for c in configs)
    if bench is not None:
        warmup = max(warmup, bench.warmup_days)
    return prices.index[min(warmup, len(prices) - 1)].date()


def check_specs_fit(specs: list[StrategySpec], configs: list[Config],
                    universe: tuple[str, ...]) -> None:
    """Refuse, naming the spec, every strategy that can never compute over ``universe``
    (``allocbot run`` refuses the same config; each backtest would only hold)."""
    problems = [f"compare spec {spec.label!r}: {problem}"
                for spec, config in zip(specs, configs, strict=True)
                for problem in config_fit_problems(config, universe, from_cash=True)]
    if problems:
        raise ConfigError("; ".join(problems))


def run_compare(cfg: Config, specs: list[StrategySpec], out_dir: Path) -> CompareResult:
    """Backtest every spec over one window; write each one's outputs and the report."""
    configs = [spec_config(cfg, s) for s in specs]
    prices, universe = load_backtest_prices(cfg, None)
    check_specs_fit(specs, configs, universe)
    start = common_start(configs, prices)
    runs = [run_configured(c, prices, universe, start=start) for c in configs]
    labels = _unique([s.label for s in specs])
    out_dir.mkdir(parents=True, exist_ok=True)
    for directory, run in zip(_dir_names(labels), runs, strict=True):
        write_outputs(out_dir / directory, run.result, run.benchmark, run.metrics,
                      cfg.backtest.tearsheet)
    bench = runs[0].metrics.get("benchmark")
    result = CompareResult(labels, runs, None if bench is None else bench["name"],
                           cfg.backtest.risk_free_rate)
    metrics_frame(result).to_csv(out_dir / "compare.csv")
    write_compare_report(out_dir, result)
    return result


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


DIR_CHARS = 60


def _dir_names(labels: list[str]) -> list[str]:
    """One directory per (unique) label: the label with ``-_=`` and alphanumerics kept and
    the rest ``_``; a name longer than 60 characters, or one two labels would share, is cut
    to 51 and ends with ``-`` and 8 hex digits of the full label's SHA-256."""
    plain = ["".join(c if c.isalnum() or c in "-_=" else "_" for c in label) for label in labels]
    count = Counter(plain)

    def hashed(label: str, name: str) -> str:
        digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]
        return f"{name[:DIR_CHARS - 9]}-{digest}"

    names = [name if len(name) <= DIR_CHARS and count[name] == 1 else hashed(label, name)
             for label, name in zip(labels, plain, strict=True)]
    if len(set(names)) < len(names):  # a plain name equal to a hashed one: hash them all
        names = [hashed(label, name) for label, name in zip(labels, plain, strict=True)]
    return names


def metrics_frame(result: CompareResult) -> pd.DataFrame:
    """Metrics (rows) × strategies and the benchmark, if any (columns)."""
    cols = {label: run.metrics["strategy"] for label, run in zip(result.labels, result.runs,
                                                                    strict=True)}
    if result.benchmark_name is not None:
        cols[f"benchmark: {result.benchmark_name}"] = result.runs[0].metrics["benchmark"]
    return pd.DataFrame({k: {m: v.get(m) for m, _, _ in TABLE_METRICS} for k, v in cols.items()})


def _cell(value: Any, fmt: str) -> str:
    return "—" if value is None or pd.isna(value) else fmt.format(value)


def compare_table(result: CompareResult) -> Table:
    frame = metrics_frame(result)
    first = result.runs[0].metrics["strategy"]
    t = Table(title=f"allocbot compare ({first['start']} → {first['end']}, Sharpe at "
                    f"rf {result.risk_free_rate:.2%})")
    t.add_column("metric")
    for col in frame.columns:
        t.add_column(str(col), justify="right")
    for key, label, fmt in TABLE_METRICS:
        t.add_row(label, *[_cell(frame.at[key, c], fmt) for c in frame.columns])
    return t


def write_compare_report(out_dir: Path, result: CompareResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.6]})
    curves = [(label, run.result) for label, run in zip(result.labels, result.runs, strict=True)]
    bench = result.runs[0].benchmark
    if bench is not None:
        curves.append((f"benchmark: {result.benchmark_name}", bench))
    for i, (label, res) in enumerate(curves):
        style = {"color": "0.2", "ls": "--"} if label.startswith("benchmark") else {
            "color": f"C{i % 10}"}
        top.plot(res.dates, res.equity, lw=1.1, label=label, **style)
        bottom.plot(res.dates, -drawdowns(res.equity) * 100, lw=0.9, **style)
    top.set_yscale("log")
    top.set_ylabel("equity (log)")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "compare.png", dpi=90)
    plt.close(fig)
    frame = metrics_frame(result)
    rows = [[label, *[_cell(frame.at[key, c], fmt) for c in frame.columns]]
            for key, label, fmt in TABLE_METRICS]
    own = "report.html" if (out_dir / _dir_names(result.labels)[0] / "report.html").exists() \
        else "metrics.json"  # [backtest] tearsheet = false: no report.html of their own
    links = " · ".join(f'<a href="{directory}/{own}">{html.escape(lab)}</a>'
                       for lab, directory in zip(result.labels, _dir_names(result.labels),
                                                 strict=True))
    first = result.runs[0].metrics["strategy"]
    write_page(out_dir / "report.html", "allocbot compare", [
        (f"<p>{first['start']} → {first['end']}, same prices, costs, calendar and risk step; "
        f"Sharpe at risk-free rate {result.risk_free_rate:.2%}. Each strategy's own report: "
        f"{links}</p>"),
        table(["metric", *map(str, frame.columns)], rows),
        png_tag(out_dir / "compare.png", "equity curves and drawdowns")])
