"""Pre-trade guards: each blocks what it should (with its figures) and nothing else.

Pure checks on figures first, then the cycle on the real SimulatedBroker and journal: a
breach logs ``guard_blocked``, the cycle is ``skipped`` and nothing reaches the venue.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bot.core.guards import Guard, GuardLimits, check_data, check_orders
from bot.core.rebalance import PlannedOrder
from bot.engine.pretrade import day_notional_before, sessions_since
from bot.engine.statuses import IntentStatus
from brokers.base import OrderSide
from tests.conftest import capture_logs, random_walk_prices
from tests.test_cycle import SYMBOLS, make_ctx, wake_and_run

EQUITY = 100_000.0
DEFAULTS = GuardLimits()


def order(symbol: str, notional: float, side: OrderSide = OrderSide.BUY) -> PlannedOrder:
    return PlannedOrder(symbol, side, notional / 100.0, 100.0, notional, "drift")


def calm_prices(days: int = 80) -> pd.DataFrame:
    """Closes moving ±0.5 % a day (σ ≈ 0.5 %): no data guard fires on them."""
    moves = np.tile([1.005, 1 / 1.005], days // 2)
    closes = 100 * np.cumprod(np.column_stack([moves, moves[::-1]]), axis=0)
    return pd.DataFrame(closes, index=pd.bdate_range("2024-01-02", periods=days),
                        columns=["AAA", "BBB"])


def with_last_move(prices: pd.DataFrame, symbol: str, move: float) -> pd.DataFrame:
    out = prices.copy()
    out.iloc[-1, out.columns.get_loc(symbol)] = out[symbol].iloc[-2] * (1 + move)
    return out


# ----- pure checks, with figures -------------------------------------------------------

def test_order_fraction_guard_blocks_order_above_limit_only():
    limits = replace(DEFAULTS, max_order_fraction=0.3)
    breaches = check_orders([order("AAA", 30_000.0), order("BBB", 30_001.0)], EQUITY, 0.0, 2,
                            limits)
    assert [(b.guard, b.subject, round(b.value, 5)) for b in breaches] == [
        (Guard.ORDER_NOTIONAL, "buy BBB", 0.30001)]


def test_turnover_per_cycle_guard_blocks_plan_above_limit_allows_at_limit():
    limits = replace(DEFAULTS, max_turnover_per_cycle=0.5, max_turnover_per_day=9.0)
    at_limit = [order("AAA", 25_000.0, OrderSide.SELL), order("BBB", 25_000.0)]
    assert check_orders(at_limit, EQUITY, 0.0, 2, limits) == []
    over = [order("AAA", 25_000.0, OrderSide.SELL), order("BBB", 25_100.0)]
    (breach,) = check_orders(over, EQUITY, 0.0, 2, limits)
    assert (breach.guard, breach.limit, round(breach.value, 4)) == (Guard.TURNOVER_CYCLE, 0.5, 0.501)


def test_turnover_default_allows_initial_investment_of_all_equity():
    first = [order(s, EQUITY / 4) for s in ("A", "B", "C", "D")]  # 100 % of equity bought
    assert check_orders(first, EQUITY, 0.0, 4, DEFAULTS) == []


def test_turnover_per_day_guard_counts_earlier_cycles_of_the_day():
    limits = replace(DEFAULTS, max_turnover_per_day=1.0)
    plan = [order("AAA", 20_000.0)]
    assert check_orders(plan, EQUITY, 80_000.0, 2, limits) == []
    (breach,) = check_orders(plan, EQUITY, 80_001.0, 2, limits)
    assert breach.guard is Guard.TURNOVER_DAY and round(breach.value, 5) == 1.00001


def test_order_count_guard_defaults_to_universe_size():
    plan = [order(s, 1_000.0) for s in ("A", "B", "C")]
    assert check_orders(plan, EQUITY, 0.0, 3, DEFAULTS) == []
    (breach,) = check_orders(plan, EQUITY, 0.0, 2, DEFAULTS)
    assert (breach.guard, breach.limit, breach.value) == (Guard.ORDER_COUNT, 2, 3)
    (breach,) = check_orders(plan, EQUITY, 0.0, 10, replace(DEFAULTS, max_orders_per_cycle=2))
    assert breach.guard is Guard.ORDER_COUNT


def test_stale_data_guard_blocks_beyond_limit_sessions():
    prices = calm_prices()
    assert check_data(prices, 1, {}, DEFAULTS) == []
    (breach,) = check_data(prices, 2, {}, DEFAULTS)
    assert (breach.guard, breach.limit, breach.value) == (Guard.STALE_DATA, 1, 2)


def test_sessions_since_counts_nyse_sessions_skipping_holidays_and_weekends():
    from datetime import date

    assert sessions_since(date(2024, 7, 3), date(2024, 7, 3)) == 0
    assert sessions_since(date(2024, 7, 3), date(2024, 7, 5)) == 1  # the 4th is closed
    assert sessions_since(date(2024, 7, 3), date(2024, 7, 8)) == 2  # + a weekend
    assert sessions_since(date(2024, 11, 27), date(2024, 12, 2)) == 2  # Thanksgiving


def test_daily_move_guard_blocks_split_like_drop_not_a_normal_day():
    prices = calm_prices()
    assert check_data(with_last_move(prices, "AAA", -0.004), 0, {}, DEFAULTS) == []
    (breach,) = check_data(with_last_move(prices, "AAA", -0.50), 0, {}, DEFAULTS)
    assert (breach.guard, breach.subject, round(breach.value, 6)) == (Guard.DAILY_MOVE, "AAA", 0.5)


def test_sigma_guard_blocks_move_beyond_k_sigma_of_lookback():
    prices = calm_prices()  # σ ≈ 0.5 %: a 12 % day is ≈ 24 σ, under the 30 % fixed limit
    (breach,) = check_data(with_last_move(prices, "BBB", 0.12), 0, {}, DEFAULTS)
    assert breach.guard is Guard.MOVE_SIGMAS and breach.subject == "BBB"
    assert 20 < breach.value < 30
    assert check_data(with_last_move(prices, "BBB", 0.08), 0, {}, DEFAULTS) == []  # ≈ 16 σ


def test_trade_price_guard_blocks_disagreement_beyond_tolerance():
    prices = calm_prices()
    last = float(prices["AAA"].iloc[-1])
    assert check_data(prices, 0, {"AAA": last * 1.09}, DEFAULTS) == []
    (breach,) = check_data(prices, 0, {"AAA": last * 2.0, "BBB": float("nan")}, DEFAULTS)
    assert breach.guard is Guard.TRADE_PRICE and round(breach.value, 9) == 1.0


def test_guards_disabled_block_nothing():
    off = replace(DEFAULTS, enabled=False)
    assert check_orders([order("A", 10 * EQUITY)], EQUITY, 0.0, 1, off) == []
    assert check_data(with_last_move(calm_prices(), "AAA", -0.5), 9, {}, off) == []


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_day_turnover_is_what_the_days_intents_may_still_trade_or_filled(tmp_path: Path,
                                                                         kind: str):
    """The day's turnover is read from the journal's intents: a journaled intent or an
    open order counts whole (it may still trade), a refused, unsent or dry-run one only
    what filled; other days' cycles count nothing."""
    from datetime import date

    from bot.engine.journal import Journal
    from bot.engine.memory_journal import MemoryJournal
    journal = Journal(tmp_path / "j.sqlite") if kind == "sqlite" else MemoryJournal()
    day, next_day = date(2024, 7, 3), date(2024, 7, 5)
    first = journal.start_cycle(None)
    journal.set_cycle_asof(first, day)
    journal.record_intents(first, [("c1-A", "AAA", OrderSide.BUY, 10.0, 100.0),
                                   ("c1-B", "BBB", OrderSide.SELL, 5.0, 40.0)])
    assert day_notional_before(journal, day) == 1_200.0  # journaled: not yet known sent
    journal.set_status("c1-A", IntentStatus.REJECTED, "refused by the venue")
    journal.set_status("c1-B", IntentStatus.UNSENT, "never reached the venue")
    assert day_notional_before(journal, day) == 0.0  # neither traded
    second = journal.start_cycle(day)
    journal.record_intents(second, [("c2-A", "AAA", OrderSide.BUY, 3.0, 100.0)])
    journal.set_status("c2-A", IntentStatus.ACCEPTED)  # open: may still fill
    assert day_notional_before(journal, day) == 300.0
    assert day_notional_before(journal, next_day) == 0.0
    dry = journal.start_cycle(next_day)
    journal.record_intents(dry, [("c3-A", "AAA", OrderSide.BUY, 3.0, 100.0)],
                           status=IntentStatus.DRY_RUN)
    assert day_notional_before(journal, next_day) == 0.0
    journal.close()


