"""Print out-of-sample figures of ``direct_reinforcement`` (over seeds) next to baselines.

Run: ``python benchmarks/rl_vs_baselines.py`` (defaults: 5 seeds, walk-forward 504:63,
monthly calendar). Everything goes through ``run_configured`` — the same walk-forward
machinery as ``allocbot backtest --walk-forward``: each strategy is refitted on the TRAIN
days before every TEST window and trades that window, so every figure is out of sample.
Market: the bundled synthetic sample (``config.toml``'s universe and its sim costs, 1 bps
commission + 2 bps slippage), with the VaR limit off so the figures are the strategies'
own. Sharpe (rf 0), annual turnover and max drawdown of each run; the RL row is mean ± sd
over seeds 0..N−1 (one policy per run: ``ensemble = 1``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import tomllib
from pathlib import Path
from typing import Any

import structlog

from bot.backtest.setup import load_backtest_prices, run_configured
from bot.backtest.walk_forward import parse_walk_forward
from bot.config import parse_config

REPO = Path(__file__).resolve().parents[1]
BASELINES = ("equal_weight", "inverse_volatility", "min_variance")
FIGURES = (("sharpe", "{:.2f}"), ("turnover", "{:.0%}"), ("max_drawdown", "{:.1%}"),
           ("cagr", "{:.2%}"))


def _num(value: float | None) -> str:
    """A ratio, or "—" where it is undefined (zero volatility: metrics give None)."""
    return "—" if value is None else f"{value:.3f}"


def run_one(name: str, params: dict[str, Any], walk_forward: str) -> dict[str, float]:
    raw = tomllib.loads((REPO / "config.toml").read_text(encoding="utf-8"))
    raw["strategy"] = {"name": name, "params": params}
    raw["risk"].pop("max_var", None)
    raw.setdefault("backtest", {})["calendar"] = "monthly"
    cfg = parse_config(raw, REPO)
    prices, universe = load_backtest_prices(cfg, None)
    run = run_configured(cfg, prices, universe, walk_forward=parse_walk_forward(walk_forward))
    return {key: float(run.metrics["strategy"][key]) for key, _ in FIGURES}


def cell(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--walk-forward", default="504:63")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    rows: list[tuple[str, dict[str, list[float]], float]] = []
    for name in BASELINES:
        started = time.perf_counter()
        figures = run_one(name, {}, args.walk_forward)
        rows.append((name, {k: [v] for k, v in figures.items()}, time.perf_counter() - started))
    started = time.perf_counter()
    runs = [run_one("direct_reinforcement", {"seed": s}, args.walk_forward)
            for s in range(args.seeds)]
    rows.append((f"direct_reinforcement ({args.seeds} seeds)",
                 {k: [r[k] for r in runs] for k, _ in FIGURES}, time.perf_counter() - started))
    print(f"walk-forward {args.walk_forward}, monthly calendar, sample market, "
          f"1 bps commission + 2 bps slippage, out of sample")
    print("| strategy | Sharpe | turnover/yr | max drawdown | CAGR | wall s |")
    print("|---|---|---|---|---|---|")
    for name, figs, secs in rows:
        cells = " | ".join(cell(figs[key], fmt) for key, fmt in FIGURES)
        print(f"| {name} | {cells} | {secs:.0f} |")
    print("seeds: " + "; ".join(f"{s}: Sharpe {_num(r['sharpe'])}" for s, r in enumerate(runs)))


if __name__ == "__main__":
    main()
