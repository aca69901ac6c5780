"""The optimizing strategies through the registry: what a user configuring them sees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import strategies
from strategies.base import StrategyConfigError, StrategyError
from tests.conftest import capture_logs

OPTIMIZERS = ["min_variance", "max_sharpe", "mean_variance", "efficient_risk", "risk_parity",
              "hrp", "black_litterman"]
PARAMS = {"efficient_risk": {"target_volatility": 0.2}, "mean_variance": {"risk_aversion": 20.0}}


def prices_frame(n_assets: int = 6, n_days: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factor = rng.normal(0, 0.008, size=(n_days, 1))
    rets = factor * rng.uniform(0.5, 1.5, n_assets) + rng.normal(0.0005, 0.01,
                                                               (n_days, n_assets))
    return pd.DataFrame(100 * np.cumprod(1 + rets, axis=0),
                        index=pd.bdate_range("2021-01-04", periods=n_days),
                        columns=[f"S{i}" for i in range(n_assets)])


def build(name: str, **params) -> strategies.Strategy:
    return strategies.create(name, **{**PARAMS.get(name, {}), **params})


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_default_params_fully_invested_long_only(name: str) -> None:
    w = build(name).target_weights(prices_frame())
    assert list(w.index) == [f"S{i}" for i in range(6)]
    assert w.sum() == pytest.approx(1.0, abs=1e-9) and (w >= 0).all()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_prices_after_asof_change_nothing(name: str) -> None:
    """No look-ahead: the weights as of row k depend only on rows ≤ k, so rewriting every
    later price (and the rows before the lookback window) leaves them unchanged."""
    prices = prices_frame()
    asof = 300
    strategy = build(name, lookback_days=120)
    before = strategy.target_weights(prices.iloc[: asof + 1])
    tampered = prices.copy()
    tampered.iloc[asof + 1:] *= np.random.default_rng(9).uniform(0.5, 2.0,
                                                                 tampered.iloc[asof + 1:].shape)
    tampered.iloc[: asof - 121] *= 3.0
    after = strategy.target_weights(tampered.iloc[: asof + 1])
    pd.testing.assert_series_equal(before, after, rtol=0, atol=0)
    moved = strategy.target_weights(tampered.iloc[: asof + 2])
    assert not moved.equals(before)  # the test can see a change when there is one


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_short_history_asset_gets_zero_with_warning(name: str) -> None:
    prices = prices_frame()
    prices.iloc[:-30, 1] = np.nan
    with capture_logs() as logs:
        w = build(name, lookback_days=100).target_weights(prices)
    assert w["S1"] == 0.0 and w.sum() == pytest.approx(1.0, abs=1e-9)
    assert any(e["event"] == "asset_excluded" and e["symbol"] == "S1" for e in logs)


@pytest.mark.parametrize("name", ["min_variance", "max_sharpe", "mean_variance",
                                  "efficient_risk", "black_litterman"])
def test_optimizer_infeasible_bounds_error_names_constraint(name: str) -> None:
    strategy = build(name, bounds=[0.0, 0.1])
    with pytest.raises(StrategyError, match=r"upper bounds sum to 0.6 .*sum\(w\) = 1"):
        strategy.target_weights(prices_frame())


@pytest.mark.parametrize("name", ["min_variance", "max_sharpe", "mean_variance",
                                  "efficient_risk", "black_litterman"])
def test_optimizer_bounds_respected_global_and_per_symbol(name: str) -> None:
    w = build(name, bounds=[0.05, 0.3]).target_weights(prices_frame())
    assert (w >= 0.05 - 1e-9).all() and (w <= 0.3 + 1e-9).all()
    w = build(name, bounds={"S0": [0.4, 0.5], "S2": [0.0, 0.0]}).target_weights(prices_frame())
    assert 0.4 - 1e-9 <= w["S0"] <= 0.5 + 1e-9 and w["S2"] == 0.0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_more_assets_than_days_warns_not_crashes(name: str) -> None:
    prices = prices_frame(n_assets=30, n_days=40)
    with capture_logs() as logs:
        w = build(name, lookback_days=20, **({"target_volatility": 1.0}
                                            if name == "efficient_risk" else {})
                  ).target_weights(prices)
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert any(e["event"] == "covariance_repaired" for e in logs)


def test_max_sharpe_no_asset_beats_risk_free_falls_back_to_min_variance() -> None:
    prices = prices_frame()
    with capture_logs() as logs:
        # the highest rate allowed, above every asset's mean return here (0.39)
        w = build("max_sharpe", risk_free_rate=0.5).target_weights(prices)
    pd.testing.assert_series_equal(w, build("min_variance").target_weights(prices))
    assert any(e["event"] == "max_sharpe_fallen_back" and e["log_level"] == "warning"
               for e in logs)


@pytest.mark.parametrize("expected_returns", ["mean", "geometric", "ewma", "equilibrium"])
@pytest.mark.parametrize("covariance", ["sample", "ledoit_wolf", "ewma"])
def test_max_sharpe_every_estimator_combination_runs(expected_returns: str,
                                                     covariance: str) -> None:
    w = build("max_sharpe", expected_returns=expected_returns, covariance=covariance,
              returns_span_days=30, cov_half_life_days=40).target_weights(prices_frame())
    assert w.sum() == pytest.approx(1.0, abs=1e-9)


def test_mean_variance_equilibrium_returns_same_delta_gives_market_weights() -> None:
    market = {"S0": 0.3, "S1": 0.2, "S2": 0.2, "S3": 0.1, "S4": 0.1, "S5": 0.1}
    w = build("mean_variance", expected_returns="equilibrium", market_weights=market,
              equilibrium_risk_aversion=3.0, risk_aversion=3.0).target_weights(prices_frame())
    np.testing.assert_allclose(w.to_numpy(), list(market.values()), atol=1e-10)


def test_risk_parity_budgets_by_symbol_tilt_risk() -> None:
    prices = prices_frame()
    strategy = build("risk_parity", budgets={"S0": 5.0})  # unlisted symbols: budget 1
    w = strategy.target_weights(prices).to_numpy()
    rets = prices.pct_change().iloc[-252:]
    cov = rets.cov().to_numpy()
    rc = w * (cov @ w)
    assert rc[0] / rc[1:].mean() == pytest.approx(5.0, rel=1e-8)


@pytest.mark.parametrize("name, params, key", [
    ("min_variance", {"bounds": [0.5, 0.2]}, "bounds"),
    ("min_variance", {"bounds": {"S0": [0, 2]}}, "bounds.S0"),
    ("mean_variance", {"risk_aversion": 0}, "risk_aversion"),
    ("max_sharpe", {"covariance": "robust"}, "covariance"),
    ("efficient_risk", {"target_volatility": -1}, "target_volatility"),
    ("hrp", {"linkage": "centroid"}, "linkage"),
    ("risk_parity", {"budgets": {"S0": -1}}, "budgets.S0"),
    ("min_variance", {"risk_aversion": 1}, "unknown parameter"),
])
def test_optimizer_bad_params_config_error_names_key(name: str, params: dict,
                                                     key: str) -> None:
    with pytest.raises(StrategyConfigError, match=key):
        strategies.create(name, **params)
