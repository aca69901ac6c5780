"""When the strategy cannot compute: hold (no orders) or the configured fallback, in the
daemon's cycle, in ``allocbot once`` and in the backtest (the same cycle)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import json_lines

import strategies
from bot.backtest.engine import run_backtest
from bot.cli import main
from bot.engine.statuses import CycleStatus
from brokers.sim.broker import SimulatedBroker
from tests.conftest import capture_logs, random_walk_prices
from tests.test_backtest import make_spec
from tests.test_cycle import SYMBOLS, make_ctx, wake_and_run

# lower bounds summing to 1.5: no long-only portfolio satisfies them (a StrategyError at run time)
INFEASIBLE = {"name": "min_variance", "params": {"lookback_days": 60, "bounds": [0.5, 1.0]}}


def infeasible() -> strategies.Strategy:
    return strategies.create(INFEASIBLE["name"], **INFEASIBLE["params"])


def test_cycle_infeasible_strategy_without_fallback_holds_and_sends_nothing(tmp_path: Path):
    ctx = make_ctx(tmp_path)
    ctx.strategy = infeasible()
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    assert result.status is CycleStatus.HELD and result.figures["held"] is True
    failed = [e for e in logs if e["event"] == "strategy_failed"]
    assert len(failed) == 1 and failed[0]["action"] == "hold"
    assert "bound" in failed[0]["reason"]
    assert ctx.journal.intents() == [] and ctx.broker.positions() == {}
    assert "cycle_failed" not in [e["event"] for e in logs]


def test_cycle_infeasible_strategy_uses_fallback_and_trades_its_weights(tmp_path: Path):
    ctx = make_ctx(tmp_path)
    ctx.strategy = infeasible()
    ctx.settings = replace(ctx.settings, fallback=strategies.create("equal_weight"))
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    assert result.status is CycleStatus.FINISHED and result.figures["orders_filled"] == 3
    failed = next(e for e in logs if e["event"] == "strategy_failed")
    assert failed["action"] == "fallback" and failed["fallback"] == "equal_weight"
    computed = next(e for e in logs if e["event"] == "weights_computed")
    assert computed["strategy"] == "equal_weight"
    assert computed["weights"] == {s: round(1 / 3, 6) for s in SYMBOLS}



def test_cycle_fallback_with_a_longer_lookback_than_the_history_holds_not_trades(
        tmp_path: Path):
    """The fallback's history was never checked: a 1,000-day min_variance fallback
    estimated on the ~300 rows there were and traded; the strategy itself is refused on
    too short a history. Now the fallback fails the same way and the account is held."""
    ctx = make_ctx(tmp_path)
    ctx.strategy = infeasible()
    ctx.settings = replace(ctx.settings, fallback=strategies.create(
        "min_variance", lookback_days=1000))
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    assert result.status is CycleStatus.HELD and not ctx.broker.positions()
    failed = [e for e in logs if e["event"] == "strategy_failed"]
    assert [e["strategy"] for e in failed] == ["min_variance", "min_variance"]
    assert "need 1001" in failed[1]["reason"] and failed[1]["action"] == "hold"

def test_cycle_fallback_that_also_fails_holds(tmp_path: Path):
    ctx = make_ctx(tmp_path)
    ctx.strategy = infeasible()
    ctx.settings = replace(ctx.settings, fallback=infeasible())
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    assert result.status is CycleStatus.HELD
    assert [e["action"] for e in logs if e["event"] == "strategy_failed"] == ["fallback", "hold"]
    assert ctx.journal.intents() == []


class TooShortHistory(strategies.Strategy):
    """Asks for more history than the data has, as a real estimator would."""

    name: ClassVar[str] = "too_short"
    lookback_days = 2

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        raise strategies.StrategyError(f"need 5000 rows, have {len(prices)}")



def test_cycle_held_by_a_failing_strategy_still_trips_the_kill_switch(tmp_path: Path):
    """A strategy that fails every cycle (no fallback: held) while the account falls: the
    kill switch came after the strategy step, so held cycles never tripped it nor recorded
    a new equity peak, and the account drifted below max_drawdown with no halt."""
    from bot.engine.statuses import recorded_peak

    ctx = make_ctx(tmp_path, max_drawdown=0.002)
    assert wake_and_run(ctx).status is CycleStatus.FINISHED  # invested at the fixed weights
    ctx.strategy = infeasible()
    statuses, peak_seen = [], ctx.broker.account().equity
    with capture_logs() as logs:
        for _ in range(60):
            result = wake_and_run(ctx)
            statuses.append(result.status)
            if result.status is CycleStatus.HALTED:
                break
            peak_seen = max(peak_seen, ctx.broker.account().equity)
            assert recorded_peak(ctx.journal) == peak_seen  # the peak kept on held days too
    assert CycleStatus.HELD in statuses and statuses[-1] is CycleStatus.HALTED
    assert [e for e in logs if e["event"] == "trading_halted"]


def test_backtest_failing_strategy_holds_every_cycle_without_crashing():
    prices = random_walk_prices(SYMBOLS, 120)
    result = run_backtest(prices, TooShortHistory(), make_spec("monthly"))
    assert result.cycles and {c.status for c in result.cycles} == {CycleStatus.HELD}
    assert len(result.trades) == 0 and result.equity[-1] == result.equity[0]
    from bot.backtest.report import result_metrics

    metrics = result_metrics(result, 0.0)
    assert metrics["cycles_held"] == len(result.cycles) and metrics["cycles_failed"] == 0


def test_backtest_failing_strategy_with_fallback_invests():
    prices = random_walk_prices(SYMBOLS, 120)
    spec = make_spec("monthly")
    spec = replace(spec, settings=replace(spec.settings,
                                          fallback=strategies.create("equal_weight")))
    result = run_backtest(prices, TooShortHistory(), spec)
    assert {c.status for c in result.cycles} == {CycleStatus.FINISHED}
    assert len(result.trades) >= 3


# A target below every portfolio's volatility: a StrategyError at run time that depends on
# the prices, so check-config cannot refuse it (it refuses INFEASIBLE's static bounds).
UNREACHABLE = {"name": "efficient_risk", "params": {"lookback_days": 60,
                                                    "target_volatility": 0.001}}


def test_once_with_configured_fallback_table_trades_fallback_weights(write_config, tmp_path):
    config = write_config({"strategy": {**UNREACHABLE,
                                        "fallback": {"name": "fixed",
                                                     "params": {"preset": "sixty_forty"}}}})
    result = CliRunner().invoke(main, ["once", "--config", str(config)])
    assert result.exit_code == 0, result.stderr[-2000:]
    events = json_lines(result.stdout)
    assert [e["action"] for e in events if e["event"] == "strategy_failed"] == ["fallback"]
    finished = next(e for e in events if e["event"] == "cycle_finished")
    assert finished["status"] == "finished" and set(finished["targets"]) == {"SPY", "IEF"}


def test_sim_clock_on_early_close_day_runs_before_1pm_close(tmp_path: Path):
    index = pd.DatetimeIndex(pd.to_datetime(["2024-07-01", "2024-07-02", "2024-07-03",
                                             "2024-07-05"]), name="date")
    prices = pd.DataFrame({"AAA": [1.0, 1.1, 1.2, 1.3]}, index=index)
    broker = SimulatedBroker(":memory:", prices, starting_cash=1.0,
                             replay_start=date(2024, 7, 2))
    broker.on_wake()
    assert broker.clock().now.strftime("%H:%M") == "19:45"  # 15:45 New York (EDT)
    assert broker.clock().next_open.date() == date(2024, 7, 3)
    broker.on_wake()
    clock = broker.clock()
    assert clock.now.strftime("%Y-%m-%d %H:%M") == "2024-07-03 16:45"  # 12:45 New York
    assert clock.next_close.strftime("%H:%M") == "17:00"  # the 13:00 early close
    assert clock.next_open.date() == date(2024, 7, 5)  # the 4th is a holiday
    broker.close()


def test_strategy_naming_a_symbol_hidden_as_too_recent_says_why_it_has_no_price(
        tmp_path: Path):
    """A view (or safe asset) on a symbol listed too recently for the risk window: the
    cycle hides its column, and the strategy said the symbol was "not among the priced
    symbols" (it is priced, and in the universe). The reason now says why it was hidden."""
    prices = random_walk_prices(SYMBOLS, 400, seed=5)
    prices.iloc[:260, 2] = np.nan  # the third symbol lists 40 sessions before the replay
    ctx = make_ctx(tmp_path, prices=prices)  # risk window: 60 sessions
    third = SYMBOLS[2]
    ctx.strategy = strategies.create("black_litterman", lookback_days=30, views=[
        {"assets": {third: 1.0}, "return": 0.10}])
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    assert result.status is CycleStatus.HELD
    [failed] = [e for e in logs if e["event"] == "strategy_failed"]
    assert f"{third}: hidden from the strategy today, listed too recently" in failed["reason"]
    assert [e["symbol"] for e in logs if e["event"] == "asset_excluded"] == [third]