# ----- in the cycle: blocked means nothing sent -----------------------------------------

def _guarded_run(tmp_path: Path, limits: GuardLimits, prices: pd.DataFrame | None = None):
    ctx = make_ctx(tmp_path, prices=prices)
    ctx.settings = replace(ctx.settings, guards=limits)
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    return ctx, result, logs


def test_cycle_order_guard_breach_skips_cycle_and_sends_nothing(tmp_path: Path):
    ctx, result, logs = _guarded_run(tmp_path, replace(DEFAULTS, max_order_fraction=0.3))
    assert result.status == "skipped" and result.figures["reason"] == "guard_blocked"
    blocked = [e for e in logs if e["event"] == "guard_blocked"]
    assert [e["guard"] for e in blocked] == ["max_order_fraction"]  # AAA's 50 % buy
    assert blocked[0]["subject"] == "buy AAA" and blocked[0]["value"] > 0.49
    assert len(blocked[0]["blocked"]) == 3  # the whole plan, named
    assert ctx.broker.list_orders(open_only=False) == [] and ctx.journal.intents() == []
    # status names the guard and what breached it (it showed "guard_blocked" alone)
    from bot.monitoring.status_report import cycle_row

    [row] = [cycle_row(c) for c in ctx.journal.recent_cycles(1)]
    assert row.shown_note.startswith("guard_blocked: max_order_fraction 0.5")
    assert "vs limit 0.3 (buy AAA)" in row.shown_note


