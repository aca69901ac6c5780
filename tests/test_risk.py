"""Tests of the risk step: VaR/CVaR figures against hand-computed values and scipy, and the
limits that scale target weights."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.core.risk import (
    RiskLimits,
    RiskMethod,
    apply_risk_limits,
    historical_cvar,
    historical_var,
    linear_quantile,
    parametric_cvar,
    parametric_var,
    portfolio_returns,
)
from bot.logs import round_for_reading

# Ten daily returns; sorted: −0.05 −0.03 −0.02 −0.01 0.00 0.01 0.01 0.02 0.03 0.04
KNOWN = np.array([-0.05, -0.02, 0.01, 0.03, -0.01, 0.02, 0.00, -0.03, 0.04, 0.01])


def _prices(returns: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Close prices starting at 100 whose simple returns are exactly ``returns``."""
    closes = 100.0 * np.vstack([np.ones(returns.shape[1]), np.cumprod(1 + returns, axis=0)])
    index = pd.bdate_range("2024-01-01", periods=len(closes))
    return pd.DataFrame(closes, index=index, columns=columns)


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """300 days of four assets: an equity, a bond, a near-cash safe asset, gold."""
    rng = np.random.default_rng(42)
    rets = rng.normal([0.0004, 0.0002, 0.0001, 0.0003], [0.012, 0.006, 0.0008, 0.01],
                      size=(300, 4))
    return _prices(rets, ["SPY", "TLT", "SHY", "GLD"])


# --- figures ------------------------------------------------------------------------------

def test_historical_var_known_series_equals_hand_computed_value() -> None:
    # β = 0.8: quantile 0.2 sits at position 0.2 · 9 = 1.8 of the sorted series:
    # −0.03 + 0.8 · (−0.02 − (−0.03)) = −0.022  →  VaR = 0.022
    assert historical_var(KNOWN, 0.8) == pytest.approx(0.022, abs=1e-15)
    # β = 0.9: position 0.9 → −0.05 + 0.9 · 0.02 = −0.032
    assert historical_var(KNOWN, 0.9) == pytest.approx(0.032, abs=1e-15)


def test_historical_cvar_known_series_equals_hand_computed_value() -> None:
    # β = 0.8: returns ≤ −0.022 are −0.05 and −0.03 → CVaR = 0.04
    assert historical_cvar(KNOWN, 0.8) == pytest.approx(0.04, abs=1e-15)
    # β = 0.9: only −0.05 is ≤ −0.032
    assert historical_cvar(KNOWN, 0.9) == pytest.approx(0.05, abs=1e-15)


def test_parametric_var_and_cvar_match_scipy_normal() -> None:
    from scipy.stats import norm  # here: scipy.stats takes ~0.7 s to import

    mu, sigma = KNOWN.mean(), KNOWN.std(ddof=1)
    dist = norm(loc=mu, scale=sigma)
    tail_mean = dist.expect(lambda x: x, ub=dist.ppf(0.05), conditional=True)
    assert parametric_var(KNOWN, 0.95) == pytest.approx(-dist.ppf(0.05), rel=1e-12)
    assert parametric_cvar(KNOWN, 0.95) == pytest.approx(-tail_mean, rel=1e-7)


@pytest.mark.parametrize("fn", [historical_var, historical_cvar, parametric_var, parametric_cvar])
def test_risk_figure_horizon_scales_by_square_root_of_days(
        fn: Callable[..., float]) -> None:
    assert fn(KNOWN, 0.9, horizon_days=4) == pytest.approx(2 * fn(KNOWN, 0.9), rel=1e-15)
    assert fn(KNOWN, 0.9, horizon_days=10) == pytest.approx(math.sqrt(10) * fn(KNOWN, 0.9))


def test_historical_var_nan_return_raises() -> None:
    with pytest.raises(ValueError, match="NaN"):
        historical_var(np.array([0.01, np.nan, -0.02]), 0.95)


def test_portfolio_returns_missing_weight_counts_as_zero_and_cash_earns_nothing() -> None:
    returns = pd.DataFrame({"SPY": [0.01, -0.02], "TLT": [0.03, 0.01]})
    r = portfolio_returns(returns, pd.Series({"SPY": 0.5}))
    assert r.tolist() == pytest.approx([0.005, -0.01])


