"""The simulator books a side's orders in one call and the journal records them in one step
(``ImmediateFillVenue``): the books, the journal, the report and the log events are exactly
those of the one-order-at-a-time path any other venue takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.core.rebalance import PlannedOrder, RebalancePolicy
from bot.engine import execution
from bot.engine.execution import ExecutionSettings, execute_plan
from bot.engine.journal import Journal
from bot.engine.memory_journal import MemoryJournal
from brokers.base import OrderRequest, OrderSide, OrderStatus
from brokers.booked_batch import BookedBatch, ImmediateFillVenue
from brokers.faults import FaultInjectingBroker, FaultPlan
from brokers.sim.broker import SimulatedBroker
from brokers.sim.pricing import SimCosts
from tests.conftest import capture_logs
from tests.test_sim_broker import PRICES, START

SETTINGS = ExecutionSettings("bt", dry_run=False, order_wait_secs=1.0, policy=RebalancePolicy())
FRACTIONABLE = {"SPY": True, "TLT": True, "NEW": True}


def _order(symbol: str, side: OrderSide, qty: float, price: float) -> PlannedOrder:
    return PlannedOrder(symbol, side, qty, price, qty * price, "drift")


# Day 1: two buys and a buy of NEW, which has no price yet (rejected: no_price).
# Day 2: a partial sell, a sell of more than is held (rejected: insufficient_qty), a buy of
# NEW (listed that day).
PLANS = [
    [_order("SPY", OrderSide.BUY, 20.0, 102.0), _order("TLT", OrderSide.BUY, 40.5, 49.0),
     _order("NEW", OrderSide.BUY, 3.0, 20.0)],
    [_order("TLT", OrderSide.SELL, 10.25, 51.0), _order("SPY", OrderSide.SELL, 99.0, 101.0),
     _order("NEW", OrderSide.BUY, 5.0, 20.0)],
]


def _replay(tmp_path: Path, books: str, batched: bool) -> dict[str, Any]:
    """Both plans through ``execute_plan`` on a fresh simulator: directly (the batch path)
    or behind a fault injector planning no fault (a venue without the capability)."""
    sim = SimulatedBroker(":memory:" if books == "memory" else tmp_path / "sim.db", PRICES,
                          starting_cash=10_000.0, replay_start=START,
                          costs=SimCosts(commission_bps=10.0, commission_min=1,
                                         slippage_bps=5.0))
    broker = sim if batched else FaultInjectingBroker(sim, FaultPlan())
    assert execution._fills_at_once(type(broker)) is batched  # the path under test is taken
    journal = MemoryJournal() if books == "memory" else Journal(tmp_path / "journal.db")
    journal.set_meta("instance_id", "7e57")  # the same client_order_ids on both paths
    reports, cycles = [], []
    with capture_logs() as logs:
        for plan in PLANS:
            broker.on_wake()
            cycle_id = journal.start_cycle(sim.current_date())
            reports.append(execute_plan(broker, journal, cycle_id, plan, SETTINGS, FRACTIONABLE))
            cycles.append(cycle_id)
    cids = [i.client_order_id for i in journal.intents()]
    out = {"reports": reports, "intents": journal.intents(), "open": journal.open_intents(),
           "fill_count": journal.fill_count(), "missing": journal.intents_missing_fills(),
           "orders": sim.list_orders(open_only=False), "fills": [sim.fills_for(c) for c in cids],
           "account": sim.account(), "positions": sim.positions(), "logs": logs,
           "cycles": cycles}
    journal.close()
    sim.close()
    return out


@pytest.mark.parametrize("books", ["memory", "sqlite"])
def test_batch_path_books_journals_and_logs_exactly_what_one_by_one_does(tmp_path, books):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    batched = _replay(tmp_path / "a", books, batched=True)
    one_by_one = _replay(tmp_path / "b", books, batched=False)
    for key in ("reports", "intents", "open", "fill_count", "missing", "orders", "fills",
                "account", "positions", "cycles"):
        assert batched[key] == one_by_one[key], key
    assert batched["logs"] == one_by_one["logs"]
    statuses = [o.status for o in batched["orders"]]
    assert statuses.count(OrderStatus.REJECTED) == 2 and statuses.count(OrderStatus.FILLED) == 4
    assert [(r.filled, r.rejected) for r in batched["reports"]] == [(2, 1), (2, 1)]
    assert batched["fill_count"] == 4 and batched["missing"] == []


def test_batch_path_logs_every_order_at_info_as_one_by_one_does(tmp_path):
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    batched = _replay(tmp_path / "a", "memory", batched=True)["logs"]
    one_by_one = _replay(tmp_path / "b", "memory", batched=False)["logs"]
    assert batched == one_by_one
    events = [e["event"] for e in batched]
    assert events.count("order_submitted") == 6 and events.count("order_filled") == 4
    assert events.count("order_rejected") == 2


def test_sim_submit_batch_answers_a_known_id_with_the_stored_order(tmp_path):
    sim = SimulatedBroker(":memory:", PRICES, starting_cash=10_000.0, replay_start=START)
    assert isinstance(sim, ImmediateFillVenue)
    sim.on_wake()
    first = sim.submit_order(OrderRequest("SPY", OrderSide.BUY, "c-1", qty=2.0))
    again = sim.submit_batch([OrderRequest("SPY", OrderSide.BUY, "c-1", qty=7.0),
                              OrderRequest("TLT", OrderSide.BUY, "c-2", qty=1.0)])
    assert again.order(0) == first and again.fills(0) == sim.fills_for("c-1")
    assert sim.positions()["SPY"].qty == 2.0  # not bought twice
    assert [o.client_order_id for o in sim.list_orders(open_only=False)] == ["c-1", "c-2"]


def test_booked_batch_refuses_an_order_it_cannot_hold_as_one_fill():
    from dataclasses import replace

    from brokers.base import Fill, Order

    sim = SimulatedBroker(":memory:", PRICES, starting_cash=10_000.0, replay_start=START)
    sim.on_wake()
    order: Order = sim.submit_order(OrderRequest("SPY", OrderSide.BUY, "c-1", qty=2.0))
    fill: Fill = sim.fills_for("c-1")[0]
    with pytest.raises(ValueError, match="filled at most once"):
        BookedBatch().add_order(order, [fill, fill])
    with pytest.raises(ValueError, match="filled at most once"):
        BookedBatch().add_order(order, [replace(fill, price=fill.price + 1)])


class _CrashInsideWrite(Exception):
    """Stands for the process dying inside the journal's write (the transaction rolls back)."""


