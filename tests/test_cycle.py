"""The cycle against the real SimulatedBroker and a real SQLite journal (no mocks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import structlog

import strategies
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.engine import cycle
from bot.engine.cycle import CycleContext, CycleSettings
from bot.engine.journal import Journal
from bot.engine.statuses import IntentStatus
from brokers.base import OrderRequest, OrderSide
from brokers.errors import BrokerDataError
from brokers.sim.broker import SimulatedBroker
from tests.conftest import capture_logs, json_lines, random_walk_prices, run_cli_in_process

SYMBOLS = ["AAA", "BBB", "CCC"]
TARGET = {"AAA": 0.5, "BBB": 0.3, "CCC": 0.2}


def make_ctx(tmp_path: Path, prices: pd.DataFrame | None = None, mode: str = "paper",
             limits: RiskLimits | None = None, max_drawdown: float | None = None,
             weights: dict[str, float] | None = None) -> CycleContext:
    prices = random_walk_prices(SYMBOLS, 400) if prices is None else prices
    db = tmp_path / "state.sqlite"
    broker = SimulatedBroker(db, prices, starting_cash=100_000.0,
                             replay_start=prices.index[300].date())
    settings = CycleSettings(
        mode=mode, universe=tuple(SYMBOLS), order_prefix="ab", order_wait_secs=1.0,
        policy=RebalancePolicy(drift_abs=0.02, drift_rel=0.2),
        limits=limits or RiskLimits(lookback_days=60), max_drawdown=max_drawdown)
    strategy = strategies.create("fixed", weights=weights or TARGET)
    return CycleContext(broker, Journal(db), strategy, settings)


def wake_and_run(ctx: CycleContext) -> cycle.CycleResult:
    ctx.broker.on_wake()
    return cycle.run(ctx)


def held_weights(ctx: CycleContext) -> pd.Series:
    account = ctx.broker.account()
    return pd.Series({s: p.market_value / account.equity for s, p in ctx.broker.positions().items()})


def test_cycle_first_run_buys_to_target_and_journals_fills(tmp_path):
    ctx = make_ctx(tmp_path)
    result = wake_and_run(ctx)
    assert result.status == "finished"
    assert result.figures["orders_filled"] == 3
    w = held_weights(ctx)
    for sym, t in TARGET.items():
        assert abs(w[sym] - t) < 0.002
    intents = ctx.journal.intents()
    assert {i.status for i in intents} == {"filled"}
    assert ctx.journal.fill_count() == 3
    assert all(len(i.client_order_id) <= 48 and i.client_order_id.startswith("ab-")
               for i in intents)


def test_cycle_within_bands_sends_no_orders(tmp_path):
    ctx = make_ctx(tmp_path)
    wake_and_run(ctx)
    result = wake_and_run(ctx)
    assert result.status == "finished"
    assert result.figures["orders_planned"] == 0
    assert len(ctx.journal.intents()) == 3


def test_cycle_dry_run_journals_intents_but_sends_nothing(tmp_path):
    ctx = make_ctx(tmp_path, mode="dry_run")
    result = wake_and_run(ctx)
    assert result.figures["orders_planned"] == 3
    assert result.figures["orders_submitted"] == 0
    assert {i.status for i in ctx.journal.intents()} == {IntentStatus.DRY_RUN}
    assert ctx.broker.positions() == {}
    assert ctx.broker.list_orders(open_only=False) == []


def test_cycle_market_closed_is_skipped_without_orders(tmp_path):
    ctx = make_ctx(tmp_path)
    with capture_logs() as logs:
        result = cycle.run(ctx)  # no wake: the replay has not opened yet
    assert result.status == "skipped"
    assert any(e["event"] == "market_closed" for e in logs)
    assert ctx.broker.list_orders(open_only=False) == []


def test_cycle_every_log_line_carries_cycle_id(tmp_path):
    ctx = make_ctx(tmp_path)
    ctx.broker.on_wake()
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        result = cycle.run(ctx)
    events = [e["event"] for e in logs]
    for name in ("cycle_started", "weights_computed", "risk_checked", "orders_planned",
                 "order_submitted", "order_filled", "cycle_finished"):
        assert name in events
    assert all(e.get("cycle_id") == result.cycle_id for e in logs)


def test_cycle_var_limit_scales_risky_weights_to_cash(tmp_path):
    limits = RiskLimits(max_var=0.004, lookback_days=60)
    ctx = make_ctx(tmp_path, limits=limits)
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    limited = [e for e in logs if e["event"] == "risk_limited"]
    assert limited and limited[0]["rule"] == "max_var"
    assert result.figures["var"] == pytest.approx(0.004, abs=1e-6)
    account = ctx.broker.account()
    assert account.cash / account.equity > 0.3  # the rest went to cash


def test_cycle_var_limit_warns_on_the_first_cycle_it_binds_then_says_it_at_info(tmp_path):
    """A daemon whose max_var binds for months warned (and alerted) every cycle: the first
    cycle a rule binds warns, the next ones while it keeps binding are info with
    ``repeated``; a cycle within the limit ends the spell, and a restart warns again."""
    binding = RiskLimits(max_var=0.004, lookback_days=60)
    ctx = make_ctx(tmp_path, limits=binding)
    with capture_logs() as logs:
        wake_and_run(ctx)
        wake_and_run(ctx)
        ctx.settings = replace(ctx.settings, limits=RiskLimits(max_var=0.5, lookback_days=60))
        wake_and_run(ctx)  # within the limit
        ctx.settings = replace(ctx.settings, limits=binding)
        wake_and_run(ctx)
        wake_and_run(ctx)
        restarted = CycleContext(ctx.broker, ctx.journal, ctx.strategy, ctx.settings)
        wake_and_run(restarted)
    limited = [(e["log_level"], e["rule"], e["repeated"]) for e in logs
               if e["event"] == "risk_limited"]
    assert limited == [("warning", "max_var", False), ("info", "max_var", True),
                       ("warning", "max_var", False), ("info", "max_var", True),
                       ("warning", "max_var", False)]
    repeated = [e for e in logs if e["event"] == "risk_limited" and e["repeated"]]
    assert all(e["after"]["var"] == pytest.approx(0.004) for e in repeated)  # the same fields


def test_cycle_nan_price_on_latest_row_is_an_error_naming_symbol_and_date():
    prices = random_walk_prices(SYMBOLS, 30)
    prices.iloc[-1, 1] = np.nan
    with pytest.raises(BrokerDataError, match=r"BBB.*2020-02-11"):
        cycle._planning_prices(prices, tuple(SYMBOLS), {})


def test_cycle_reconciles_unsent_intent_as_unsent_and_never_sends_it(tmp_path):
    ctx = make_ctx(tmp_path)
    ctx.broker.on_wake()
    cid = ctx.journal.start_cycle(date(2021, 1, 1))
    ctx.journal.record_intents(cid, [("ab-crashed-AAA-b", "AAA", OrderSide.BUY, 5.0, 100.0)])
    result = cycle.run(ctx)
    assert result.status == "finished"
    intent = ctx.journal.intents(cycle_id=cid)[0]
    assert intent.status is IntentStatus.UNSENT
    assert ctx.broker.get_order_by_client_id("ab-crashed-AAA-b") is None


def test_cycle_reconciles_sent_but_unjournaled_order_without_resending(tmp_path):
    ctx = make_ctx(tmp_path)
    ctx.broker.on_wake()
    cid = ctx.journal.start_cycle(date(2021, 1, 1))
    ctx.journal.record_intents(cid, [("ab-crashed-AAA-b", "AAA", OrderSide.BUY, 5.0, 100.0)])
    ctx.broker.submit_order(OrderRequest("AAA", OrderSide.BUY, "ab-crashed-AAA-b", qty=5.0))
    cycle.run(ctx)
    intent = ctx.journal.intents(cycle_id=cid)[0]
    assert intent.status == "filled" and intent.filled_qty == 5.0
    orders = [o for o in ctx.broker.list_orders(open_only=False)
              if o.client_order_id == "ab-crashed-AAA-b"]
    assert len(orders) == 1
    assert IntentStatus.INTENT not in {i.status for i in ctx.journal.intents()}


def test_cycle_symbol_dropped_from_the_universe_is_no_drawdown(tmp_path):
    """The kill switch measures the whole account: dropping a held symbol (half the
    account) from the universe once read as a 50 % drawdown and halted trading, while
    status showed the account's 0.x %. The position stays, untouched, and counts."""
    ctx = make_ctx(tmp_path, max_drawdown=0.25)
    assert wake_and_run(ctx).status == "finished"
    equity = ctx.broker.account().equity
    ctx.settings = replace(ctx.settings, universe=("BBB", "CCC"))
    ctx.strategy = strategies.create("fixed", weights={"BBB": 0.6, "CCC": 0.4})
    result = wake_and_run(ctx)
    assert result.status == "finished", result.figures
    assert result.figures["drawdown"] < 0.05
    assert ctx.broker.positions()["AAA"].qty > 0  # outside the universe: untouched
    assert cycle.recorded_peak(ctx.journal) >= equity


