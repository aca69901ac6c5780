"""Print what the pre-trade guards cost: the pure data check per call, and a daily backtest
of the bundled sample (equal weight, 8 symbols, every day a cycle) with [guards] off and on.

Run: ``python benchmarks/bench_guards.py [--repeats N]``. Figures, not asserts; both
backtests run in the same process so their ratio is comparable on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from dataclasses import replace

import strategies
from bot.backtest.engine import BacktestSpec, run_backtest
from bot.core.guards import GuardLimits, check_data
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.engine.cycle import CycleSettings
from bot.logs import configure_logging
from bot.sample_market import SAMPLE_PRICES_PATH
from brokers.prices import load_price_csv
from brokers.sim.pricing import SimCosts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2, help="backtests per setting (best of)")
    args = parser.parse_args()
    configure_logging("json", "warning", sys.stderr)
    prices = load_price_csv(SAMPLE_PRICES_PATH)
    window = prices.iloc[-253:]
    trades = {str(s): float(window[s].iloc[-1]) for s in window.columns}
    calls = 2000
    per_call = timeit.timeit(lambda: check_data(window, 0, trades, GuardLimits()), number=calls)
    print(f"check_data, 253 rows x 8 symbols: {per_call / calls * 1e6:.0f} us per call")
    base = CycleSettings(mode="paper", universe=tuple(map(str, prices.columns)), order_prefix="bt",
                         order_wait_secs=1.0, policy=RebalancePolicy(),
                         limits=RiskLimits(lookback_days=252))
    strategy = strategies.create("equal_weight")
    for label, guards in (("off", GuardLimits(enabled=False)), ("on", GuardLimits())):
        spec = BacktestSpec(replace(base, guards=guards), calendar="daily", starting_cash=1e6,
                            costs=SimCosts(), fractional=True)
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = run_backtest(prices, strategy, spec)
            best = min(best, time.perf_counter() - started)
        blocked = sum(1 for c in result.cycles if c.status == "skipped")
        print(f"guards {label}: {len(result.cycles)} cycles, best of {args.repeats} {best:.2f} s, "
              f"{best / len(result.cycles) * 1e3:.3f} ms/cycle, blocked {blocked}")


if __name__ == "__main__":
    main()
