"""Tests for strategies/static.py: fixed (presets), equal_weight, inverse_volatility."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import strategies
from strategies.base import StrategyConfigError, StrategyError
from strategies.static import PRESETS

UNIVERSE = ["SPY", "TLT", "IEF", "GLD", "DBC", "SHY", "VNQ", "EFA"]


def make_prices(n_days: int = 120, columns: list[str] | None = None, seed: int = 0,
                vols: list[float] | None = None) -> pd.DataFrame:
    cols = columns or UNIVERSE
    rng = np.random.default_rng(seed)
    sig = np.asarray(vols if vols is not None else [0.01] * len(cols))
    rets = rng.normal(0.0, 1.0, (n_days, len(cols))) * sig
    idx = pd.bdate_range("2024-01-02", periods=n_days)
    return pd.DataFrame(100 * np.exp(np.cumsum(rets, axis=0)), index=idx, columns=cols)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_fixed_preset_weights_sum_to_one_on_named_symbols(preset: str) -> None:
    w = strategies.create("fixed", preset=preset).target_weights(make_prices())
    assert math.isclose(w.sum(), 1.0, abs_tol=1e-12)
    held = set(w.index[w > 0])
    assert held == set(PRESETS[preset])
    assert list(w.index) == UNIVERSE


def test_fixed_all_weather_matches_dalio_retail_mix() -> None:
    w = strategies.create("fixed", preset="all_weather").target_weights(make_prices())
    assert w[["SPY", "TLT", "IEF", "GLD", "DBC"]].tolist() == [0.30, 0.40, 0.15, 0.075, 0.075]


def test_fixed_custom_weights_below_one_leave_cash() -> None:
    w = strategies.create("fixed", weights={"SPY": 0.5, "GLD": 0.2}).target_weights(
        make_prices())
    assert w["SPY"] == 0.5 and w["GLD"] == 0.2
    assert math.isclose(w.sum(), 0.7)


def test_fixed_symbol_missing_from_prices_raises_naming_symbol() -> None:
    s = strategies.create("fixed", weights={"SPY": 0.5, "QQQ": 0.5})
    with pytest.raises(StrategyError, match="QQQ"):
        s.target_weights(make_prices())


def test_fixed_symbol_unpriced_on_asof_date_raises_naming_symbol() -> None:
    prices = make_prices()
    prices.iloc[-1, prices.columns.get_loc("IEF")] = np.nan
    with pytest.raises(StrategyError, match="IEF"):
        strategies.create("fixed", preset="sixty_forty").target_weights(prices)


@pytest.mark.parametrize("params, key", [
    ({}, "exactly one"),
    ({"preset": "sixty_forty", "weights": {"SPY": 1.0}}, "exactly one"),
    ({"preset": "ninety_ten"}, "ninety_ten"),
    ({"weights": {"SPY": 0.7, "TLT": 0.5}}, "sum"),
    ({"weights": {"SPY": -0.1}}, "SPY"),
    ({"weights": {"SPY": 1.5}}, "SPY"),
])
def test_fixed_invalid_params_raise_config_error(params: dict, key: str) -> None:
    with pytest.raises(StrategyConfigError, match=key):
        strategies.create("fixed", **params)


@pytest.mark.parametrize("name", ["fixed", "equal_weight", "inverse_volatility"])
def test_create_unknown_param_raises_naming_it(name: str) -> None:
    with pytest.raises(StrategyConfigError, match="bogus_key"):
        strategies.create(name, bogus_key=1)


def test_equal_weight_skips_assets_unpriced_on_asof_row() -> None:
    prices = make_prices(columns=["A", "B", "C", "D"])
    prices.iloc[-1, 3] = np.nan
    w = strategies.create("equal_weight").target_weights(prices)
    assert w[["A", "B", "C"]].tolist() == pytest.approx([1 / 3] * 3)
    assert w["D"] == 0.0


def test_inverse_volatility_matches_closed_form() -> None:
    prices = make_prices(n_days=200, columns=["A", "B", "C"], vols=[0.005, 0.01, 0.02])
    w = strategies.create("inverse_volatility", lookback_days=63).target_weights(prices)
    rets = prices.pct_change().iloc[-63:]
    inv = 1.0 / rets.std(ddof=1)
    expected = inv / inv.sum()
    pd.testing.assert_series_equal(w, expected, check_names=False, rtol=1e-10)
    assert w["A"] > w["B"] > w["C"]


def test_inverse_volatility_short_history_asset_gets_zero() -> None:
    prices = make_prices(n_days=100, columns=["A", "B", "C"])
    prices.iloc[:60, 2] = np.nan  # C listed only 40 days ago
    w = strategies.create("inverse_volatility", lookback_days=63).target_weights(prices)
    assert w["C"] == 0.0
    assert math.isclose(w.sum(), 1.0)


@pytest.mark.parametrize("bad", [1, 0, 2.5, "63", True])
def test_inverse_volatility_bad_lookback_raises_config_error(bad: object) -> None:
    with pytest.raises(StrategyConfigError, match="lookback_days"):
        strategies.create("inverse_volatility", lookback_days=bad)


def test_static_strategies_ignore_prices_after_asof() -> None:
    prices = make_prices(n_days=150)
    asof = prices.index[99]
    changed = prices.copy()
    changed.iloc[100:] *= 3.0
    for name, params in [("fixed", {"preset": "endowment"}), ("equal_weight", {}),
                         ("inverse_volatility", {})]:
        s = strategies.create(name, **params)
        pd.testing.assert_series_equal(s.target_weights(prices.loc[:asof]),
                                       s.target_weights(changed.loc[:asof]))


def test_equal_weight_no_price_on_asof_row_raises_naming_date() -> None:
    prices = make_prices(columns=["A", "B"])
    prices.iloc[-1] = np.nan
    with pytest.raises(StrategyError, match=str(prices.index[-1].date())):
        strategies.create("equal_weight").target_weights(prices)


def test_fixed_caller_editing_the_weights_never_changes_the_next_answer() -> None:
    prices = make_prices(columns=["SPY", "IEF", "GLD"])
    strategy = strategies.create("fixed", weights={"SPY": 0.6, "IEF": 0.4})
    first = strategy.target_weights(prices)
    first["SPY"] = 0.0
    first.iloc[1] = 1.0
    again = strategy.target_weights(prices)
    assert again.to_dict() == {"SPY": 0.6, "IEF": 0.4, "GLD": 0.0}