def test_cycle_drawdown_halt_stops_trading_until_rearmed(tmp_path):
    prices = random_walk_prices(SYMBOLS, 400)
    prices.iloc[301:] = prices.iloc[301:] * 0.5  # a crash the day after the first buy
    ctx = make_ctx(tmp_path, prices=prices, max_drawdown=0.2)
    assert wake_and_run(ctx).status == "finished"
    # the crash day's −50 % bar fails the data guard (it could be a bad print): nothing
    # trades and the kill switch does not act on it; the next day's bar confirms the level
    crash = wake_and_run(ctx)
    assert crash.status == "skipped" and crash.figures["guards"] == ["max_daily_move"]
    with capture_logs() as logs:
        result = wake_and_run(ctx)
        again = cycle.run(ctx)  # the same trading day
    assert result.status == "halted" and again.status == "halted"
    [tripped] = [e for e in logs if e["event"] == "trading_halted"]  # one error, one alert
    assert tripped["log_level"] == "error"
    [same_day] = [e for e in logs if e["event"] == "still_halted"]
    assert same_day["log_level"] == "info" and same_day["since"] == tripped["reason"]
    with capture_logs() as logs:
        assert wake_and_run(ctx).status == "halted"  # stays halted; a new day's reminder
    [reminder] = [e for e in logs if e["event"] in ("still_halted", "trading_halted")]
    assert reminder["event"] == "still_halted" and reminder["log_level"] == "warning"
    assert reminder["drawdown"] > 0.4 and reminder["rearm"] == "allocbot rearm"
    ctx.journal.delete_meta(cycle.HALT_KEY)
    ctx.journal.delete_meta(cycle.PEAK_KEY)
    assert wake_and_run(ctx).status == "finished"


