"""Tests for strategies/tactical.py: momentum, trend_filter, mean_reversion, vol_target,
core_satellite."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies
from strategies.base import StrategyConfigError, StrategyError
from tests.conftest import REPO, invoke_cli, random_walk_prices

SAMPLE_MACRO = REPO / "bot" / "sample_market" / "sample_macro.csv"
SIXTY_FORTY = {"name": "fixed", "params": {"preset": "sixty_forty"}}


def frame(data: dict[str, np.ndarray]) -> pd.DataFrame:
    n = len(next(iter(data.values())))
    return pd.DataFrame(data, index=pd.bdate_range("2023-01-02", periods=n))


def trending(n_days: int, daily_growth: dict[str, float]) -> pd.DataFrame:
    """Prices growing at a constant daily rate per symbol, plus a tiny fixed wiggle so
    volatilities are non-zero."""
    t = np.arange(n_days)
    wiggle = 1e-3 * np.sin(t)
    return frame({s: 100 * np.exp(g * t + wiggle * (i + 1))
                  for i, (s, g) in enumerate(daily_growth.items())})


def test_momentum_equal_picks_top_k_by_trailing_return() -> None:
    prices = trending(300, {"A": 0.001, "B": 0.003, "C": -0.001, "D": 0.002, "E": 0.0})
    w = strategies.create("momentum", k=2, lookback=252).target_weights(prices)
    assert w.to_dict() == {"A": 0.0, "B": 0.5, "C": 0.0, "D": 0.5, "E": 0.0}


def test_momentum_ranks_only_the_lookback_window() -> None:
    # A rallied long ago then fell; B rose only recently: with lookback 20 B wins.
    n = 300
    a = np.r_[np.linspace(100, 300, 250), np.linspace(300, 280, 50)]
    b = np.r_[np.full(250, 100.0), np.linspace(100, 120, 50)]
    prices = frame({"A": a, "B": b})
    assert strategies.create("momentum", k=1, lookback=20).target_weights(prices)["B"] == 1.0
    assert strategies.create("momentum", k=1, lookback=n - 1).target_weights(prices)["A"] == 1.0


def test_momentum_absolute_filter_sends_losers_to_safe_asset() -> None:
    prices = trending(300, {"A": 0.002, "B": -0.001, "C": -0.002, "SHY": 0.0001})
    s = strategies.create("momentum", k=2, lookback=252, absolute_momentum=True,
                          safe_asset="SHY")
    w = s.target_weights(prices)
    # top 2 are A and SHY (both > 0): nothing to move.
    assert w.to_dict() == {"A": 0.5, "B": 0.0, "C": 0.0, "SHY": 0.5}
    s3 = strategies.create("momentum", k=3, lookback=252, absolute_momentum=True,
                           safe_asset="SHY")
    w3 = s3.target_weights(prices)
    assert w3["B"] == 0.0 and w3["A"] == pytest.approx(1 / 3)
    assert w3["SHY"] == pytest.approx(2 / 3)


def test_momentum_absolute_filter_without_safe_asset_holds_cash() -> None:
    prices = trending(300, {"A": 0.002, "B": -0.001, "C": -0.002})
    w = strategies.create("momentum", k=2, lookback=252,
                          absolute_momentum=True).target_weights(prices)
    assert w.to_dict() == {"A": 0.5, "B": 0.0, "C": 0.0}


def test_momentum_threshold_above_zero_drops_weak_winners() -> None:
    prices = trending(300, {"A": 0.002, "B": 0.0002})  # ~66% vs ~5% over 252 days
    w = strategies.create("momentum", k=2, lookback=252, absolute_momentum=True,
                          threshold=0.10).target_weights(prices)
    assert w.to_dict() == {"A": 0.5, "B": 0.0}


def test_momentum_inverse_volatility_weighting_is_one_over_sigma() -> None:
    rng = np.random.default_rng(3)
    n = 300
    r = rng.normal(0.001, 1.0, (n, 3)) * np.array([0.005, 0.01, 0.02])
    r[:, 2] -= 0.01  # C loses: not selected
    prices = frame({s: 100 * np.cumprod(1 + r[:, i]) for i, s in enumerate("ABC")})
    w = strategies.create("momentum", k=2, lookback=252, weighting="inverse_volatility",
                          vol_lookback_days=63).target_weights(prices)
    sd = prices[["A", "B"]].pct_change().iloc[-63:].std()
    expected = (1 / sd) / (1 / sd).sum()
    assert w["C"] == 0.0
    assert w[["A", "B"]].to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-10)


def test_momentum_k_larger_than_universe_holds_all() -> None:
    prices = trending(300, {"A": 0.001, "B": 0.002})
    w = strategies.create("momentum", k=5, lookback=100).target_weights(prices)
    assert w.to_dict() == {"A": 0.5, "B": 0.5}


def test_trend_filter_moves_weight_to_cash_when_below_moving_average() -> None:
    n = 260
    spy = np.r_[np.linspace(100, 200, 230), np.linspace(200, 150, 30)]  # broke down
    ief = np.linspace(100, 110, n)  # steady uptrend
    prices = frame({"SPY": spy, "IEF": ief, "SHY": np.full(n, 100.0)})
    s = strategies.create("trend_filter", base=SIXTY_FORTY, window=200)
    w = s.target_weights(prices)
    assert w.to_dict() == {"SPY": 0.0, "IEF": 0.4, "SHY": 0.0}
    safe = strategies.create("trend_filter", base=SIXTY_FORTY, window=200, safe_asset="SHY")
    assert safe.target_weights(prices).to_dict() == {"SPY": 0.0, "IEF": 0.4, "SHY": 0.6}


def test_trend_filter_above_average_keeps_base_weights() -> None:
    n = 260
    prices = frame({"SPY": np.linspace(100, 200, n), "IEF": np.linspace(100, 110, n)})
    w = strategies.create("trend_filter", base=SIXTY_FORTY).target_weights(prices)
    assert w.to_dict() == {"SPY": 0.6, "IEF": 0.4}


def test_trend_filter_short_history_goes_to_cash() -> None:
    prices = frame({"SPY": np.linspace(100, 200, 150), "IEF": np.linspace(100, 110, 150)})
    w = strategies.create("trend_filter", base=SIXTY_FORTY, window=200).target_weights(prices)
    assert w.sum() == 0.0


def test_trend_filter_missing_safe_asset_raises_naming_it() -> None:
    n = 260
    spy = np.r_[np.linspace(100, 200, 230), np.linspace(200, 150, 30)]
    prices = frame({"SPY": spy, "IEF": np.linspace(100, 110, n)})
    s = strategies.create("trend_filter", base=SIXTY_FORTY, safe_asset="BIL")
    with pytest.raises(StrategyError, match="BIL"):
        s.target_weights(prices)


def test_trend_filter_missing_safe_asset_raises_even_when_all_above_trend() -> None:
    n = 260
    prices = frame({"SPY": np.linspace(100, 200, n), "IEF": np.linspace(100, 110, n)})
    s = strategies.create("trend_filter", base=SIXTY_FORTY, safe_asset="BIL")
    with pytest.raises(StrategyError, match="BIL"):
        s.target_weights(prices)


def test_mean_reversion_tilts_toward_oversold_and_away_from_overbought() -> None:
    n = 40
    flat = np.r_[100 + np.sin(np.arange(n - 1)), 100.0]  # last close near its mean
    down = np.r_[np.full(n - 1, 100.0) + np.sin(np.arange(n - 1)), 90.0]  # z << -1
    up = np.r_[np.full(n - 1, 100.0) + np.sin(np.arange(n - 1)), 110.0]  # z >> +1
    prices = frame({"FLAT": flat, "DOWN": down, "UP": up})
    s = strategies.create("mean_reversion", window=20, entry_z=1.0, tilt=0.5)
    z = s.zscores(prices)
    assert z["DOWN"] < -1 and z["UP"] > 1 and abs(z["FLAT"]) <= 1
    w = s.target_weights(prices)
    # multipliers 1, 1.5, 0.5 on 1/3 each, renormalized to sum 1
    assert w.to_dict() == pytest.approx({"FLAT": 1 / 3, "DOWN": 0.5, "UP": 1 / 6})


def test_mean_reversion_zscore_matches_definition() -> None:
    rng = np.random.default_rng(1)
    prices = frame({"A": 100 + rng.normal(0, 1, 50).cumsum(), "B": 50 + rng.normal(0, 1, 50)})
    z = strategies.create("mean_reversion", window=20).zscores(prices)
    win = prices.iloc[-20:]
    expected = (win.iloc[-1] - win.mean()) / win.std(ddof=1)
    assert z.to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-12)


def make_random_prices(n_days: int, vols: list[float], seed: int) -> tuple[pd.DataFrame,
                                                                            np.ndarray]:
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(np.array([[1.0, 0.3, 0.1], [0.3, 1.0, -0.2],
                                        [0.1, -0.2, 1.0]]))
    r = (rng.normal(0, 1, (n_days, 3)) @ chol.T) * np.array(vols)
    prices = frame({s: 100 * np.cumprod(1 + r[:, i]) for i, s in enumerate("ABC")})
    return prices, r


def test_vol_target_scales_to_target_on_known_covariance() -> None:
    prices, r = make_random_prices(200, [0.01, 0.015, 0.02], seed=5)
    cov = np.cov(r[-63:], rowvar=False, ddof=1) * 252  # returns we generated
    base_w = np.full(3, 1 / 3)
    base_vol = math.sqrt(base_w @ cov @ base_w)
    target = base_vol / 2
    s = strategies.create("vol_target", base="equal_weight", target_volatility=target,
                          vol_lookback_days=63)
    w = s.target_weights(prices).to_numpy()
    assert math.sqrt(w @ cov @ w) == pytest.approx(target, rel=1e-9)
    assert w.sum() == pytest.approx(0.5, rel=1e-9)


def test_vol_target_never_levers_up() -> None:
    prices, _ = make_random_prices(200, [0.001, 0.001, 0.001], seed=6)
    w = strategies.create("vol_target", base="equal_weight",
                          target_volatility=0.5).target_weights(prices)
    assert w.to_numpy() == pytest.approx(np.full(3, 1 / 3))


def test_vol_target_lookback_covers_base_window() -> None:
    s = strategies.create("vol_target", base={"name": "trend_filter",
                                              "params": {"base": SIXTY_FORTY, "window": 200}})
    assert s.lookback_days == 200
    assert strategies.create("vol_target", base="equal_weight").lookback_days == 64


def test_core_satellite_blends_sleeves_by_core_weight() -> None:
    prices = trending(300, {"SPY": 0.001, "IEF": 0.0005, "GLD": 0.002, "TLT": -0.001})
    s = strategies.create("core_satellite", core=SIXTY_FORTY,
                          satellite={"name": "momentum", "params": {"k": 1, "lookback": 252}},
                          core_weight=0.8)
    w = s.target_weights(prices)
    assert w.to_dict() == pytest.approx({"SPY": 0.48, "IEF": 0.32, "GLD": 0.2, "TLT": 0.0})
    assert s.lookback_days == 253


@pytest.mark.parametrize("name, params", [
    ("momentum", {"lookback_days": 100}),
    ("trend_filter", {"base": "equal_weight", "windw": 100}),
    ("mean_reversion", {"z": 1}),
    ("vol_target", {"base": "equal_weight", "target_vol": 0.1}),
    ("core_satellite", {"core": "equal_weight", "satellite": "equal_weight", "weight": 0.5}),
])
def test_create_unknown_param_raises_naming_it(name: str, params: dict) -> None:
    bad = next(k for k in params if k not in ("base", "core", "satellite"))
    with pytest.raises(StrategyConfigError, match=bad):
        strategies.create(name, **params)


@pytest.mark.parametrize("name, params, key", [
    ("momentum", {"k": 0}, "k"),
    ("momentum", {"weighting": "cap"}, "weighting"),
    ("momentum", {"safe_asset": 3, "absolute_momentum": True}, "safe_asset"),
    ("momentum", {"safe_asset": "SHY"}, "absolute_momentum"),
    ("trend_filter", {}, "base"),
    ("trend_filter", {"base": {"name": "nope"}}, "base"),
    ("trend_filter", {"base": {"name": "fixed", "params": {"preset": "x"}}}, "preset"),
    ("mean_reversion", {"tilt": 1.5}, "tilt"),
    ("vol_target", {"base": "equal_weight", "target_volatility": 0}, "target_volatility"),
    ("core_satellite", {"core": "equal_weight", "satellite": "equal_weight",
                        "core_weight": 1.2}, "core_weight"),
    ("core_satellite", {"core": "equal_weight"}, "satellite"),
])
def test_create_invalid_param_raises_naming_key(name: str, params: dict, key: str) -> None:
    with pytest.raises(StrategyConfigError, match=key):
        strategies.create(name, **params)


@pytest.mark.parametrize("name, params", [
    ("momentum", {"k": 2, "lookback": 100, "weighting": "inverse_volatility"}),
    ("trend_filter", {"base": "equal_weight", "window": 50}),
    ("mean_reversion", {}),
    ("vol_target", {"base": "equal_weight", "target_volatility": 0.05}),
    ("core_satellite", {"core": "equal_weight", "satellite": "momentum"}),
])
def test_tactical_prices_after_asof_change_nothing(name: str, params: dict) -> None:
    prices, _ = make_random_prices(400, [0.01, 0.015, 0.02], seed=9)
    asof = prices.index[299]
    changed = prices.copy()
    changed.iloc[300:] = changed.iloc[300:] * np.linspace(0.5, 2.0, 100)[:, None]
    s = strategies.create(name, **params)
    pd.testing.assert_series_equal(s.target_weights(prices.loc[:asof]),
                                   s.target_weights(changed.loc[:asof]))


def test_vol_target_ledoit_wolf_hits_target_on_shrunk_covariance() -> None:
    from sklearn.covariance import ledoit_wolf

    prices, r = make_random_prices(200, [0.01, 0.015, 0.02], seed=7)
    cov = ledoit_wolf(r[-63:])[0] * 252  # Ledoit & Wolf 2004, as in sklearn
    s = strategies.create("vol_target", base="equal_weight", target_volatility=0.05,
                          covariance="ledoit_wolf")
    w = s.target_weights(prices).to_numpy()
    assert math.sqrt(w @ cov @ w) == pytest.approx(0.05, rel=1e-6)


def test_wrapper_accepts_built_strategy_object_as_base() -> None:
    base = strategies.create("fixed", weights={"A": 0.5, "B": 0.5})
    prices, _ = make_random_prices(300, [0.01, 0.01, 0.01], seed=8)
    w = strategies.create("trend_filter", base=base, window=50).target_weights(prices)
    assert set(w.index) == {"A", "B", "C"} and w["C"] == 0.0


def test_momentum_lookback_days_covers_ranking_and_vol_windows() -> None:
    assert strategies.create("momentum", lookback=126).lookback_days == 127
    assert strategies.create("momentum", lookback=20, weighting="inverse_volatility",
                             vol_lookback_days=63).lookback_days == 64


WRAPPED = [
    ("momentum", {"k": 2, "lookback": 60, "absolute_momentum": True, "safe_asset": "C"}),
    ("momentum", {"k": 2, "lookback": 60, "weighting": "inverse_volatility"}),
    ("trend_filter", {"base": "inverse_volatility", "window": 50, "safe_asset": "C"}),
    ("mean_reversion", {"window": 10, "entry_z": 0.5, "tilt": 1.0}),
    ("vol_target", {"base": "equal_weight", "target_volatility": 0.05}),
    ("core_satellite", {"core": {"name": "fixed", "params": {"weights": {"A": 0.6, "B": 0.4}}},
                        "satellite": {"name": "momentum", "params": {"k": 1, "lookback": 60}},
                        "core_weight": 0.3}),
]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), vol=st.floats(0.001, 0.05),
       drift=st.floats(-0.005, 0.005))
def test_tactical_weights_are_long_only_and_fully_bounded(seed: int, vol: float,
                                                         drift: float) -> None:
    rng = np.random.default_rng(seed)
    r = drift + vol * rng.normal(0, 1, (150, 3))
    prices = frame({s: 100 * np.cumprod(1 + np.clip(r[:, i], -0.9, None))
                    for i, s in enumerate("ABC")})
    for name, params in WRAPPED:
        w = strategies.create(name, **params).target_weights(prices)
        assert list(w.index) == ["A", "B", "C"]
        assert (w >= 0).all() and w.sum() <= 1 + 1e-9, (name, w.to_dict())


# A nested base with turnover settings: the wrappers run it without the portfolio's current
# weights and change its weights, so max_turnover / turnover_penalty would be silently
# ignored (vol_target over efficient_risk{max_turnover 0.2} traded as much as with no cap).
CAPPED = {"name": "min_variance", "params": {"max_turnover": 0.1}}
PENALIZED = {"name": "efficient_risk", "params": {"turnover_penalty": 0.01}}
WRAPPED_BASES: list[tuple[str, dict, str]] = [
    ("trend_filter", {}, "base"),
    ("mean_reversion", {}, "base"),
    ("vol_target", {}, "base"),
    ("core_satellite", {"satellite": "equal_weight"}, "core"),
    ("core_satellite", {"core": "equal_weight"}, "satellite"),
    ("sector_cap", {"sectors": {"SPY": "eq"}, "sector_limits": {"eq": 0.5}}, "base"),
    ("screen", {"scores": {"SPY": 1.0}, "min_score": 0.0}, "base"),
    ("macro_regime", {"macro_file": str(SAMPLE_MACRO), "tilt": 0.5}, "base"),
]


@pytest.mark.parametrize("nested", [CAPPED, PENALIZED], ids=["max_turnover", "turnover_penalty"])
@pytest.mark.parametrize(("wrapper", "params", "key"), WRAPPED_BASES,
                         ids=[f"{w}.{k}" for w, _, k in WRAPPED_BASES])
def test_wrapper_refuses_turnover_settings_of_its_nested_strategy(
        wrapper: str, params: dict, key: str, nested: dict) -> None:
    param = next(iter(nested["params"]))
    with pytest.raises(StrategyConfigError) as err:
        strategies.create(wrapper, **{**params, key: nested})
    message = str(err.value)
    assert message.startswith(f"{key}.params.{param}: a strategy nested in {wrapper} "), message
    assert "would be ignored" in message and "max_turnover_per_cycle" in message


def test_wrapper_refuses_turnover_settings_of_a_built_nested_strategy() -> None:
    """The Python API's built strategy object is checked as a config spec is."""
    built = strategies.create("max_sharpe", max_turnover=0.3)
    with pytest.raises(StrategyConfigError, match=r"^base\.params\.max_turnover: .* vol_target"):
        strategies.create("vol_target", base=built)


