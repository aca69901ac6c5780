"""The backtest engine: books, closed forms, no look-ahead, exact costs, the drift shortcut.

Every run goes through ``cycle.run`` on an in-memory SimulatedBroker (no mocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import structlog

import strategies
from bot.backtest.engine import BacktestInputError, BacktestSpec, run_backtest
from bot.backtest.report import result_metrics
from bot.backtest.schedule import calendar_rows, drawdown_walk
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.core.signal import SignalSchedule
from bot.engine.cycle import CycleSettings
from brokers.sim.pricing import QTY_DECIMALS, SimCosts
from tests.conftest import capture_logs, random_walk_prices

SYMBOLS = ["AAA", "BBB", "CCC"]
WEIGHTS = {"AAA": 0.5, "BBB": 0.3, "CCC": 0.2}


def make_spec(calendar: str = "daily_drift", *, costs: SimCosts | None = None,
              limits: RiskLimits | None = None, policy: RebalancePolicy | None = None,
              fractional: bool = True, **kw: object) -> BacktestSpec:
    costs = costs or SimCosts()
    reserve_bps = ((1 + costs.commission_bps / 1e4) * (1 + costs.slippage_bps / 1e4) - 1) * 1e4
    settings = CycleSettings(  # the cost reserve as bot.engine.runtime sets it for the simulator
        mode="paper", universe=tuple(SYMBOLS), order_prefix="bt", order_wait_secs=1.0,
        policy=policy or RebalancePolicy(drift_abs=0.02, drift_rel=0.2, min_order_notional=0.0,
                                         cost_bps_estimate=reserve_bps),
        limits=limits or RiskLimits(lookback_days=20), commission_min=costs.commission_min)
    return BacktestSpec(settings, calendar=calendar, starting_cash=1_000_000.0,
                        costs=costs, fractional=fractional, **kw)


def fixed() -> strategies.Strategy:
    return strategies.create("fixed", weights=WEIGHTS)


@dataclass(frozen=True, slots=True)
class PriceDependentFixed(strategies.Strategy):
    """The fixed weights without the ``targets_are_static`` promise (forces daily cycles)."""

    name: ClassVar[str] = "fixed_daily"
    lookback_days: int = 1

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        return pd.Series(WEIGHTS, dtype=float).reindex(prices.columns, fill_value=0.0)


def books_from_fills(result, starting_cash: float) -> tuple[np.ndarray, np.ndarray]:
    """Replay the trade list the way the simulator books it: cash and qty per day."""
    cash, qty = starting_cash, dict.fromkeys(result.symbols, 0.0)
    trades = result.trades
    out_cash, out_qty = [], []
    by_day = {d: g for d, g in trades.groupby("date")} if len(trades) else {}  # noqa: C416
    for day in result.dates:
        for t in (by_day.get(day, pd.DataFrame()).itertuples()):
            gross = t.qty * t.price
            if t.side == "buy":
                cash = cash + -(gross + t.commission)
                qty[t.symbol] = round(qty[t.symbol] + t.qty, QTY_DECIMALS)
            else:
                cash = cash + (gross - t.commission)
                qty[t.symbol] = round(qty[t.symbol] - t.qty, QTY_DECIMALS)
        out_cash.append(cash)
        out_qty.append([qty[s] for s in result.symbols])
    return np.array(out_cash), np.array(out_qty)


def test_backtest_books_with_costs_equal_cash_plus_qty_times_close_exactly():
    prices = random_walk_prices(SYMBOLS, 300, seed=3)
    spec = make_spec(costs=SimCosts(commission_bps=5, commission_min=1.0, slippage_bps=10))
    result = run_backtest(prices, fixed(), spec)
    assert len(result.trades) > 3 * 3  # the initial buys and several drift rebalances
    cash, qty = books_from_fills(result, spec.starting_cash)
    assert np.array_equal(cash, result.cash)
    assert np.array_equal(qty, result.qty)
    for t in range(len(result.dates)):
        held = qty[t] != 0
        expected = math.fsum([cash[t], *(qty[t][held] * result.closes[t][held]).tolist()])
        assert result.equity[t] == expected, result.dates[t]


def test_backtest_daily_calendar_zero_costs_matches_closed_form():
    prices = random_walk_prices(SYMBOLS, 80, seed=11)
    policy = RebalancePolicy(drift_abs=0.05, drift_rel=0.25, min_order_notional=0.0)
    result = run_backtest(prices, fixed(), make_spec("daily", policy=policy))
    window = prices.loc[result.dates]
    r = window.pct_change().iloc[1:].to_numpy()
    w = np.array([WEIGHTS[s] for s in SYMBOLS])
    closed = result.equity[0] * np.concatenate([[1.0], np.cumprod(1.0 + r @ w)])
    rel = np.abs(result.equity / closed - 1.0)
    assert rel.max() < 1e-12, rel.max()
    assert result.equity[0] == pytest.approx(1_000_000.0, rel=1e-12)


def test_backtest_monthly_calendar_zero_costs_matches_buy_and_drift():
    prices = random_walk_prices(SYMBOLS, 130, seed=5)
    policy = RebalancePolicy(drift_abs=0.05, drift_rel=0.25, min_order_notional=0.0)
    result = run_backtest(prices, fixed(), make_spec("monthly", policy=policy))
    window = prices.loc[result.dates].to_numpy()
    months = result.dates.year * 100 + result.dates.month
    w = np.array([WEIGHTS[s] for s in SYMBOLS])
    expected, equity, held = [], 1_000_000.0, np.zeros(3)
    for t in range(len(window)):
        if t == 0 or months[t] != months[t - 1]:
            equity = float(held @ window[t]) if t else equity
            held = w * equity / window[t]  # buy to target at the close, then let it drift
        expected.append(float(held @ window[t]))
    rel = np.abs(result.equity / np.array(expected) - 1.0)
    assert len(set(months)) >= 5
    assert rel.max() < 1e-12, rel.max()


@pytest.mark.parametrize("calendar,strategy_name", [("daily_drift", "fixed"),
                                                    ("weekly", "inverse_volatility")])
def test_backtest_prices_perturbed_after_day_t_change_nothing_up_to_t(calendar, strategy_name):
    prices = random_walk_prices(SYMBOLS, 260, seed=21)
    strategy = fixed() if strategy_name == "fixed" else strategies.create(
        "inverse_volatility", lookback_days=20)
    spec = make_spec(calendar, costs=SimCosts(1, 0, 2),
                     limits=RiskLimits(lookback_days=20, max_var=0.01))
    base = run_backtest(prices, strategy, spec)
    t = base.dates[len(base.dates) // 2]
    shocked = prices.copy()
    later = shocked.index > t
    rng = np.random.default_rng(0)
    shocked.loc[later] = shocked.loc[later].to_numpy() * rng.uniform(0.5, 1.5, (later.sum(), 3))
    other = run_backtest(shocked, strategy, spec)
    upto = base.dates <= t
    assert np.array_equal(base.equity[upto], other.equity[upto])
    assert np.array_equal(base.qty[upto], other.qty[upto])
    before = base.trades[base.trades["date"] <= t].reset_index(drop=True)
    assert before.equals(other.trades[other.trades["date"] <= t].reset_index(drop=True))
    assert not np.array_equal(base.equity[~upto], other.equity[~upto])


def trade_costs(trades: pd.DataFrame) -> pd.Series:
    """What each fill cost beyond trading at the close: commission + qty × |fill − close|."""
    return trades["commission"] + trades["qty"] * (trades["price"] - trades["close"]).abs()


def test_backtest_costs_are_the_whole_gap_to_the_zero_cost_run():
    """Buy and hold (bands too wide to rebalance; 10% cash so buys never scale): both runs
    send the very same orders, so every day the zero-cost run is ahead by exactly the
    costs recorded on the trades (to float rounding of the cash sums)."""
    prices = random_walk_prices(SYMBOLS, 200, seed=8)
    policy = RebalancePolicy(drift_abs=1.0, drift_rel=100.0, min_order_notional=0.0,
                             cost_bps_estimate=40.0)
    weights = {"AAA": 0.45, "BBB": 0.25, "CCC": 0.2}
    strategy = strategies.create("fixed", weights=weights)
    free = run_backtest(prices, strategy, make_spec(policy=policy))
    costly = run_backtest(prices, strategy, make_spec(
        policy=policy, costs=SimCosts(commission_bps=10, commission_min=1.0, slippage_bps=20)))
    key = ["date", "symbol", "side", "qty"]
    assert len(costly.trades) == 3
    assert free.trades[key].equals(costly.trades[key])
    paid = float(trade_costs(costly.trades).sum())
    assert paid > 0
    np.testing.assert_allclose(free.equity - costly.equity, paid, rtol=0, atol=1e-9)


def test_backtest_costs_account_for_every_cash_flow_trade_by_trade():
    """With rebalancing the two runs' orders differ, so compare cash flows: each day's cash
    change is Σ −side·qty·close minus the recorded costs, and the equity is the
    frictionless value of the same trades minus the cumulative costs."""
    prices = random_walk_prices(SYMBOLS, 300, seed=8)
    spec = make_spec(costs=SimCosts(commission_bps=10, commission_min=1.0, slippage_bps=20))
    result = run_backtest(prices, fixed(), spec)
    tr = result.trades
    assert tr["date"].nunique() > 3
    sign = np.where(tr["side"] == "buy", -1.0, 1.0)
    at_close = pd.Series(sign * tr["qty"] * tr["close"]).groupby(tr["date"]).sum()
    costs = trade_costs(tr).groupby(tr["date"]).sum()
    flows = (at_close - costs).reindex(result.dates, fill_value=0.0).to_numpy()
    cash_change = np.diff(np.concatenate([[spec.starting_cash], result.cash]))
    np.testing.assert_allclose(cash_change, flows, rtol=0, atol=1e-9 * spec.starting_cash)
    frictionless = spec.starting_cash + np.cumsum(
        at_close.reindex(result.dates, fill_value=0.0).to_numpy()) \
        + np.nansum(result.qty * result.closes, axis=1)
    cum_costs = costs.reindex(result.dates, fill_value=0.0).cumsum().to_numpy()
    np.testing.assert_allclose(frictionless - result.equity, cum_costs, rtol=0,
                               atol=1e-9 * spec.starting_cash)


def test_backtest_drift_shortcut_equals_running_the_cycle_every_day():
    prices = random_walk_prices(SYMBOLS, 250, seed=2)  # 6 rebalance days
    spec = make_spec(costs=SimCosts(1, 0.5, 2))
    fast = run_backtest(prices, fixed(), spec)
    slow = run_backtest(prices, PriceDependentFixed(), spec)
    assert fast.fast_drift and not slow.fast_drift
    assert len(fast.cycles) < len(slow.cycles) / 5
    assert np.array_equal(fast.equity, slow.equity)
    assert fast.trades.equals(slow.trades)


def test_backtest_fixed_weights_on_a_symbol_listed_late_trade_the_fallback_until_it_lists():
    """CCC lists on row 80; before that ``fixed`` cannot compute and the fallback trades.
    The drift scan took the first finished cycle's targets from ``fixed`` itself, which
    raised on CCC's missing price: the backtest stopped with startup_failed."""
    prices = random_walk_prices(SYMBOLS, 250, seed=2)
    prices.iloc[:80, 2] = np.nan
    spec = make_spec()
    spec = replace(spec, settings=replace(spec.settings,
                                          fallback=strategies.create("equal_weight")))
    with capture_logs() as logs:
        result = run_backtest(prices, fixed(), spec)
    used = [e["strategy"] for e in logs if e["event"] == "cycle_finished"]
    assert used[0] == "equal_weight" and used[-1] == "fixed"
    assert result.fast_drift and len(result.cycles) < len(result.dates) / 2  # once listed
    final = result.qty[-1] * result.closes[-1] / result.equity[-1]
    assert final == pytest.approx([0.5, 0.3, 0.2], abs=0.03)  # fixed's, within the bands