def _run_with_strategy(tmp_path: Path, strategy: strategies.Strategy,
                       prices: pd.DataFrame | None = None) -> tuple[cycle.CycleResult, list]:
    ctx = make_ctx(tmp_path, prices=prices)
    ctx.strategy = strategy
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    ctx.journal.close()
    return result, logs


def test_cycle_fixed_weight_on_a_symbol_listed_too_recently_holds_naming_it(tmp_path):
    """Fixed weights on a symbol with less history than the risk step's window: the VaR of
    that weight cannot be measured and fixed weights are not spread over the rest, so the
    cycle holds, naming the symbol (asset_excluded, then strategy_failed); nothing is sent,
    and it is never the cycle_crashed path meant for bugs."""
    prices = random_walk_prices(SYMBOLS, 400)
    prices.iloc[:295, 2] = np.nan  # CCC listed 5 days before the replay starts
    result, logs = _run_with_strategy(tmp_path, strategies.create("fixed", weights=TARGET),
                                      prices)
    assert result.status == "held"
    [excluded] = [e for e in logs if e["event"] == "asset_excluded"]
    assert excluded["symbol"] == "CCC" and "risk step's window" in excluded["reason"]
    assert excluded["rows"] == 6 and excluded["rows_needed"] == 61
    failed = next(e for e in logs if e["event"] == "strategy_failed")
    assert "CCC" in failed["reason"] and "too recently" in failed["reason"]
    assert "[strategy] fallback" in failed["hint"]  # no fallback: what would trade meanwhile
    assert "cycle_crashed" not in [e["event"] for e in logs]
    assert ctx_orders_sent(tmp_path) == 0


