"""Tests of the rebalance planner: drift bands, order sizing, cash and the policy rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.core.rebalance import (
    PlannedOrder,
    RebalancePlan,
    RebalancePolicy,
    UnsupportedPositionError,
    _planned_orders,
    drift_mask,
    plan_rebalance,
    plan_rebalance_aligned,
)
from brokers.base import OrderSide
from strategies.errors import InputDataError

PRICES = pd.Series({"SPY": 400.0, "TLT": 100.0, "GLD": 180.0, "OLD": 20.0})
TIGHT = RebalancePolicy(drift_abs=0.01, drift_rel=0.05, min_order_notional=1.0)


def _execute(plan: RebalancePlan, holdings: pd.Series, cash: float,
             cost_bps: float = 0.0) -> tuple[dict[str, float], float]:
    """A tiny executor: fills every order at its planning price, sells before buys, and
    fails on a sell beyond holdings (the broker would reject it)."""
    qty = {str(k): float(v) for k, v in holdings.items()}
    cost = cost_bps * 1e-4
    for order in plan.orders:
        held = qty.get(order.symbol, 0.0)
        if order.side is OrderSide.SELL:
            assert order.qty <= held, f"sells {order.qty} {order.symbol}, holds {held}"
            qty[order.symbol] = held - order.qty
            cash += order.qty * order.price * (1 - cost)
        else:
            qty[order.symbol] = held + order.qty
            cash -= order.qty * order.price * (1 + cost)
    return qty, cash


def _weights_after(qty: dict[str, float], cash: float, prices: pd.Series) -> pd.Series:
    values = pd.Series({s: q * float(prices[s]) for s, q in qty.items()}, dtype=float)
    return values / (cash + values.sum())


# --- drift_mask -------------------------------------------------------------------------

def test_drift_mask_absolute_band_exceeded_flags_only_that_asset() -> None:
    mask = drift_mask(np.array([0.66, 0.34]), np.array([0.60, 0.40]), 0.05, 10.0)
    assert mask.tolist() == [True, True]
    mask = drift_mask(np.array([0.64, 0.36]), np.array([0.60, 0.40]), 0.05, 10.0)
    assert mask.tolist() == [False, False]


def test_drift_mask_relative_band_exceeded_flags_small_target() -> None:
    # |0.07 − 0.05| = 0.02 < drift_abs 0.05, but > 0.25 · 0.05 = 0.0125
    mask = drift_mask(np.array([0.07, 0.93]), np.array([0.05, 0.95]), 0.05, 0.25)
    assert mask.tolist() == [True, False]


def test_drift_mask_new_and_dropped_targets_always_drift_even_with_wide_bands() -> None:
    mask = drift_mask(np.array([0.0, 0.001, 0.5]), np.array([0.001, 0.0, 0.5]), 1.0, 1.0)
    assert mask.tolist() == [True, True, False]


def test_drift_mask_two_dimensional_days_by_assets_matches_row_by_row() -> None:
    rng = np.random.default_rng(7)
    current = rng.dirichlet(np.ones(5), size=50)
    target = np.tile([0.3, 0.3, 0.2, 0.2, 0.0], (50, 1))
    mask = drift_mask(current, target, 0.05, 0.25)
    assert mask.shape == (50, 5)
    for day in range(50):
        assert (mask[day] == drift_mask(current[day], target[day], 0.05, 0.25)).all()


def test_drift_mask_one_target_row_broadcasts_over_days() -> None:
    current = np.array([[0.60, 0.40], [0.70, 0.30], [0.60, 0.0]])
    mask = drift_mask(current, np.array([0.6, 0.4]), 0.05, 0.25)
    assert mask.tolist() == [[False, False], [True, True], [False, True]]


def test_drift_mask_nan_weight_raises() -> None:
    with pytest.raises(ValueError, match="NaN"):
        drift_mask(np.array([np.nan, 0.5]), np.array([0.5, 0.5]), 0.05, 0.25)


# --- plan_rebalance: example rules --------------------------------------------------------

def test_plan_within_bands_returns_empty_plan() -> None:
    holdings = pd.Series({"SPY": 15.0, "TLT": 40.0})  # 6000 / 4000 of 10000
    plan = plan_rebalance(holdings, 0.0, pd.Series({"SPY": 0.6, "TLT": 0.4}), PRICES, TIGHT)
    assert plan.orders == () and plan.drifted == ()
    assert plan.equity == 10_000.0 and plan.cash_after == 0.0


def test_plan_zero_target_sells_exact_held_quantity() -> None:
    holdings = pd.Series({"SPY": 10.0, "OLD": 3.123456789123})
    plan = plan_rebalance(holdings, 0.0, pd.Series({"SPY": 1.0}), PRICES, TIGHT)
    sell = next(o for o in plan.orders if o.symbol == "OLD")
    assert sell.side is OrderSide.SELL and sell.reason == "dropped"
    assert sell.qty == 3.123456789123  # not rounded: a full exit leaves no dust


def test_plan_dropped_symbol_below_min_notional_is_still_sold() -> None:
    holdings = pd.Series({"SPY": 10.0, "OLD": 0.1})  # 2.00 of OLD
    policy = RebalancePolicy(min_order_notional=5.0)
    plan = plan_rebalance(holdings, 0.0, pd.Series({"SPY": 1.0}), PRICES, policy)
    assert [(o.symbol, o.side, o.qty) for o in plan.orders] == [("OLD", OrderSide.SELL, 0.1)]


def test_plan_new_target_buys_to_target_weight() -> None:
    holdings = pd.Series({"SPY": 15.0})
    plan = plan_rebalance(holdings, 4000.0, pd.Series({"SPY": 0.6, "TLT": 0.4}), PRICES, TIGHT)
    assert [(o.symbol, o.side, o.qty, o.reason) for o in plan.orders] == [
        ("TLT", OrderSide.BUY, 40.0, "new_target")]
    assert plan.orders[0].notional == 4000.0
    assert plan.cash_after == 0.0


def test_plan_whole_shares_buys_round_down_and_sells_round_to_nearest() -> None:
    # equity 10 000: SPY target 0.5 → 12.5 shares (holds 20: sell 7.5 → 8 whole shares,
    # the nearest to target); GLD target 0.2 → 11.11 shares (buy 11, rounded down)
    holdings = pd.Series({"SPY": 20.0})
    plan = plan_rebalance(holdings, 2000.0, pd.Series({"SPY": 0.5, "GLD": 0.2}), PRICES,
                          TIGHT, fractionable={"SPY": False, "GLD": False})
    got = {(o.symbol, o.side): o.qty for o in plan.orders}
    assert got == {("SPY", OrderSide.SELL): 8.0, ("GLD", OrderSide.BUY): 11.0}


def test_plan_symbol_missing_from_fractionable_map_trades_whole_shares() -> None:
    plan = plan_rebalance(pd.Series(dtype=float), 1000.0, pd.Series({"GLD": 1.0}), PRICES,
                          TIGHT, fractionable={"SPY": True})
    assert [o.qty for o in plan.orders] == [5.0]  # 1000 / 180 = 5.56 → 5


def test_plan_fractional_quantities_round_down_to_qty_decimals() -> None:
    plan = plan_rebalance(pd.Series(dtype=float), 1000.0, pd.Series({"GLD": 1.0}), PRICES,
                          TIGHT, qty_decimals=3)
    assert [o.qty for o in plan.orders] == [5.555]


def test_plan_cash_buffer_scales_targets_and_keeps_cash() -> None:
    policy = RebalancePolicy(cash_buffer=0.1, drift_abs=0.01)
    plan = plan_rebalance(pd.Series(dtype=float), 10_000.0,
                          pd.Series({"SPY": 0.6, "TLT": 0.4}), PRICES, policy)
    # targets sum 1 > 0.9: scaled by 0.9 / 1
    assert plan.target_weights.to_dict() == pytest.approx({"SPY": 0.54, "TLT": 0.36})
    assert plan.cash_after == pytest.approx(1000.0)


def test_plan_cash_buffer_leaves_targets_that_already_keep_enough_cash() -> None:
    policy = RebalancePolicy(cash_buffer=0.1)
    plan = plan_rebalance(pd.Series(dtype=float), 10_000.0,
                          pd.Series({"SPY": 0.5, "TLT": 0.3}), PRICES, policy)
    assert plan.target_weights.to_dict() == {"SPY": 0.5, "TLT": 0.3}


def test_plan_drifted_only_trades_only_drifted_assets() -> None:
    # SPY 0.70 vs 0.60 (drifted), TLT 0.28 vs 0.30 (within), GLD 0.02 vs 0.10 (drifted)
    holdings = pd.Series({"SPY": 17.5, "TLT": 28.0, "GLD": 200.0 / 180.0})
    targets = pd.Series({"SPY": 0.6, "TLT": 0.3, "GLD": 0.1})
    policy = RebalancePolicy(drift_abs=0.05, drift_rel=0.25, mode="drifted_only")
    plan = plan_rebalance(holdings, 0.0, targets, PRICES, policy)
    assert plan.drifted == ("GLD", "SPY")
    assert {o.symbol for o in plan.orders} == {"GLD", "SPY"}


def test_plan_all_when_any_brings_every_asset_to_target() -> None:
    holdings = pd.Series({"SPY": 17.5, "TLT": 28.0, "GLD": 200.0 / 180.0})
    targets = pd.Series({"SPY": 0.6, "TLT": 0.3, "GLD": 0.1})
    policy = RebalancePolicy(drift_abs=0.05, drift_rel=0.25, mode="all_when_any")
    plan = plan_rebalance(holdings, 0.0, targets, PRICES, policy)
    assert {o.symbol: o.reason for o in plan.orders} == {
        "SPY": "drift", "GLD": "drift", "TLT": "rebalance"}
    qty, cash = _execute(plan, holdings, 0.0)
    after = _weights_after(qty, cash, PRICES)
    assert after.to_dict() == pytest.approx(targets.to_dict(), abs=1e-9)


def test_plan_orders_sells_first_then_buys_each_by_symbol() -> None:
    holdings = pd.Series({"TLT": 50.0, "OLD": 100.0})
    targets = pd.Series({"SPY": 0.3, "GLD": 0.3, "TLT": 0.2})
    plan = plan_rebalance(holdings, 1000.0, targets, PRICES, TIGHT)
    assert [(o.side.value, o.symbol) for o in plan.orders] == [
        ("sell", "OLD"), ("sell", "TLT"), ("buy", "GLD"), ("buy", "SPY")]


def test_plan_small_order_below_min_notional_is_skipped() -> None:
    holdings = pd.Series({"SPY": 15.0, "TLT": 40.0})
    targets = pd.Series({"SPY": 0.5996, "TLT": 0.4, "GLD": 0.0004})  # GLD: 4.00 to buy
    policy = RebalancePolicy(min_order_notional=5.0)
    plan = plan_rebalance(holdings, 10.0, targets, PRICES, policy)
    assert plan.drifted == ("GLD",)  # a new target always counts as drifted ...
    assert plan.orders == ()  # ... but an order under the minimum is not emitted


def test_plan_cash_short_scales_buys_down_proportionally() -> None:
    # drifted_only: SPY overweight but within its band keeps its value; two new targets
    # need 6000 of which only 3000 cash exists → each buy is halved.
    holdings = pd.Series({"SPY": 17.5})  # 7000
    targets = pd.Series({"SPY": 0.4, "TLT": 0.3, "GLD": 0.3})
    policy = RebalancePolicy(drift_abs=0.5, drift_rel=1.0, mode="drifted_only")
    plan = plan_rebalance(holdings, 3000.0, targets, PRICES, policy)
    notionals = {o.symbol: o.notional for o in plan.orders}
    assert notionals == pytest.approx({"TLT": 1500.0, "GLD": 1500.0}, abs=1e-6)
    assert plan.cash_after >= 0.0


def test_plan_cost_reserve_keeps_buy_cost_within_cash() -> None:
    policy = RebalancePolicy(cost_bps_estimate=50.0)
    plan = plan_rebalance(pd.Series(dtype=float), 10_000.0, pd.Series({"SPY": 1.0}),
                          PRICES, policy)
    (buy,) = plan.orders
    assert buy.notional * 1.005 <= 10_000.0
    assert buy.notional == pytest.approx(10_000.0 / 1.005, abs=1e-6)


def test_plan_held_symbol_absent_from_targets_is_sold() -> None:
    plan = plan_rebalance(pd.Series({"OLD": 5.0}), 0.0, pd.Series({"SPY": 0.0}), PRICES, TIGHT)
    assert [(o.symbol, o.side, o.qty) for o in plan.orders] == [("OLD", OrderSide.SELL, 5.0)]


@pytest.mark.parametrize("bad", [np.nan, 0.0, -3.0])
def test_plan_unusable_price_raises_naming_symbol(bad: float) -> None:
    prices = pd.Series({"SPY": 400.0, "TLT": bad})
    with pytest.raises(ValueError, match="'TLT'"):
        plan_rebalance(pd.Series({"SPY": 1.0}), 100.0, pd.Series({"SPY": 0.5, "TLT": 0.5}),
                       prices, TIGHT)


def test_plan_missing_price_raises_naming_symbol() -> None:
    with pytest.raises(ValueError, match="'XLE'"):
        plan_rebalance(pd.Series(dtype=float), 100.0, pd.Series({"XLE": 0.5}), PRICES, TIGHT)


def test_plan_unheld_zero_target_without_price_is_ignored() -> None:
    prices = pd.Series({"SPY": 400.0, "NEW": np.nan})  # listed later: no price yet
    plan = plan_rebalance(pd.Series(dtype=float), 400.0, pd.Series({"SPY": 1.0, "NEW": 0.0}),
                          prices, TIGHT)
    assert [o.symbol for o in plan.orders] == ["SPY"]
    assert list(plan.target_weights.index) == ["SPY"]


def test_plan_nan_target_raises_naming_symbol() -> None:
    with pytest.raises(ValueError, match="targets: 'TLT'"):
        plan_rebalance(pd.Series(dtype=float), 100.0, pd.Series({"SPY": 0.5, "TLT": np.nan}),
                       PRICES, TIGHT)


def test_plan_targets_summing_above_one_raise() -> None:
    with pytest.raises(ValueError, match=r"sum to 1\.1"):
        plan_rebalance(pd.Series(dtype=float), 100.0, pd.Series({"SPY": 0.6, "TLT": 0.5}),
                       PRICES, TIGHT)


@pytest.mark.parametrize("field,value", [("drift_abs", -0.1), ("cash_buffer", 1.0),
                                         ("min_order_notional", math.nan), ("mode", "sometimes")])
def test_policy_impossible_value_raises_naming_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RebalancePolicy(**{field: value})  # type: ignore[arg-type]


# --- plan_rebalance: properties ------------------------------------------------------------

SYMBOLS = ("A", "B", "C", "D", "E")
Case = tuple[pd.Series, float, pd.Series, pd.Series, RebalancePolicy, dict[str, bool] | None]


@st.composite
def _portfolios(draw: st.DrawFn) -> Case:
    n = len(SYMBOLS)
    prices = draw(st.lists(st.floats(0.5, 5000.0), min_size=n, max_size=n))
    held = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.001, 2000.0)),
                         min_size=n, max_size=n))
    raw = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.01, 1.0)), min_size=n, max_size=n))
    invested = draw(st.floats(0.0, 1.0))
    cash = draw(st.floats(0.0, 200_000.0))
    total = sum(raw)
    targets = [r / total * invested if total > 0 else 0.0 for r in raw]
    policy = RebalancePolicy(
        drift_abs=draw(st.floats(0.0, 0.2)), drift_rel=draw(st.floats(0.0, 1.0)),
        mode=draw(st.sampled_from(["drifted_only", "all_when_any"])),
        min_order_notional=draw(st.floats(0.0, 50.0)),
        cash_buffer=draw(st.floats(0.0, 0.3)), cost_bps_estimate=draw(st.floats(0.0, 50.0)))
    frac = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(SYMBOLS), st.booleans())))
    return (pd.Series(held, index=SYMBOLS), cash, pd.Series(targets, index=SYMBOLS),
            pd.Series(prices, index=SYMBOLS), policy, frac)


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.filter_too_much])


def _plan_for(case: Case) -> tuple[RebalancePlan, float]:
    holdings, cash, targets, prices, policy, frac = case
    equity = cash + float((holdings * prices).sum())
    assume(equity > 1.0)
    return plan_rebalance(holdings, cash, targets, prices, policy, frac), equity


@PROPERTY_SETTINGS
@given(_portfolios())
def test_plan_property_never_sells_more_than_held_nor_spends_missing_cash(case: Case) -> None:
    holdings, cash, _, _, policy, _ = case
    plan, equity = _plan_for(case)
    sides = [o.side for o in plan.orders]
    assert sides == sorted(sides, key=lambda s: s is OrderSide.BUY), "sells must come first"
    qty, cash_end = _execute(plan, holdings, cash, policy.cost_bps_estimate)  # asserts sells
    assert all(q >= 0 for q in qty.values())
    tol = 1e-9 * equity
    if any(o.side is OrderSide.BUY for o in plan.orders):
        assert cash_end >= -tol
        assert cash_end >= policy.cash_buffer * equity - tol  # buys never eat the buffer
    assert plan.cash_after == pytest.approx(cash_end, abs=tol)


@PROPERTY_SETTINGS
@given(_portfolios())
def test_plan_property_no_order_below_minimum_except_full_exit(case: Case) -> None:
    holdings, _, targets, _, policy, _ = case
    plan, _ = _plan_for(case)
    for order in plan.orders:
        assert order.qty > 0 and order.notional == pytest.approx(order.qty * order.price)
        if order.notional < policy.min_order_notional:
            # the one documented exception: a dropped symbol is sold in full
            assert order.side is OrderSide.SELL and targets[order.symbol] == 0
            assert order.qty == holdings[order.symbol]


@PROPERTY_SETTINGS
@given(_portfolios())
def test_plan_property_drifted_assets_end_within_band(case: Case) -> None:
    """Preconditions: fractional shares, no cost reserve, and cash enough for the ideal
    buys (otherwise buys are scaled down on purpose). Tolerance: an order under the
    minimum is not sent, so a weight may stay off by up to min_order_notional / equity,
    plus quantity rounding (10⁻⁹ share)."""
    holdings, cash, targets, prices, policy, _ = case
    policy = RebalancePolicy(policy.drift_abs, policy.drift_rel, policy.mode,
                             policy.min_order_notional, policy.cash_buffer, 0.0)
    plan, equity = _plan_for((holdings, cash, targets, prices, policy, None))
    assume(plan.drifted)
    cur, tgt = plan.current_weights, plan.target_weights
    traded = cur.index.isin(plan.drifted if policy.mode == "drifted_only" else cur.index)
    sells = float(((cur - tgt).clip(lower=0) * traded).sum()) * equity
    buys = float(((tgt - cur).clip(lower=0) * traded).sum()) * equity
    assume(cash + sells - policy.cash_buffer * equity >= buys + 1e-6 * equity)
    qty, cash_end = _execute(plan, holdings, cash)
    after = _weights_after(qty, cash_end, prices).reindex(tgt.index, fill_value=0.0)
    tol = (policy.min_order_notional + 1e-9 * float(prices.max()) * 2) / equity + 1e-9
    for sym in plan.drifted:
        band = max(policy.drift_abs, policy.drift_rel * tgt[sym])
        assert abs(after[sym] - tgt[sym]) <= band + tol, sym


def test_planned_order_zero_quantity_raises() -> None:
    with pytest.raises(ValueError, match="qty"):
        PlannedOrder("SPY", OrderSide.BUY, 0.0, 400.0, 0.0, "drift")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_portfolios(), st.permutations(range(len(SYMBOLS))))
def test_plan_aligned_arrays_in_any_universe_order_equal_the_series_planner(
        case: Case, order: list[int]) -> None:
    """The cycle's array planner gives the Series planner's plan, bit for bit, whatever the
    universe's order (unheld, untargeted symbols may lack a price)."""
    holdings, cash, targets, prices, policy, frac = case
    plan, _ = _plan_for(case)
    universe = tuple(SYMBOLS[i] for i in order)
    px = prices[list(universe)].to_numpy(dtype=float, copy=True)
    qty, tgt = holdings[list(universe)].to_numpy(), targets[list(universe)].to_numpy()
    px[(qty == 0) & (tgt == 0)] = np.nan
    whole = np.array([not (frac or {}).get(s, frac is None) for s in universe])
    aligned = plan_rebalance_aligned(universe, qty, cash, tgt, px, policy, whole)
    assert aligned.orders == plan.orders
    assert aligned.drifted == plan.drifted
    assert (aligned.symbols, aligned.equity, aligned.cash_after) == (
        tuple(plan.current_weights.index), plan.equity, plan.cash_after)
    assert aligned.current.tolist() == plan.current_weights.tolist()
    assert aligned.target.tolist() == plan.target_weights.tolist()