@pytest.mark.parametrize("method", ["historical", "parametric"])
def test_backtest_drift_shortcut_with_a_binding_var_limit_equals_the_daily_cycle(method):
    """With max_var set, the scan runs a full cycle on every day the limit may bind and
    skips only days with static targets: the books equal running the cycle every day."""
    prices = random_walk_prices(SYMBOLS, 250, seed=3)  # the limit binds on ~120 days
    probe = make_spec(limits=RiskLimits(lookback_days=20, method=method))
    var_level = np.median([c.var for c in run_backtest(prices, PriceDependentFixed(),
                                                       probe).cycles if c.var])
    limits = RiskLimits(lookback_days=20, method=method, max_var=float(var_level))
    spec = make_spec(costs=SimCosts(1, 0.5, 2), limits=limits)
    fast = run_backtest(prices, fixed(), spec)
    slow = run_backtest(prices, PriceDependentFixed(), spec)
    assert fast.fast_drift and not slow.fast_drift
    binding = sum(1 for c in slow.cycles if c.var is not None
                  and abs(c.var - var_level) <= 1e-9 * var_level)
    assert binding > 20  # the limit scaled the targets on many days ...
    assert len(fast.cycles) < len(slow.cycles) * 0.9  # ... and the scan still skipped days
    assert np.array_equal(fast.equity, slow.equity)
    assert fast.trades.equals(slow.trades)
    # the VaR backtest reads the VaR of every evening, a skipped day's included
    assert _var_figures(fast) == _var_figures(slow)