@pytest.mark.parametrize(("name", "params"), [("equal_weight", {}),
                                              ("inverse_volatility", {"lookback_days": 20})])
def test_cycle_symbol_listed_too_recently_is_left_out_until_the_risk_window_has_it(
        tmp_path, name, params):
    """A new listing once failed every cycle of equal_weight and inverse_volatility for a
    year (the risk step cannot measure a weight on it): the strategy now trades the rest
    and takes the symbol in once it has the risk step's window of prices."""
    prices = random_walk_prices(SYMBOLS, 400)
    prices.iloc[:295, 2] = np.nan  # CCC listed 5 days before the replay starts (row 300)
    ctx = make_ctx(tmp_path, prices=prices)
    ctx.strategy = strategies.create(name, **params)  # a shorter window than the risk step's
    with capture_logs() as logs:
        first = wake_and_run(ctx)
    assert first.status == "finished" and first.figures["orders_filled"] == 2
    assert "CCC" not in ctx.broker.positions()
    assert [e["symbol"] for e in logs if e["event"] == "asset_excluded"] == ["CCC"]
    for _ in range(60):  # the 60-day risk window fills up: CCC is taken in
        result = wake_and_run(ctx)
        assert result.status == "finished"
    assert ctx.broker.positions()["CCC"].qty > 0


def test_cycle_black_litterman_view_on_unknown_symbol_holds_naming_it(tmp_path):
    """A strategy that cannot compute holds (no fallback configured): strategy_failed names
    the view (1-based) and the symbol; nothing is sent."""
    bl = strategies.create("black_litterman", lookback_days=60,
                           views=[{"assets": {"ZZZ": 1.0}, "return": 0.05}])
    result, logs = _run_with_strategy(tmp_path, bl)
    assert result.status == "held" and result.figures["held"] is True
    failed = next(e for e in logs if e["event"] == "strategy_failed")
    assert "views[1]" in failed["reason"] and "ZZZ" in failed["reason"]
    assert failed["action"] == "hold"
    assert "cycle_crashed" not in [e["event"] for e in logs]
    assert ctx_orders_sent(tmp_path) == 0


def ctx_orders_sent(tmp_path: Path) -> int:
    """Orders the venue holds in this test's state file."""
    journal = Journal(tmp_path / "state.sqlite")
    try:
        return len(journal.intents())
    finally:
        journal.close()


def test_drifted_symbol_no_order_can_trade_is_named_each_cycle(write_config):
    """A small whole-share account: GLD short of its target by less than one share stays
    "drifted" cycle after cycle with no order; the log now says which and why."""
    config = write_config({"sim": {"starting_cash": 2000.0, "fractional": False},
                           "rebalance": {"min_order_notional": 1.0}})
    proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", "3")
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stdout)
    planned = [e for e in events if e["event"] == "orders_planned"]
    untraded = [e for e in events if e["event"] == "drift_not_traded"]
    assert untraded, [(e["drifted"], e["orders"]) for e in planned]
    for event in untraded:
        plan = next(p for p in planned if p["cycle_id"] == event["cycle_id"])
        assert set(event["symbols"]) <= set(plan["drifted"])
        assert not set(event["symbols"]) & {o["symbol"] for o in plan["orders"]}
