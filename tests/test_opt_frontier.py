"""max_sharpe and efficient_risk: closed forms, scipy references, fallbacks and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_opt_qp import random_problem

import strategies
from strategies.base import StrategyError
from strategies.estimators import EstimatorSettings
from strategies.frontier import efficient_risk_weights, max_feasible_return, max_sharpe_weights
from strategies.qp import solve_qp


def sharpe(w: np.ndarray, mu: np.ndarray, cov: np.ndarray, rf: float) -> float:
    return (float(mu @ w) - rf) / float(np.sqrt(w @ cov @ w))


def feasible(w: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> bool:
    return (abs(w.sum() - 1) <= 1e-9 and (w >= lower - 1e-9).all()
            and (w <= upper + 1e-9).all())


def slsqp(fun, n: int, lower: np.ndarray, upper: np.ndarray, extra=(), starts: int = 6):
    """Best of several SLSQP runs from random feasible-ish starts."""
    from scipy.optimize import minimize  # here: ~0.15 s of every worker's collection

    rng = np.random.default_rng(0)
    best = None
    for _ in range(starts):
        x0 = rng.dirichlet(np.ones(n))
        res = minimize(fun, x0, method="SLSQP", bounds=list(zip(lower, upper, strict=True)),
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}, *extra],
                       options={"ftol": 1e-14, "maxiter": 2000})
        if res.success and (best is None or res.fun < best.fun):
            best = res
    assert best is not None
    return best.x


def test_max_sharpe_wide_bounds_matches_tangency_closed_form() -> None:
    cov, mu = random_problem(8, seed=1)
    rf = 0.01
    tangency = np.linalg.solve(cov, mu - rf)
    tangency /= tangency.sum()
    w = max_sharpe_weights(mu, cov, np.full(8, -5.0), np.full(8, 5.0), rf)
    assert w is not None
    np.testing.assert_allclose(w, tangency, atol=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_max_sharpe_bounded_at_least_scipy_reference(seed: int) -> None:
    cov, mu = random_problem(8, seed=seed)
    lower, upper = np.zeros(8), np.full(8, 0.35 if seed % 2 else 1.0)
    rf = 0.02
    w = max_sharpe_weights(mu, cov, lower, upper, rf)
    assert w is not None and feasible(w, lower, upper)
    ref = slsqp(lambda x: -sharpe(x, mu, cov, rf), 8, lower, upper)
    assert sharpe(w, mu, cov, rf) >= sharpe(ref, mu, cov, rf) - 1e-7


def test_max_sharpe_no_asset_beats_risk_free_returns_none() -> None:
    cov, _ = random_problem(5, seed=2)
    assert max_sharpe_weights(np.full(5, 0.01), cov, np.zeros(5), np.ones(5), 0.03) is None


def test_max_feasible_return_fills_best_assets_up_to_bounds() -> None:
    mu = np.array([0.1, 0.3, 0.2])
    assert max_feasible_return(mu, np.zeros(3), np.array([1.0, 0.5, 0.4])) == pytest.approx(
        0.5 * 0.3 + 0.4 * 0.2 + 0.1 * 0.1)


@pytest.mark.parametrize("seed", range(5))
def test_efficient_risk_hits_target_and_at_least_scipy_return(seed: int) -> None:
    cov, mu = random_problem(8, seed=seed)
    lower, upper = np.zeros(8), np.full(8, 0.5)
    min_var = slsqp(lambda x: x @ cov @ x, 8, lower, upper)
    target = 1.2 * float(np.sqrt(min_var @ cov @ min_var))
    w = efficient_risk_weights(mu, cov, lower, upper, target)
    assert feasible(w, lower, upper)
    vol = float(np.sqrt(w @ cov @ w))
    assert vol <= target * (1 + 1e-9)
    risk = {"type": "ineq", "fun": lambda x: target**2 - x @ cov @ x}
    ref = slsqp(lambda x: -(mu @ x), 8, lower, upper, extra=[risk])
    assert mu @ w >= mu @ ref - 1e-7 * abs(mu @ ref)
    if vol < target * (1 - 1e-6):  # target not binding: must be the max-return portfolio
        assert mu @ w == pytest.approx(max_feasible_return(mu, lower, upper), rel=1e-9)


def test_efficient_risk_target_above_top_returns_max_return_portfolio() -> None:
    cov, mu = random_problem(6, seed=3)
    w = efficient_risk_weights(mu, cov, np.zeros(6), np.ones(6), 5.0)
    np.testing.assert_allclose(w, np.eye(6)[np.argmax(mu)], atol=1e-12)


def test_efficient_risk_target_below_min_volatility_raises_naming_parameter() -> None:
    cov, mu = random_problem(6, seed=4)
    with pytest.raises(StrategyError, match=r"target_volatility 0\.01 is below the minimum"):
        efficient_risk_weights(mu, cov, np.zeros(6), np.ones(6), 0.01)


def test_efficient_risk_large_problem_volatility_exact() -> None:
    cov, mu = random_problem(200, seed=5, factors=8)
    lower, upper = np.zeros(200), np.full(200, 0.05)
    top = efficient_risk_weights(mu, cov, lower, upper, 10.0)
    bottom = efficient_risk_weights(mu, cov, lower, upper, 1e-9 + float(np.sqrt(
        (w := solve_qp(cov, np.zeros(200), lower, upper).weights) @ cov @ w)))
    target = 0.5 * (np.sqrt(top @ cov @ top) + np.sqrt(bottom @ cov @ bottom))
    w = efficient_risk_weights(mu, cov, lower, upper, target)
    assert feasible(w, lower, upper)
    assert float(np.sqrt(w @ cov @ w)) == pytest.approx(target, rel=1e-10)
    assert mu @ top == pytest.approx(max_feasible_return(mu, lower, upper), rel=1e-12)


@pytest.mark.parametrize("family", ["random", "factor"])
@pytest.mark.parametrize("ratio", [1.02, 1.3, 2.0, 4.0])
def test_efficient_risk_from_budget_only_guess_matches_walk_from_min_variance(
        family: str, ratio: float) -> None:
    from test_opt_costs import covariance

    from strategies.covariance_repair import factor_covariance
    from strategies.frontier_target import budget_only_guess

    n = 150
    cov = covariance(family, n, seed=8)
    mu = np.random.default_rng(8).uniform(-0.02, 0.15, n)
    lower, upper = np.zeros(n), np.full(n, 0.1)
    _, chol = factor_covariance(cov)
    w_min = solve_qp(cov, np.zeros(n), lower, upper).weights
    target = ratio * float(np.sqrt(w_min @ cov @ w_min))
    assert budget_only_guess(mu, lower, upper, target**2, chol, None)[0] > 0  # starts there
    guessed = efficient_risk_weights(mu, cov, lower, upper, target, chol)
    walked = efficient_risk_weights(mu, cov, lower, upper, target)  # no factor: from λ = 0
    np.testing.assert_allclose(guessed, walked, atol=1e-10)
    assert float(np.sqrt(guessed @ cov @ guessed)) <= target * (1 + 1e-10)


def test_efficient_risk_target_below_capped_min_volatility_raises_with_factor() -> None:
    # Between the budget-only minimum volatility (the guess's) and the one under the caps:
    # the guessed start's piece is already above the target, and the error still names it.
    from strategies.covariance_repair import factor_covariance

    cov, mu = random_problem(40, seed=6)
    lower, upper = np.zeros(40), np.full(40, 0.03)
    _, chol = factor_covariance(cov)
    budget_only = 1.0 / float(np.linalg.solve(cov, np.ones(40)).sum())
    w_min = solve_qp(cov, np.zeros(40), lower, upper).weights
    capped = float(w_min @ cov @ w_min)
    assert budget_only < capped
    target = float(np.sqrt(0.5 * (budget_only + capped)))
    with pytest.raises(StrategyError, match="is below the minimum achievable volatility"):
        efficient_risk_weights(mu, cov, lower, upper, target, chol)


def _near_copy_estimate(n: int, days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Annual μ and the repaired sample Σ of ``days`` returns of n assets, the second half
    near-copies (σ_diff 1e-7/day) of the first half's 5-factor returns (the benchmark's
    near-singular family, same draws)."""
    rng = np.random.default_rng(seed + n + len("near_singular"))
    drift = rng.uniform(0.0, 0.15, n) / 252
    half = n // 2
    factors = rng.normal(0.0, 1.0, (days, 5)) * np.array([0.010, 0.005, 0.004, 0.003, 0.002])
    loadings = rng.normal(0.0, 1.0, (n - half, 5))
    loadings[:, 0] = rng.uniform(0.5, 1.5, n - half)
    idio = rng.uniform(0.005, 0.02, n - half)
    base = factors @ loadings.T + rng.normal(0.0, 1.0, (days, n - half)) * idio
    rets = np.hstack([base, base[:, :half] + rng.normal(0.0, 1e-7, (days, half))]) + drift
    est = EstimatorSettings(lookback_days=days).estimate(_frame(rets))
    return est.mu, est.cov