def test_portfolio_returns_weighted_symbol_without_returns_raises_naming_it() -> None:
    returns = pd.DataFrame({"SPY": [0.01, -0.02]})
    with pytest.raises(ValueError, match="GLD"):
        portfolio_returns(returns, pd.Series({"SPY": 0.5, "GLD": 0.1}))


# --- limits -------------------------------------------------------------------------------

def test_apply_limits_within_limits_leaves_weights_and_reports_var(market: pd.DataFrame) -> None:
    weights = pd.Series({"SPY": 0.6, "TLT": 0.4})
    decision = apply_risk_limits(weights, market, RiskLimits(max_var=0.5, max_weight=0.9))
    assert decision.interventions == ()
    pd.testing.assert_series_equal(decision.weights, weights)
    r = market[["SPY", "TLT"]].pct_change().iloc[-252:].to_numpy() @ np.array([0.6, 0.4])
    assert decision.var == pytest.approx(-np.quantile(r, 0.05), rel=1e-12)
    assert decision.var == decision.var_before and decision.cvar == decision.cvar_before


def test_apply_limits_known_series_var_uses_lookback_returns() -> None:
    prices = _prices(np.column_stack([KNOWN, np.zeros_like(KNOWN)]), ["X", "CASHLIKE"])
    decision = apply_risk_limits(pd.Series({"X": 1.0}), prices,
                                 RiskLimits(confidence=0.8, lookback_days=10))
    assert decision.var == pytest.approx(0.022, abs=1e-12)
    assert decision.cvar == pytest.approx(0.04, abs=1e-12)


@pytest.mark.parametrize("method", ["historical", "parametric"])
def test_apply_limits_var_breach_scales_to_limit_with_cash_remainder(
        market: pd.DataFrame, method: RiskMethod) -> None:
    weights = pd.Series({"SPY": 0.7, "TLT": 0.2, "GLD": 0.1})
    limits = RiskLimits(max_var=0.004, method=method, horizon_days=1)
    decision = apply_risk_limits(weights, market, limits)
    assert decision.var_before > 0.004
    assert decision.var == pytest.approx(0.004, abs=1e-9) and decision.var <= 0.004
    k = decision.weights["SPY"] / 0.7
    pd.testing.assert_series_equal(decision.weights, weights * k)  # proportional, rest cash
    (intervention,) = decision.interventions
    assert intervention.rule == "max_var" and intervention.after["remainder_to"] == "cash"
    assert intervention.before["var"] == decision.var_before


def test_apply_limits_var_breach_ten_day_horizon_meets_horizon_limit(market: pd.DataFrame) -> None:
    weights = pd.Series({"SPY": 0.7, "TLT": 0.3})
    decision = apply_risk_limits(weights, market, RiskLimits(max_var=0.03, horizon_days=10))
    assert decision.var == pytest.approx(0.03, abs=1e-9)


@pytest.mark.parametrize("method", ["historical", "parametric"])
def test_apply_limits_var_breach_with_safe_asset_bisects_to_limit(
        market: pd.DataFrame, method: RiskMethod) -> None:
    weights = pd.Series({"SPY": 0.6, "TLT": 0.3, "SHY": 0.1})
    limits = RiskLimits(max_var=0.004, method=method, safe_asset="SHY")
    decision = apply_risk_limits(weights, market, limits)
    w = decision.weights
    assert decision.var == pytest.approx(0.004, abs=1e-9) and decision.var <= 0.004
    assert w.sum() == pytest.approx(1.0, abs=1e-12)  # the remainder went to SHY, not cash
    assert w["SPY"] / w["TLT"] == pytest.approx(2.0, rel=1e-12)  # risky scaled together
    assert w["SHY"] > 0.1
    assert decision.interventions[-1].after["remainder_to"] == "SHY"
    assert "remainder_cash_weight" not in decision.interventions[-1].after


