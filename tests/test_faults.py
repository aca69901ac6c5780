"""The fault injector in front of the real simulator, and the cycle surviving it."""

from __future__ import annotations

import collections
import shutil

import pytest

from bot.config import parse_config
from bot.engine import cycle
from bot.errors import ConfigError
from brokers.base import OrderRequest, OrderSide, OrderStatus
from brokers.faults import FaultInjectingBroker, FaultPlan
from brokers.sim.broker import SimulatedBroker
from strategies.errors import BrokerTransientError
from tests.conftest import base_config, json_lines, random_walk_prices, run_cli_in_process
from tests.test_cycle import make_ctx


def _sim(tmp_path) -> SimulatedBroker:
    prices = random_walk_prices(["AAA", "BBB"], 300)
    sim = SimulatedBroker(tmp_path / "s.sqlite", prices, starting_cash=1e6,
                          replay_start=prices.index[260].date())
    return sim


def _buy(cid: str, qty: float = 10.0) -> OrderRequest:
    return OrderRequest("AAA", OrderSide.BUY, cid, qty=qty)


def test_faults_timeout_on_submit_venue_holds_the_order_answer_lost(tmp_path):
    sim = _sim(tmp_path)
    broker = FaultInjectingBroker(sim, FaultPlan(seed=1, timeout_rate=1.0))
    broker.on_wake()
    with pytest.raises(BrokerTransientError, match="timed out"):
        broker.submit_order(_buy("ab-1-AAA-b"))
    order = sim.get_order_by_client_id("ab-1-AAA-b")
    assert order is not None and order.status is OrderStatus.FILLED


def test_faults_reject_never_reaches_the_venue(tmp_path):
    sim = _sim(tmp_path)
    broker = FaultInjectingBroker(sim, FaultPlan(seed=1, reject_rate=1.0))
    broker.on_wake()
    order = broker.submit_order(_buy("ab-1-AAA-b"))
    assert order.status is OrderStatus.REJECTED and "injected" in (order.reject_reason or "")
    assert sim.get_order_by_client_id("ab-1-AAA-b") is None
    assert broker.injected == {"reject": 1}


def test_faults_partial_fill_venue_books_match_the_filled_part(tmp_path):
    sim = _sim(tmp_path)
    broker = FaultInjectingBroker(sim, FaultPlan(seed=1, partial_fill_rate=1.0))
    broker.on_wake()
    order = broker.submit_order(_buy("ab-1-AAA-b", qty=10.0))
    assert order.status is OrderStatus.CANCELED and order.qty == 10.0
    assert order.filled_qty == 5.0
    assert sum(f.qty for f in broker.fills_for("ab-1-AAA-b")) == 5.0
    assert sim.positions()["AAA"].qty == 5.0
    assert broker.wait_for_order("ab-1-AAA-b", 1.0) == order


def test_faults_stale_bars_end_a_session_early_missing_bars_blank_one_close(tmp_path):
    sim = _sim(tmp_path)
    sim.on_wake()
    end = sim.clock().now.date()
    fresh = sim.history(["AAA", "BBB"], 50, end)
    stale = FaultInjectingBroker(sim, FaultPlan(stale_bars_rate=1.0))
    stale._armed = True  # as after a wake, without moving the replay on
    late = stale.history(["AAA", "BBB"], 50, end)
    assert late.index[-1] == fresh.index[-2] and len(late) == 50  # a late feed's full window
    missing = FaultInjectingBroker(sim, FaultPlan(missing_bars_rate=1.0))
    missing._armed = True
    frame = missing.history(["AAA", "BBB"], 50, end)
    assert frame.iloc[-1].isna().sum() == 1 and frame.iloc[:-1].notna().all().all()


def test_faults_inactive_before_first_wake(tmp_path):
    broker = FaultInjectingBroker(_sim(tmp_path), FaultPlan(transient_rate=1.0))
    assert broker.account().cash == 1e6  # startup checks see a healthy venue
    broker.on_wake()
    with pytest.raises(BrokerTransientError, match="connection reset"):
        broker.account()