def test_max_sharpe_adjacent_flat_pieces_converges_to_best_scan() -> None:
    """Capped weights on a near-singular Σ: the frontier holds one corner portfolio over
    three adjacent λ-pieces. The search used to ask each flat piece's flat neighbour back
    and forth until it gave up ("did not converge"); it now treats the run as one piece.
    The answer's Sharpe ratio is the best of a fine scan of the frontier."""
    mu, cov = _near_copy_estimate(60, 756, seed=1001)
    lower, upper = np.zeros(60), np.full(60, 0.04)
    w = max_sharpe_weights(mu, cov, lower, upper, 0.0)
    assert w is not None and feasible(w, lower, upper)
    scan = max(sharpe(solve_qp(cov, lam * mu, lower, upper).weights, mu, cov, 0.0)
               for lam in np.linspace(0.0, 1.0, 401))
    assert sharpe(w, mu, cov, 0.0) >= scan - 1e-12


def _frame(returns: np.ndarray) -> pd.DataFrame:
    """Closes from 100 of a days × assets array of simple returns."""
    days, n = returns.shape
    return pd.DataFrame(100.0 * np.vstack([np.ones(n), np.cumprod(1.0 + returns, axis=0)]),
                        index=pd.bdate_range("2019-01-02", periods=days + 1),
                        columns=[f"A{i:03d}" for i in range(n)])