def test_apply_limits_var_remainder_past_the_safe_assets_max_weight_is_named_cash(
        market: pd.DataFrame) -> None:
    """The safe asset takes the remainder up to its max_weight and the rest is cash: the
    event named the safe asset alone, and the user looked for weight it never got."""
    weights = pd.Series({"SPY": 0.4, "GLD": 0.4, "SHY": 0.2})
    limits = RiskLimits(max_var=0.004, safe_asset="SHY", max_weight=0.45)
    decision = apply_risk_limits(weights, market, limits)
    (intervention,) = decision.interventions
    after = intervention.after
    assert decision.weights["SHY"] == pytest.approx(0.45)
    cash = 1 - decision.weights.sum()
    assert cash > 0.1
    assert after["remainder_to"] == "SHY+cash"
    assert after["remainder_cash_weight"] == pytest.approx(cash, abs=1e-12)
    assert "max_weight 0.45" in str(after["note"])
    # at its max_weight already (the weight cap sent SPY's excess there): all of it is cash
    weights = pd.Series({"SPY": 0.6, "TLT": 0.3, "SHY": 0.1})
    capped = apply_risk_limits(weights, market, RiskLimits(max_var=0.004, safe_asset="SHY",
                                                          max_weight=0.3))
    assert [iv.rule for iv in capped.interventions] == ["max_weight", "max_var"]
    after = capped.interventions[-1].after
    assert capped.weights["SHY"] == pytest.approx(0.3)
    assert after["remainder_to"] == "cash"
    assert after["remainder_cash_weight"] == pytest.approx(
        sum(capped.interventions[0].after["weights"].values()) - capped.weights.sum())


def test_apply_limits_safe_asset_absent_from_weights_is_appended(market: pd.DataFrame) -> None:
    weights = pd.Series({"SPY": 1.0})
    decision = apply_risk_limits(weights, market, RiskLimits(max_var=0.005, safe_asset="SHY"))
    assert list(decision.weights.index) == ["SPY", "SHY"]
    assert decision.var == pytest.approx(0.005, abs=1e-9)


def test_apply_limits_safe_asset_alone_breaching_goes_to_cash(market: pd.DataFrame) -> None:
    weights = pd.Series({"SPY": 0.6, "TLT": 0.4})
    limits = RiskLimits(max_var=0.0005, safe_asset="TLT")  # TLT's own VaR is ~0.01
    decision = apply_risk_limits(weights, market, limits)
    (intervention,) = decision.interventions
    assert intervention.after["remainder_to"] == "cash"
    assert "TLT alone breaches" in str(intervention.after["note"])
    assert decision.var == pytest.approx(0.0005, abs=1e-9)
    assert decision.weights.sum() < 0.1


def test_apply_limits_max_weight_caps_and_sends_excess_to_cash(market: pd.DataFrame) -> None:
    weights = pd.Series({"SPY": 0.7, "TLT": 0.3})
    decision = apply_risk_limits(weights, market, RiskLimits(max_weight=0.4))
    assert decision.weights.to_dict() == {"SPY": 0.4, "TLT": 0.3}
    (intervention,) = decision.interventions
    assert intervention.rule == "max_weight"
    assert intervention.after["excess_to_cash_weight"] == pytest.approx(0.3)
    assert decision.var < decision.var_before
    # the log writes the fraction to 6 digits (as "excess_to_cash" it was rounded as money)
    odd = apply_risk_limits(pd.Series({"SPY": 0.723456, "TLT": 0.276544}), market,
                            RiskLimits(max_weight=0.4)).interventions[0].after
    assert round_for_reading("after", odd)["excess_to_cash_weight"] == 0.323456


def test_apply_limits_max_weight_excess_goes_to_safe_asset_up_to_its_cap(
        market: pd.DataFrame) -> None:
    weights = pd.Series({"SPY": 0.8, "GLD": 0.1, "SHY": 0.1})
    decision = apply_risk_limits(weights, market, RiskLimits(max_weight=0.3, safe_asset="SHY"))
    assert decision.weights.to_dict() == pytest.approx({"SPY": 0.3, "GLD": 0.1, "SHY": 0.3})
    after = decision.interventions[0].after
    assert after["excess_to_safe"] == pytest.approx(0.2)
    assert after["excess_to_cash_weight"] == pytest.approx(0.3)


def test_apply_limits_weighted_symbol_without_full_history_raises_naming_it(
        market: pd.DataFrame) -> None:
    prices = market.copy()
    prices.loc[prices.index[:100], "GLD"] = np.nan  # listed late
    with pytest.raises(ValueError, match="GLD"):
        apply_risk_limits(pd.Series({"SPY": 0.5, "GLD": 0.5}), prices, RiskLimits())


