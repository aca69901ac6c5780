"""Print the backtest's wall time, peak memory and where the time goes.

Run: ``python benchmarks/bench_backtest.py`` (all cases) or ``--case a|b|c|days|assets``;
``--repeat N`` runs each N times and prints the median run with the spread of all. Each run
is a fresh subprocess so its peak RSS is its own. Cases (synthetic
geometric random walks, 252 trading days of warm-up before the 20 backtest years):

  a  8 assets × 20 years, daily drift check, fixed weights
  d  8 assets × 20 years, ``daily`` calendar (every day traded back to target), fixed
     weights: the per-cycle overhead (target: ≤ 0.1 ms; bench_vs_bt.py times the same
     against bt)
  b  50 assets × 20 years, monthly, min_variance                  (target: ≤ 0.5 s)
  c  500 assets × 20 years, monthly, risk_parity (ledoit_wolf Σ:  (target: ≤ 3 s, ≤ 300 MB)
     the sample Σ of 252 returns is singular for 500 assets)
  days    b's setup at 5, 10, 20 years (time should grow linearly in days)
  assets  monthly min_variance over 10 years at 10, 25, 50, 100 assets

Figures, not asserts. The split times the cycle's own steps by wrapping them here (the
library is not instrumented): strategy, risk, plan, execute, the rest of the cycle
(clock, reconcile, data, journal, logging) and the engine outside the cycle (marking the
books, the drift scan, collecting trades). Writing the report files is timed separately.
The child process applies the CLI's heap policy (``strategies/heap_policy.py``) and
freezes its imported modules out of the garbage collector's scans before the run, as
``allocbot backtest`` does after start-up.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog

WARMUP_DAYS = 252
YEAR_DAYS = 252


def _prices(assets: int, years: int, seed: int = 0) -> pd.DataFrame:
    days = WARMUP_DAYS + years * YEAR_DAYS
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.005, 0.02, assets)
    walk = np.cumsum(rng.normal(0.0002, 1.0, (days, assets)) * vol, axis=0)
    index = pd.bdate_range("2004-01-02", periods=days, name="date")
    return pd.DataFrame(100 * np.exp(walk), index=index,
                        columns=[f"A{j:03d}" for j in range(assets)])


class _Timer:
    """Wraps a function and adds its wall time to ``secs``."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.secs, self.calls = fn, 0.0, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.secs += time.perf_counter() - start
            self.calls += 1


