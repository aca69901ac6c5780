"""The backtest's in-memory books (``MemoryLedger``, ``MemoryJournal``) give back exactly what
the SQLite ones do, for the simulator's own orders and for anything else a caller records;
the trusted constructors build the same values as the checked ones."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from bot.engine.journal import Journal
from bot.engine.memory_journal import MemoryJournal
from bot.engine.statuses import IntentStatus
from brokers.base import (
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Position,
    qty_requests,
    trusted_fill,
    trusted_order,
    trusted_position,
)
from brokers.errors import BrokerDataError
from brokers.sim.broker import SimulatedBroker
from brokers.sim.ledger import SimLedger
from brokers.sim.memory_ledger import MemoryLedger
from brokers.sim.pricing import SimCosts
from strategies.errors import StateError
from tests.test_sim_broker import PRICES, START

AT = datetime(2024, 1, 2, 20, 45, tzinfo=UTC)


def test_trusted_constructors_set_every_field_as_checked_ones_do():
    order_args = ("sim-1", "c-1", "SPY", OrderSide.BUY, OrderStatus.FILLED, 2.0, None, 2.0,
                  101.5, AT, "why")
    fill_args = ("sim-1", "c-1", "SPY", OrderSide.SELL, 2.0, 101.5, 0.25, AT)
    position_args = ("SPY", 3.0, 99.0, 297.0)
    for cls, build, args in ((Order, trusted_order, order_args), (Fill, trusted_fill, fill_args),
                             (Position, trusted_position, position_args)):
        trusted, checked = build(*args), cls(*args)
        assert trusted == checked and hash(trusted) == hash(checked)
        assert [getattr(trusted, f.name) for f in fields(cls)] == list(args)


def test_qty_requests_build_what_the_checked_constructor_builds_and_refuse_what_it_refuses():
    rows = [("c-1", "SPY", OrderSide.BUY, 2.5), ("c-2", "TLT", OrderSide.SELL, 3)]
    built = qty_requests(rows)
    assert built == [OrderRequest(s, side, c, q) for c, s, side, q in rows]
    assert [type(r.qty) for r in built] == [float, int]  # as given, as the constructor keeps
    for bad, message in (((math.nan,), "finite"), ((0.0,), "must be > 0"),
                         ((-1.0,), "must be > 0")):
        with pytest.raises(ValueError, match=message):
            qty_requests([*rows, ("c-3", "SPY", OrderSide.BUY, *bad)])
    with pytest.raises(ValueError, match="client_order_id must be"):
        qty_requests([*rows, ("x" * 49, "SPY", OrderSide.BUY, 1.0)])


def test_checked_constructors_still_refuse_bad_values():
    with pytest.raises(ValueError, match="timezone-aware"):
        Order("i", "c", "SPY", OrderSide.BUY, OrderStatus.NEW, 1.0, None,
              submitted_at=datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="finite"):
        Fill("i", "c", "SPY", OrderSide.BUY, 1.0, math.inf, 0.0, AT)


def _both_brokers(tmp_path, **kwargs) -> list[SimulatedBroker]:
    options = {"starting_cash": 3_000.0, "replay_start": START,
               "costs": SimCosts(15.0, 0.5, 7.0)} | kwargs
    return [SimulatedBroker(tmp_path / "state.db", PRICES, **options),
            SimulatedBroker(":memory:", PRICES, **options)]


def test_memory_ledger_matches_sqlite_on_notional_rejected_and_int_orders(tmp_path):
    """Notional orders, rejections of every kind, an int quantity (booked as the float it
    is) and a known id: the same orders, fills and fill table."""
    requests = [
        OrderRequest("SPY", OrderSide.BUY, "n1", notional=500.0),
        OrderRequest("TLT", OrderSide.BUY, "q1", qty=3.25),
        OrderRequest("SPY", OrderSide.BUY, "i1", qty=2),  # an int qty
        OrderRequest("NEW", OrderSide.BUY, "p1", qty=1.0),  # no price yet: rejected
        OrderRequest("TLT", OrderSide.SELL, "s1", qty=99.0),  # more than held: rejected
        OrderRequest("SPY", OrderSide.BUY, "b1", qty=1_000.0),  # beyond cash: rejected
        OrderRequest("TLT", OrderSide.SELL, "s2", qty=1.25),
        OrderRequest("TLT", OrderSide.SELL, "q1", qty=9.0),  # a known id: the stored order
    ]
    seen = []
    for sim in _both_brokers(tmp_path):
        sim.on_wake()
        returned = [(sim.submit_order(r), sim.fills_for(r.client_order_id))
                    for r in requests[:4]]
        sim.on_wake()
        returned += [(sim.submit_order(r), sim.fills_for(r.client_order_id))
                     for r in requests[4:]]
        cids = [r.client_order_id for r in requests]
        seen.append((returned, sim.list_orders(open_only=False),
                     [sim.get_order_by_client_id(c) for c in cids],
                     [sim.fills_for(c) for c in cids], sim.fills_table(), sim.account(),
                     sim.positions()))
        sim.close()
    (*disk, disk_table, disk_account, disk_held) = seen[0]
    (*memory, memory_table, memory_account, memory_held) = seen[1]
    assert memory == disk
    assert {o.status for o in memory[1]} == {OrderStatus.FILLED, OrderStatus.REJECTED}
    assert sum(len(fills) for _, fills in memory[0]) == 5  # q1 twice: sent, then known
    int_order, int_fills = memory[0][2]
    assert [type(v) for v in (int_order.qty, int_order.filled_qty, int_fills[0].qty)] == [float] * 3
    pd.testing.assert_frame_equal(memory_table, disk_table)
    assert (memory_account, memory_held) == (disk_account, disk_held)


def test_sim_costs_given_as_ints_book_float_commissions_in_both_ledgers(tmp_path):
    """A TOML ``commission_min = 1`` is an int: the fill's commission is still the float 1.0
    (the in-memory books write the simulator's numbers straight into float columns)."""
    books = []
    for sim in _both_brokers(tmp_path, costs=SimCosts(commission_bps=0, commission_min=1,
                                                      slippage_bps=0)):
        sim.on_wake()
        order = sim.submit_order(OrderRequest("SPY", OrderSide.BUY, "c1", qty=1.0))
        books.append((order, sim.fills_for("c1"), sim.get_order_by_client_id("c1"),
                       sim.account()))
        sim.close()
    assert books[0] == books[1]
    commission = books[1][1][0].commission
    assert type(commission) is float and commission == 1.0


def test_memory_ledger_keeps_values_outside_its_columns_whole():
    """What the float columns cannot hold exactly (an int quantity, a NaN price where NaN
    stands for None, a fill that is not the order's own execution) comes back as recorded,
    with the stored id."""
    ledger = MemoryLedger()
    int_qty = Order("", "c-1", "SPY", OrderSide.BUY, OrderStatus.REJECTED, 3, None, 0.0, None,
                    AT, "qty_too_small: no")
    nan_price = Order("", "c-2", "SPY", OrderSide.BUY, OrderStatus.FILLED, 1.0, None, 1.0,
                      math.nan, AT)
    other_fill = Order("", "c-3", "TLT", OrderSide.SELL, OrderStatus.FILLED, 2.0, None, 2.0,
                       50.0, AT)
    fill = Fill("", "c-3", "TLT", OrderSide.SELL, 2.0, 50.0, 0.5, AT + timedelta(seconds=1))
    plain = Order("", "c-4", "TLT", OrderSide.SELL, OrderStatus.REJECTED, 1.0, None, 0.0, None,
                  AT, "insufficient_qty: no")
    stored = [ledger.record(int_qty, None, 0.0, None), ledger.record(nan_price, None, 0.0, None),
              ledger.record(other_fill, fill, 0.0, None), ledger.record(plain, None, 0.0, None)]
    assert [o.id for o in stored] == [f"sim-00000000{i}" for i in (1, 2, 3, 4)]
    assert ledger.orders() == stored
    first, second = ledger.order("c-1"), ledger.order("c-2")
    assert first is not None and type(first.qty) is int
    assert second is not None and math.isnan(second.filled_avg_price or 0.0)
    assert ledger.fills("c-3") == [Fill("sim-000000003", *astuple_after_id(fill))]
    assert ledger.order("c-4") == stored[3] and ledger.fills("c-4") == []
    table = ledger.fills_frame()
    assert table[["symbol", "side", "qty", "price", "commission"]].values.tolist() == [
        ["TLT", "sell", 2.0, 50.0, 0.5]]
    assert table["at"].tolist() == [pd.Timestamp(AT + timedelta(seconds=1))]


def astuple_after_id(fill: Fill) -> tuple:
    return tuple(getattr(fill, f.name) for f in fields(Fill))[1:]


def test_memory_ledger_knows_only_the_ids_it_issued(tmp_path):
    ledgers = [SimLedger(tmp_path / "l.db"), MemoryLedger()]
    for ledger in ledgers:
        ledger.load_or_create(100.0)
        ledger.record(Order("", "c-1", "SPY", OrderSide.BUY, OrderStatus.REJECTED, 1.0, None,
                            submitted_at=AT, reject_reason="x"), None, 100.0, None)
    probes = ["sim-000000001", "sim-000000002", "sim-1", "sim-0000000001", "sim-00000000１",
              "sim-_00000001", "", "sim-", "SIM-000000001"]
    assert [ledgers[1].has_order_id(p) for p in probes] == [
        ledgers[0].has_order_id(p) for p in probes]
    assert ledgers[1].has_order_id("sim-000000001") and not ledgers[1].has_order_id("sim-1")


def test_sim_account_follows_a_fill_and_the_next_day_after_being_read():
    sim = SimulatedBroker(":memory:", PRICES, starting_cash=1_000.0, replay_start=START)
    sim.on_wake()  # SPY 102
    before = sim.account()
    assert sim.account() == before
    sim.submit_order(OrderRequest("SPY", OrderSide.BUY, "b", qty=2.0))
    after = sim.account()
    assert (after.cash, after.equity) == (1_000.0 - 204.0, 1_000.0)
    sim.on_wake()  # SPY 101
    assert sim.account().equity == 796.0 + 202.0
    assert sim.positions()["SPY"].market_value == 202.0


def _journals(tmp_path) -> list[Journal]:
    return [Journal(tmp_path / "j.sqlite"), MemoryJournal()]


def test_memory_journal_counts_fills_of_orders_journaled_before_or_without_intents(tmp_path):
    """Reconciliation may record an order's fills before (or without) its intent: the fill
    count and the missing-fills check agree with SQLite's."""
    seen = []
    for j in _journals(tmp_path):
        j.set_meta("instance_id", "beef")
        cycle = j.start_cycle(None)
        early = Order("sim-9", "x-b", "BBB", OrderSide.BUY, OrderStatus.FILLED, 4.0, None, 4.0,
                      7.0, AT)
        early_fills = [Fill("sim-9", "x-b", "BBB", OrderSide.BUY, q, 7.0, 0.0, AT)
                       for q in (1.5, 2.5)]
        j.record_order(early, early_fills)  # before its intent: complete fills
        foreign = Order("sim-8", "zz", "CCC", OrderSide.BUY, OrderStatus.FILLED, 1.0, None,
                        1.0, 9.0, AT)
        j.record_order(foreign, [Fill("sim-8", "zz", "CCC", OrderSide.BUY, 1.0, 9.0, 0.0, AT)])
        j.record_intents(cycle, [("x-a", "AAA", OrderSide.BUY, 2.0, 5.0),
                                 ("x-b", "BBB", OrderSide.BUY, 4.0, 7.0)])
        j.update_from_order(early)  # the intent now says 4 filled, as its fills do
        j.record_order(foreign, [])  # a later, empty list replaces the earlier one
        nan_price = Order("sim-7", "x-a", "AAA", OrderSide.BUY, OrderStatus.FILLED, 2.0, None,
                          2.0, math.nan, AT)
        j.record_order(nan_price, [])
        seen.append((j.fill_count(), j.intents_missing_fills(),
                     [asdict(i) for i in j.intents()], j.known_client_order_ids()))
    assert seen[0] == seen[1]
    assert seen[1][:2] == (2, ["x-a"])
    assert seen[1][2][0]["filled_avg_price"] is None  # SQLite stores NaN as NULL


def test_memory_journal_refuses_a_batch_with_a_known_id_and_keeps_nothing_of_it(tmp_path):
    seen = []
    for j in _journals(tmp_path):
        cycle = j.start_cycle(None)
        j.record_intents(cycle, [("x-a", "AAA", OrderSide.BUY, 2.0, 5.0)])
        with pytest.raises(StateError):
            j.record_intents(cycle, [("x-c", "CCC", OrderSide.SELL, 1.0, 3.0),
                                     ("x-a", "AAA", OrderSide.BUY, 2.0, 5.0)])
        j.set_status("x-a", IntentStatus.UNSENT, "gone")
        seen.append(([(i.client_order_id, i.status, i.reason) for i in j.intents()],
                     j.open_intents()))
    assert seen[0] == seen[1] == ([("x-a", "unsent", "gone")], [])


def test_sim_held_qty_is_what_positions_say_in_the_asked_order():
    sim = SimulatedBroker(":memory:", PRICES, starting_cash=5_000.0, replay_start=START)
    sim.on_wake()
    sim.submit_order(OrderRequest("TLT", OrderSide.BUY, "t", qty=3.123456789))
    sim.submit_order(OrderRequest("SPY", OrderSide.BUY, "s", qty=2.0))
    sim.submit_order(OrderRequest("SPY", OrderSide.SELL, "s2", qty=2.0))  # closed again
    symbols = ["SPY", "NEW", "TLT"]
    held = sim.positions()
    assert sim.held_qty(symbols).tolist() == [
        held[s].qty if s in held else 0.0 for s in symbols] == [0.0, 0.0, 3.123456789]
    with pytest.raises(BrokerDataError, match="XYZ"):
        sim.held_qty(["SPY", "XYZ"])