def test_backtest_risk_limited_warns_once_a_binding_spell_on_the_days_the_daily_cycle_does():
    """A rule binding day after day warns on its first day, then is info: the drift scan,
    which skips the days the VaR limit cannot bind, warns on the same days as a cycle every
    day (a skipped day ends a VaR spell; the weight cap binds on them too)."""
    prices = random_walk_prices(SYMBOLS, 250, seed=3)
    probe = make_spec(limits=RiskLimits(lookback_days=20))
    var_level = np.median([c.var for c in run_backtest(prices, PriceDependentFixed(),
                                                       probe).cycles if c.var])
    limits = RiskLimits(lookback_days=20, max_var=float(var_level), max_weight=0.45)
    spec = make_spec(costs=SimCosts(1, 0.5, 2), limits=limits)
    warned = {}
    for name, strategy in (("fast", fixed()), ("slow", PriceDependentFixed())):
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            run_backtest(prices, strategy, spec)
        limited = [e for e in logs if e["event"] == "risk_limited"]
        warned[name] = [(e["asof"], e["rule"]) for e in limited if e["log_level"] == "warning"]
        if name == "slow":
            binding_days = sum(1 for e in limited if e["rule"] == "max_var")
    assert warned["fast"] == warned["slow"]
    spells = [day for day, rule in warned["slow"] if rule == "max_var"]
    assert 3 < len(spells) < binding_days / 3  # one warning a spell, not one a day
    assert [rule for _, rule in warned["slow"]].count("max_weight") == 1