def _run_case(assets: int, years: int, strategy_name: str, calendar: str,
              params: dict[str, Any]) -> dict[str, Any]:
    import strategies
    from bot.backtest.engine import BacktestSpec, run_backtest
    from bot.backtest.report import result_metrics, write_outputs
    from bot.core.rebalance import RebalancePolicy
    from bot.core.risk import RiskLimits
    from bot.engine import cycle, targets
    from bot.engine.cycle import CycleSettings
    from brokers.sim.pricing import SimCosts

    prices = _prices(assets, years)
    symbols = tuple(prices.columns)
    if strategy_name == "fixed":
        params = {"weights": dict.fromkeys(symbols, 1.0 / assets)}
    strategy = strategies.create(strategy_name, **params)
    costs = SimCosts(commission_bps=1.0, slippage_bps=2.0)
    settings = CycleSettings(
        mode="paper", universe=symbols, order_prefix="bt", order_wait_secs=1.0,
        policy=RebalancePolicy(drift_abs=0.05, drift_rel=0.25, cost_bps_estimate=3.1003),
        limits=RiskLimits(lookback_days=252))
    spec = BacktestSpec(settings, calendar=calendar, costs=costs)  # type: ignore[arg-type]
    homes = {"apply_risk_limits": targets, "_plan": cycle, "execute_plan": cycle}
    timers = {name: _Timer(getattr(home, name)) for name, home in homes.items()}
    for name, timer in timers.items():
        setattr(homes[name], name, timer)
    strat_timer = _Timer(strategy.target_weights)
    run_timer = _Timer(cycle.run)
    cycle.run = run_timer  # type: ignore[assignment]

    class Timed(strategies.Strategy):  # the strategy with its target_weights timed
        name = strategy.name
        lookback_days = strategy.lookback_days
        targets_are_static = strategy.targets_are_static
        target_weights = staticmethod(strat_timer)

    start = time.perf_counter()
    result = run_backtest(prices, Timed(), spec)
    total = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        metrics = {"title": "bench", "strategy": {"name": strategy.name,
                                                  **result_metrics(result, 0.0)},
                   "benchmark": None}
        write_outputs(Path(tmp), result, None, metrics)
    write_secs = time.perf_counter() - start
    steps = {"strategy": strat_timer.secs, "risk": timers["apply_risk_limits"].secs,
             "plan": timers["_plan"].secs, "execute": timers["execute_plan"].secs}
    steps["cycle_rest"] = run_timer.secs - sum(steps.values())
    steps["engine_outside_cycle"] = total - run_timer.secs
    return {"assets": assets, "years": years, "days": len(result.dates),
            "strategy": strategy_name, "calendar": calendar, "cycles": len(result.cycles),
            "trades": len(result.trades), "fast_drift": result.fast_drift,
            "backtest_secs": round(total, 3), "write_files_secs": round(write_secs, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "split_secs": {k: round(v, 3) for k, v in steps.items()},
            "ms_per_cycle": round(run_timer.secs / max(len(result.cycles), 1) * 1e3, 2)}


CASES: dict[str, list[tuple[int, int, str, str, dict[str, Any]]]] = {
    "a": [(8, 20, "fixed", "daily_drift", {})],
    "d": [(8, 20, "fixed", "daily", {})],
    "b": [(50, 20, "min_variance", "monthly", {})],
    "c": [(500, 20, "risk_parity", "monthly", {"covariance": "ledoit_wolf"})],
    "days": [(50, y, "min_variance", "monthly", {}) for y in (5, 10, 20)],
    "assets": [(n, 10, "min_variance", "monthly", {}) for n in (10, 25, 50, 100)],
}
BARS = {"d": "≤ 0.1 ms per cycle", "b": "≤ 0.5 s", "c": "≤ 3 s, ≤ 300 MB"}


def _print(case: str, row: dict[str, Any]) -> None:
    split = ", ".join(f"{k} {v:.2f}" for k, v in row["split_secs"].items())
    bar = f"   bar {BARS[case]}" if case in BARS else ""
    print(f"[{case}] {row['assets']:>3} assets × {row['years']:>2} y ({row['days']} days), "
          f"{row['strategy']}, {row['calendar']}: {row['backtest_secs']:.2f} s, peak "
          f"{row['peak_rss_mb']:.0f} MB, {row['cycles']} cycles ({row['ms_per_cycle']} ms "
          f"each), {row['trades']} trades{bar}\n      split: {split}; writing files "
          f"{row['write_files_secs']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeat", type=int, default=1,
                        help="fresh processes per configuration; the median run's row is "
                             "printed with the spread of all (the host's speed drifts)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: one configuration, JSON on stdout
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            cache_logger_on_first_use=True)
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        # As `allocbot backtest` does after start-up (bot/cli/startup.py): freed buffers
        # kept in the heap, and the imported modules frozen out of the collector's scans.
        import bot.backtest.engine
        import bot.backtest.report  # noqa: F401
        from strategies.heap_policy import retain_freed_heap
        retain_freed_heap()
        gc.freeze()
        print(json.dumps(_run_case(*CASES[args.case][args.one])))
        return
    if args.repeat < 1:
        parser.error(f"--repeat must be ≥ 1, got {args.repeat}")
    for case in (list(CASES) if args.case == "all" else [args.case]):
        for i in range(len(CASES[case])):
            rows = []
            for _ in range(args.repeat):
                proc = subprocess.run([sys.executable, __file__, "--case", case, "--one",
                                       str(i)], capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(f"[{case}] failed:\n{proc.stderr[-2000:]}")
                    break
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                _print(case, _median_row(rows))
                if len(rows) > 1:
                    secs = sorted(r["backtest_secs"] for r in rows)
                    per_cycle = sorted(r["ms_per_cycle"] for r in rows)
                    print(f"      {len(rows)} runs (median printed): {secs[0]:.2f}–{secs[-1]:.2f} s,"
                          f" {per_cycle[0]:.2f}–{per_cycle[-1]:.2f} ms per cycle, peak "
                          f"{max(r['peak_rss_mb'] for r in rows):.0f} MB at most")


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median backtest time (the lower middle one of an even count)."""
    ordered = sorted(rows, key=lambda r: r["backtest_secs"])
    return ordered[(len(ordered) - 1) // 2]


if __name__ == "__main__":
    main()
