"""Black-Litterman posterior against the textbook formulas, views config, strategy output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_opt_qp import random_problem

import strategies
from strategies.base import StrategyConfigError, StrategyError
from strategies.black_litterman import black_litterman_posterior, view_uncertainty
from tests.conftest import capture_logs


def textbook_posterior(cov, prior, picks, q, omega, tau):
    """The issue's formulas verbatim: μ = [(τΣ)⁻¹ + PᵀΩ⁻¹P]⁻¹[(τΣ)⁻¹π + PᵀΩ⁻¹Q],
    Σ_BL = Σ + [(τΣ)⁻¹ + PᵀΩ⁻¹P]⁻¹."""
    ts_inv = np.linalg.inv(tau * cov)
    om_inv = np.linalg.inv(np.diag(omega))
    m = np.linalg.inv(ts_inv + picks.T @ om_inv @ picks)
    return m @ (ts_inv @ prior + picks.T @ om_inv @ q), cov + m


def test_posterior_matches_textbook_formula() -> None:
    cov, _ = random_problem(6, seed=21)
    prior = 2.5 * cov @ np.full(6, 1 / 6)
    picks = np.array([[1.0, 0, 0, 0, 0, 0], [0, 1.0, -1.0, 0, 0, 0], [0.5, 0, 0, 0.5, -1, 0]])
    q = np.array([0.08, 0.02, -0.01])
    omega = view_uncertainty(cov, picks, 0.05, [None, 0.3, 0.8])
    mu, post = black_litterman_posterior(cov, prior, picks, q, omega, 0.05)
    mu_ref, post_ref = textbook_posterior(cov, prior, picks, q, omega, 0.05)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-9)
    np.testing.assert_allclose(post, post_ref, rtol=1e-9)


@pytest.mark.parametrize("n_views", [2, 6])  # rank-one BLAS updates, or one syrk
def test_posterior_many_views_matches_textbook_and_is_exactly_symmetric(n_views: int) -> None:
    cov, _ = random_problem(40, seed=25)
    prior = 2.5 * cov @ np.full(40, 1 / 40)
    picks = np.random.default_rng(25).normal(size=(n_views, 40))
    q = np.linspace(-0.02, 0.05, n_views)
    omega = view_uncertainty(cov, picks, 0.05, [None] * n_views)
    mu, post = black_litterman_posterior(cov, prior, picks, q, omega, 0.05)
    mu_ref, post_ref = textbook_posterior(cov, prior, picks, q, omega, 0.05)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-9)
    np.testing.assert_allclose(post, post_ref, rtol=1e-9)
    assert np.array_equal(post, post.T)


def test_posterior_no_views_equals_prior() -> None:
    cov, _ = random_problem(5, seed=22)
    prior = 3.0 * cov @ np.array([0.4, 0.3, 0.1, 0.1, 0.1])
    mu, post = black_litterman_posterior(cov, prior, np.zeros((0, 5)), np.zeros(0),
                                         np.zeros(0), 0.05)
    np.testing.assert_allclose(mu, prior, rtol=1e-15)
    np.testing.assert_allclose(post, 1.05 * cov, rtol=1e-15)


def test_posterior_full_confidence_view_holds_exactly() -> None:
    cov, _ = random_problem(5, seed=23)
    prior = 2.5 * cov @ np.full(5, 0.2)
    picks = np.array([[1.0, -1.0, 0, 0, 0]])
    omega = view_uncertainty(cov, picks, 0.05, [1.0])
    mu, _ = black_litterman_posterior(cov, prior, picks, np.array([0.03]), omega, 0.05)
    assert mu[0] - mu[1] == pytest.approx(0.03, abs=1e-14)


def test_view_uncertainty_confidence_half_equals_default() -> None:
    cov, _ = random_problem(4, seed=24)
    picks = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, -1.0]])
    np.testing.assert_allclose(view_uncertainty(cov, picks, 0.1, [0.5, 0.5]),
                               view_uncertainty(cov, picks, 0.1, [None, None]))
    np.testing.assert_allclose(view_uncertainty(cov, picks, 0.1, [None, None]),
                               np.diag(picks @ (0.1 * cov) @ picks.T))


def _prices(n_assets: int = 4, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rets = rng.normal(0.0004, 0.01, size=(300, n_assets))
    return pd.DataFrame(100 * np.cumprod(1 + rets, axis=0),
                        index=pd.bdate_range("2022-01-03", periods=300),
                        columns=["SPY", "TLT", "GLD", "EFA"][:n_assets])


def test_black_litterman_no_views_weights_satisfy_mean_variance_kkt() -> None:
    """With no views the strategy optimizes wᵀπ − (δ/2)wᵀ(1+τ)Σw; at an interior optimum
    the gradient is the same for every asset (the budget multiplier)."""
    strategy = strategies.create("black_litterman", market_weights={
        "SPY": 0.4, "TLT": 0.3, "GLD": 0.2, "EFA": 0.1})
    w = strategy.target_weights(_prices())
    _, mu, cov = strategy.posterior(_prices())
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    # first principles: KKT of max wᵀμ − (δ/2)wᵀΣw with Σw=1 at an interior optimum
    grad = mu - 2.5 * cov @ w.to_numpy()
    np.testing.assert_allclose(grad, grad.mean(), atol=1e-12)


def test_black_litterman_bullish_view_raises_weight() -> None:
    base = strategies.create("black_litterman").target_weights(_prices())
    bullish = strategies.create("black_litterman", views=[
        {"assets": {"GLD": 1}, "return": 0.5, "confidence": 0.9}]).target_weights(_prices())
    assert bullish["GLD"] > base["GLD"] + 0.05


def test_black_litterman_view_unknown_symbol_raises_naming_it() -> None:
    strategy = strategies.create("black_litterman", views=[{"assets": {"QQQ": 1},
                                                            "return": 0.1}])
    with pytest.raises(StrategyError, match="QQQ"):
        strategy.target_weights(_prices())


def test_black_litterman_view_on_short_history_asset_dropped_with_warning() -> None:
    prices = _prices()
    prices.iloc[:-20, 2] = np.nan
    strategy = strategies.create("black_litterman", lookback_days=100, views=[
        {"assets": {"GLD": 1}, "return": 0.5}])
    with capture_logs() as logs:
        w = strategy.target_weights(prices)
    assert w["GLD"] == 0.0 and w.sum() == pytest.approx(1.0)
    assert any(e["event"] == "view_dropped" for e in logs)


@pytest.mark.parametrize("views, message", [
    ([{"assets": {"SPY": 1}}], "missing key"),
    ([{"assets": {"SPY": 1}, "return": 0.1, "confidence": 1.5}], "confidence"),
    ([{"assets": {}, "return": 0.1}], "non-empty"),
    ({"assets": {"SPY": 1}, "return": 0.1}, "list of tables"),
])
def test_black_litterman_bad_views_raise_config_error(views, message: str) -> None:
    with pytest.raises(StrategyConfigError, match=message):
        strategies.create("black_litterman", views=views)


def test_posterior_covariance_is_exactly_symmetric_and_matches_textbook() -> None:
    """Σ_BL comes out bit-for-bit symmetric (it is factored without symmetrizing)."""
    x = np.random.default_rng(24).normal(0.0, 0.01, (300, 40))
    xc = x - x.mean(axis=0)
    cov = (xc.T @ xc) * (252 / 299)
    prior = 2.5 * cov @ np.full(40, 1 / 40)
    picks = np.zeros((2, 40))
    picks[0, 0], picks[1, 1], picks[1, 2] = 1.0, 1.0, -1.0
    omega = view_uncertainty(cov, picks, 0.05, [None, 1.0])
    q = np.array([0.1, 0.02])
    mu, post = black_litterman_posterior(cov, prior, picks, q, omega, 0.05)
    assert np.array_equal(post, post.T)
    omega_ref = view_uncertainty(cov, picks, 0.05, [None, 0.999999])  # Ω⁻¹ needs Ω > 0
    _, post_ref = textbook_posterior(cov, prior, picks, q, omega_ref, 0.05)
    np.testing.assert_allclose(post, post_ref, rtol=1e-5)
    np.testing.assert_allclose(picks[1] @ mu, 0.02, rtol=1e-12)  # the exact view holds