def _var_figures(result) -> dict:
    return {k: v for k, v in result_metrics(result, 0.0).items() if k.startswith("var_")}


@dataclass(frozen=True, slots=True)
class Flaky(strategies.Strategy):
    """Momentum that cannot compute in odd months (StrategyError: the cycle holds and asks
    again the next day, until the month turns)."""

    name: ClassVar[str] = "flaky_momentum"
    lookback_days: int = 41

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        if prices.index[-1].month % 2:
            raise strategies.StrategyError("no signal in odd months")
        return strategies.create("momentum", k=2, lookback=40).target_weights(prices)


@pytest.mark.parametrize(("signal", "build"), [
    (SignalSchedule("monthly"), lambda: strategies.create("momentum", k=2, lookback=40)),
    (SignalSchedule(None, 7), Flaky),
], ids=["momentum_monthly", "failing_in_odd_months_every_7_sessions"])
def test_backtest_drift_scan_between_signal_days_equals_the_daily_cycle(signal, build):
    """A price-dependent strategy recomputing on signal days only: between them the scan
    runs a cycle only where a band, the VaR limit or the next signal day calls for one,
    and the books, trades and VaR backtest equal running the cycle every day."""
    prices = random_walk_prices(SYMBOLS, 300, seed=6)
    settings = make_spec(costs=SimCosts(1, 0.5, 2)).settings
    limits = RiskLimits(lookback_days=20, max_var=0.011)
    spec = make_spec(costs=SimCosts(1, 0.5, 2), limits=limits)
    spec = replace(spec, settings=replace(settings, limits=limits, signal=signal))
    fast = run_backtest(prices, build(), spec)
    slow = run_backtest(prices, build(), replace(spec, drift_scan=False))
    assert fast.fast_drift and not slow.fast_drift
    assert len(fast.cycles) < len(slow.cycles) * 0.8
    scaled = sum(1 for c in slow.cycles if c.var is not None and abs(c.var - 0.011) < 1e-9)
    assert scaled > 10  # the VaR limit binds on some days between signals
    assert np.array_equal(fast.equity, slow.equity)
    assert fast.trades.equals(slow.trades)
    assert _var_figures(fast) == _var_figures(slow)