def test_max_sharpe_on_half_as_many_days_as_assets_answers_and_beats_the_frontier() -> None:
    """100 assets' sample covariance of 50 days (rank 49, repaired): the homogeneous QP's
    primal-dual iterations and its regularized start both cycle, and the fallback walk of
    the frontier used to give up ("efficient-frontier search did not converge", the cycle
    then held). The primal method now finishes the QP (from the cycling run's best
    iterate, else the best asset's vertex); the answer's Sharpe ratio beats every point of
    a scan of the frontier (it is the tangency)."""
    rng = np.random.default_rng(5)
    prices = _frame(rng.normal(0.0, 0.01, (50, 100)) * rng.uniform(0.5, 2.0, 100)
                    + rng.uniform(0.0, 0.0008, 100))
    w = strategies.create("max_sharpe", lookback_days=50).target_weights(prices).to_numpy()
    est = EstimatorSettings(lookback_days=50).estimate(prices, True)
    lower, upper = np.zeros(100), np.ones(100)
    assert feasible(w, lower, upper)
    scan = max(sharpe(solve_qp(est.cov, lam * est.mu, lower, upper, chol=est.chol).weights,
                      est.mu, est.cov, 0.0) for lam in np.geomspace(1e-9, 1.0, 12))
    assert sharpe(w, est.mu, est.cov, 0.0) >= scan * (1 - 1e-9)


def test_max_sharpe_capped_on_half_as_many_days_as_assets_walks_to_the_tangency() -> None:
    """Caps make max_sharpe walk the frontier. On 60 assets' sample covariance of 30 days
    the whole frontier lies below λ = 1e-11, and to rounding a probe's piece can miss the
    probe or be empty: the search asked the same λ until it gave up ("did not converge").
    Such a piece is now judged at the probe's own point, and the bracket on λ closes to
    1e-12 relative (closed to 1e-12 absolute, it stopped 0.25 % short of the best Sharpe
    ratio here, 11 % on 500 assets). The answer beats a fine scan of the frontier."""
    rng = np.random.default_rng(3)
    prices = _frame(rng.normal(0.0, 0.01, (30, 60)) * rng.uniform(0.5, 2.0, 60)
                    + rng.uniform(0.0, 0.0008, 60))
    w = strategies.create("max_sharpe", lookback_days=30,
                          bounds=[0.0, 0.05]).target_weights(prices).to_numpy()
    est = EstimatorSettings(lookback_days=30).estimate(prices, True)
    lower, upper = np.zeros(60), np.full(60, 0.05)
    assert feasible(w, lower, upper)
    scan = max(sharpe(solve_qp(est.cov, lam * est.mu, lower, upper, chol=est.chol).weights,
                      est.mu, est.cov, 0.0) for lam in np.geomspace(1e-15, 1e-6, 60))
    assert sharpe(w, est.mu, est.cov, 0.0) >= scan * (1 - 1e-9)


