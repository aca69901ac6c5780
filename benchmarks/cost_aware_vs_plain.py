"""Net-of-cost Sharpe and turnover of the mean-variance family with and without the
turnover penalty, on the bundled sample market with the shipped costs.

Run: ``python benchmarks/cost_aware_vs_plain.py [--kappa 0.002 0.005]``. Each row is a
full ``allocbot backtest`` run (same cycle, daily drift checks, monthly signal, 1 bp
commission + 2 bp slippage, no VaR limit so the figures are the optimizer's own).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import structlog

from bot.backtest.setup import load_backtest_prices, run_configured
from bot.config import parse_config
from bot.logs import configure_logging

REPO = Path(__file__).resolve().parents[1]


def _num(value: float | None) -> str:
    """A ratio, or "—" where it is undefined (zero volatility: metrics give None)."""
    return "—" if value is None else f"{value:.3f}"


def _config(name: str, kappa: float) -> dict:
    params: dict = {"lookback_days": 252}
    if name != "min_variance":
        params |= {"expected_returns": "mean"}
    if kappa:
        params["turnover_penalty"] = kappa
    return {
        "universe": {"symbols": ["SPY", "TLT", "IEF", "GLD", "DBC", "SHY", "VNQ", "EFA"]},
        "strategy": {"name": name, "params": params, "signal": "monthly"},
        "sim": {"commission_bps": 1.0, "slippage_bps": 2.0},
        "backtest": {"calendar": "daily_drift"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kappa", type=float, nargs="+", default=[0.002, 0.005])
    parser.add_argument("--strategies", nargs="+", default=["min_variance", "mean_variance"])
    args = parser.parse_args()
    configure_logging("json", "error", sys.stderr)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    print(f"{'strategy':15s} {'κ':>7s} {'Sharpe':>7s} {'turnover/yr':>12s} {'costs':>9s} "
          f"{'CAGR':>7s} {'max DD':>7s}")
    for name in args.strategies:
        for kappa in [0.0, *args.kappa]:
            cfg = parse_config(_config(name, kappa), REPO)
            prices, universe = load_backtest_prices(cfg, None)
            m = run_configured(cfg, prices, universe).metrics["strategy"]
            print(f"{name:15s} {kappa:7.4f} {_num(m['sharpe']):>7s} {m['turnover']:12.2%} "
                  f"{m['costs']:9.2f} {m['cagr']:7.2%} {m['max_drawdown']:7.2%}")


if __name__ == "__main__":
    main()
