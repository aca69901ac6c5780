"""Estimators: checked against their definitions and against sklearn/pandas/numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategies.base import StrategyConfigError, StrategyError
from strategies.covariance_repair import (
    LOADING_FLOORS,
    PSD_RELATIVE_FLOOR,
    factor_covariance,
    repair_covariance,
)
from strategies.estimators import (
    ANNUALIZATION_DAYS,
    EstimatorSettings,
    ewma_covariance,
    ewma_returns,
    geometric_returns,
    ledoit_wolf_covariance,
    mean_returns,
    sample_covariance,
    simple_returns,
)
from strategies.market_portfolio import equilibrium_returns
from strategies.mean_variance import optimize_mean_variance
from tests.conftest import capture_logs


def _returns(n_days: int = 300, n_assets: int = 6, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(n_assets, n_assets)) * 0.01
    data = rng.normal(size=(n_days, n_assets)) @ mix + 0.0004
    return pd.DataFrame(data, columns=[f"S{i}" for i in range(n_assets)],
                        index=pd.bdate_range("2021-01-04", periods=n_days))


def _prices(returns: pd.DataFrame) -> pd.DataFrame:
    return 100.0 * (1.0 + returns).cumprod()


def _sklearn_ledoit_wolf(returns: np.ndarray) -> np.ndarray:
    """sklearn's Ledoit-Wolf Σ (daily), imported here: sklearn takes ~1 s to import, which
    every test worker would pay at collection."""
    from sklearn.covariance import ledoit_wolf

    return ledoit_wolf(returns)[0]


def test_ledoit_wolf_same_returns_matches_sklearn() -> None:
    rets = _returns(n_days=120, n_assets=30)
    expected = _sklearn_ledoit_wolf(rets.to_numpy())
    ours = ledoit_wolf_covariance(rets).to_numpy()
    np.testing.assert_allclose(ours, expected * ANNUALIZATION_DAYS, rtol=1e-12, atol=1e-15)


def test_ledoit_wolf_more_assets_than_days_is_positive_definite() -> None:
    rets = _returns(n_days=40, n_assets=60)
    cov = ledoit_wolf_covariance(rets).to_numpy()
    np.testing.assert_allclose(cov, _sklearn_ledoit_wolf(rets.to_numpy()) * 252, rtol=1e-12)
    assert np.linalg.eigvalsh(cov).min() > 0


def test_sample_covariance_definition_ddof1_annualized() -> None:
    rets = _returns()
    x = rets.to_numpy()
    expected = (x - x.mean(0)).T @ (x - x.mean(0)) / (len(x) - 1) * 252
    np.testing.assert_allclose(sample_covariance(rets).to_numpy(), expected, rtol=1e-12)


def test_geometric_returns_constant_growth_equals_cagr() -> None:
    daily = 0.001
    rets = pd.DataFrame({"A": [daily] * 504, "B": [0.0] * 504})
    cagr = geometric_returns(rets)
    assert cagr["A"] == pytest.approx((1 + daily) ** 252 - 1, rel=1e-12)
    assert cagr["B"] == pytest.approx(0.0, abs=1e-15)


def test_ewma_returns_match_pandas_ewm_span() -> None:
    rets = _returns()
    expected = rets.ewm(span=20, adjust=True).mean().iloc[-1] * 252
    pd.testing.assert_series_equal(ewma_returns(rets, 20), expected, check_names=False,
                                   rtol=1e-12)


def test_ewma_covariance_infinite_half_life_equals_sample() -> None:
    rets = _returns()
    np.testing.assert_allclose(ewma_covariance(rets, 1e12).to_numpy(),
                               sample_covariance(rets).to_numpy(), rtol=1e-8)


def test_ewma_covariance_recent_shock_weighs_more_than_old() -> None:
    rets = _returns(n_days=200)
    shocked_recent, shocked_old = rets.copy(), rets.copy()
    shocked_recent.iloc[-5, 0] += 0.2
    shocked_old.iloc[5, 0] += 0.2
    base = ewma_covariance(rets, 20).iloc[0, 0]
    recent = ewma_covariance(shocked_recent, 20).iloc[0, 0] - base
    old = ewma_covariance(shocked_old, 20).iloc[0, 0] - base
    assert recent > 100 * abs(old)


def test_equilibrium_returns_reverse_optimize_to_market_weights() -> None:
    cov = sample_covariance(_returns()).to_numpy()
    w_mkt = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    pi = equilibrium_returns(cov, w_mkt, 3.0)
    w = optimize_mean_variance(pi, cov, 3.0, np.zeros(6), np.ones(6))
    np.testing.assert_allclose(w, w_mkt, atol=1e-10)


def test_simple_returns_short_history_asset_excluded_with_warning() -> None:
    prices = _prices(_returns())
    prices.iloc[:-50, 2] = np.nan
    with capture_logs() as logs:
        rets = simple_returns(prices, 100)
    assert "S2" not in rets.columns and len(rets) == 100
    assert any(e["event"] == "asset_excluded" and e["symbol"] == "S2" for e in logs)


def test_simple_returns_one_usable_asset_raises_naming_window() -> None:
    prices = _prices(_returns(n_assets=2))
    prices.iloc[:-5, 1] = np.nan
    with pytest.raises(StrategyError, match="fewer than 2 assets"):
        simple_returns(prices, 50)


def test_repair_covariance_positive_definite_returned_unchanged() -> None:
    cov = sample_covariance(_returns()).to_numpy()
    with capture_logs() as logs:
        assert repair_covariance(cov) is cov
    assert logs == []


def test_repair_covariance_indefinite_warns_and_returns_positive_definite() -> None:
    cov = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    assert np.linalg.eigvalsh(cov).min() < 0
    with capture_logs() as logs:
        fixed = repair_covariance(cov)
    assert np.linalg.eigvalsh(fixed).min() > 0
    assert np.allclose(fixed, fixed.T)
    assert [e["event"] for e in logs] == ["covariance_repaired"]


def test_repair_covariance_singular_sample_covariance_warns() -> None:
    cov = sample_covariance(_returns(n_days=10, n_assets=20)).to_numpy()
    with capture_logs() as logs:
        fixed = repair_covariance(cov)
    np.linalg.cholesky(fixed)
    assert logs[0]["event"] == "covariance_repaired" and logs[0]["log_level"] == "warning"


@pytest.mark.parametrize("gram", [False, True])
# The trailing block's Schur complement from the leading columns (2 of 16: few flops), or
# from the trailing factor itself (lauum) with that block as large as the leading one or
# smaller.
@pytest.mark.parametrize(("n_assets", "n_base"), [(16, 2), (8, 4), (8, 6)])
def test_factor_covariance_near_copies_loads_only_the_diagonal_and_factors_it(
        gram: bool, n_assets: int, n_base: int) -> None:
    """The last assets are near-copies of the first ones (σ_diff 1e-8/day): the check's
    factorization ends with tiny pivots, the repair adds at most LOADING_FLOORS floors to
    the diagonal (none before the first tiny pivot), and the factor returned is the
    repaired matrix's."""
    rng = np.random.default_rng(9)
    base = rng.normal(0.0, 0.01, (400, n_base))
    copies = n_assets - n_base
    x = np.hstack([base, base[:, np.arange(copies) % n_base]
                   + rng.normal(0.0, 1e-8, (400, copies))])
    xc = x - x.mean(axis=0)
    cov = (xc.T @ xc) * (ANNUALIZATION_DAYS / 399)
    original = cov.copy()
    floor = PSD_RELATIVE_FLOOR * float(np.mean(np.diag(cov)))
    with capture_logs() as logs:
        repaired, chol = factor_covariance(cov, [f"S{i}" for i in range(n_assets)], gram=gram)
    assert [e["event"] for e in logs] == ["covariance_repaired"]
    added = repaired - original
    assert np.array_equal(added, np.diag(np.diag(added)))  # the diagonal only
    assert (np.diag(added)[:n_base] == 0).all()  # the leading assets' pivots were fine
    assert (np.diag(added) <= LOADING_FLOORS * floor * (1 + 1e-5)).all()  # Σ_ii + s − Σ_ii
    np.testing.assert_allclose(chol @ chol.T, repaired, rtol=0, atol=1e-15 * np.abs(cov).max())
    assert float(np.min(np.diag(chol))) ** 2 >= floor


