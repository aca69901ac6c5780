"""The optimizers' fast paths give the same exact optimum as the plain ones: range-space
solves from Σ's factor, factors kept across a frontier walk, the working-set cold start on
large universes, the certified Ledoit-Wolf Σ, and the array estimators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_opt_costs import FAMILIES, covariance
from test_opt_qp import assert_kkt

from strategies.covariance_repair import factor_covariance, ridge_certifies
from strategies.estimators import (
    EstimatorSettings,
    geometric_returns,
    ledoit_wolf_array,
    ledoit_wolf_covariance,
    sample_covariance,
    sample_covariance_array,
    simple_returns,
)
from strategies.free_set import FreeSetSolver
from strategies.frontier import efficient_risk_weights, max_sharpe_weights
from strategies.qp import (
    DUAL_RELATIVE_TOLERANCE,
    free_set_solver,
    solve_qp,
    solve_restricted,
    solve_tangency_qp,
)
from strategies.qp_working_set import START_ASSETS


def family_problem(family: str, n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return covariance(family, n, seed), rng.uniform(-0.02, 0.15, n)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("lam", [0.0, 0.5, 5.0])
def test_solve_qp_with_factor_families_satisfy_kkt_and_match_plain(family: str,
                                                                    lam: float) -> None:
    cov, mu = family_problem(family, 120)
    n = len(mu)
    lower = np.where(np.arange(n) % 7 == 0, 0.002, 0.0)
    upper = np.full(n, 0.25)
    _, chol = factor_covariance(cov)
    solver = free_set_solver(cov, chol)
    fast = solve_qp(cov, lam * mu, lower, upper, chol=chol, solver=solver).weights
    plain = solve_qp(cov, lam * mu, lower, upper).weights
    assert_kkt(cov, lam * mu, fast, lower, upper)
    if family == "random" and lam == 0.0:  # few bounds active: range-space solves
        assert solver.space is not None and solver.space.columns.shape[1] > 0
        assert solver.factorizations == 0
    if family != "near_singular":  # there the split between near-copies is ill-posed
        np.testing.assert_allclose(fast, plain, atol=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_frontier_with_factor_matches_plain_walk(family: str) -> None:
    cov, mu = family_problem(family, 120, seed=5)
    n = len(mu)
    lower, upper = np.zeros(n), np.full(n, 0.2)
    _, chol = factor_covariance(cov)
    fast = max_sharpe_weights(mu, cov, lower, upper, 0.01, chol)
    plain = max_sharpe_weights(mu, cov, lower, upper, 0.01)
    assert fast is not None and plain is not None

    def sharpe(w: np.ndarray) -> float:
        return (float(mu @ w) - 0.01) / float(np.sqrt(w @ cov @ w))

    assert sharpe(fast) >= sharpe(plain) - 1e-12
    w_min = solve_qp(cov, np.zeros(n), lower, upper).weights
    target = 1.5 * float(np.sqrt(w_min @ cov @ w_min))
    risk_fast = efficient_risk_weights(mu, cov, lower, upper, target, chol)
    risk_plain = efficient_risk_weights(mu, cov, lower, upper, target)
    assert float(np.sqrt(risk_fast @ cov @ risk_fast)) <= target * (1 + 1e-10)
    assert float(mu @ risk_fast) >= float(mu @ risk_plain) - 1e-12
    if family != "near_singular":
        np.testing.assert_allclose(fast, plain, atol=1e-9)
        np.testing.assert_allclose(risk_fast, risk_plain, atol=1e-9)


def large_factor_covariance(n: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(n, 5)) * np.array([0.2, 0.1, 0.08, 0.05, 0.03])
    loadings[:, 0] = rng.uniform(0.1, 0.3, n)
    cov = loadings @ loadings.T + np.diag(rng.uniform(0.01, 0.09, n))
    return cov, rng.uniform(-0.02, 0.15, n)


@pytest.mark.parametrize(("lam", "lower_bound", "cap"), [
    (0.0, 0.0, 1.0),      # sparse minimum variance
    (2.0, 0.0, 1.0),      # mean-variance
    (0.0, 0.0002, 1.0),   # every asset held at a positive floor (the held weight folds in)
    (0.0, 0.0, 0.003),    # caps force more assets than the first working set
])
def test_solve_qp_large_universe_working_set_satisfies_kkt(lam: float, lower_bound: float,
                                                           cap: float) -> None:
    n = 1200
    cov, mu = large_factor_covariance(n)
    lower, upper = np.full(n, lower_bound), np.full(n, cap)
    w = solve_qp(cov, lam * mu, lower, upper).weights  # no factor, n ≥ 1000: working set
    assert_kkt(cov, lam * mu, w, lower, upper)
    tol_z = DUAL_RELATIVE_TOLERANCE * (float(np.max(np.diag(cov))) + float(np.max(lam * mu)))
    whole = solve_restricted(cov, lam * mu, lower, upper, None, None, tol_z).weights
    np.testing.assert_allclose(w, whole, atol=1e-10)
    if cap < 1.0:
        assert np.count_nonzero(w > lower) > START_ASSETS


def returns_frame(days: int, assets: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(days, 4)) @ rng.normal(size=(4, assets)) * 0.006
    data += rng.normal(size=(days, assets)) * 0.01 + 0.0003
    return pd.DataFrame(data, columns=[f"S{i:04d}" for i in range(assets)],
                        index=pd.bdate_range("2020-01-02", periods=days))


def test_ledoit_wolf_large_universe_certified_without_factor() -> None:
    rets = returns_frame(300, 1100)
    prices = 100.0 * (1.0 + rets).cumprod()
    est = EstimatorSettings(lookback_days=200, covariance="ledoit_wolf").estimate(prices, False)
    assert est.chol is None  # the ridge certified Σ: no 1100² Cholesky
    expected = ledoit_wolf_covariance(simple_returns(prices, 200)).to_numpy()
    np.testing.assert_array_equal(est.cov, expected)
    assert np.linalg.eigvalsh(est.cov).min() > 0


def test_ridge_certifies_only_a_real_ridge() -> None:
    x = returns_frame(40, 60).to_numpy()  # T < N: the sample covariance is singular
    cov, ridge = ledoit_wolf_array(x)
    assert ridge > 0 and ridge_certifies(cov, ridge, len(x))
    assert not ridge_certifies(sample_covariance_array(x), 0.0, len(x))


@pytest.mark.parametrize("expected_returns", ["mean", "geometric", "ewma"])
@pytest.mark.parametrize("method", ["sample", "ledoit_wolf", "ewma"])
def test_estimate_arrays_equal_dataframe_estimators(method: str, expected_returns: str) -> None:
    rets = returns_frame(260, 12)
    prices = 100.0 * (1.0 + rets).cumprod()
    settings = EstimatorSettings(lookback_days=250, covariance=method,
                                 expected_returns=expected_returns, returns_span_days=30)
    est = settings.estimate(prices)
    window = simple_returns(prices, 250)
    np.testing.assert_array_equal(est.cov, settings.covariance_of(window))
    np.testing.assert_allclose(est.mu, settings.expected_returns_of(window, est.cov),
                               rtol=1e-14)
    if method == "sample":
        np.testing.assert_array_equal(est.cov, sample_covariance(window).to_numpy())
    if expected_returns == "geometric":
        np.testing.assert_allclose(est.mu, geometric_returns(window).to_numpy(), rtol=1e-14)
    if expected_returns == "mean":
        np.testing.assert_allclose(est.mu, window.mean().to_numpy() * 252, rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("risk_free_rate", [0.0, 0.03])
def test_max_sharpe_one_homogeneous_qp_matches_frontier_walk(family: str,
                                                             risk_free_rate: float) -> None:
    cov, mu = family_problem(family, 150, seed=8)
    n = len(mu)
    lower, upper = np.zeros(n), np.ones(n)
    _, chol = factor_covariance(cov)
    tangency = solve_tangency_qp(cov, mu - risk_free_rate, chol)
    assert tangency is not None
    y = tangency.weights
    assert (y >= 0).all() and abs(float((mu - risk_free_rate) @ y) - 1.0) <= 1e-12
    walk = max_sharpe_weights(mu, cov, lower, upper, risk_free_rate)  # no factor: the walk
    one_qp = max_sharpe_weights(mu, cov, lower, upper, risk_free_rate, chol)
    assert walk is not None and one_qp is not None

    def sharpe(w: np.ndarray) -> float:
        return (float(mu @ w) - risk_free_rate) / float(np.sqrt(w @ cov @ w))

    assert abs(sharpe(one_qp) - sharpe(walk)) <= 1e-12 * sharpe(walk)
    if family != "near_singular":  # there the split between near-copies is ill-posed
        np.testing.assert_allclose(y / y.sum(), walk, atol=1e-9)
        np.testing.assert_allclose(one_qp, walk, atol=1e-9)


@pytest.mark.parametrize("budget_row", ["ones", "excess"])
def test_free_set_solver_updates_match_fresh_factorizations(budget_row: str) -> None:
    """A walk of active sets changing a few bounds at a time: the solver with Σ's factor
    (range space, bordering as assets join, re-anchoring) gives the same solutions as a
    fresh Cholesky factorization of every free set."""
    n = 80
    cov, mu = family_problem("random", n, seed=21)
    row = np.ones(n) if budget_row == "ones" else mu - 0.01
    _, chol = factor_covariance(cov)
    updating = FreeSetSolver(cov, chol, None if budget_row == "ones" else row)
    rng = np.random.default_rng(4)
    active = rng.random(n) < 0.15
    lin = np.column_stack([mu, np.zeros(n)])
    for _ in range(25):
        flip = rng.choice(n, size=int(rng.integers(1, 6)), replace=False)
        active[flip] = ~active[flip]
        held = np.column_stack([np.where(active, rng.uniform(0.0, 0.01, n), 0.0),
                                np.zeros(n)])
        fresh = FreeSetSolver(cov, None, None if budget_row == "ones" else row)
        w_new, nu_new, _ = updating.solve(lin, np.array([1.0, 0.0]), held, active.copy())
        w_ref, nu_ref, _ = fresh.solve(lin, np.array([1.0, 0.0]), held, active.copy())
        np.testing.assert_allclose(w_new, w_ref, rtol=0, atol=1e-11)
        np.testing.assert_allclose(nu_new, nu_ref, rtol=1e-9, atol=1e-13)
    assert updating.factorizations < 25  # most solves were updates, not factorizations


def _piece_problem(family: str, n: int, seed: int, cap: float, lam: float):
    """A long-only problem capped at ``cap``, its QP answer at ``lam`` and the frontier piece
    through it."""
    from strategies.frontier_piece import frontier_segment

    cov, mu = family_problem(family, n, seed=seed)
    lower, upper = np.zeros(len(mu)), np.full(len(mu), cap)
    here = solve_qp(cov, lam * mu, lower, upper)
    return cov, mu, lower, upper, here, frontier_segment(cov, mu, lower, upper, here, lam)


@pytest.mark.parametrize("family", ["random", "factor"])
def test_solve_qp_first_iterate_from_piece_gives_same_optimum_and_iterations(
        family: str) -> None:
    cov, mu, lower, upper, here, piece = _piece_problem(family, 120, 7, 0.1, 0.5)
    _, chol = factor_covariance(cov)
    assert piece.z0 is not None and piece.z1 is not None
    lam = 3.0 * piece.lam_hi  # beyond the piece: other active sets
    plain = solve_qp(cov, lam * mu, lower, upper, warm=here, chol=chol)
    seeded = solve_qp(cov, lam * mu, lower, upper, warm=here, chol=chol,
                      first=(piece.at(lam), piece.z0 + lam * piece.z1))
    assert seeded.iterations == plain.iterations
    np.testing.assert_allclose(seeded.weights, plain.weights, atol=1e-13)
    assert_kkt(cov, lam * mu, seeded.weights, lower, upper)


@pytest.mark.parametrize("family", ["random", "factor"])
def test_frontier_piece_entry_and_exit_sets_are_the_neighbour_pieces_sets(
        family: str) -> None:
    cov, mu, lower, upper, _, piece = _piece_problem(family, 80, 9, 0.15, 0.8)
    assert 0 < piece.lam_lo < 0.8 < piece.lam_hi < np.inf
    assert piece.entry_sets is not None and piece.exit_sets is not None
    for lam, sets in ((piece.lam_lo, piece.entry_sets), (piece.lam_hi, piece.exit_sets)):
        inward = 1e-7 * (piece.lam_hi - piece.lam_lo)
        beyond = lam - inward if sets is piece.entry_sets else lam + inward
        neighbour = solve_qp(cov, beyond * mu, lower, upper)
        assert np.array_equal(neighbour.at_lower, sets[0])
        assert np.array_equal(neighbour.at_upper, sets[1])


@pytest.mark.parametrize("lam", [0.0, 2.0])
def test_regularized_start_settled_early_is_feasible_and_qp_satisfies_kkt(lam: float) -> None:
    # A continuation step ends once an iteration changes few bounds: its weights, made
    # feasible for the new sets, start the next step (and, last, the primal method).
    from strategies.qp import _primal_dual_active_set
    from strategies.qp_regularized import settle_changes

    cov, mu = family_problem("near_singular", 120, seed=4)
    n = len(mu)
    lower = np.where(np.arange(n) % 9 == 0, 0.001, 0.0)
    upper = np.full(n, 0.3)
    tol_z = DUAL_RELATIVE_TOLERANCE * float(np.max(np.diag(cov)))
    solver = FreeSetSolver(cov, ridge=3e-7 * float(np.mean(np.diag(cov))))
    held = np.arange(n) >= 40  # the first 40 free, the rest at their lower bounds
    start = _primal_dual_active_set(cov, lam * mu, lower, upper, held, np.zeros(n, bool),
                                    tol_z, solver, settle=settle_changes(n))
    assert start is not None
    w = start.weights
    assert abs(w.sum() - 1.0) <= 1e-12
    assert (w >= lower - 1e-15).all() and (w <= upper + 1e-15).all()
    np.testing.assert_array_equal(w[start.at_lower], lower[start.at_lower])
    np.testing.assert_array_equal(w[start.at_upper], upper[start.at_upper])
    _, chol = factor_covariance(cov)
    assert_kkt(cov, lam * mu, solve_qp(cov, lam * mu, lower, upper, chol=chol).weights,
               lower, upper)


@pytest.mark.parametrize("seed", [1, 2])
def test_optimizers_repaired_near_singular_stand_in_factor_same_answers(seed: int) -> None:
    """A near-singular sample covariance repaired with ill_factor False comes with a
    stand-in factor (not refactored): the QP, the tangency QP and the frontier walk give
    bit for bit the answers they give with the repaired matrix's own factor."""
    rng = np.random.default_rng(seed)
    n, half = 120, 60
    base = (rng.normal(0.0, 0.01, (800, 3)) @ rng.normal(0.0, 1.0, (3, half))
            + rng.normal(0.0, 0.01, (800, half)))
    x = np.hstack([base, base + rng.normal(0.0, 1e-7, (800, half))])
    xc = x - x.mean(axis=0)
    gram = (xc.T @ xc) * (252 / 799)
    cov, stand_in = factor_covariance(gram.copy(), gram=True, ill_factor=False)
    full, chol = factor_covariance(gram.copy(), gram=True)
    np.testing.assert_array_equal(cov, full)
    assert not np.allclose(stand_in @ stand_in.T, cov, rtol=0, atol=1e-14)  # a stand-in
    mu = rng.uniform(-0.02, 0.15, n)
    lower, upper = np.zeros(n), np.full(n, 0.2)
    for lam in (0.0, 0.3):
        w = solve_qp(cov, lam * mu, lower, upper, chol=stand_in).weights
        np.testing.assert_array_equal(w, solve_qp(cov, lam * mu, lower, upper,
                                                  chol=chol).weights)
        assert_kkt(cov, lam * mu, w, lower, upper)
    unbounded = np.ones(n)
    sharpe = max_sharpe_weights(mu, cov, lower, unbounded, 0.0, stand_in)
    assert sharpe is not None
    np.testing.assert_array_equal(sharpe, max_sharpe_weights(mu, cov, lower, unbounded, 0.0,
                                                             chol))
    vol = 1.3 * float(np.sqrt(w @ cov @ w))  # w: the λ = 0.3 optimum
    risky = efficient_risk_weights(mu, cov, lower, upper, vol, stand_in)
    np.testing.assert_array_equal(risky, efficient_risk_weights(mu, cov, lower, upper, vol,
                                                                chol))
