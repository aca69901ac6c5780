"""The frontier walk's QPs solved along their ray lin = λμ (``strategies.qp_ray``): the
pieces they carry, and the QP aimed at a target variance."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.free_set import cholesky_lower
from strategies.frontier import efficient_risk_weights
from strategies.qp import solve_qp
from strategies.qp_ray import Ray
from tests.test_opt_qp import assert_kkt, random_problem


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_solve_qp_along_ray_pieces_reproduce_weights_and_kkt(seed: int) -> None:
    cov, mu = random_problem(60, seed)
    lower, upper = np.zeros(60), np.full(60, 0.2)
    lam = 0.3
    ray = Ray(lam, mu)
    solution = solve_qp(cov, lam * mu, lower, upper, chol=cholesky_lower(cov), ray=ray)
    assert solution.pieces is not None
    w0, w1, _, _ = solution.pieces
    assert np.abs(w0 + lam * w1 - solution.weights).max() <= 1e-12
    assert_kkt(cov, lam * mu, solution.weights, lower, upper)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_solve_qp_aimed_ray_ends_at_optimum_with_target_variance(seed: int) -> None:
    cov, mu = random_problem(60, seed)
    lower, upper = np.zeros(60), np.ones(60)
    chol = cholesky_lower(cov)
    low = solve_qp(cov, np.zeros(60), lower, upper, chol=chol).weights
    target = 1.5 * float(low @ cov @ low)
    aim = Ray(1e-3, mu, target)  # far below the target's λ: the iterations move it
    solution = solve_qp(cov, aim.lam * mu, lower, upper, chol=chol, ray=aim)
    assert aim.lam > 1e-3
    assert_kkt(cov, aim.lam * mu, solution.weights, lower, upper)
    w = solution.weights
    assert float(w @ cov @ w) == pytest.approx(target, rel=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_efficient_risk_weights_aimed_start_matches_target_volatility(seed: int) -> None:
    cov, mu = random_problem(80, seed)
    lower, upper = np.zeros(80), np.full(80, 0.25)
    chol = cholesky_lower(cov)
    low = solve_qp(cov, np.zeros(80), lower, upper, chol=chol).weights
    vol = 1.3 * float(np.sqrt(low @ cov @ low))
    w = efficient_risk_weights(mu, cov, lower, upper, vol, chol)
    assert float(np.sqrt(w @ cov @ w)) == pytest.approx(vol, rel=1e-10)
    # KKT at the λ the weights imply (from two free assets' gradients: g_i = λμ_i + ν)
    free = np.flatnonzero((w > 1e-9) & (w < upper - 1e-9))
    g = cov @ w
    a, b = free[0], free[np.argmax(np.abs(mu[free] - mu[free[0]]))]
    lam = (g[a] - g[b]) / (mu[a] - mu[b])
    assert lam > 0
    assert_kkt(cov, lam * mu, w, lower, upper, tol=1e-8)
