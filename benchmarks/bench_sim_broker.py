"""Print the per-call cost of SimulatedBroker methods (microseconds), in memory and on disk.

Run: ``python benchmarks/bench_sim_broker.py [--assets N] [--days N]``. Figures, not
asserts: the backtest calls these thousands of times, so each must stay cheap.

The last lines replay what ``execute_plan`` does with the backtest's books
(``SimulatedBroker(":memory:")`` and ``MemoryJournal``): per cycle one ``record_intents``
and one ``account()``, then the orders either as the backtest sends them (one
``submit_batch`` + ``record_batch``: the simulator answers at once) or as a venue without
that capability gets them (per order ``submit_order`` + ``fills_for`` + ``record_order``);
they print the time per order of each and the memory the books keep per order
(tracemalloc). The per-call ``account`` figure is a cached read (no fill, same day); the
per-order figures include the recomputation after fills.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import structlog

from bot.engine.memory_journal import MemoryJournal
from brokers.base import OrderRequest, OrderSide
from brokers.sim.broker import SimulatedBroker
from brokers.sim.pricing import SimCosts


def _per_call_us(fn: Callable[[int], object], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls * 1e6


def _measure(db_path: str | Path, prices: pd.DataFrame, calls: int) -> dict[str, float]:
    symbols = list(prices.columns)
    n = len(symbols)
    sim = SimulatedBroker(db_path, prices, starting_cash=1e12, costs=SimCosts(1, 0, 1))
    figures = {"on_wake": _per_call_us(lambda i: sim.on_wake(), calls)}
    for s in symbols:
        sim.submit_order(OrderRequest(s, OrderSide.BUY, f"seed-{s}", qty=10))
    far = date(2100, 1, 1)
    figures |= {
        "clock": _per_call_us(lambda i: sim.clock(), calls),
        "account": _per_call_us(lambda i: sim.account(), calls),
        "positions": _per_call_us(lambda i: sim.positions(), calls),
        "history(all, 252 rows)": _per_call_us(lambda i: sim.history(symbols, 252, far), calls),
        "submit_order (fill)": _per_call_us(
            lambda i: sim.submit_order(OrderRequest(symbols[i % n], OrderSide.BUY, f"b{i}", qty=1)),
            calls,
        ),
        "submit_order (known id)": _per_call_us(
            lambda i: sim.submit_order(OrderRequest(symbols[0], OrderSide.BUY, f"b{i}", qty=1)),
            calls,
        ),
        "get_order_by_client_id": _per_call_us(
            lambda i: sim.get_order_by_client_id(f"b{i}"), calls
        ),
    }
    day = sim.current_date() or far
    figures["advance_to (next day)"] = _per_call_us(
        lambda i: sim.advance_to(day + timedelta(days=i + 1)), min(calls, 500)
    )
    sim.close()
    return figures


def _execution_rounds(prices: pd.DataFrame, cycles: int, batched: bool = True
                      ) -> tuple[SimulatedBroker, MemoryJournal]:
    """``cycles`` cycles of execute_plan's calls on the in-memory books: every asset bought
    on even cycles, sold on odd ones (so holdings stay bounded), one day per cycle; the
    orders in one batch, or one by one."""
    symbols = list(prices.columns)
    sim = SimulatedBroker(":memory:", prices, starting_cash=1e12, costs=SimCosts(1, 0, 1),
                          replay_start=prices.index[0].date())
    journal = MemoryJournal()
    for _ in range(cycles):
        sim.on_wake()
        cycle_id = journal.start_cycle(sim.current_date())
        side = OrderSide.BUY if int(cycle_id[-6:]) % 2 else OrderSide.SELL
        rows = [(f"bt-{cycle_id}-{s}-{side.value[0]}", s, side, 1.0, 100.0) for s in symbols]
        journal.record_intents(cycle_id, rows)
        sim.account()  # execute_plan re-reads cash between sells and buys
        requests = [OrderRequest(symbol, side, cid, qty=qty) for cid, symbol, _, qty, _ in rows]
        if batched:
            journal.record_batch(sim.submit_batch(requests))
            continue
        for request in requests:
            order = sim.submit_order(request)
            journal.record_order(order, sim.fills_for(request.client_order_id))
    return sim, journal


def _kept_bytes(prices: pd.DataFrame, cycles: int) -> int:
    """Bytes allocated and still held after ``_execution_rounds`` (tracemalloc)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    books = _execution_rounds(prices, cycles)
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del books
    return kept


def _measure_execution(prices: pd.DataFrame, cycles: int) -> tuple[float, float, float]:
    """(µs per order in a batch and one by one, fastest of 5 runs each, alternated; bytes
    the books keep per order) of ``_execution_rounds``; the bytes are the slope between
    ``cycles`` and half as many, so the broker's fixed tables (the calendar, the prices) do
    not count."""
    orders = cycles * prices.shape[1]
    runs: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(5):  # the fastest of 5: the least disturbed by other processes
        for batched in (True, False):
            start = time.perf_counter()
            _execution_rounds(prices, cycles, batched)
            runs[batched].append(time.perf_counter() - start)
    batch_us, single_us = (min(runs[b]) / orders * 1e6 for b in (True, False))
    half = cycles // 2
    slope = (_kept_bytes(prices, cycles) - _kept_bytes(prices, half)) / (cycles - half)
    return batch_us, single_us, slope / prices.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=int, default=8)
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rng = np.random.default_rng(0)
    index = pd.bdate_range("2005-01-03", periods=args.days, name="date")
    walk = np.cumsum(rng.normal(0, 0.01, (args.days, args.assets)), axis=0)
    prices = pd.DataFrame(
        100 * np.exp(walk), index=index, columns=[f"S{j}" for j in range(args.assets)]
    )
    with tempfile.TemporaryDirectory() as tmp:
        memory = _measure(":memory:", prices, args.calls)
        disk = _measure(Path(tmp) / "state.db", prices, args.calls)
    cycles = min(args.days - 1, 2000)
    batch_us, single_us, kept_bytes = _measure_execution(prices, cycles)
    print(f"{args.assets} assets x {args.days} days, {args.calls} calls each")
    print(f"{'call':28s} {':memory: us':>12s} {'file us':>10s}")
    for name, value in memory.items():
        print(f"{name:28s} {value:12.1f} {disk[name]:10.1f}")
    print(f"execute_plan's calls, :memory: books, {cycles} cycles x {args.assets} orders: "
          f"{batch_us:.1f} us per order in one batch (the backtest), {single_us:.1f} us one "
          f"by one; {kept_bytes:.0f} bytes kept per order")


if __name__ == "__main__":
    main()
