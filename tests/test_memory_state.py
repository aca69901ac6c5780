"""The backtest's in-memory books (``MemoryJournal``, ``MemoryLedger``) against the daemon's
SQLite ones: the same cycles over the same days give the same orders, fills, intents and
cycle records, field by field."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

import brokers.sim.broker as sim_broker
import strategies
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.engine import cycle
from bot.engine.cycle import CycleContext, CycleSettings
from bot.engine.journal import Journal
from bot.engine.memory_journal import MemoryJournal
from bot.engine.statuses import IntentStatus
from brokers.base import OrderSide
from brokers.sim.broker import SimulatedBroker
from brokers.sim.memory_ledger import MemoryLedger
from brokers.sim.pricing import SimCosts
from tests.conftest import random_walk_prices

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


def _ctx(prices: pd.DataFrame, db: Path | str) -> CycleContext:
    broker = SimulatedBroker(db, prices, starting_cash=20_000.0, fractional=False,
                             costs=SimCosts(commission_bps=10.0, commission_min=1.0,
                                            slippage_bps=25.0),
                             replay_start=prices.index[130].date())
    journal = MemoryJournal() if db == ":memory:" else Journal(db)
    journal.set_meta("instance_id", "beef")  # the same order ids in both
    settings = CycleSettings(
        mode="paper", universe=tuple(SYMBOLS), order_prefix="ab", order_wait_secs=1.0,
        policy=RebalancePolicy(drift_abs=0.01, drift_rel=0.05, cost_bps_estimate=0.0),
        limits=RiskLimits(lookback_days=60, max_var=0.012), commission_min=1.0)
    strategy = strategies.create("momentum", lookback=20, k=2)
    return CycleContext(broker, journal, strategy, settings)


def _cycles(ctx: CycleContext, days: int) -> list[tuple]:
    out = []
    for _ in range(days):
        ctx.broker.on_wake()
        r = cycle.run(ctx)
        figures = {k: v for k, v in r.figures.items() if k != "duration_ms"}
        out.append((r.cycle_id, r.status, r.asof, figures, r.error))
    return out


@pytest.mark.parametrize("run_min_orders", [1, sim_broker.RUN_MIN_ORDERS])
def test_memory_books_replay_the_same_cycles_as_sqlite_books(tmp_path, monkeypatch,
                                                             run_min_orders):
    """With the default, these 4-symbol batches are booked order by order; from one order
    up, each side's orders are booked as a run (``plan_fill_run``)."""
    monkeypatch.setattr(sim_broker, "RUN_MIN_ORDERS", run_min_orders)
    prices = random_walk_prices(SYMBOLS, 230, seed=11)
    on_disk, in_memory = _ctx(prices, tmp_path / "state.sqlite"), _ctx(prices, ":memory:")
    assert isinstance(in_memory.broker._ledger, MemoryLedger)  # the path under test
    assert _cycles(in_memory, 95) == _cycles(on_disk, 95)
    disk_j, mem_j = on_disk.journal, in_memory.journal
    intents = [asdict(i) for i in disk_j.intents()]
    assert [asdict(i) for i in mem_j.intents()] == intents
    statuses = {i["status"] for i in intents}
    # the edits are exercised (a dropped buy's "unsent" and a resize: see
    # test_memory_journal_statuses_and_resizes_match_sqlite; whole-share buys scaled to the
    # cash now keep their shares here)
    assert {"filled", "rejected"} <= statuses, statuses
    assert mem_j.fill_count() == disk_j.fill_count() > 0
    assert mem_j.intents_missing_fills() == disk_j.intents_missing_fills() == []
    assert mem_j.open_intents() == disk_j.open_intents() == []

    def cycles_of(journal: Journal) -> list[tuple]:
        return [(c["cycle_id"], c["asof"], c["status"],
                 {k: v for k, v in c["summary"].items() if k != "duration_ms"})
                for c in journal.recent_cycles(1000)]

    assert cycles_of(mem_j) == cycles_of(disk_j)
    for key in ("peak_equity", "instance_id"):
        assert (mem_j.meta(key) is None) == (disk_j.meta(key) is None)
    for key in ("signal",):  # JSON values: kept as objects in memory
        assert mem_j.meta_json(key) == disk_j.meta_json(key) is not None
        assert mem_j.meta(key) == disk_j.meta(key)
    days = sorted({date.fromisoformat(c[1]) for c in cycles_of(disk_j) if c[1]})
    spent = [disk_j.day_notional(d) for d in days]
    assert [mem_j.day_notional(d) for d in days] == spent and max(spent) > 0
    b_disk, b_mem = on_disk.broker, in_memory.broker
    assert b_mem.account() == b_disk.account()
    assert b_mem.positions() == b_disk.positions()
    assert b_mem.list_orders(open_only=False) == b_disk.list_orders(open_only=False)
    pd.testing.assert_frame_equal(b_mem.fills_table(), b_disk.fills_table())
    first = b_disk.list_orders(open_only=False)[0]
    assert b_mem.fills_for(first.client_order_id) == b_disk.fills_for(first.client_order_id)