def test_wrapper_accepts_a_nested_optimizer_without_turnover_settings() -> None:
    """An explicit zero penalty changes nothing, so it is not refused."""
    for base in ("min_variance", {"name": "min_variance", "params": {"turnover_penalty": 0.0}}):
        assert strategies.create("vol_target", base=base).name == "vol_target"


def test_regime_strategy_keeps_its_turnover_cap() -> None:
    """regime_kmeans returns its nested strategy's weights as they are, so it passes the
    current weights on and the nested max_turnover holds against them."""
    prices = random_walk_prices(["A", "B", "C", "D"], 700, seed=3)
    now = pd.Series({"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1})
    capped = strategies.create("regime_kmeans", lookback_days=500, regime_strategy=CAPPED)
    free = strategies.create("regime_kmeans", lookback_days=500, regime_strategy="min_variance")
    assert float((free.target_weights(prices, now) - now).abs().sum()) > 0.2
    assert float((capped.target_weights(prices, now) - now).abs().sum()) <= 0.1 + 1e-6


def test_check_config_names_the_nested_turnover_key(write_config) -> None:
    config = write_config({"strategy": {"name": "vol_target", "params": {
        "base": {"name": "efficient_risk", "params": {"max_turnover": 0.2}}}}})
    result = invoke_cli("check-config", "--config", str(config))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "base.params.max_turnover: a strategy nested in vol_target" in result.stderr


def test_wrapper_refuses_turnover_settings_nested_deeper() -> None:
    """regime_kmeans passes the weights on, but a wrapper over it does not: refused, naming
    the whole key path."""
    regime = {"name": "regime_kmeans", "params": {"regime_strategy": CAPPED}}
    with pytest.raises(StrategyConfigError, match=r"^base\.params\.regime_strategy\.params\."
                                                  r"max_turnover: a strategy nested in vol_target"):
        strategies.create("vol_target", base=regime)