def test_efficient_risk_on_exact_duplicates_reaches_the_target_volatility() -> None:
    """500 assets, the second half exact copies of the first, 252 days: a probe's piece
    that missed the probe (rounding) was judged as if it held it, and the walk stopped
    on a portfolio of 8.4 % volatility for a 15 % target (a lower return than the
    frontier's at 15 %). Such a piece is now judged at the probe's own point."""
    rng = np.random.default_rng(2500)
    drift = rng.uniform(0.0, 0.0006, 500)
    returns = rng.normal(0.0, 0.01, (252, 500)) + drift
    returns[:, 250:] = returns[:, :250]
    prices = _frame(returns)
    w = strategies.create("efficient_risk", lookback_days=252,
                          target_volatility=0.15).target_weights(prices).to_numpy()
    est = EstimatorSettings(lookback_days=252).estimate(prices, True)
    assert feasible(w, np.zeros(500), np.ones(500))
    assert abs(float(np.sqrt(w @ est.cov @ w)) - 0.15) <= 1e-9


def _short_window(n: int, days: int, seed: int):  # type: ignore[no-untyped-def]
    """The estimate (μ, repaired Σ, its factor) of ``days`` < n independent daily returns:
    Σ has rank days − 1 before its repair."""
    rng = np.random.default_rng(seed)
    prices = _frame(rng.normal(0.0, 0.01, (days, n)) * rng.uniform(0.5, 2.0, n)
                    + rng.uniform(0.0, 0.0008, n))
    return EstimatorSettings(lookback_days=days).estimate(prices, True)


def _vol(w: np.ndarray, cov: np.ndarray) -> float:
    return float(np.sqrt(w @ cov @ w))


@pytest.mark.parametrize("share", [0.01, 0.3, 0.9])
def test_efficient_risk_on_fewer_days_than_assets_is_the_frontier_point_at_the_target(
        share: float) -> None:
    """120 assets' sample covariance of 60 days (ill-conditioned after repair: no
    budget-only start). Targets from next to the minimum volatility to next to the top:
    the answer has the target volatility to 1e-9 and at least the return of every point
    of a 30-point scan of the frontier that is no riskier."""
    from strategies.frontier import max_return_portfolio
    from strategies.qp import ill_conditioned

    est = _short_window(120, 60, seed=11)
    assert ill_conditioned(est.chol)  # the path this is about
    lower, upper = np.zeros(120), np.ones(120)
    low = _vol(solve_qp(est.cov, np.zeros(120), lower, upper, chol=est.chol).weights, est.cov)
    high = _vol(max_return_portfolio(est.mu, lower, upper), est.cov)
    target = low + share * (high - low)
    w = efficient_risk_weights(est.mu, est.cov, lower, upper, target, est.chol)
    assert feasible(w, lower, upper)
    assert abs(_vol(w, est.cov) - target) <= 1e-9 * target
    for lam in np.geomspace(1e-12, 10.0, 30):
        point = solve_qp(est.cov, lam * est.mu, lower, upper, chol=est.chol).weights
        if _vol(point, est.cov) <= target:
            assert est.mu @ point <= est.mu @ w + 1e-12


def test_efficient_risk_on_fewer_days_than_assets_near_the_top_factors_only_small_sets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """500 assets × 250 days, a target held by a few assets: the walk starts at the
    frontier's top. From the minimum-variance portfolio (hundreds of assets on this Σ)
    it factored sets of hundreds and its probes dropped them one bound at a time
    (~780 primal iterations, ~100 ms); from the top it never factors a set as large."""
    from strategies import free_set

    est = _short_window(500, 250, seed=12)
    lower, upper = np.zeros(500), np.ones(500)
    w_min = solve_qp(est.cov, np.zeros(500), lower, upper, chol=est.chol).weights
    held_at_min = int(np.count_nonzero(w_min > 0))
    sizes: list[int] = []
    original = free_set.factor_matrix
    monkeypatch.setattr(free_set, "factor_matrix",
                        lambda m: sizes.append(len(m)) or original(m))
    w = efficient_risk_weights(est.mu, est.cov, lower, upper, 0.10, est.chol)
    assert abs(_vol(w, est.cov) - 0.10) <= 1e-9 * 0.10
    assert held_at_min > 100 and sizes  # the shape this is about; the counter saw solves
    assert max(sizes) < held_at_min // 4


def test_efficient_risk_on_fewer_days_than_assets_below_min_volatility_still_names_it() -> None:
    """The walk from the top reaches no piece at the target: the minimum-variance walk
    runs and names the parameter, as on a well-conditioned Σ."""
    est = _short_window(120, 60, seed=11)
    lower, upper = np.zeros(120), np.full(120, 0.02)
    w_min = solve_qp(est.cov, np.zeros(120), lower, upper, chol=est.chol).weights
    with pytest.raises(StrategyError, match="is below the minimum achievable volatility"):
        efficient_risk_weights(est.mu, est.cov, lower, upper, 0.9 * _vol(w_min, est.cov),
                               est.chol)