def test_crash_between_batch_booking_and_its_journal_write_is_reconciled_never_resent(tmp_path):
    """The window the batch path widens: the venue has booked a side, the journal has not
    recorded it. After the restart, reconciliation finds every order at the venue by its
    id, records its fill, and the orders are not sent again."""
    from bot.engine.reconcile import reconcile
    from bot.engine.statuses import IntentStatus

    def sim() -> SimulatedBroker:
        return SimulatedBroker(tmp_path / "sim.db", PRICES, starting_cash=10_000.0,
                               replay_start=START)

    def crash(kind: str) -> None:
        if kind == "record_order":
            hits.append(kind)
            raise _CrashInsideWrite

    broker, journal, hits = sim(), Journal(tmp_path / "journal.db"), []
    broker.on_wake()
    cycle_id = journal.start_cycle(broker.current_date())
    journal.write_hook = crash
    with pytest.raises(_CrashInsideWrite):
        execute_plan(broker, journal, cycle_id, PLANS[0][:2], SETTINGS, FRACTIONABLE)
    assert hits == ["record_order"]  # the fault hit the batch's journal write
    booked = broker.list_orders(open_only=False)
    assert [o.status for o in booked] == [OrderStatus.FILLED] * 2
    assert {i.status for i in journal.intents()} == {IntentStatus.INTENT}  # not recorded
    journal.close()
    broker.close()

    broker, journal = sim(), Journal(tmp_path / "journal.db")  # the restart
    reconcile(broker, journal, "bt", repair_fills=True)
    assert {i.status for i in journal.intents()} == {IntentStatus.FILLED}
    assert journal.fill_count() == 2 and journal.intents_missing_fills() == []
    assert journal.open_intents() == []  # nothing left for a later cycle to resend
    assert broker.list_orders(open_only=False) == booked
