"""The signal schedule: strategies recompute on signal days, the bands act every day, and
the daemon's cycle and the backtest trade the same orders under it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

import strategies
from bot.backtest.engine import BacktestSpec, run_backtest
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.core.signal import SignalSchedule, is_signal_day
from bot.engine import cycle
from bot.engine.cycle import CycleContext, CycleSettings
from bot.engine.journal import Journal
from brokers.sim.broker import SimulatedBroker
from brokers.sim.pricing import SimCosts
from tests.conftest import capture_logs, random_walk_prices

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
MONTHLY = SignalSchedule("monthly")


@pytest.mark.parametrize("asof,last,schedule,sessions,expected", [
    (date(2024, 3, 1), None, MONTHLY, 0, True),
    (date(2024, 3, 28), date(2024, 3, 1), MONTHLY, 19, False),
    (date(2024, 4, 1), date(2024, 3, 28), MONTHLY, 1, True),
    (date(2024, 3, 1), date(2024, 3, 1), MONTHLY, 0, False),  # a second cycle that day
    (date(2024, 3, 4), date(2024, 3, 1), SignalSchedule("weekly"), 1, True),
    (date(2024, 3, 8), date(2024, 3, 4), SignalSchedule("weekly"), 4, False),
    (date(2024, 4, 1), date(2024, 3, 29), SignalSchedule("quarterly"), 1, True),
    (date(2024, 5, 1), date(2024, 4, 1), SignalSchedule("quarterly"), 22, False),
    (date(2024, 3, 8), date(2024, 3, 1), SignalSchedule(None, 5), 5, True),
    (date(2024, 3, 7), date(2024, 3, 1), SignalSchedule(None, 5), 4, False),
])
def test_is_signal_day_by_schedule(asof, last, schedule, sessions, expected):
    assert is_signal_day(asof, last, schedule, sessions) is expected


def _settings(signal: SignalSchedule) -> CycleSettings:
    return CycleSettings(
        mode="paper", universe=tuple(SYMBOLS), order_prefix="bt", order_wait_secs=1.0,
        policy=RebalancePolicy(drift_abs=0.02, drift_rel=0.2, min_order_notional=0.0,
                               cost_bps_estimate=3.1),
        limits=RiskLimits(lookback_days=20), signal=signal)


def _momentum() -> strategies.Strategy:
    return strategies.create("momentum", k=2, lookback=40)


def test_daemon_cycle_and_backtest_trade_the_same_orders_under_a_monthly_signal(tmp_path):
    prices = random_walk_prices(SYMBOLS, 200, seed=11)
    first = prices.index[60].date()
    settings = _settings(MONTHLY)
    costs = SimCosts(1, 0, 2)
    # the daemon's way: a persistent account, one wake per trading day
    broker = SimulatedBroker(tmp_path / "s.sqlite", prices, starting_cash=100_000.0,
                             costs=costs, replay_start=first)
    ctx = CycleContext(broker, Journal(tmp_path / "s.sqlite"), _momentum(), settings)
    for _ in range(len(prices) - 60):
        broker.on_wake()
        cycle.run(ctx)
    daemon = broker.fills_table()
    broker.close()
    ctx.journal.close()
    spec = BacktestSpec(settings, calendar="daily_drift", starting_cash=100_000.0,
                        costs=costs, start=first)
    backtest = run_backtest(prices, _momentum(), spec).trades
    assert len(daemon) > 10
    got = backtest[["symbol", "side", "qty", "price"]].reset_index(drop=True)
    want = daemon[["symbol", "side", "qty", "price"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_monthly_signal_recomputes_once_a_month_and_cuts_momentum_turnover():
    prices = random_walk_prices(SYMBOLS, 250, seed=5)
    results = {}
    for name, signal in (("daily", SignalSchedule("daily")), ("monthly", MONTHLY)):
        spec = BacktestSpec(_settings(signal), calendar="daily_drift", starting_cash=1e6,
                            costs=SimCosts(1, 0, 2), start=prices.index[60].date())
        results[name] = run_backtest(prices, _momentum(), spec)
    traded = {k: float((r.trades.qty * r.trades.price).sum()) for k, r in results.items()}
    assert traded["monthly"] < 0.7 * traded["daily"]
    # every trade day of the monthly run is a new month's first day or a drift day: the
    # targets themselves change only on the first trading day of a month
    days = pd.DatetimeIndex(results["monthly"].trades.date.unique())
    assert len(days) < len(pd.DatetimeIndex(results["daily"].trades.date.unique()))


def test_every_n_sessions_beyond_the_steps_lookback_still_recomputes_every_n():
    """every_sessions = 100 while the strategy and risk step look back 41 rows: the cycle
    counts the sessions on a history that reaches back far enough (it once saw only its
    41-row window, so the sessions since the signal never reached 100: one signal, ever)."""
    # 250 days: three signals 100 sessions apart (two of them past the first) show the
    # period as well as five did; the bug it catches gives one signal whatever the length
    prices = random_walk_prices(SYMBOLS, 250, seed=4)
    spec = BacktestSpec(_settings(SignalSchedule(None, 100)), calendar="daily", costs=SimCosts(1, 0, 2))
    with capture_logs() as logs:
        result = run_backtest(prices, _momentum(), spec)
    held = sum(1 for e in logs if e["event"] == "signal_held")
    recomputed = len(result.cycles) - held
    assert len(result.cycles) == 250 - 41 and recomputed == 3  # rows 0, 100 and 200


def _monthly_momentum(tmp_path, days: int, seed: int
                      ) -> tuple[SimulatedBroker, Journal, CycleContext, dict[str, float]]:
    """A simulated account on a random walk, its journal, a monthly momentum context and
    the targets of its first cycle (a signal day)."""
    prices = random_walk_prices(SYMBOLS, days, seed=seed)
    db = tmp_path / "s.sqlite"
    broker = SimulatedBroker(db, prices, starting_cash=1e5, replay_start=prices.index[60].date())
    journal = Journal(db)
    ctx = CycleContext(broker, journal, _momentum(), _settings(MONTHLY))
    broker.on_wake()
    return broker, journal, ctx, cycle.run(ctx).figures["targets"]


def test_held_targets_survive_a_restart_and_a_strategy_change_recomputes(tmp_path):
    broker, journal, ctx, first = _monthly_momentum(tmp_path, 200, seed=3)
    db = tmp_path / "s.sqlite"
    journal.close()
    journal = Journal(db)  # a restart: the held weights come from the journal
    ctx = CycleContext(broker, journal, _momentum(), _settings(MONTHLY))
    broker.on_wake()
    again = cycle.run(ctx)
    assert again.figures["targets"] == first
    ctx.strategy = strategies.create("equal_weight")  # a new strategy recomputes at once
    broker.on_wake()
    changed = cycle.run(ctx).figures["targets"]
    assert changed == dict.fromkeys(SYMBOLS, 0.25)
    journal.close()
    broker.close()


def test_signal_recomputed_says_why_on_each_recompute_and_signal_held_between(tmp_path):
    """A signal was recomputed silently: the first cycle (no signal yet), the new month's
    first session, a new strategy, a changed universe each log ``signal_recomputed`` with
    its reason; the sessions between hold the signal (``signal_held``)."""
    from dataclasses import replace

    prices = random_walk_prices(SYMBOLS, 200, seed=3)
    db = tmp_path / "s.sqlite"
    broker = SimulatedBroker(db, prices, starting_cash=1e5, replay_start=prices.index[60].date())
    ctx = CycleContext(broker, Journal(db), _momentum(), _settings(MONTHLY))

    def next_session() -> date:
        broker.on_wake()
        result = cycle.run(ctx)
        assert result.status == "finished", result.error
        assert result.asof is not None
        return result.asof

    with capture_logs() as logs:
        first = next_session()
        held = 0
        while (month_turn := next_session()).month == first.month:
            held += 1
        ctx.strategy = strategies.create("equal_weight")
        changed = next_session()
        ctx.settings = replace(ctx.settings, excluded=("DDD",))
        excluded = next_session()
    recomputed = [(e["log_level"], e["reason"], e["signal_asof"], e["previous_asof"])
                  for e in logs if e["event"] == "signal_recomputed"]
    assert recomputed == [
        ("info", "no_signal_yet", str(first), None),
        ("info", "signal_day", str(month_turn), str(first)),
        ("info", "strategy_changed", str(changed), str(month_turn)),
        ("info", "universe_changed", str(excluded), str(changed)),
    ]
    assert all(e["schedule"] == "monthly" for e in logs if e["event"] == "signal_recomputed")
    assert held > 1 and sum(e["event"] == "signal_held" for e in logs) == held
    ctx.journal.close()
    broker.close()


def test_excluded_symbol_is_never_bought_and_sold_when_held(tmp_path):
    prices = random_walk_prices(SYMBOLS, 120, seed=8)
    db = tmp_path / "s.sqlite"
    broker = SimulatedBroker(db, prices, starting_cash=1e5, replay_start=prices.index[60].date())
    journal = Journal(db)
    ctx = CycleContext(broker, journal, strategies.create("equal_weight"),
                       _settings(SignalSchedule("daily")))
    broker.on_wake()
    cycle.run(ctx)
    assert "DDD" in broker.positions()
    ctx.settings = CycleSettings(**{**{f: getattr(ctx.settings, f) for f in
                                       ctx.settings.__dataclass_fields__}, "excluded": ("DDD",)})
    broker.on_wake()
    result = cycle.run(ctx)
    assert "DDD" not in broker.positions()
    assert result.figures["targets"] == {s: pytest.approx(1 / 3) for s in SYMBOLS[:3]}
    assert np.isclose(sum(result.figures["targets"].values()), 1.0)
    journal.close()
    broker.close()


def test_listing_the_universe_in_another_order_mid_month_keeps_the_held_signal(tmp_path):
    """The same symbols in another order are the same universe: the held monthly signal
    stays (it was recomputed mid-month, trading on a day that was no signal day)."""
    broker, journal, ctx, first = _monthly_momentum(tmp_path, 120, seed=8)
    settings = ctx.settings
    ctx.settings = CycleSettings(**{**{f: getattr(settings, f) for f in
                                       settings.__dataclass_fields__},
                                    "universe": tuple(reversed(SYMBOLS))})
    for _ in range(3):  # the same month: no signal day
        broker.on_wake()
        with capture_logs() as logs:
            again = cycle.run(ctx)
        assert [e["event"] for e in logs if e["event"].startswith("signal_")] == ["signal_held"]
        assert {s: w for s, w in again.figures["targets"].items() if w} == {
            s: w for s, w in first.items() if w}
    journal.close()
    broker.close()


def test_excluding_or_readmitting_a_symbol_mid_month_recomputes_the_held_signal(tmp_path):
    """The held monthly signal was computed over the symbols the strategy saw then. One
    excluded since used to keep its weight in cash until the next month (``signal_held``
    with the excluded weight set to 0), and one let back in was sold at once."""
    prices = random_walk_prices(SYMBOLS, 120, seed=8)
    db = tmp_path / "s.sqlite"
    broker = SimulatedBroker(db, prices, starting_cash=1e5, replay_start=prices.index[60].date())
    journal = Journal(db)
    ctx = CycleContext(broker, journal, strategies.create("equal_weight"), _settings(MONTHLY))
    settings = ctx.settings
    broker.on_wake()
    assert cycle.run(ctx).figures["targets"] == dict.fromkeys(SYMBOLS, 0.25)
    ctx.settings = CycleSettings(**{**{f: getattr(settings, f) for f in
                                       settings.__dataclass_fields__}, "excluded": ("DDD",)})
    broker.on_wake()  # the same month: no signal day
    excluded = cycle.run(ctx)
    assert excluded.figures["targets"] == {s: pytest.approx(1 / 3) for s in SYMBOLS[:3]}
    assert "DDD" not in broker.positions()
    ctx.settings = settings  # DDD let back in, still the same month
    broker.on_wake()
    assert cycle.run(ctx).figures["targets"] == dict.fromkeys(SYMBOLS, 0.25)
    assert "DDD" in broker.positions()
    journal.close()
    broker.close()


def test_held_signal_on_a_symbol_the_raised_risk_window_no_longer_covers_is_recomputed(
        tmp_path):
    """A monthly signal weighed a symbol listed 40 sessions ago under a 30-day risk window;
    the operator then raised [risk].lookback_days to 120. The held signal still weighed
    it, the risk step refused it (too short a history) and every cycle failed until the
    next month's signal. It is recomputed at once, without that symbol."""
    from dataclasses import replace

    from bot.core.risk import RiskLimits
    from bot.core.signal import SignalSchedule
    from bot.engine.statuses import CycleStatus
    from tests.test_cycle import make_ctx, wake_and_run

    prices = random_walk_prices(["AAA", "BBB", "CCC"], 400, seed=5)
    prices.iloc[:260, 2] = np.nan  # CCC lists 40 sessions before the replay's first day
    ctx = make_ctx(tmp_path, prices=prices, limits=RiskLimits(lookback_days=30))
    ctx.strategy = strategies.create("equal_weight")
    ctx.settings = replace(ctx.settings, signal=SignalSchedule("monthly"))
    first = wake_and_run(ctx)
    assert first.status is CycleStatus.FINISHED and first.figures["targets"].get("CCC", 0) > 0
    ctx.settings = replace(ctx.settings, limits=RiskLimits(lookback_days=120))
    with capture_logs() as logs:
        later = wake_and_run(ctx)  # the next session: not a signal day
    assert later.status is CycleStatus.FINISHED, later.error
    assert "CCC" not in later.figures["targets"]
    # and says why it recomputed off-schedule
    [recomputed] = [e for e in logs if e["event"] == "signal_recomputed"]
    assert recomputed["reason"] == "held_outside_risk_window"
    assert recomputed["signal_asof"] == recomputed["previous_asof"] == str(first.asof)
    assert not [e for e in logs if e["event"] == "signal_held"]
    memo = ctx.journal.meta_json("signal")  # the schedule still counts from the first signal
    assert memo["asof"] == str(first.asof)