def test_plan_aligned_short_position_raises_naming_symbol() -> None:
    with pytest.raises(UnsupportedPositionError, match="'TLT'"):
        plan_rebalance_aligned(("SPY", "TLT"), np.array([1.0, -2.0]), 100.0,
                               np.array([0.5, 0.5]), np.array([10.0, 20.0]), TIGHT,
                               np.zeros(2, dtype=bool))


def test_plan_aligned_targeted_symbol_without_price_raises_naming_it() -> None:
    with pytest.raises(InputDataError, match="'TLT'"):
        plan_rebalance_aligned(("SPY", "TLT"), np.array([1.0, 0.0]), 100.0,
                               np.array([0.5, 0.5]), np.array([10.0, np.nan]), TIGHT,
                               np.zeros(2, dtype=bool))


def test_planned_orders_are_the_checked_constructors_values_and_refuse_a_bad_price():
    """The planner builds its orders with the checks made once over the arrays: the same
    values the checked constructor builds, and its error (naming the order) on a bad one."""
    universe = ("AAA", "BBB", "CCC")
    qty, px = np.array([2.0, 0.0, 1.5]), [10.0, 20.0, 30.0]
    reasons = ([True, False, True], [5.0, 1.0, 0.0], [0.2] * 3)
    built = _planned_orders(universe, OrderSide.BUY, qty, px, reasons)
    assert built == [PlannedOrder("AAA", OrderSide.BUY, 2.0, 10.0, 20.0, "drift"),
                     PlannedOrder("CCC", OrderSide.BUY, 1.5, 30.0, 45.0, "new_target")]
    for bad in (np.nan, 0.0, np.inf):
        with pytest.raises(ValueError, match="planned order CCC: price"):
            _planned_orders(universe, OrderSide.BUY, qty, [10.0, 20.0, bad], reasons)
    with pytest.raises(ValueError, match="planned order AAA: qty"):
        _planned_orders(universe, OrderSide.BUY, np.array([np.inf, 0.0, 1.5]), px, reasons)