def _near_copy_gram(n_assets: int, n_base: int, seed: int = 9) -> np.ndarray:
    """An annual sample covariance whose last assets are near-copies of the first ones."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 0.01, (400, n_base))
    copies = n_assets - n_base
    x = np.hstack([base, base[:, np.arange(copies) % n_base]
                   + rng.normal(0.0, 1e-8, (400, copies))])
    xc = x - x.mean(axis=0)
    return (xc.T @ xc) * (ANNUALIZATION_DAYS / 399)


@pytest.mark.parametrize(("n_assets", "n_base"), [(16, 2), (8, 4), (8, 6), (60, 30)])
def test_factor_covariance_ill_factor_false_same_repair_and_ill_verdict(
        n_assets: int, n_base: int) -> None:
    """ill_factor False (the optimizers' call) repairs to the very same matrix, with the
    same log, and hands over a factor on which ``qp.ill_conditioned`` says the same."""
    from strategies.qp import ill_conditioned

    cov = _near_copy_gram(n_assets, n_base)
    symbols = [f"S{i}" for i in range(n_assets)]
    with capture_logs() as full_logs:
        full, full_chol = factor_covariance(cov.copy(), symbols, gram=True)
    with capture_logs() as logs:
        repaired, chol = factor_covariance(cov.copy(), symbols, gram=True, ill_factor=False)
    assert logs == full_logs and [e["event"] for e in logs] == ["covariance_repaired"]
    np.testing.assert_array_equal(repaired, full)
    assert ill_conditioned(chol) and ill_conditioned(full_chol)


def test_factor_covariance_ill_factor_false_well_conditioned_repair_gets_its_factor() -> None:
    """A near-copy among low-variance leading assets, then high-variance ones: the repaired
    Σ's leading pivots cannot show it ill-conditioned, so its factor is computed (the
    returned L satisfies LLᵀ = Σ) even with ill_factor False."""
    rng = np.random.default_rng(4)
    low = rng.normal(0.0, 1e-3, (400, 9))
    high = rng.normal(0.0, 1.0, (400, 2))
    x = np.hstack([low, low[:, :1] + rng.normal(0.0, 1e-9, (400, 1)), high])
    xc = x - x.mean(axis=0)
    cov = (xc.T @ xc) / 399
    repaired, chol = factor_covariance(cov.copy(), gram=True, ill_factor=False)
    changed = np.argwhere(repaired != cov)  # the diagonal from the near-copy on, loaded
    np.testing.assert_array_equal(changed, [[9, 9], [10, 10], [11, 11]])
    np.testing.assert_allclose(chol @ chol.T, repaired, rtol=0, atol=1e-15 * np.abs(cov).max())
    assert np.array_equal(repaired, repaired.T)


def test_estimator_settings_methods_dispatch_to_their_estimators() -> None:
    prices = _prices(_returns())
    rets = simple_returns(prices, 120)
    est = EstimatorSettings(lookback_days=120, covariance="ledoit_wolf",
                            expected_returns="mean").estimate(prices)
    np.testing.assert_allclose(est.cov, ledoit_wolf_covariance(rets).to_numpy())
    np.testing.assert_allclose(est.mu, mean_returns(rets).to_numpy())
    geo = EstimatorSettings(lookback_days=120, expected_returns="geometric").estimate(prices)
    np.testing.assert_allclose(geo.mu, geometric_returns(rets).to_numpy())


def test_estimator_settings_unknown_method_raises_config_error_naming_key() -> None:
    with pytest.raises(StrategyConfigError, match="covariance: unknown method 'shrunk'"):
        EstimatorSettings(covariance="shrunk")
    with pytest.raises(StrategyConfigError, match="expected_returns"):
        EstimatorSettings(expected_returns="capm")


def test_equilibrium_setting_missing_market_weight_names_symbol() -> None:
    prices = _prices(_returns())
    settings = EstimatorSettings(expected_returns="equilibrium",
                                 market_weights={"S0": 1.0, "S1": 1.0})
    with pytest.raises(StrategyError, match="S2"):
        settings.estimate(prices)
