"""The interior-point start of the box QP on a rank-deficient Σ (``qp_interior``): where
the guessed start cycles, Mehrotra's iterations find the optimum's bounds and the primal
method confirms them in a couple of steps; the answer is the exact optimum, the same as
the primal method's from a vertex (finite, independent of any start)."""

from __future__ import annotations

import numpy as np
import pytest
from test_opt_qp import assert_kkt, assert_tangency_kkt, rank_deficient_tangency_problem

from strategies import qp_interior, qp_regularized
from strategies.covariance_repair import factor_covariance
from strategies.qp import (
    DUAL_RELATIVE_TOLERANCE,
    QPSolution,
    _primal_active_set,
    solve_qp,
    solve_tangency_qp,
)


def short_window(n: int, days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The repaired sample covariance (and its factor) of ``days`` < ``n`` correlated
    returns: rank days − 1, the shape a wide universe with a short lookback gives."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    returns = (rng.normal(size=(days, n)) * np.sqrt(rng.uniform(1.0, 4.0, n)) * 0.012) @ q.T
    return factor_covariance(np.cov(returns.T) * 252)


def spy_on_interior(monkeypatch: pytest.MonkeyPatch) -> list[QPSolution | None]:
    """Record every interior start ``regularized_start`` asks for (the real one runs)."""
    seen: list[QPSolution | None] = []
    original = qp_regularized.interior_start

    def spy(*args: object, **kwargs: object) -> QPSolution | None:
        found = original(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(found)
        return found

    monkeypatch.setattr(qp_regularized, "interior_start", spy)
    return seen


def tolerance(cov: np.ndarray, lin: np.ndarray) -> float:
    return DUAL_RELATIVE_TOLERANCE * (float(np.abs(cov.diagonal()).max())
                                      + float(np.abs(lin).max()))


@pytest.mark.parametrize(("n", "days", "seed"), [(60, 30, 1), (100, 50, 0), (200, 100, 1)])
def test_min_variance_where_the_guess_cycles_starts_on_the_optimums_bounds(
        n: int, days: int, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    cov, chol = short_window(n, days, seed)
    lin, lower, upper = np.zeros(n), np.zeros(n), np.ones(n)
    seen = spy_on_interior(monkeypatch)
    solution = solve_qp(cov, lin, lower, upper, chol=chol)
    assert len(seen) == 1 and seen[0] is not None  # the path this is about
    start = seen[0]
    # the primal method confirmed the interior start's bounds in at most a few changes
    # (from the guessed or the all-free start it walked 100–200 on 500 assets)
    assert solution.iterations - start.iterations <= 3
    assert_kkt(cov, lin, solution.weights, lower, upper)
    from_vertex = _primal_active_set(cov, lin, lower, upper, tolerance(cov, lin))
    np.testing.assert_allclose(solution.weights, from_vertex.weights, rtol=0, atol=1e-12)


def test_interior_start_with_floors_caps_and_a_fixed_weight_is_feasible_and_exact() -> None:
    # floors on some assets, a binding cap on all, one weight fixed by its bounds: the
    # fixed asset leaves the iterations (it moves the linear term and the budget) and
    # comes back at its bound
    n = 80
    cov, _ = short_window(n, 40, 3)
    rng = np.random.default_rng(7)
    lin = rng.uniform(-0.02, 0.05, n)
    lower = np.where(np.arange(n) % 9 == 0, 0.004, 0.0)
    upper = np.full(n, 0.05)
    lower[5] = upper[5] = 0.02
    start = qp_interior.interior_start(cov, lin, lower, upper)
    assert start is not None and start.start_only
    assert start.at_lower[5] and abs(start.weights[5] - 0.02) == 0.0
    assert abs(float(start.weights.sum()) - 1.0) <= 1e-12
    assert (start.weights >= lower).all() and (start.weights <= upper).all()
    assert start.at_upper.any() and (start.at_lower & (lower > 0)).any()  # both bind
    tol = tolerance(cov, lin)
    solution = _primal_active_set(cov, lin, lower, upper, tol, start)
    assert solution.iterations - start.iterations <= 3
    # KKT as in ``assert_kkt``, but a fixed weight's multiplier may have either sign
    w = solution.weights
    g = cov @ w - lin
    free = (w > lower + 1e-9) & (w < upper - 1e-9)
    z, scale = g - float(np.mean(g[free])), float(np.abs(g).max())
    movable = lower < upper
    assert np.abs(z[free]).max() <= 1e-9 * scale
    assert (z[movable & ~free & (w <= lower + 1e-9)] >= -1e-9 * scale).all()
    assert (z[movable & ~free & (w >= upper - 1e-9)] <= 1e-9 * scale).all()
    from_vertex = _primal_active_set(cov, lin, lower, upper, tol)
    np.testing.assert_allclose(solution.weights, from_vertex.weights, rtol=0, atol=1e-12)


def test_tangency_qp_on_a_rank_deficient_covariance_starts_from_the_interior_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the homogeneous max-Sharpe QP (excessᵀy = 1, y ≥ 0): its all-free start cycled and
    # the primal method walked ~500 bound changes on 500 assets × 250 days
    cov, chol, excess = rank_deficient_tangency_problem()
    seen = spy_on_interior(monkeypatch)
    solution = solve_tangency_qp(cov, excess, chol)
    assert solution is not None and len(seen) == 1 and seen[0] is not None
    assert solution.iterations - seen[0].iterations <= 3
    assert_tangency_kkt(cov, excess, solution.weights)


def test_interior_iterations_that_do_not_converge_leave_the_solve_to_the_other_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # two iterations are too few: the interior start gives up (None) and the all-free
    # start and the primal method find the same optimum
    cov, chol = short_window(100, 50, 0)
    n = len(cov)
    lin, lower, upper = np.zeros(n), np.zeros(n), np.ones(n)
    monkeypatch.setattr(qp_interior, "INTERIOR_MAX_ITERATIONS", 2)
    seen = spy_on_interior(monkeypatch)
    solution = solve_qp(cov, lin, lower, upper, chol=chol)
    assert seen == [None]  # the fault reached the path
    assert_kkt(cov, lin, solution.weights, lower, upper)
    from_vertex = _primal_active_set(cov, lin, lower, upper, tolerance(cov, lin))
    np.testing.assert_allclose(solution.weights, from_vertex.weights, rtol=0, atol=1e-12)