def test_memory_journal_statuses_and_resizes_match_sqlite(tmp_path):
    """The intent edits the cycle makes between journaling and sending (resize, unsent,
    a refused order's reason) land the same in both journals."""
    journals = [Journal(tmp_path / "j.sqlite"), MemoryJournal()]
    seen = []
    for j in journals:
        cid = j.start_cycle(None)
        rows = [("x-1-AAA-b", "AAA", OrderSide.BUY, 10.0, 5.0),
                ("x-1-BBB-b", "BBB", OrderSide.BUY, 4.0, 7.0),
                ("x-1-CCC-s", "CCC", OrderSide.SELL, 2.0, 9.0)]
        j.record_intents(cid, rows)
        j.resize_intent("x-1-AAA-b", 8.0)
        j.set_status("x-1-BBB-b", IntentStatus.UNSENT, "not enough cash after sells")
        j.resize_intent("x-1-BBB-b", 1.0)  # not an intent any more: unchanged
        j.set_meta("k", "v")
        j.delete_meta("k")
        open_before = [i.client_order_id for i in j.open_intents()]
        abandoned = [c[-6:] for c in j.abandon_running_cycles()]
        seen.append(([asdict(i) | {"cycle_id": None} for i in j.intents()], open_before,
                     [asdict(i) | {"cycle_id": None} for i in
                      j.intents(statuses=[IntentStatus.UNSENT])],
                     j.known_client_order_ids(), j.meta("k"), abandoned,
                     [c["status"] for c in j.recent_cycles()]))
    assert seen[0] == seen[1]
    assert seen[0][1] == ["x-1-AAA-b", "x-1-CCC-s"]


def test_memory_journal_json_meta_reads_back_like_sqlite(tmp_path):
    """A JSON value reads back equal from both journals, as text too; a text value or a
    delete replaces it."""
    value = {"asof": "2024-05-31", "weights": {"AAA": 0.1 + 0.2, "BBB": 1e-17}}
    seen = []
    for j in (Journal(tmp_path / "j.sqlite"), MemoryJournal()):
        j.set_meta_json("memo", value)
        read = (j.meta_json("memo"), j.meta("memo"))
        j.set_meta("memo", '{"asof": "x"}')
        replaced = j.meta_json("memo")
        j.set_meta_json("memo", [1.5])
        j.delete_meta("memo")
        seen.append((read, replaced, j.meta_json("memo"), j.meta("memo")))
    assert seen[0] == seen[1]
    assert seen[0] == ((value, '{"asof": "2024-05-31", "weights": {"AAA": '
                        '0.30000000000000004, "BBB": 1e-17}}'), {"asof": "x"}, None, None)
