"""Print a sweep's wall time, trials/s and scheduling overhead per trial.

Run: ``python benchmarks/bench_sweep.py [--trials 200] [--cases jobs2,dask1,dask2]``.

The sweep: TPE (seed 0, batches of 8) over a monthly ``momentum`` strategy (k 1–4,
lookback 63–252 days, cash buffer 0–10 %) on the bundled sample market (8 assets × 20
years, ``bot/sample_market/sample_prices.csv``), costs 1 bp + 2 bp slippage, objective
Sharpe with max_drawdown ≤ 0.5. Cases:

  jobs2   ``--jobs 2``: two local worker processes
  dask1   a Dask ``LocalCluster`` of 1 worker process (1 thread)
  dask2   the same with 2 worker processes: trials/s ratio vs dask1, same best?
  small1  1 Dask worker on the sample's last 600 days (short backtests): isolates the
          per-trial scheduling overhead from the backtest time
  small2  ``--jobs 2`` on the same short backtests
  driver  no backtests: the driver's ask + tell of ``--trials`` trials (made-up metrics)
          on Optuna's own ``JournalFileBackend`` (fsync per entry), on the sweep's
          ``BatchJournal`` (one fsync per batch) and on ``InMemoryStorage`` (no journal:
          what is left is TPE sampling and Optuna's bookkeeping)

Overhead per trial = (wall × workers − Σ backtest secs) / trials: the worker-seconds not
spent inside a backtest, per trial. With 1 worker that is the issue's "wall minus the
backtests"; with N workers every second the driver spends asking or telling counts N
times (all workers wait for it), and so does a worker left idle at the end of a batch.
Each line also splits the wall time (``SweepClock``): runner start (spawning workers,
shipping the panel), opening the study, then per trial: asking (the workers already run
the batch's first chunks meanwhile), waiting for the rest of the batch, telling, journal
flushes; ``idle`` = (asking + waiting) × workers − Σ backtest: worker-seconds of the
batches not spent in a backtest (waiting for the sampler's first chunk, shipping tasks
and outcomes, waiting for the batch's last trial). ``per-batch`` overhead leaves out the
one-time runner start. Figures, not asserts; the machine may be shared (load average
printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
[sim]
commission_bps = 1.0
slippage_bps = 2.0
[universe]
symbols = ["SPY", "TLT", "IEF", "GLD", "DBC", "SHY", "VNQ", "EFA"]
[strategy]
name = "momentum"
[strategy.params]
k = 3
[risk]
lookback_days = 63
[backtest]
calendar = "monthly"
"""
SPACE = """
[objective]
metric = "sharpe"
constraints = ["max_drawdown <= 0.5"]
[space.strategy.params]
k = {int = [1, 4]}
lookback = {int = [63, 252], step = 21}
[space.rebalance]
cash_buffer = {float = [0.0, 0.1]}
"""


def _write_inputs(workdir: Path) -> None:
    """The config and space; ``small/`` holds the same on the sample's last 600 days."""
    import pandas as pd

    (workdir / "config.toml").write_text(CONFIG)
    (workdir / "space.toml").write_text(SPACE)
    small = workdir / "small"
    small.mkdir()
    sample = REPO / "bot" / "sample_market" / "sample_prices.csv"
    pd.read_csv(sample).tail(600).to_csv(small / "prices.csv", index=False)
    (small / "config.toml").write_text(CONFIG.replace("[sim]", '[sim]\nprices = "prices.csv"'))
    (small / "space.toml").write_text(SPACE)


def _run(workdir: Path, name: str, trials: int, **kw: Any) -> dict[str, Any]:
    from bot.research.space import load_space
    from bot.research.study import finished_trials
    from bot.research.sweep import SweepOptions, driver_log_levels, prepare, run_sweep

    driver_log_levels("warning")
    options = SweepOptions(workdir / "config.toml", workdir / "space.toml", workdir / name,
                           trials=trials, seed=0, **kw)
    inputs = prepare(options, load_space(options.space_path))
    started = time.perf_counter()
    study, clock = run_sweep(options, inputs)
    wall = time.perf_counter() - started
    rows = finished_trials(study)
    best = max((r for r in rows if r.outcome == "complete"), key=lambda r: (r.value, -r.slot))
    return {"wall": wall, "backtest": clock.backtest_secs, "trials": len(rows), "clock": clock,
            "best": (best.slot, best.params, best.value)}


def _dask(workdir: Path, name: str, trials: int, workers: int) -> tuple[dict[str, Any], int]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        return _run(workdir, name, trials, dask=client), workers


