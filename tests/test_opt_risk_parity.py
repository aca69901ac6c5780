"""risk_parity (ERC with budgets) and hrp against their definitions and hand computations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_opt_qp import random_problem

import strategies
from strategies.base import StrategyError
from strategies.estimators import ledoit_wolf_covariance, simple_returns
from strategies.risk_parity import hrp_weights, risk_budget_weights
from tests.conftest import one_line_error, run_cli_in_process


def risk_contributions(w: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return w * (cov @ w) / float(w @ cov @ w)


@pytest.mark.parametrize("seed", range(5))
def test_risk_parity_random_covariance_contributions_equal(seed: int) -> None:
    cov, _ = random_problem(30, seed, factors=4)
    w = risk_budget_weights(cov, np.ones(30))
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w > 0).all()
    np.testing.assert_allclose(risk_contributions(w, cov), np.full(30, 1 / 30), rtol=1e-9)


def test_risk_parity_diagonal_covariance_inverse_volatility() -> None:
    sigma = np.array([0.05, 0.1, 0.2, 0.4])
    w = risk_budget_weights(np.diag(sigma**2), np.ones(4))
    np.testing.assert_allclose(w, (1 / sigma) / (1 / sigma).sum(), rtol=1e-12)


def test_risk_parity_budgets_contributions_proportional() -> None:
    cov, _ = random_problem(10, seed=11)
    budgets = np.array([4.0, 1, 1, 1, 1, 1, 1, 2, 3, 5])
    w = risk_budget_weights(cov, budgets)
    np.testing.assert_allclose(risk_contributions(w, cov), budgets / budgets.sum(), rtol=1e-9)


def test_risk_parity_two_assets_closed_form() -> None:
    """Two assets: equal contributions ⇔ w₁σ₁ = w₂σ₂ whatever the correlation."""
    s1, s2, rho = 0.1, 0.3, 0.6
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    w = risk_budget_weights(cov, np.ones(2))
    np.testing.assert_allclose(w, [s2 / (s1 + s2), s1 / (s1 + s2)], rtol=1e-12)


def test_risk_parity_large_problem_converges() -> None:
    cov, _ = random_problem(300, seed=12, factors=10)
    w = risk_budget_weights(cov, np.ones(300))
    rc = risk_contributions(w, cov)
    assert rc.max() / rc.min() - 1 < 1e-8


def test_hrp_two_blocks_hand_computed() -> None:
    """A, B (vol 20%, 10%, ρ 0.5) form one cluster, C, D (vol 30% each, ρ 0.9) the other,
    no correlation across. By hand:
    inside {A,B}: α_A = 1 − σ²_A/(σ²_A+σ²_B) = 1 − 0.04/0.05 = 0.2, α_B = 0.8;
    inside {C,D}: ½ each;
    V_AB (IVP weights 0.2, 0.8) = 0.04·0.04 + 0.64·0.01 + 2·0.2·0.8·0.5·0.2·0.1 = 0.0112;
    V_CD (½, ½) = 0.25·(0.09 + 0.09 + 2·0.9·0.09) = 0.0855;
    α_AB = 1 − 0.0112/(0.0112 + 0.0855) = 0.0855/0.0967."""
    vol = np.array([0.2, 0.1, 0.3, 0.3])
    corr = np.array([[1, 0.5, 0, 0], [0.5, 1, 0, 0], [0, 0, 1, 0.9], [0, 0, 0.9, 1.0]])
    cov = corr * np.outer(vol, vol)
    w = hrp_weights(cov)
    a_ab = 0.0855 / 0.0967
    np.testing.assert_allclose(w, [a_ab * 0.2, a_ab * 0.8, (1 - a_ab) / 2, (1 - a_ab) / 2],
                               rtol=1e-12)


def test_hrp_uncorrelated_equal_variance_equal_weights() -> None:
    w = hrp_weights(np.eye(8) * 0.04)
    np.testing.assert_allclose(w, np.full(8, 1 / 8), rtol=1e-12)


def test_hrp_random_covariance_long_only_fully_invested() -> None:
    cov, _ = random_problem(50, seed=13)
    for method in ("single", "average", "complete", "ward"):
        w = hrp_weights(cov, method)
        assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w > 0).all()


def test_risk_parity_ledoit_wolf_more_assets_than_days_contributions_equal() -> None:
    """The backtest's shape (Ledoit-Wolf Σ, more assets than days, Σ not factored): risk
    contributions equal to 1e-11 relative, long-only, fully invested."""
    rng = np.random.default_rng(31)
    market = rng.normal(0.0, 0.01, (120, 1))
    rets = market * rng.uniform(0.5, 1.5, 200) + rng.normal(0.0003, 0.015, (120, 200))
    prices = pd.DataFrame(100.0 * np.cumprod(1.0 + np.vstack([np.zeros(200), rets]), axis=0),
                          index=pd.bdate_range("2024-01-02", periods=121),
                          columns=[f"S{i:03d}" for i in range(200)])
    w = strategies.create("risk_parity", lookback_days=120,
                          covariance="ledoit_wolf").target_weights(prices).to_numpy()
    cov = ledoit_wolf_covariance(simple_returns(prices, 120)).to_numpy()
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w > 0).all()
    rc = risk_contributions(w, cov)
    assert rc.max() / rc.min() - 1 < 1e-11


def _few_returns_prices(days: int, assets: int, seed: int = 31) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rets = (rng.normal(size=(days, 3)) @ rng.normal(0.0, 0.006, (3, assets))
            + rng.normal(size=(days, assets)) * rng.uniform(0.005, 0.02, assets) + 2e-4)
    closes = 50.0 * np.vstack([np.ones(assets), np.cumprod(1.0 + rets, axis=0)])
    return pd.DataFrame(closes, index=pd.bdate_range("2021-01-04", periods=days + 1),
                        columns=[f"S{i:03d}" for i in range(assets)])


@pytest.mark.parametrize("budgeted", [False, True])
def test_risk_parity_ledoit_wolf_few_returns_low_rank_equals_dense(budgeted: bool) -> None:
    # 60 returns of 150 assets: Σ is kept as ridge·I + VᵀV and Newton solves by Woodbury;
    # the answer is the dense Σ's ERC portfolio.
    from strategies.estimators import EstimatorSettings
    from strategies.risk_parity import LowRankCovariance

    prices = _few_returns_prices(60, 150)
    settings = EstimatorSettings(lookback_days=60, covariance="ledoit_wolf")
    low_rank = settings.low_rank_covariance(prices)
    assert low_rank is not None
    symbols, v, ridge = low_rank
    assert list(symbols) == list(prices.columns)
    dense = ledoit_wolf_covariance(simple_returns(prices, 60)).to_numpy()
    np.testing.assert_allclose(v.T @ v + ridge * np.eye(150), dense, rtol=1e-12,
                               atol=1e-15 * np.abs(dense).max())
    budgets = np.linspace(1.0, 3.0, 150) if budgeted else np.ones(150)
    w = risk_budget_weights(LowRankCovariance(v, ridge), budgets)
    np.testing.assert_allclose(w, risk_budget_weights(dense, budgets), rtol=1e-10)
    np.testing.assert_allclose(risk_contributions(w, dense), budgets / budgets.sum(),
                               rtol=1e-9)
    strategy = strategies.create("risk_parity", lookback_days=60, covariance="ledoit_wolf")
    np.testing.assert_allclose(strategy.target_weights(prices).to_numpy(),
                               risk_budget_weights(dense, np.ones(150)), rtol=1e-10)


def test_low_rank_covariance_only_for_ledoit_wolf_of_few_returns() -> None:
    from strategies.estimators import EstimatorSettings

    prices = _few_returns_prices(120, 150)
    assert EstimatorSettings(lookback_days=60, covariance="sample").low_rank_covariance(
        prices) is None
    assert EstimatorSettings(lookback_days=120, covariance="ledoit_wolf").low_rank_covariance(
        prices) is None  # 120 > 0.6 × 150 returns: the dense Σ is cheaper
    assert EstimatorSettings(lookback_days=60, covariance="ledoit_wolf").low_rank_covariance(
        prices) is not None


@pytest.mark.parametrize("covariance,named", [("sample", "sample"), ("ewma", "EWMA")])
def test_risk_parity_universe_problems_singular_plain_covariance(covariance, named) -> None:
    """A sample/EWMA Σ of T returns has rank ≤ T − 1: from T ≤ N symbols on it is singular
    and every cycle failed "Newton iterations did not converge" (500 symbols, 252 days);
    check-config passed. Ledoit-Wolf, enough days, and hrp (no inverse of Σ) are fine."""
    def problems(name: str, n: int, **params: object) -> dict[str, str]:
        return strategies.create(name, **params).universe_problems(
            tuple(f"S{i:03d}" for i in range(n)))

    assert problems("risk_parity", 500, covariance=covariance) == {"covariance": (
        f"the {named} covariance of 252 days is singular for 500 symbols; use covariance = "
        '"ledoit_wolf" or lookback_days above 500')}
    assert "covariance" in problems("risk_parity", 60, covariance=covariance, lookback_days=60)
    assert problems("risk_parity", 59, covariance=covariance, lookback_days=60) == {}
    assert problems("risk_parity", 500, covariance="ledoit_wolf") == {}
    assert problems("hrp", 500, covariance=covariance) == {}
    assert list(problems("risk_parity", 1, covariance=covariance, lookback_days=2)) == [""]


def test_risk_parity_newton_failure_on_singular_covariance_names_the_fix() -> None:
    """40 symbols, 20 returns: the repaired sample Σ makes Newton fail; the error says why
    and names covariance = "ledoit_wolf" (which converges on the same prices)."""
    prices = _few_returns_prices(20, 40)
    with pytest.raises(StrategyError, match=r'did not converge: the sample covariance of 20 '
                                            r'days is singular for 40 symbols; use covariance '
                                            r'= "ledoit_wolf"'):
        strategies.create("risk_parity", lookback_days=20).target_weights(prices)
    w = strategies.create("risk_parity", lookback_days=20,
                          covariance="ledoit_wolf").target_weights(prices)
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w > 0).all()


def test_check_config_refuses_risk_parity_sample_covariance_over_too_many_symbols(
        write_config) -> None:
    config = write_config({"strategy": {"name": "risk_parity",
                                        "params": {"lookback_days": 5}}})  # 5 symbols
    error = json.loads(one_line_error(run_cli_in_process("check-config", "--config",
                                                        str(config))))["error"]
    assert error.startswith(f"invalid config {config}: 1 problem(s): ")
    assert error.endswith('[strategy.params].covariance: the sample covariance of 5 days is '
                          'singular for 5 symbols; use covariance = "ledoit_wolf" or '
                          'lookback_days above 5')
    config = write_config({"strategy": {"name": "risk_parity", "params": {
        "lookback_days": 5, "covariance": "ledoit_wolf"}}})
    ok = run_cli_in_process("check-config", "--config", str(config))
    assert ok.returncode == 0, ok.stderr
