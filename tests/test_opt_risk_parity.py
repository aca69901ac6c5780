"""risk_parity (ERC with budgets) and hrp against their definitions and hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_opt_qp import random_problem

import strategies
from strategies.estimators import ledoit_wolf_covariance, simple_returns
from strategies.risk_parity import hrp_weights, risk_budget_weights


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