def test_cycle_default_guards_let_initial_investment_through(tmp_path: Path):
    _ctx, result, logs = _guarded_run(tmp_path, DEFAULTS)
    assert result.status == "finished" and result.figures["orders_filled"] == 3
    assert not [e for e in logs if e["event"] == "guard_blocked"]


def test_cycle_turnover_per_day_blocks_second_full_rebalance_same_day(tmp_path: Path):
    ctx, result, _ = _guarded_run(tmp_path, replace(DEFAULTS, max_turnover_per_day=1.0))
    assert result.status == "finished"
    other = ctx.journal.start_cycle(result.asof)  # as if another cycle traded today
    ctx.journal.record_intents(other, [("other-AAA-b", "AAA", OrderSide.BUY, 1.0, 1.0)])
    ctx.journal.set_status("other-AAA-b", IntentStatus.ACCEPTED)
    ctx.strategy = type(ctx.strategy)(weights={"AAA": 0.2, "BBB": 0.3, "CCC": 0.5})
    with capture_logs() as logs:
        from bot.engine import cycle

        again = cycle.run(ctx)  # same replay day: no wake
    assert again.status == "skipped" and again.figures["guards"] == ["max_turnover_per_day"]
    assert [e["guard"] for e in logs if e["event"] == "guard_blocked"] == ["max_turnover_per_day"]
    assert len(ctx.journal.intents()) == 4  # the first cycle's orders and the other's


@pytest.mark.parametrize("move", [-0.5, 1.0])
def test_cycle_split_like_last_bar_skips_cycle(tmp_path: Path, move: float):
    prices = random_walk_prices(SYMBOLS, 400)
    prices.iloc[300:, 1] *= 1 + move  # BBB "splits" on the replay's first day
    ctx, result, logs = _guarded_run(tmp_path, DEFAULTS, prices)
    assert result.status == "skipped"
    blocked = [e for e in logs if e["event"] == "guard_blocked"]
    assert [(e["guard"], e["subject"]) for e in blocked] == [("max_daily_move", "BBB")]
    assert ctx.journal.intents() == []


def test_once_alpaca_trade_far_from_latest_bar_skips_cycle_with_no_order(write_config):
    """Over real HTTP: the fake venue's latest trade (GET /v2/stocks/trades/latest) is
    twice the latest daily bar, as after an unadjusted 2:1 split: nothing is posted."""
    from click.testing import CliRunner
    from conftest import json_lines
    from fake_alpaca import FakeAlpaca
    from test_alpaca_cycle import API_KEY, KEYS_ENV, SECRET_KEY, alpaca_config, recent_bars

    from bot.cli import main

    bars = recent_bars()
    with FakeAlpaca(bars=bars, cash=100_000.0, api_key=API_KEY, secret_key=SECRET_KEY) as fake:
        fake.latest_trades["TLT"] = float(bars["TLT"].iloc[-1]) * 2
        result = CliRunner().invoke(main, ["once", "--config",
                                           str(alpaca_config(write_config, fake))], env=KEYS_ENV)
        assert fake.order_posts() == [] and fake.errors == []
        assert fake.logged("GET", "/v2/stocks/trades/latest")
    assert result.exit_code == 0, result.stderr[-2000:]
    events = json_lines(result.stdout)
    blocked = [e for e in events if e["event"] == "guard_blocked"]
    assert [(e["guard"], round(e["value"], 6)) for e in blocked] == [
        ("max_trade_price_deviation", 1.0)]
    assert blocked[0]["subject"].startswith("TLT")
    finished = next(e for e in events if e["event"] == "cycle_finished")
    assert finished["status"] == "skipped" and finished["reason"] == "guard_blocked"


