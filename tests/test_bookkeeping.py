"""Atomic bookkeeping: fills repaired from the venue, sequence numbers from the database,
cache files written through unique temporary names."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pandas as pd

from bot.engine import cycle
from bot.engine.reconcile import reconcile
from bot.engine.statuses import IntentStatus
from brokers.base import OrderRequest, OrderSide
from brokers.sim.broker import SimulatedBroker
from tests.conftest import REPO, capture_logs, random_walk_prices
from tests.test_cycle import make_ctx


def test_reconcile_filled_order_without_fills_asks_venue_and_stores_them(tmp_path):
    ctx = make_ctx(tmp_path)
    ctx.broker.on_wake()
    cid = ctx.journal.start_cycle(date(2021, 1, 1))
    ctx.journal.record_intents(cid, [("ab-torn-AAA-b", "AAA", OrderSide.BUY, 5.0, 100.0)])
    order = ctx.broker.submit_order(OrderRequest("AAA", OrderSide.BUY, "ab-torn-AAA-b", qty=5.0))
    ctx.journal.update_from_order(order)  # what an older allocbot left after a kill: no fills
    assert ctx.journal.intents_missing_fills() == ["ab-torn-AAA-b"]
    assert ctx.journal.fill_count() == 0
    with capture_logs() as logs:
        reconcile(ctx.broker, ctx.journal, "ab", repair_fills=True)
    assert ctx.journal.intents_missing_fills() == []
    assert ctx.journal.fill_count() == 1
    assert [e["client_order_id"] for e in logs if e["event"] == "order_fills_repaired"] == [
        "ab-torn-AAA-b"]
    assert [o.client_order_id for o in ctx.broker.list_orders(open_only=False)] == [
        "ab-torn-AAA-b"], "repair never sends an order"


def test_cycle_first_run_of_a_process_repairs_missing_fills(tmp_path):
    ctx = make_ctx(tmp_path)
    ctx.broker.on_wake()
    cid = ctx.journal.start_cycle(date(2021, 1, 1))
    ctx.journal.record_intents(cid, [("ab-torn-BBB-b", "BBB", OrderSide.BUY, 3.0, 100.0)])
    order = ctx.broker.submit_order(OrderRequest("BBB", OrderSide.BUY, "ab-torn-BBB-b", qty=3.0))
    ctx.journal.update_from_order(order)
    assert cycle.run(ctx).status == "finished"
    intent = next(i for i in ctx.journal.intents() if i.client_order_id == "ab-torn-BBB-b")
    assert intent.status is IntentStatus.FILLED
    assert ctx.journal.intents_missing_fills() == []


def test_sim_two_instances_on_one_file_never_reuse_an_order_id(tmp_path):
    prices = random_walk_prices(["AAA", "BBB"], 300)
    db = tmp_path / "state.sqlite"
    first = SimulatedBroker(db, prices, starting_cash=1e6, replay_start=prices.index[260].date())
    second = SimulatedBroker(db, prices, starting_cash=1e6,
                             replay_start=prices.index[260].date())
    first.on_wake()
    second.on_wake()
    ids = []
    for i in range(6):  # interleaved: each instance's in-memory view is stale for the other
        broker = first if i % 2 == 0 else second
        ids.append(broker.submit_order(
            OrderRequest("AAA", OrderSide.BUY, f"ab-{i}-AAA-b", qty=1.0)).id)
    assert len(set(ids)) == 6
    assert ids == [f"sim-{n:09d}" for n in range(1, 7)]
    stored = [o.id for o in first.list_orders(open_only=False)]
    assert stored == ids
    first.close()
    second.close()


_WRITER = """
import sys
from datetime import date
from pathlib import Path
import pandas as pd
from brokers.alpaca.data import DailyCloseCache
cache = DailyCloseCache(Path(sys.argv[1]), "iex")
closes = pd.Series([1.0, 2.0], index=pd.to_datetime(["2024-01-02", "2024-01-03"]))
for _ in range(int(sys.argv[2])):
    cache.store("SPY", closes, (date(2024, 1, 2), date(2024, 1, 3)))
"""


def test_bars_cache_two_processes_storing_at_once_never_collide(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), "150"], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    root = tmp_path / "alpaca-iex"
    assert sorted(p.name for p in root.iterdir()) == ["SPY.csv", "coverage.json"]
    assert pd.read_csv(root / "SPY.csv")["close"].tolist() == [1.0, 2.0]