def test_plan_dust_of_a_whole_share_asset_neither_drifts_nor_trades():
    """Half a share of a non-fractionable asset with no target (a corporate action's
    remainder) cannot be sold by any order: its exit was refused on every cycle, and under
    all_when_any it re-traded every other holding each time. It is left alone; a whole
    share of it is still sold."""
    policy = RebalancePolicy(drift_abs=0.05, drift_rel=0.25, mode="all_when_any")
    symbols, px = ("DBC", "SPY"), np.array([20.0, 500.0])
    whole = np.array([True, False])
    at_target = np.array([0.5, 19.7])  # SPY a hair off its 100 %: within its band
    plan = plan_rebalance_aligned(symbols, at_target, 0.0, np.array([0.0, 1.0]), px, policy,
                                  whole)
    assert plan.orders == () and plan.drifted == ()
    plan = plan_rebalance_aligned(symbols, np.array([1.5, 19.7]), 0.0, np.array([0.0, 1.0]),
                                  px, policy, whole)
    assert [(o.symbol, o.side, o.qty) for o in plan.orders if o.symbol == "DBC"] == [
        ("DBC", OrderSide.SELL, 1.5)]  # a full exit still sells what is held


def test_plan_a_nine_decimal_remainder_short_of_a_share_is_dust_float_noise_is_not():
    """0.999999999 of a whole-share asset (a real 9-decimal remainder after its whole
    shares were sold) was not dust: every cycle planned its sale, which the venue cannot
    take. 0.9999999999 (float noise on one share) is still a share to sell."""
    policy = RebalancePolicy(drift_abs=0.05, drift_rel=0.25)
    symbols, px, whole = ("DBC", "SPY"), np.array([20.0, 500.0]), np.array([True, False])
    plan = plan_rebalance_aligned(symbols, np.array([0.999999999, 20.0]), 0.0,
                                  np.array([0.0, 1.0]), px, policy, whole)
    assert plan.orders == ()
    plan = plan_rebalance_aligned(symbols, np.array([0.9999999999, 20.0]), 0.0,
                                  np.array([0.0, 1.0]), px, policy, whole)
    assert ("DBC", OrderSide.SELL, 0.9999999999) in [(o.symbol, o.side, o.qty)
                                                     for o in plan.orders]