def test_once_alpaca_bars_ten_days_old_skip_cycle_as_stale(write_config):
    from click.testing import CliRunner
    from conftest import json_lines
    from fake_alpaca import FakeAlpaca
    from test_alpaca_cycle import API_KEY, KEYS_ENV, SECRET_KEY, alpaca_config, recent_bars

    from bot.cli import main

    bars = recent_bars().iloc[:-10]  # the venue's data stopped two weeks ago
    with FakeAlpaca(bars=bars, cash=100_000.0, api_key=API_KEY, secret_key=SECRET_KEY) as fake:
        result = CliRunner().invoke(main, ["once", "--config",
                                           str(alpaca_config(write_config, fake))], env=KEYS_ENV)
        assert fake.order_posts() == []
    assert result.exit_code == 0, result.stderr[-2000:]
    blocked = [e for e in json_lines(result.stdout) if e["event"] == "guard_blocked"]
    assert [e["guard"] for e in blocked] == ["max_stale_sessions"]
    assert 7 <= blocked[0]["value"] <= 11 and blocked[0]["limit"] == 1


def test_cycle_bad_print_is_blocked_before_it_becomes_a_signal_a_peak_or_a_halt(tmp_path: Path):
    # One day's AAA bar ×100 (a typo in a price file) after the first buy: that cycle and
    # the next (the print's reversal) are blocked by the move guard before the strategy
    # and the kill switch see the bar; the peak stays the real one, the monthly signal
    # stays the first day's, and trading goes on afterwards (it once set a peak 30× the
    # account, halted for good with max_drawdown, and traded a signal built on the print).
    from bot.core.signal import SignalSchedule
    from bot.engine import cycle
    from bot.engine.targets import SIGNAL_KEY

    prices = random_walk_prices(SYMBOLS, 400)
    prices.iloc[301, 0] *= 100
    ctx = make_ctx(tmp_path, prices=prices, max_drawdown=0.2)
    ctx.settings = replace(ctx.settings, guards=DEFAULTS, signal=SignalSchedule("monthly"))
    first = wake_and_run(ctx)
    assert first.status == "finished"
    peak, signal = cycle.recorded_peak(ctx.journal), ctx.journal.meta(SIGNAL_KEY)
    with capture_logs() as logs:
        blocked = [wake_and_run(ctx) for _ in range(2)]
    assert [(r.status, r.figures["guards"]) for r in blocked] == [
        ("skipped", ["max_daily_move"])] * 2
    assert [e["subject"] for e in logs if e["event"] == "guard_blocked"] == ["AAA", "AAA"]
    assert not [e for e in logs if e["event"] in ("weights_computed", "trading_halted")]
    assert cycle.recorded_peak(ctx.journal) == peak and ctx.journal.meta(SIGNAL_KEY) == signal
    after = wake_and_run(ctx)
    assert after.status == "finished" and after.figures["drawdown"] < 0.05


def test_halted_account_on_a_bad_print_day_reports_halted_not_a_guard_block(tmp_path: Path):
    # While halted nothing is decided: a day whose bar fails the data guard read as
    # guard_blocked (and alerted as a new block) because the guard ran before the halt.
    from bot.engine import cycle

    prices = random_walk_prices(SYMBOLS, 400)
    prices.iloc[301, 0] *= 100
    ctx = make_ctx(tmp_path, prices=prices, max_drawdown=0.2)
    ctx.settings = replace(ctx.settings, guards=DEFAULTS)
    assert wake_and_run(ctx).status == "finished"
    ctx.journal.set_meta(cycle.HALT_KEY, "drawdown 25.00% from peak 100000.00")
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    assert result.status == "halted"
    assert [e["event"] for e in logs if e["event"] in ("guard_blocked", "still_halted",
                                                       "weights_computed")] == ["still_halted"]
