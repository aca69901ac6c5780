"""SimulatedBroker: fills, costs, rejections, persistence, idempotency and the replay clock."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.base import Broker, OrderRequest, OrderSide, OrderStatus
from brokers.errors import BrokerDataError
from brokers.sim.broker import SimulatedBroker
from brokers.sim.pricing import SimCosts, plan_fill
from tests.conftest import capture_logs, random_walk_prices

DAYS = pd.bdate_range("2024-01-01", periods=6, name="date")  # Mon 1 Jan .. Mon 8 Jan
PRICES = pd.DataFrame(
    {
        "SPY": [100.0, 102.0, 101.0, 105.0, 110.0, 108.0],
        "TLT": [50.0, 49.0, 51.0, 52.0, 50.5, 51.5],
        "NEW": [np.nan, np.nan, 20.0, 21.0, 22.0, 23.0],  # listed on the third day
    },
    index=DAYS,
)
START = date(2024, 1, 2)


def make(tmp_path, commission_bps: float = 0.0, commission_min: float = 0.0,
         slippage_bps: float = 0.0, **kwargs) -> SimulatedBroker:
    options = {"starting_cash": 10_000.0, "replay_start": START} | kwargs
    costs = SimCosts(commission_bps, commission_min, slippage_bps)
    return SimulatedBroker(tmp_path / "state.db", PRICES, costs=costs, **options)


def buy(symbol: str, cid: str, qty: float | None = None, notional: float | None = None):
    return OrderRequest(symbol, OrderSide.BUY, cid, qty=qty, notional=notional)


def sell(symbol: str, cid: str, qty: float | None = None, notional: float | None = None):
    return OrderRequest(symbol, OrderSide.SELL, cid, qty=qty, notional=notional)


@pytest.fixture
def broker(tmp_path):
    sim = make(tmp_path, commission_bps=20, commission_min=1.0, slippage_bps=10)
    sim.on_wake()  # open on 2024-01-02, SPY close 102
    yield sim
    sim.close()


def test_sim_broker_satisfies_broker_protocol(broker):
    assert isinstance(broker, Broker)
    assert broker.name == "sim"


def test_sim_buy_fills_at_close_plus_slippage_with_commission(broker):
    order = broker.submit_order(buy("SPY", "b1", qty=10))
    price = 102.0 * (1 + 10 / 1e4)
    commission = max(1.0, 10 * price * 20 / 1e4)
    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == 10
    assert order.filled_avg_price == pytest.approx(price, rel=1e-15)
    [fill] = broker.fills_for("b1")
    assert (fill.qty, fill.price, fill.commission) == (10, order.filled_avg_price, commission)
    assert broker.account().cash == 10_000.0 - (10 * price + commission)


def test_sim_sell_receives_close_minus_slippage_less_commission(broker):
    broker.submit_order(buy("SPY", "b1", qty=10))
    cash_before = broker.account().cash
    order = broker.submit_order(sell("SPY", "s1", qty=4))
    price = 102.0 * (1 - 10 / 1e4)
    commission = max(1.0, 4 * price * 20 / 1e4)
    assert order.filled_avg_price == pytest.approx(price, rel=1e-15)
    assert broker.account().cash == cash_before + (4 * price - commission)
    assert broker.positions()["SPY"].qty == 6


def test_sim_small_order_pays_minimum_commission(broker):
    broker.submit_order(buy("TLT", "b1", qty=0.5))
    assert broker.fills_for("b1")[0].commission == 1.0


def test_sim_notional_buy_never_costs_more_than_notional(broker):
    order = broker.submit_order(buy("TLT", "n1", notional=1000.0))
    price = 49.0 * (1 + 10 / 1e4)
    assert order.qty is None and order.notional == 1000.0
    assert order.filled_qty == math.floor(1000.0 / price * 1e9) / 1e9
    assert order.filled_qty * order.filled_avg_price <= 1000.0


def test_sim_sell_all_removes_position(broker):
    broker.submit_order(buy("TLT", "b1", qty=1.123456789))
    broker.submit_order(sell("TLT", "s1", qty=broker.positions()["TLT"].qty))
    assert "TLT" not in broker.positions()


def test_sim_buy_average_entry_weights_fills_by_qty(broker):
    broker.submit_order(buy("SPY", "b1", qty=1))
    broker.on_wake()  # SPY close 101
    broker.submit_order(buy("SPY", "b2", qty=3))
    slip = 1 + 10 / 1e4
    expected = (102.0 * slip + 3 * 101.0 * slip) / 4
    assert broker.positions()["SPY"].avg_entry_price == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (sell("SPY", "r", qty=1), "insufficient_qty"),
        (buy("SPY", "r", qty=1000), "insufficient_buying_power"),
        (buy("XYZ", "r", qty=1), "unknown_symbol"),
        (buy("NEW", "r", qty=1), "no_price"),
    ],
)
def test_sim_invalid_order_rejected_with_reason_and_recorded(broker, request_, code):
    order = broker.submit_order(request_)
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason.startswith(code)
    assert request_.symbol in order.reject_reason
    assert broker.get_order_by_client_id("r") == order
    assert broker.fills_for("r") == []
    assert broker.account().cash == 10_000.0
    assert broker.positions() == {}


def test_sim_buy_costing_commission_beyond_cash_rejected(tmp_path):
    sim = make(tmp_path, starting_cash=1020.0, commission_bps=0, commission_min=5.0)
    sim.on_wake()
    order = sim.submit_order(buy("SPY", "b1", qty=10))  # 1020 + 5 > 1020
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason.startswith("insufficient_buying_power")


def test_sim_whole_shares_only_rejects_fractional_qty_and_notional(tmp_path):
    sim = make(tmp_path, fractional=False)
    sim.on_wake()
    assert sim.assets(["SPY"])["SPY"].fractionable is False
    frac = sim.submit_order(buy("SPY", "f1", qty=1.5))
    notional = sim.submit_order(buy("SPY", "f2", notional=500.0))
    whole = sim.submit_order(buy("SPY", "f3", qty=3.0))
    assert frac.status is OrderStatus.REJECTED
    assert frac.reject_reason.startswith("fractional_not_allowed")
    assert notional.status is OrderStatus.REJECTED
    assert notional.reject_reason.startswith("fractional_not_allowed")
    assert whole.status is OrderStatus.FILLED


def test_sim_order_before_first_wake_rejected_market_closed(tmp_path):
    sim = make(tmp_path)
    order = sim.submit_order(buy("SPY", "c1", qty=1))
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason.startswith("market_closed")


def test_sim_duplicate_client_order_id_returns_existing_order_without_second_fill(broker):
    first = broker.submit_order(buy("SPY", "dup", qty=2))
    cash = broker.account().cash
    again = broker.submit_order(buy("SPY", "dup", qty=5))
    assert again == first
    assert len(broker.fills_for("dup")) == 1
    assert broker.account().cash == cash
    assert broker.positions()["SPY"].qty == 2


def test_sim_account_state_survives_new_instance(tmp_path):
    sim = make(tmp_path, slippage_bps=5)
    sim.on_wake()
    sim.on_wake()
    sim.submit_order(buy("SPY", "p1", qty=7.25))
    account, positions = sim.account(), sim.positions()
    sim.close()

    again = make(tmp_path, starting_cash=1.0, slippage_bps=5)  # starting cash ignored now
    assert again.current_date() == date(2024, 1, 3)
    assert again.account() == account
    assert again.positions() == positions
    assert again.get_order_by_client_id("p1").filled_qty == 7.25
    resent = again.submit_order(buy("SPY", "p1", qty=7.25))
    assert len(again.fills_for("p1")) == 1 and resent.id == "sim-000000001"
    again.on_wake()
    assert again.current_date() == date(2024, 1, 4)
    assert again.submit_order(buy("SPY", "p2", qty=1)).id == "sim-000000002"


def test_sim_touches_only_sim_tables_and_uses_wal(tmp_path):
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE cycles (id TEXT)")
    db.execute("INSERT INTO cycles VALUES ('c-1')")
    db.commit()
    sim = make(tmp_path)
    sim.on_wake()
    sim.submit_order(buy("SPY", "t1", qty=1))
    sim.close()
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {t for t in tables if not t.startswith("sim_")} == {"cycles"}
    assert db.execute("SELECT id FROM cycles").fetchall() == [("c-1",)]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sim_replay_clock_advances_one_day_per_wake_then_closes(tmp_path):
    sim = make(tmp_path)
    assert sim.current_date() is None and sim.clock().is_open is False
    seen = []
    for _ in range(5):
        sim.on_wake()
        seen.append(sim.current_date())
        assert sim.clock().is_open is True
    assert seen == [d.date() for d in DAYS[1:]]
    sim.on_wake()
    assert sim.current_date() is None
    assert sim.clock().is_open is False
    assert sim.submit_order(buy("SPY", "late", qty=1)).status is OrderStatus.REJECTED


def test_sim_clock_is_1545_new_york_as_utc(broker):
    clock = broker.clock()
    assert clock.now == datetime(2024, 1, 2, 20, 45, tzinfo=UTC)  # EST = UTC-5
    assert clock.next_close == datetime(2024, 1, 2, 21, 0, tzinfo=UTC)
    assert clock.next_open == datetime(2024, 1, 3, 14, 30, tzinfo=UTC)


def test_sim_default_replay_start_leaves_one_year_of_history(tmp_path):
    days = pd.bdate_range("2020-01-01", periods=300, name="date")
    prices = pd.DataFrame({"SPY": np.linspace(100, 130, 300)}, index=days)
    sim = SimulatedBroker(":memory:", prices, starting_cash=1.0)
    sim.on_wake()
    assert sim.current_date() == days[252].date()
    assert len(sim.history(["SPY"], 10_000, date(2100, 1, 1))) == 253


def test_sim_history_never_returns_rows_after_replay_date(broker):
    frame = broker.history(["SPY", "TLT"], 100, date(2099, 1, 1))
    assert list(frame.index) == list(DAYS[:2])
    assert frame.loc[DAYS[1], "SPY"] == 102.0
    broker.on_wake()
    assert broker.history(["SPY"], 100, date(2099, 1, 1)).index[-1] == DAYS[2]
    assert broker.history(["SPY"], 100, date(2024, 1, 1)).index[-1] == DAYS[0]
    assert len(broker.history(["TLT"], 2, date(2099, 1, 1))) == 2


def test_sim_history_unknown_symbol_raises_naming_it(broker):
    with pytest.raises(BrokerDataError, match="QQQ"):
        broker.history(["SPY", "QQQ"], 10, date(2024, 1, 5))


def test_sim_equity_equals_cash_plus_qty_times_close_as_days_pass(broker):
    broker.submit_order(buy("SPY", "e1", qty=3.5))
    broker.submit_order(buy("TLT", "e2", notional=2000.0))
    for _ in range(3):
        broker.on_wake()
        row = PRICES.loc[pd.Timestamp(broker.current_date())]
        account = broker.account()
        held = broker.positions()
        expected = math.fsum([account.cash, *(p.qty * row[s] for s, p in held.items())])
        assert account.equity == expected
        assert all(p.market_value == p.qty * row[s] for s, p in held.items())


def test_sim_advance_to_lands_on_last_trading_day_and_refuses_going_back(tmp_path):
    sim = SimulatedBroker(":memory:", PRICES, starting_cash=1.0)
    assert sim.advance_to(date(2024, 1, 6)) == date(2024, 1, 5)  # Saturday → Friday
    assert sim.clock().is_open is True
    with pytest.raises(ValueError, match="backwards"):
        sim.advance_to(date(2024, 1, 2))


def test_sim_orders_are_terminal_and_listed(broker):
    broker.submit_order(buy("SPY", "l1", qty=1))
    broker.submit_order(sell("TLT", "l2", qty=1))
    assert broker.list_orders(open_only=True) == []
    orders = broker.list_orders(open_only=False)
    assert [o.client_order_id for o in orders] == ["l1", "l2"]
    broker.cancel_order(orders[0].id)
    assert broker.wait_for_order("l1", timeout_secs=0.0).status is OrderStatus.FILLED


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["SPY", "TLT", "NEW"]),
            st.booleans(),
            st.floats(min_value=1e-3, max_value=80.0, allow_nan=False),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_sim_any_order_sequence_keeps_cash_nonnegative_and_equity_exact(orders):
    sim = SimulatedBroker(
        ":memory:", PRICES, starting_cash=3000.0, costs=SimCosts(15, 0.5, 7), replay_start=START,
    )  # fmt: skip
    sim.on_wake()
    for i, (symbol, is_buy, amount, wake) in enumerate(orders):
        side = OrderSide.BUY if is_buy else OrderSide.SELL
        sim.submit_order(OrderRequest(symbol, side, f"h{i}", qty=amount))
        if wake:
            sim.on_wake()
        account = sim.account()
        assert account.cash >= 0 and math.isfinite(account.equity)
        marks = sum(p.market_value for p in sim.positions().values())
        assert account.equity == pytest.approx(account.cash + marks, rel=1e-12)
        assert all(p.qty > 0 for p in sim.positions().values())


def test_sim_advance_to_persists_replay_date_across_restart(tmp_path):
    sim = make(tmp_path)
    sim.advance_to(date(2024, 1, 4))
    sim.close()
    assert make(tmp_path).current_date() == date(2024, 1, 4)


def test_sim_clock_in_summer_is_1545_eastern_daylight_time(tmp_path):
    days = pd.bdate_range("2024-07-01", periods=3, name="date")
    sim = SimulatedBroker(":memory:", pd.DataFrame({"SPY": [1.0, 2.0, 3.0]}, index=days),
                          starting_cash=1.0)  # fmt: skip
    sim.advance_to(date(2024, 7, 2))
    assert sim.clock().now == datetime(2024, 7, 2, 19, 45, tzinfo=UTC)  # EDT = UTC-4


def test_sim_replay_start_after_data_reports_market_closed(tmp_path):
    sim = make(tmp_path, replay_start=date(2030, 1, 1))
    sim.on_wake()
    assert sim.clock().is_open is False and sim.current_date() is None
    assert len(sim.history(["SPY"], 100, date(2030, 1, 1))) == len(DAYS)


def test_sim_restart_without_a_held_symbol_in_prices_raises_naming_it(tmp_path):
    sim = make(tmp_path)
    sim.on_wake()
    sim.submit_order(buy("TLT", "h1", qty=1))
    sim.close()
    with pytest.raises(BrokerDataError, match="holds TLT"):
        SimulatedBroker(tmp_path / "state.db", PRICES[["SPY"]], starting_cash=1.0)


def test_sim_history_accepts_timestamp_and_aware_datetime_end(broker):
    broker.on_wake()  # 2024-01-03
    by_stamp = broker.history(["SPY"], 10, pd.Timestamp("2024-01-02"))
    # 02:00 UTC on the 3rd is still the 2nd in New York
    by_aware = broker.history(["SPY"], 10, datetime(2024, 1, 3, 2, 0, tzinfo=UTC))
    assert by_stamp.index[-1] == by_aware.index[-1] == DAYS[1]


def test_sim_replay_end_logged_once_and_resumes_when_data_appended(tmp_path):
    sim = SimulatedBroker(tmp_path / "s.db", PRICES.iloc[:3], starting_cash=1.0, replay_start=START)
    with capture_logs() as logs:
        for _ in range(4):
            sim.on_wake()
    assert [e["event"] for e in logs].count("replay_ended") == 1
    assert sim.clock().is_open is False
    sim.close()
    longer = SimulatedBroker(tmp_path / "s.db", PRICES, starting_cash=1.0, replay_start=START)
    longer.on_wake()
    assert longer.current_date() == DAYS[3].date()


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(list(OrderSide)),
    amount=st.floats(min_value=1e-6, max_value=1e7),
    by_notional=st.booleans(),
    close=st.floats(min_value=0.01, max_value=1e5),
    held=st.floats(min_value=0, max_value=1e5),
    cash=st.floats(min_value=0, max_value=1e8),
    slippage_bps=st.floats(min_value=0, max_value=100),
)
def test_plan_fill_never_overspends_oversells_or_favours_trader(
    side, amount, by_notional, close, held, cash, slippage_bps
):
    request = OrderRequest(
        "SPY",
        side,
        "p",
        qty=None if by_notional else amount,
        notional=amount if by_notional else None,
    )
    costs = SimCosts(commission_bps=5, commission_min=0.25, slippage_bps=slippage_bps)
    plan = plan_fill(request, close, round(held, 9), cash, costs, fractional=True)
    if isinstance(plan, str):
        return
    assert plan.qty > 0 and cash + plan.cash_delta >= 0
    if side is OrderSide.BUY:
        assert plan.price >= close
        if by_notional:
            assert plan.qty * plan.price <= amount * (1 + 1e-12)
    else:
        assert plan.price <= close and plan.qty <= round(held, 9)


def test_plan_fill_buy_over_cash_by_float_rounding_is_clipped_not_rejected():
    """A buy sized to the exact cash may exceed it by an ulp (the planner sums costs in
    another order than the account pays them): it fills one 1e-9 share less."""
    costs = SimCosts(commission_bps=1.0, slippage_bps=2.0)
    price = 123.456789 * (1 + 2e-4)
    qty = 81.234567891
    exact = qty * price * (1 + 1e-4)
    cash = exact * (1 - 4e-16)  # a few ulps short
    assert exact > cash
    plan = plan_fill(OrderRequest("SPY", OrderSide.BUY, "c", qty=qty), 123.456789, 0.0, cash,
                     costs, fractional=True)
    assert not isinstance(plan, str)
    assert plan.qty == pytest.approx(qty - 1e-9, abs=1e-12)
    assert -plan.cash_delta <= cash


def test_plan_fill_buy_over_cash_by_more_than_rounding_is_rejected():
    plan = plan_fill(OrderRequest("SPY", OrderSide.BUY, "c", qty=10), 100.0, 0.0, 999.99,
                     SimCosts(), fractional=True)
    assert isinstance(plan, str) and plan.startswith("insufficient_buying_power")


def test_sim_replays_the_prices_it_was_given_when_the_caller_edits_its_frame(tmp_path):
    """The simulator reads the caller's data without copying it (copy-on-write): an edit
    of the caller's frame afterwards copies on the caller's side, never reaching the replay."""
    prices = PRICES.copy()
    sim = SimulatedBroker(":memory:", prices, starting_cash=1_000.0, replay_start=START)
    prices.iloc[:, 0] = 1.0  # in place, every row of SPY
    prices.loc[prices.index[1], "TLT"] = 2.0
    sim.on_wake()
    seen = sim.history(["SPY", "TLT"], 10, PRICES.index[-1].date())
    expected = PRICES.loc[seen.index, ["SPY", "TLT"]]
    assert len(seen) == 2 and (seen.to_numpy() == expected.to_numpy()).all()


def test_list_orders_latest_gives_the_most_recent_orders_oldest_first(tmp_path):
    """``latest`` bounds the listing reconciliation searches for orders found late (a long
    replay's ledger holds thousands): the same orders as the full list's tail, from SQLite
    and from the backtest's memory ledger alike."""
    prices = random_walk_prices(["SPY", "TLT"], 40)
    for path in (tmp_path / "sim.sqlite", ":memory:"):
        sim = SimulatedBroker(path, prices, starting_cash=10_000.0, replay_start=prices.index[5].date())
        sim.on_wake()
        for i in range(5):
            sim.submit_order(OrderRequest("SPY", OrderSide.BUY, f"c-{i}", qty=1.0))
        every = sim.list_orders(open_only=False)
        assert [o.client_order_id for o in every] == [f"c-{i}" for i in range(5)]
        assert sim.list_orders(open_only=False, latest=2) == every[-2:]
        assert sim.list_orders(open_only=False, latest=50) == every
        sim.close()


def test_resumed_account_warns_that_a_changed_starting_cash_or_later_replay_start_is_ignored(
        tmp_path):
    """They apply when the account is created: a resumed one keeps its cash and replay
    date, which an operator who edited them mid-life was not told."""
    prices = random_walk_prices(["SPY", "TLT"], 60)
    path = tmp_path / "sim.sqlite"
    sim = SimulatedBroker(path, prices, starting_cash=10_000.0,
                          replay_start=prices.index[10].date())
    sim.on_wake()
    sim.on_wake()
    sim.close()
    with capture_logs() as same:  # the same settings, or an earlier replay_start: quiet
        SimulatedBroker(path, prices, starting_cash=10_000.0,
                        replay_start=prices.index[5].date()).close()
    assert not [e for e in same if e["event"] == "sim_config_ignored"]
    with capture_logs() as changed:
        SimulatedBroker(path, prices, starting_cash=25_000.0,
                        replay_start=prices.index[40].date()).close()
    [warned] = [e for e in changed if e["event"] == "sim_config_ignored"]
    assert warned["log_level"] == "warning"
    assert "25000 (the account was created with 10000)" in warned["starting_cash"]
    assert str(prices.index[40].date()) in warned["replay_start"]
