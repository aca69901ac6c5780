"""The daily drift scan against running the cycle every day, per strategy, same run.

Run: ``python benchmarks/bench_drift_scan.py [--strategies NAME ...] [--max-drawdown F]``

Each strategy is the shipped ``config.toml`` with its ``[strategy]`` replaced by the named
strategy at its default parameters (signal schedule: the strategy's own, monthly for every
price-driven one), backtested over the sample market with ``daily_drift`` checks twice:
with the scan (``BacktestSpec.drift_scan``, the default) and with a cycle on every day.
Prints cycles and engine CPU seconds for both, and whether the equity curves, the trade
lists and every metric but the cycle count are identical (they must be), and the day the
drawdown kill switch halted (``--max-drawdown``: the ``[risk] max_drawdown`` to set; "-"
for no halt).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import structlog

REPO = Path(__file__).resolve().parents[1]
# price-driven strategies that need no parameters, and the shipped fixed preset
DEFAULT = ("fixed", "equal_weight", "inverse_volatility", "risk_parity", "hrp", "min_variance",
           "mean_variance", "max_sharpe", "efficient_risk", "black_litterman", "momentum",
           "mean_reversion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT))
    parser.add_argument("--max-drawdown", type=float, default=None,
                        help="set [risk] max_drawdown (the kill switch) to this fraction")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
                        cache_logger_on_first_use=True)
    from bot.backtest.engine import run_backtest
    from bot.backtest.report import result_metrics
    from bot.backtest.setup import backtest_spec, load_backtest_prices
    from bot.config import load_config

    base = load_config(REPO / "config.toml")
    prices, universe = load_backtest_prices(base, None)
    if args.max_drawdown is not None:
        base = base.model_copy(update={"risk": base.risk.model_copy(
            update={"max_drawdown": args.max_drawdown})})
    print(f"{'strategy':<20}{'cycles scan/daily':>20}{'engine CPU s scan/daily':>26}  identical"
          "  halted")
    for name in args.strategies:
        section = base.strategy.model_copy(update={"name": name, "params": {} if name != "fixed"
                                                   else base.strategy.params})
        cfg = base.model_copy(update={"strategy": section})
        spec = backtest_spec(cfg, universe, calendar="daily_drift", start=None, end=None)
        runs = []
        for scan in (True, False):
            start = time.process_time()
            result = run_backtest(prices, cfg.build_strategy(), replace(spec, drift_scan=scan))
            runs.append((result, time.process_time() - start, result_metrics(result, 0.0)))
        (a, ta, ma), (b, tb, mb) = runs
        halts = [next((str(c.day) for c in r.cycles if c.status == "halted"), "-")
                 for r in (a, b)]
        same = (np.array_equal(a.equity, b.equity) and a.trades.equals(b.trades)
                and all(ma[k] == mb[k] for k in ma if k not in ("cycles", "elapsed_secs"))
                and halts[0] == halts[1])
        print(f"{name:<20}{len(a.cycles):>9} / {len(b.cycles):<8}{ta:>14.2f} / {tb:<9.2f}"
              f"  {'yes' if same else 'NO':<9}  {halts[0]}")


if __name__ == "__main__":
    main()
