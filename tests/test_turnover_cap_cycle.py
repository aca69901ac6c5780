"""A strategy's max_turnover and a holding the strategy must sell (excluded since it was
bought): the cycle sells it and reinvests the proceeds, and the cap bounds the rest."""

from __future__ import annotations

from dataclasses import replace

import pytest

import strategies
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.core.signal import SignalSchedule
from bot.engine import cycle
from bot.engine.cycle import CycleContext, CycleSettings
from bot.engine.journal import Journal
from brokers.sim.broker import SimulatedBroker
from tests.conftest import capture_logs, random_walk_prices

SYMBOLS = ("AAA", "BBB", "CCC", "DDD")


def test_excluding_a_holding_larger_than_max_turnover_sells_it_and_trades(tmp_path):
    """DDD is a quarter of the account and max_turnover 0.05: its sale alone exceeds the
    cap. The cycle once held the account as it was on every cycle (strategy_failed:
    "max_turnover is below ..."), until the operator raised the cap or sold by hand."""
    prices = random_walk_prices(list(SYMBOLS), 160, seed=8)
    db = tmp_path / "s.sqlite"
    broker = SimulatedBroker(db, prices, starting_cash=1e5,
                             replay_start=prices.index[100].date())
    journal = Journal(db)
    settings = CycleSettings(
        mode="paper", universe=SYMBOLS, order_prefix="t", order_wait_secs=1.0,
        policy=RebalancePolicy(drift_abs=0.0, drift_rel=0.0, min_order_notional=0.0),
        limits=RiskLimits(lookback_days=20), signal=SignalSchedule("daily"))
    ctx = CycleContext(broker, journal, strategies.create("equal_weight"), settings)
    broker.on_wake()
    assert cycle.run(ctx).status == "finished"
    ctx.strategy = strategies.create("min_variance", lookback_days=60, max_turnover=0.05)
    ctx.settings = replace(settings, excluded=("DDD",))
    broker.on_wake()  # the next day: the weights the strategy sees are at its closes
    equity = broker.account().equity
    held = {s: p.market_value / equity for s, p in broker.positions().items()}
    assert held["DDD"] == pytest.approx(0.25, abs=0.01)
    with capture_logs() as logs:
        result = cycle.run(ctx)
    assert [e for e in logs if e["event"] == "strategy_failed"] == []
    assert result.status == "finished"
    assert "DDD" not in broker.positions()
    targets = result.figures["targets"]
    assert set(targets) == {"AAA", "BBB", "CCC"}
    assert sum(targets.values()) == pytest.approx(1.0, abs=1e-6)
    # beyond reinvesting DDD's quarter, the strategy moved at most max_turnover
    moved = sum(abs(targets[s] - held[s]) for s in ("AAA", "BBB", "CCC"))
    assert held["DDD"] - 1e-6 <= moved <= held["DDD"] + 0.05 + 1e-6
    journal.close()
    broker.close()
