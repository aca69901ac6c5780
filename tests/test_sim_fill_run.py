"""The backtest's simulator books a batch's plain orders at once (``plan_fill_run``); the
paper daemon's SQLite account books each order in turn (``plan_fill``). Whatever the batch
(cash running out midway, a sell of more than held, a repeated symbol or id, a notional
order, no price, fractional trading off), both give the same orders, fills, cash and
positions, number for number."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokers.sim.broker as sim_broker
from brokers.base import OrderRequest, OrderSide, OrderStatus
from brokers.sim.broker import SimulatedBroker
from brokers.sim.pricing import SimCosts

DAYS = pd.bdate_range("2024-01-01", periods=5, name="date")
PRICES = pd.DataFrame({
    "AAA": [100.0, 101.3, 99.7, 102.9, 103.1],
    "BBB": [20.0, 20.17, 19.93, 21.01, 20.55],
    "CCC": [3.1, 3.05, 3.2, 3.17, 3.33],
    "DDD": [np.nan, np.nan, 55.0, 54.2, 56.8],  # listed on the third day
    "EEE": [250.5, 251.25, 249.0, 252.75, 255.5],
}, index=DAYS)
SYMBOLS = [*PRICES.columns, "ZZZ"]  # ZZZ: not in the price data


def _brokers(folder: Path, costs: SimCosts, fractional: bool) -> list[SimulatedBroker]:
    options = {"starting_cash": 20_000.0, "replay_start": DAYS[0].date(), "costs": costs,
               "fractional": fractional}
    return [SimulatedBroker(folder / "state.db", PRICES, **options),
            SimulatedBroker(":memory:", PRICES, **options)]


def _books(sim: SimulatedBroker, batches: list[list[OrderRequest]]) -> tuple:
    answers = []
    for batch in batches:
        sim.on_wake()
        booked = sim.submit_batch(batch)
        answers.append([(booked.order(i), booked.fills(i)) for i in range(len(booked))])
    orders = sim.list_orders(open_only=False)
    return (answers, orders, [sim.fills_for(o.client_order_id) for o in orders],
            sim.account(), sim.positions())


def _replay_both(batches: list[list[OrderRequest]], costs: SimCosts, fractional: bool):
    with tempfile.TemporaryDirectory() as folder:
        disk, memory = _brokers(Path(folder), costs, fractional)
        try:
            on_disk, in_memory = _books(disk, batches), _books(memory, batches)
            tables = disk.fills_table(), memory.fills_table()
        finally:
            disk.close()
            memory.close()
    return on_disk, in_memory, tables


_request = st.builds(
    lambda symbol, side, cid, qty, notional: OrderRequest(
        symbol, side, f"c{cid}", None if notional else qty, qty * 40 if notional else None),
    st.sampled_from(SYMBOLS), st.sampled_from(list(OrderSide)), st.integers(0, 14),
    st.one_of(st.floats(0.001, 25.0), st.integers(1, 25).map(float), st.integers(1, 25),
              st.sampled_from([150.0, 400.0])),  # these can use up the cash midway
    st.sampled_from([False, False, False, True]))  # a notional order now and then
# The first day buys 20 of each symbol: later sells find holdings (or sell them out).
OPENING = [OrderRequest(s, OrderSide.BUY, f"open-{s}", 20.0) for s in PRICES.columns]
_costs = st.builds(SimCosts, st.sampled_from([0.0, 1.0, 15.0]), st.sampled_from([0.0, 0.5]),
                   st.sampled_from([0.0, 2.0, 7.0]))


@pytest.fixture
def runs_from_one_order(monkeypatch):
    """Runs of any length (the simulator books short batches one by one: faster there)."""
    monkeypatch.setattr(sim_broker, "RUN_MIN_ORDERS", 1)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # one patch for all
@given(batches=st.lists(st.lists(_request, max_size=9), min_size=1, max_size=4),
       costs=_costs, fractional=st.booleans())
def test_fill_run_books_what_order_by_order_books(runs_from_one_order, batches, costs,
                                                  fractional):
    on_disk, in_memory, (disk_table, memory_table) = _replay_both([OPENING, *batches], costs,
                                                                  fractional)
    assert in_memory == on_disk
    pd.testing.assert_frame_equal(memory_table, disk_table)


def _counting_runs(monkeypatch) -> list[int]:
    """Records how many orders each ``plan_fill_run`` call let the simulator book at once
    (the real function answers)."""
    accepted: list[int] = []
    real = sim_broker.plan_fill_run

    def counted(*args, **kwargs):
        run = real(*args, **kwargs)
        accepted.append(run.accepted)
        return run

    monkeypatch.setattr(sim_broker, "plan_fill_run", counted)
    return accepted


def test_fill_run_books_a_plain_batch_at_once_and_hands_the_rest_to_order_by_order(
        runs_from_one_order, monkeypatch):
    """The in-memory account books the leading plain orders in one run; from the first
    buy the cash cannot pay, order by order takes over (and rejects it), as on SQLite."""
    accepted = _counting_runs(monkeypatch)
    buys = [OrderRequest("AAA", OrderSide.BUY, "b1", 10.0),
            OrderRequest("BBB", OrderSide.BUY, "b2", 50.5),
            OrderRequest("EEE", OrderSide.BUY, "b3", 80.0),  # 20,040 > the cash left
            OrderRequest("CCC", OrderSide.BUY, "b4", 100.0)]
    costs = SimCosts(commission_bps=5.0, commission_min=1.0, slippage_bps=3.0)
    on_disk, in_memory, _ = _replay_both([buys], costs, fractional=True)
    assert accepted == [2]  # the memory account's one run; SQLite never calls it
    assert in_memory == on_disk
    statuses = [order.status for order, _ in in_memory[0][0]]
    assert statuses == [OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.REJECTED,
                        OrderStatus.FILLED]


def test_fill_run_leaves_a_buy_sized_to_the_last_cent_to_the_clip_rule(runs_from_one_order,
                                                                       monkeypatch):
    """A buy whose cost exceeds the cash by float rounding only is clipped one unit, never
    rejected; the run stops before it and the order-by-order path clips it."""
    accepted = _counting_runs(monkeypatch)
    qty = 6451.612903226  # × 3.1 = 20,000.0000000006: 6e-10 over the cash
    assert qty * PRICES["CCC"].iloc[0] > 20_000.0
    on_disk, in_memory, _ = _replay_both(
        [[OrderRequest("CCC", OrderSide.BUY, "all-in", qty)]], SimCosts(), fractional=True)
    assert accepted == [0]
    assert in_memory == on_disk
    ((order, _),) = in_memory[0][0]
    assert order.status is OrderStatus.FILLED and order.filled_qty == 6451.612903225
    assert 0 <= in_memory[3].cash < 1e-8


def test_a_short_batch_is_booked_order_by_order_and_a_long_one_in_a_run(monkeypatch):
    """Below ``RUN_MIN_ORDERS`` requests the run's array set-up costs more than it saves."""
    accepted = _counting_runs(monkeypatch)
    symbols = list(PRICES.columns.drop("DDD"))
    short = [OrderRequest(s, OrderSide.BUY, f"s{s}", 1.0) for s in symbols]
    monkeypatch.setattr(sim_broker, "RUN_MIN_ORDERS", len(short) + 1)
    _replay_both([short], SimCosts(), fractional=True)
    assert accepted == []
    monkeypatch.setattr(sim_broker, "RUN_MIN_ORDERS", len(short))
    _replay_both([short], SimCosts(), fractional=True)
    assert accepted == [len(short)]
