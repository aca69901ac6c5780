"""allocbot's backtest beside bt (the reference for calendar rebalancing) in the same run.

Run: ``python benchmarks/bench_vs_bt.py`` (needs ``pip install -e '.[bench]'`` for bt).

The bundled sample market (8 ETFs, ~20 years), the shipped ``all_weather`` weights, zero
costs, fractional shares, a ``daily`` and a ``monthly`` calendar. Each side runs as a fresh
process so imports count (bt: pandas + bt + ffn; allocbot: the engine only, no report
files). Prints wall and CPU seconds per side, cycles, the per-cycle figure and the largest
relative difference between the two equity curves (the arithmetic agreement).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from user_process import BYTECODE_NOTE, user_env, warm_bytecode

REPO = Path(__file__).resolve().parents[1]

ALLOCBOT = r"""
import json, logging, sys, time
from dataclasses import replace
from pathlib import Path
import structlog
from bot.backtest.engine import run_backtest
from bot.backtest.setup import backtest_spec, load_backtest_prices
from bot.config import load_config
from bot.logs import configure_logging
configure_logging("json", "warning", sys.stderr)
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                    cache_logger_on_first_use=True)
cfg = load_config(Path(sys.argv[1]))
prices, universe = load_backtest_prices(cfg, None)
spec = backtest_spec(cfg, universe, calendar=sys.argv[2], start=None, end=None)
start = time.process_time()
result = run_backtest(prices, cfg.build_strategy(), spec)
json.dump({"dates": [str(d.date()) for d in result.dates], "equity": result.equity.tolist(),
           "cycles": len(result.cycles), "engine_cpu": time.process_time() - start},
          open(sys.argv[3], "w"))
"""

BT = r"""
import json, sys
import bt, pandas as pd
from bot.sample_market import SAMPLE_PRICES_PATH
weights, first, calendar = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
data = pd.read_csv(SAMPLE_PRICES_PATH, index_col="date", parse_dates=True)
data = data.loc[first:, list(weights)]
run = bt.algos.RunDaily() if calendar == "daily" else bt.algos.RunMonthly()
strategy = bt.Strategy("s", [run, bt.algos.SelectAll(), bt.algos.WeighSpecified(**weights),
                             bt.algos.Rebalance()])
test = bt.Backtest(strategy, data, initial_capital=100_000.0, integer_positions=False,
                   progress_bar=False)
res = bt.run(test)
equity = res.prices["s"] * 100_000.0 / 100.0
json.dump({"equity": equity.iloc[1:].tolist()}, open(sys.argv[4], "w"))
"""

CONFIG = """
[bot]
state_dir = "state"
[universe]
symbols = ["SPY", "TLT", "IEF", "GLD", "DBC"]
[strategy]
name = "fixed"
params = {preset = "all_weather"}
[sim]
starting_cash = 100000.0
[rebalance]
min_order_notional = 0.0
"""


def _timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + sys of the child) seconds of one process."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, cwd=REPO, env=user_env(REPO))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    weights = {"SPY": 0.30, "TLT": 0.40, "IEF": 0.15, "GLD": 0.075, "DBC": 0.075}
    for imports in ("import bot.backtest.engine, bot.backtest.setup, bot.config, bot.logs",
                    "import bt, pandas"):  # both sides' modules compiled once, untimed
        warm_bytecode([sys.executable, "-c", imports], REPO)
    print(BYTECODE_NOTE)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(CONFIG)
        for calendar in ("daily", "monthly"):
            ours_out, bt_out = Path(tmp) / "ours.json", Path(tmp) / "bt.json"
            ours_wall, ours_cpu = _timed([sys.executable, "-c", ALLOCBOT, str(config), calendar,
                                          str(ours_out)])
            ours = json.loads(ours_out.read_text())
            first = ours["dates"][0]
            try:
                bt_wall, bt_cpu = _timed([sys.executable, "-c", BT, json.dumps(weights), first,
                                          calendar, str(bt_out)])
            except subprocess.CalledProcessError:
                print(f"{calendar}: bt is not installed (pip install -e '.[bench]')")
                bt_wall = bt_cpu = float("nan")
            per_cycle = ours["engine_cpu"] / ours["cycles"] * 1e6
            print(f"{calendar:8s} allocbot: {ours_wall:6.2f} s wall, {ours_cpu:6.2f} s CPU, "
                  f"{ours['cycles']} cycles, engine {ours['engine_cpu']:.2f} s CPU = "
                  f"{per_cycle:.0f} µs/cycle")
            if bt_out.exists():
                theirs = json.loads(bt_out.read_text())["equity"]
                n = min(len(theirs), len(ours["equity"]))
                diff = max(abs(a / b - 1.0) for a, b in zip(ours["equity"][:n], theirs[:n],
                                                              strict=True))
                print(f"{calendar:8s} bt:       {bt_wall:6.2f} s wall, {bt_cpu:6.2f} s CPU; "
                      f"CPU ratio bt/allocbot {bt_cpu / ours_cpu:.2f}; largest relative equity "
                      f"difference {diff:.2e} over {n} days")


if __name__ == "__main__":
    main()
