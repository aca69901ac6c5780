"""Soak: thousands of daemon cycles on the simulator behind the fault injector, in-process.

Run: ``python benchmarks/soak.py [--cycles 10000] [--fault-rate 0.15] [--seed 1]``.

Each cycle is the daemon's own ``cycle.run`` (clock, reconcile, data, weights, risk, plan,
execute, record) on a real SQLite journal and simulated account (a temporary state dir,
on /dev/shm when there is one), over a synthetic market long enough that the replay never
ends (the sample generator's regimes, 1980-2025). ``--fault-rate`` is the probability that
any one broker call fails (split over transient errors, 429s, timeouts after the venue
acted, rejections, partial fills, stale and missing bars). After the soak, two cycles
without faults; then it prints: cycles finished / failed cleanly (a ``cycle_failed``) /
crashed (an exception out of ``cycle.run`` or a ``cycle_crashed``), client_order_ids
submitted more than once, the final drift from the last targets, RSS at start/middle/end
(from /proc/self/statm), and wall time. The process applies the daemon's BLAS and heap
policies first, as `allocbot run` does. Targets: 0 duplicates, 0 crashes, RSS growth < 5 %.
"""

from __future__ import annotations

import argparse
import collections
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

import strategies
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.engine import cycle
from bot.engine.cycle import CycleContext, CycleSettings
from bot.engine.journal import Journal
from bot.sample_market.generator import generate_sample_market
from brokers.faults import FaultInjectingBroker, FaultPlan
from brokers.sim.broker import SimulatedBroker
from brokers.sim.pricing import SimCosts
from strategies.blas import pin_blas_threads
from strategies.heap_policy import retain_freed_heap

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
TARGET = {"SPY": 0.3, "TLT": 0.4, "IEF": 0.15, "GLD": 0.075, "DBC": 0.075}


def rss_mib() -> float:
    """Resident set size of this process (second field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE_BYTES / 2**20


class EventCounter:
    """A structlog processor that counts event names and drops the line (no I/O)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.submitted: collections.Counter[str] = collections.Counter()

    def __call__(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        name = str(event.get("event"))
        self.counts[name] += 1
        if name == "order_submitted":
            self.submitted[str(event["client_order_id"])] += 1
        raise structlog.DropEvent


def fault_plan(rate: float, seed: int) -> FaultPlan:
    """Split ``rate`` per call: 40 % transient, 30 % 429, 30 % timeouts; submits and
    history calls add their own faults at half of ``rate``."""
    return FaultPlan(seed=seed, transient_rate=0.4 * rate, rate_limit_rate=0.3 * rate,
                     timeout_rate=0.3 * rate, reject_rate=0.25 * rate,
                     partial_fill_rate=0.25 * rate, stale_bars_rate=0.25 * rate,
                     missing_bars_rate=0.25 * rate)


def build(state_dir: Path, rate: float, seed: int) -> tuple[CycleContext, SimulatedBroker]:
    prices = generate_sample_market(start="1980-01-01", end="2025-12-31").prices
    db = state_dir / "allocbot.sqlite"
    journal = Journal(db)
    sim = SimulatedBroker(db, prices, starting_cash=100_000.0, costs=SimCosts(1.0, 0.0, 2.0))
    settings = CycleSettings(
        mode="paper", universe=tuple(TARGET), order_prefix="ab", order_wait_secs=1.0,
        policy=RebalancePolicy(drift_abs=0.05, drift_rel=0.25, cost_bps_estimate=3.1),
        limits=RiskLimits(max_var=0.05, lookback_days=252))
    strategy = strategies.create("fixed", weights=TARGET)
    broker = FaultInjectingBroker(sim, fault_plan(rate, seed))
    return CycleContext(broker, journal, strategy, settings), sim


def final_drift(sim: SimulatedBroker) -> float:
    account = sim.account()
    held = {s: p.market_value / account.equity for s, p in sim.positions().items()}
    return max(abs(held.get(s, 0.0) - w) for s, w in TARGET.items())


def soak(cycles: int, rate: float, seed: int, state_dir: Path) -> dict[str, Any]:
    counter = EventCounter()
    structlog.configure(processors=[counter], cache_logger_on_first_use=False)
    ctx, sim = build(state_dir, rate, seed)
    statuses: collections.Counter[str] = collections.Counter()
    crashed = 0
    rss = {"start": rss_mib()}
    started = time.perf_counter()
    for i in range(cycles):
        if i == cycles // 2:
            rss["middle"] = rss_mib()
        try:
            ctx.broker.on_wake()
            statuses[cycle.run(ctx).status] += 1
        except Exception:  # noqa: BLE001 - a crash is what the soak counts; it goes on
            crashed += 1
    rss["end"] = rss_mib()
    wall = time.perf_counter() - started
    injected = dict(ctx.broker.injected)  # type: ignore[attr-defined]
    ctx.broker = sim  # two clean cycles: the account must come back within the bands
    for _ in range(2):
        sim.on_wake()
        cycle.run(ctx)
    dupes = sum(1 for n in counter.submitted.values() if n > 1)
    db = state_dir / "allocbot.sqlite"
    conn = sqlite3.connect(db)
    venue_dupes = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT client_order_id) "
                               "FROM sim_orders").fetchone()[0]
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    return {"cycles": cycles, "statuses": statuses, "crashed": crashed + counter.counts[
        "cycle_crashed"], "dupes": dupes, "venue_dupes": venue_dupes, "injected": injected,
        "orders": sum(counter.submitted.values()), "drift": final_drift(sim), "rss": rss,
        "wall": wall, "integrity": integrity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--fault-rate", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # the daemon's process policies, as `allocbot run` applies them (bot/cli/startup.py)
    pin_blas_threads()
    retain_freed_heap()
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="allocbot-soak-",
                                     dir=shm if shm.is_dir() else None) as tmp:
        r = soak(args.cycles, args.fault_rate, args.seed, Path(tmp))
    s, rss = r["statuses"], r["rss"]
    print(f"soak: {r['cycles']} cycles, fault rate {args.fault_rate:.0%} per broker call, "
          f"seed {args.seed}")
    print(f"  cycles finished {s['finished']}, skipped {s['skipped']}, failed cleanly "
          f"{s['failed']}, crashed {r['crashed']}")
    print(f"  faults injected {sum(r['injected'].values())}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(r["injected"].items())))
    print(f"  orders submitted {r['orders']}, client_order_ids submitted twice {r['dupes']}, "
          f"duplicates at the venue {r['venue_dupes']}, SQLite integrity {r['integrity']}")
    print(f"  final drift (max |weight - target| after 2 clean cycles) {r['drift']:.4f}")
    print(f"  RSS MiB start {rss['start']:.1f}, middle {rss['middle']:.1f}, end "
          f"{rss['end']:.1f} (growth start->end {rss['end'] / rss['start'] - 1:+.1%}, "
          f"middle->end {rss['end'] / rss['middle'] - 1:+.1%})")
    print(f"  wall {r['wall']:.1f} s ({r['wall'] / r['cycles'] * 1e3:.2f} ms per cycle)")


if __name__ == "__main__":
    main()