def test_fractional_holding_at_a_whole_share_venue_sells_its_whole_shares_and_trades_on(
        tmp_path: Path):
    """Fractional trading turned off on an account holding fractional shares: each full
    exit asked for the fractional quantity, the venue refused it, the buys after it were
    dropped for want of its cash, and nothing traded again. The sell is cut to the whole
    shares; the fraction stays."""
    prices = random_walk_prices(SYMBOLS, 400)
    ctx = make_ctx(tmp_path, prices=prices)
    assert wake_and_run(ctx).status is CycleStatus.FINISHED  # fractional shares bought
    held = {s: p.qty for s, p in ctx.broker.positions().items()}
    assert any(q != int(q) for q in held.values())
    ctx.broker = SimulatedBroker(tmp_path / "state.sqlite", prices, starting_cash=100_000.0,
                                 fractional=False, replay_start=prices.index[300].date())
    exit_symbol = SYMBOLS[0]
    ctx.strategy = strategies.create("fixed", weights=dict.fromkeys(SYMBOLS[1:], 0.5))
    result = wake_and_run(ctx)
    assert result.status is CycleStatus.FINISHED and result.figures["orders_rejected"] == 0
    assert result.figures["orders_filled"] >= 2  # the sell and the buys went through
    left = ctx.broker.positions()[exit_symbol].qty
    assert 0 < left < 1 and left == pytest.approx(held[exit_symbol] % 1)