def test_backtest_drift_scan_bad_print_under_a_kill_switch_equals_the_daily_cycle():
    """A one-day +35 % print on every symbol moves no weight (no band breach, no scan
    cycle) but its equity would be a peak 35 % too high: the data guard blocks that day's
    cycle before the kill switch records it, so the scan gives the day a cycle too. Neither
    run halts, and the books equal; before, the scan recorded the print's peak and halted
    two days later for good."""
    prices = random_walk_prices(SYMBOLS, 300, seed=4)
    prices.iloc[200] *= 1.35
    base = make_spec(costs=SimCosts(1, 0.5, 2))
    spec = replace(base, settings=replace(base.settings, max_drawdown=0.2))
    fast = run_backtest(prices, fixed(), spec)
    slow = run_backtest(prices, fixed(), replace(spec, drift_scan=False))
    assert fast.fast_drift and len(fast.cycles) < len(slow.cycles) / 5
    print_day = prices.index[200].date()
    assert [c.status for c in slow.cycles if c.day == print_day] == ["skipped"]
    assert [c.status for c in fast.cycles if c.day == print_day] == ["skipped"]
    assert "halted" not in {c.status for c in fast.cycles} | {c.status for c in slow.cycles}
    assert np.array_equal(fast.equity, slow.equity)
    assert fast.trades.equals(slow.trades)


@pytest.mark.parametrize(("signal", "build"), [
    (SignalSchedule("daily"), fixed),
    (SignalSchedule("monthly"), lambda: strategies.create("momentum", k=2, lookback=40)),
], ids=["fixed", "momentum_monthly"])
def test_backtest_drift_scan_with_a_drawdown_halt_equals_the_daily_cycle(signal, build):
    """The kill switch under the scan: each skipped day's cycle would have raised the
    recorded equity peak, and the first day below max_drawdown halts for good. The scan
    records that peak and gives that day a cycle: the halt falls on the same day, measured
    from a peak no scan cycle saw, and the books, trades and VaR backtest equal running
    the cycle every day (the scan was once off whenever max_drawdown was set)."""
    prices = random_walk_prices(SYMBOLS, 300, seed=4)
    base = make_spec(costs=SimCosts(1, 0.5, 2))
    free = run_backtest(prices, build(), replace(base, settings=replace(base.settings,
                                                                          signal=signal)))
    deepest = float(np.max(1 - free.equity / np.maximum.accumulate(free.equity)))
    settings = replace(base.settings, signal=signal, max_drawdown=deepest / 2)
    spec = replace(base, settings=settings)
    fast = run_backtest(prices, build(), spec)
    slow = run_backtest(prices, build(), replace(spec, drift_scan=False))
    assert fast.fast_drift and not slow.fast_drift
    [halt] = [c.day for c in fast.cycles if c.status == "halted"]
    assert halt == next(c.day for c in slow.cycles if c.status == "halted")
    halt_row = int(slow.dates.get_indexer([pd.Timestamp(halt)])[0])
    peak_day = slow.dates[int(np.argmax(slow.equity[:halt_row]))].date()
    assert peak_day not in {c.day for c in fast.cycles}  # the peak of a skipped day
    assert len(fast.cycles) < len(slow.cycles) / 5
    assert np.array_equal(fast.equity, slow.equity)
    assert fast.trades.equals(slow.trades)
    assert not fast.trades["date"].gt(pd.Timestamp(halt)).any()  # nothing traded after it
    assert _var_figures(fast) == _var_figures(slow)
    # the outputs say so (they once did not: the halt was in the logs only)
    assert result_metrics(fast, 0.0)["halted_on"] == result_metrics(slow, 0.0)["halted_on"] \
        == halt.isoformat()