def _report(name: str, r: dict[str, Any], workers: int) -> None:
    n, c = r["trials"], r["clock"]
    overhead_ms = (r["wall"] * workers - r["backtest"]) / n * 1000
    per_batch_ms = ((r["wall"] - c.start_secs) * workers - r["backtest"]) / n * 1000
    print(f"{name:6s} workers={workers} trials={n} wall={r['wall']:.1f}s "
          f"trials/s={n / r['wall']:.2f} mean backtest={r['backtest'] / n * 1000:.0f}ms "
          f"overhead/trial={overhead_ms:.1f}ms (per-batch {per_batch_ms:.1f}ms) "
          f"best=#{r['best'][0]} {r['best'][2]:.4f} {r['best'][1]}")
    idle = (c.ask_secs + c.run_secs) * workers - r["backtest"]
    print(f"       split: start {c.start_secs:.2f}s open {c.open_secs:.2f}s, per trial: "
          f"ask {c.ask_secs / n * 1000:.1f}ms wait {c.run_secs / n * 1000:.0f}ms "
          f"tell {c.tell_secs / n * 1000:.1f}ms flush {c.flush_secs / n * 1000:.1f}ms "
          f"idle {idle / n * 1000:.1f} worker-ms")


def _driver_only(workdir: Path, trials: int) -> None:
    """The driver's ask + tell per trial on three storages (no backtests)."""
    import optuna
    from optuna.storages import InMemoryStorage, JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from bot.research.batch_journal import BatchJournal
    from bot.research.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(workdir / "space.toml")
    batch_journal = BatchJournal(workdir / "batch.journal")
    storages = {"optuna JournalFileBackend": (JournalStorage(JournalFileBackend(
                    str(workdir / "optuna.journal"))), None),
                "BatchJournal": (JournalStorage(batch_journal), batch_journal),
                "InMemoryStorage": (InMemoryStorage(), None)}
    for label, (storage, flushable) in storages.items():
        study = optuna.create_study(storage=storage, direction="maximize")
        ask, tell = _ask_tell(study, space, trials, flushable)
        print(f"driver {label:26s} per trial: ask {ask / trials * 1000:5.1f}ms "
              f"tell+flush {tell / trials * 1000:5.1f}ms")


def _ask_tell(study: Any, space: Any, trials: int, journal: Any, batch: int = 8
              ) -> tuple[float, float]:
    """Ask and tell ``trials`` in batches as the sweep does (flushing ``journal``, if any,
    after each); made-up metrics from k."""
    from bot.research.study import ask_batch, tell_outcome
    from bot.research.trial import TrialOutcome

    ask = tell = 0.0
    for b in range(trials // batch):
        slots = list(range(b * batch, (b + 1) * batch))
        started = time.perf_counter()
        asked = ask_batch(study, space, slots, b, 0, "tpe", {})
        asked_at = time.perf_counter()
        for slot, (trial, labels) in zip(slots, asked, strict=True):
            k = labels["strategy.params.k"]
            metrics = {"sharpe": 0.1 * k + 0.01 * ((slot * 7919) % 13), "max_drawdown": 0.3}
            tell_outcome(study, trial, TrialOutcome(trial.number, slot, metrics, None, None,
                                                    None, 0.0), space)
        if journal is not None:
            journal.flush()
        ask += asked_at - started
        tell += time.perf_counter() - asked_at
    return ask, tell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--cases", default="jobs2,dask1,dask2")
    args = parser.parse_args()
    cases = args.cases.split(",")
    print(f"command: python benchmarks/bench_sweep.py --trials {args.trials} "
          f"--cases {args.cases}")
    print(f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    results: dict[str, tuple[dict[str, Any], int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _write_inputs(workdir)
        for case in cases:
            if case == "jobs2":
                results[case] = (_run(workdir, case, args.trials, jobs=2), 2)
            elif case.startswith("dask"):
                results[case] = _dask(workdir, case, args.trials, int(case[4:]))
            elif case == "small1":
                results[case] = _dask(workdir / "small", case, args.trials, 1)
            elif case == "small2":
                results[case] = (_run(workdir / "small", case, args.trials, jobs=2), 2)
            elif case == "driver":
                _driver_only(workdir, args.trials)
                continue
            _report(case, *results[case])
    if "dask1" in results and "dask2" in results:
        one, two = results["dask1"][0], results["dask2"][0]
        ratio = (two["trials"] / two["wall"]) / (one["trials"] / one["wall"])
        print(f"dask 2 vs 1 workers: trials/s ratio {ratio:.2f}, same best: "
              f"{one['best'] == two['best']}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