def test_apply_limits_symbol_absent_from_prices_raises_naming_it(market: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="XLE"):
        apply_risk_limits(pd.Series({"SPY": 0.5, "XLE": 0.5}), market, RiskLimits())


def test_apply_limits_zero_weight_short_history_symbol_is_ignored(market: pd.DataFrame) -> None:
    prices = market.copy()
    prices.loc[prices.index[:100], "GLD"] = np.nan
    decision = apply_risk_limits(pd.Series({"SPY": 0.5, "TLT": 0.5, "GLD": 0.0}), prices,
                                 RiskLimits())
    assert decision.var > 0 and list(decision.weights.index) == ["SPY", "TLT", "GLD"]


@pytest.mark.parametrize("field,value", [("max_var", -0.01), ("confidence", 1.0),
                                         ("method", "monte_carlo"), ("max_weight", 1.5),
                                         ("horizon_days", 0)])
def test_risk_limits_impossible_value_raises_naming_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RiskLimits(**{field: value})  # type: ignore[arg-type]


def test_apply_limits_safe_asset_at_its_cap_sends_rest_to_cash(market: pd.DataFrame) -> None:
    weights = pd.Series({"SPY": 0.6, "TLT": 0.4})
    limits = RiskLimits(max_var=0.003, safe_asset="SHY", max_weight=0.6)
    decision = apply_risk_limits(weights, market, limits)
    assert decision.weights["SHY"] == pytest.approx(0.6)  # capped like any other asset
    assert decision.weights.sum() < 1.0  # the rest is cash
    assert decision.var == pytest.approx(0.003, abs=1e-9) and decision.var <= 0.003


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), method=st.sampled_from(["historical", "parametric"]),
       use_safe=st.booleans(), tightness=st.floats(0.05, 0.95))
def test_apply_limits_property_breach_lands_exactly_on_limit(
        seed: int, method: RiskMethod, use_safe: bool, tightness: float) -> None:
    """For random markets and weights, a limit below the current VaR is met to 1e-9 from
    below, weights stay ≥ 0 and sum ≤ 1 (unless the safe asset alone breaches, when the
    answer is all cash scaled to the limit: the same check holds)."""
    rng = np.random.default_rng(seed)
    vols = rng.uniform(0.002, 0.02, 5)
    vols[-1] = 0.0005  # a calm last asset, used as the safe asset
    prices = _prices(rng.standard_t(4, size=(120, 5)) * vols / math.sqrt(2),
                     ["A", "B", "C", "D", "SAFE"])
    weights = pd.Series(rng.dirichlet(np.ones(4)) * rng.uniform(0.5, 1.0), index=list("ABCD"))
    base = RiskLimits(method=method, lookback_days=100)
    var0 = apply_risk_limits(weights, prices, base).var
    assume(var0 > 1e-6)
    limits = RiskLimits(max_var=var0 * tightness, method=method, lookback_days=100,
                        safe_asset="SAFE" if use_safe else None)
    decision = apply_risk_limits(weights, prices, limits)
    assert decision.var == pytest.approx(var0 * tightness, abs=1e-9)
    assert decision.var <= var0 * tightness
    assert (decision.weights >= 0).all() and decision.weights.sum() <= 1 + 1e-12


def test_apply_limits_weights_summing_above_one_raise(market: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="sum to"):
        apply_risk_limits(pd.Series({"SPY": 0.7, "TLT": 0.4}), market, RiskLimits())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=2, max_size=400),
       st.floats(0.001, 0.999))
def test_linear_quantile_equals_numpy_quantile_bit_for_bit(values: list[float], q: float) -> None:
    r = np.array(values)
    assert linear_quantile(r, q) == float(np.quantile(r, q))


@pytest.mark.parametrize(("bad", "fragment"), [(math.nan, "'TLT' is NaN"),
                                               (-0.1, "'TLT' is negative")])
def test_apply_limits_nan_or_negative_weight_raises_naming_it(market: pd.DataFrame, bad: float,
                                                              fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        apply_risk_limits(pd.Series({"SPY": 0.5, "TLT": bad}), market, RiskLimits())