def test_cycle_under_20pct_faults_fails_cleanly_never_duplicates_and_converges(tmp_path):
    ctx = make_ctx(tmp_path)
    plan = FaultPlan(seed=7, transient_rate=0.05, rate_limit_rate=0.03, timeout_rate=0.04,
                     reject_rate=0.04, partial_fill_rate=0.04, stale_bars_rate=0.02,
                     missing_bars_rate=0.02)
    sim = ctx.broker
    ctx.broker = FaultInjectingBroker(sim, plan)
    statuses = collections.Counter()
    for _ in range(60):
        ctx.broker.on_wake()
        statuses[cycle.run(ctx).status] += 1
    assert statuses["failed"] > 0 and statuses["finished"] > 0
    assert set(statuses) <= {"finished", "failed", "skipped"}
    cids = [o.client_order_id for o in sim.list_orders(open_only=False)]
    assert len(cids) == len(set(cids))
    assert sum(ctx.broker.injected.values()) > 10  # type: ignore[attr-defined]
    ctx.broker = sim  # two clean cycles bring the account back within the bands
    for _ in range(2):
        sim.on_wake()
        cycle.run(ctx)
    sim.on_wake()
    assert cycle.run(ctx).figures["orders_planned"] == 0


def test_config_faults_refused_in_live_mode(tmp_path):
    doc = base_config(tmp_path)
    doc["bot"]["mode"] = "live"
    doc["broker"]["kind"] = "alpaca"
    doc["universe"] = {"symbols": ["SPY"]}
    doc["faults"] = {"enabled": True, "transient_rate": 0.1}
    with pytest.raises(ConfigError, match=r"\[faults\].enabled.*live"):
        parse_config(doc, tmp_path)


def test_config_faults_bad_kill_point_names_the_key(tmp_path):
    doc = base_config(tmp_path)
    doc["faults"] = {"enabled": True, "kill_at": "after_lunch"}
    with pytest.raises(ConfigError, match=r"\[faults\]\.kill_at: .*after_lunch"):
        parse_config(doc, tmp_path)


def test_drill_with_no_fault_drawn_trades_exactly_as_the_plain_simulator(write_config):
    """``[faults] enabled`` with every rate 0: the same orders, fills and cash as without
    the drill (its wrapper fills at the simulator's bar, so buys take no price margin)."""
    plain = write_config(name="plain.toml")
    drill = write_config({"faults": {"enabled": True}}, name="drill.toml")
    outcomes = []
    for config in (plain, drill):
        state = config.parent / "state"
        shutil.rmtree(state, ignore_errors=True)
        proc = run_cli_in_process("once", "--config", str(config))
        assert proc.returncode == 0, proc.stderr[-2000:]
        events = json_lines(proc.stdout)
        assert not [e for e in events if e["event"] == "buys_scaled_to_cash"]
        outcomes.append([(e["symbol"], e["side"], e["filled_qty"], e["filled_avg_price"])
                         for e in events if e["event"] == "order_filled"]
                        + [e["cash_after"] for e in events if e["event"] == "cycle_finished"])
    assert outcomes[0] == outcomes[1] and len(outcomes[0]) > 5


def test_cycle_summary_counts_each_order_outcome_once_partial_fills_not_as_unfilled(tmp_path):
    """Every order half filled and the rest canceled: the summary said 5 partially filled
    and 5 unfilled of 5 sent (a partial fill counted in both); "unfilled" is nothing filled."""
    ctx = make_ctx(tmp_path)
    sim = ctx.broker
    ctx.broker = FaultInjectingBroker(sim, FaultPlan(seed=1, partial_fill_rate=1.0))
    ctx.broker.on_wake()
    figures = cycle.run(ctx).figures
    assert figures["orders_submitted"] > 0
    assert figures["orders_partially_filled"] == figures["orders_submitted"]
    assert figures["orders_unfilled"] == 0
    assert (figures["orders_filled"] + figures["orders_partially_filled"]
            + figures["orders_rejected"] + figures["orders_unfilled"]) == figures["orders_submitted"]