def test_drawdown_walk_records_the_peak_and_halts_where_the_daily_cycle_would():
    """Each day's cycle raises the peak to that day's equity, then halts below it by more
    than max_drawdown; a NaN day (its cycle fails first) does neither."""
    equity = np.array([100.0, 104.0, np.nan, 110.0, 95.0, 87.9, 120.0])
    assert drawdown_walk(equity, 0.0, None) == (None, 120.0)
    assert drawdown_walk(equity, 0.0, 0.2) == (5, 110.0)  # 87.9 < 110 × 0.8 = 88
    assert drawdown_walk(equity[:5], 0.0, 0.2) == (None, 110.0)
    assert drawdown_walk(equity, 120.0, 0.2) == (4, 120.0)  # a peak recorded earlier: 95 < 96
    assert drawdown_walk(np.array([np.nan]), 50.0, 0.2) == (None, 50.0)


def test_calendar_rows_monthly_picks_first_trading_day_of_each_month():
    dates = pd.DatetimeIndex(["2024-01-30", "2024-01-31", "2024-02-02", "2024-02-05",
                              "2024-03-01", "2024-04-01", "2024-04-02"])
    assert calendar_rows(dates, "monthly").tolist() == [0, 2, 4, 5]
    assert calendar_rows(dates, "quarterly").tolist() == [0, 5]
    assert calendar_rows(dates, "weekly").tolist() == [0, 3, 4, 5]


@pytest.mark.parametrize("field,day", [("start", date(1999, 1, 4)), ("end", date(2031, 1, 2))])
def test_backtest_date_outside_data_raises_naming_it(field, day):
    prices = random_walk_prices(SYMBOLS, 60)
    with pytest.raises(BacktestInputError, match=str(day)):
        run_backtest(prices, fixed(), make_spec(**{field: day}))


def test_backtest_start_inside_warmup_raises_with_earliest_start():
    prices = random_walk_prices(SYMBOLS, 60)
    with pytest.raises(BacktestInputError, match="need 20"):
        run_backtest(prices, fixed(), make_spec(start=prices.index[5].date()))


def test_backtest_turnover_cap_from_all_cash_invests_then_caps_each_signal():
    """Nothing held, the cost-aware strategy gets no current weights (the README's first
    cycle): it invests the cash at once, which a cap below 1 would forbid for good (it
    once held every day in cash); from then on each signal's turnover is capped."""
    prices = random_walk_prices(SYMBOLS, 200, seed=8)
    strategy = strategies.create("min_variance", lookback_days=40, max_turnover=0.2)
    spec = make_spec("monthly", costs=SimCosts(1, 0.5, 2))
    result = run_backtest(prices, strategy, spec)
    first = result.cycles[0]
    assert first.status == "finished" and first.orders_filled > 0
    assert all(c.status == "finished" for c in result.cycles)
    days = result.trades.groupby("date")
    notional = days.apply(lambda t: float((t.qty * t.price).sum()))
    rows = result.dates.get_indexer(notional.index)
    turnover = notional.to_numpy() / result.equity[rows]  # Σ|Δw| (both legs) of that day
    assert turnover[0] > 0.9 and (turnover[1:] <= 0.2 * (1 + 1e-3)).all()  # (costs: ~3 bp)
