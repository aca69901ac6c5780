"""The operator-splitting start of the box QP (``strategies.qp_splitting``): the path a
rank-deficient Black-Litterman problem takes when the regularized start's guess cycles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import strategies
from strategies import qp, qp_regularized
from strategies.covariance_repair import factor_covariance
from strategies.qp import DUAL_RELATIVE_TOLERANCE, numerical_rank, solve_qp
from strategies.qp_splitting import project_to_box_budget, splitting_start
from tests.test_opt_qp import assert_kkt


def short_window_black_litterman(seed: int, n: int = 120, days: int = 60
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Black-Litterman's QP (Σ_BL repaired, μ_BL/δ, its factor) on ``n`` assets'
    independent returns over ``days`` < n days, with two views."""
    rng = np.random.default_rng(seed)
    rets = (rng.normal(0.0, 0.01, (days, n)) * rng.uniform(0.5, 2.0, n)
            + rng.uniform(0.0, 0.15, n) / 252)
    prices = pd.DataFrame(100 * np.vstack([np.ones(n), np.cumprod(1 + rets, axis=0)]),
                          index=pd.bdate_range("2020-01-01", periods=days + 1),
                          columns=[f"A{i:03d}" for i in range(n)])
    bl = strategies.create("black_litterman", lookback_days=days, views=[
        {"assets": {"A000": 1.0}, "return": 0.10},
        {"assets": {"A001": 1.0, "A002": -1.0}, "return": 0.02}])
    symbols, mu, cov = bl.posterior(prices)
    cov, chol = factor_covariance(cov, list(symbols), gram=True, ill_factor=False)
    return cov, mu / bl.risk_aversion, chol


def test_cycling_guess_hands_over_to_the_splitting_start_and_the_answer_is_exact(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 120 assets, 60 days: Σ has rank 59, the regularized start's guess cycles, ADMM's
    # active set starts the primal method; the answer is the one the primal method's walk
    # from a vertex finds, and meets the KKT conditions.
    cov, lin, chol = short_window_black_litterman(seed=0)
    n = len(lin)
    lower, upper = np.zeros(n), np.ones(n)
    starts: list[object] = []
    monkeypatch.setattr(qp_regularized, "splitting_start",
                        lambda *args: starts.append(splitting_start(*args)) or starts[-1])
    w = solve_qp(cov, lin, lower, upper, chol=chol).weights
    assert len(starts) == 1 and starts[0] is not None  # the path this is about
    held = np.count_nonzero(w > 1e-12)
    assert 20 < held < 59  # fewer than Σ's rank (59 = days − 1): an isolated optimum
    tol = DUAL_RELATIVE_TOLERANCE * float(np.abs(np.diag(cov)).max())
    from_vertex = qp._primal_active_set(cov, lin, lower, upper, tol)
    np.testing.assert_allclose(w, from_vertex.weights, rtol=0, atol=1e-12)
    assert_kkt(cov, lin, w, lower, upper)


def test_splitting_start_gives_up_on_a_free_set_as_large_as_the_rank() -> None:
    # a free set of Σ's rank or more is a flat face whose optimum the repair's loading
    # picks: ADMM would settle far from it, so the caller's own start goes on instead
    cov, lin, chol = short_window_black_litterman(seed=0)
    n = len(lin)
    lower, upper = np.zeros(n), np.ones(n)
    found = splitting_start(cov, lin, lower, upper, numerical_rank(chol))
    assert found is not None and found.start_only
    free = int(np.count_nonzero(~(found.at_lower | found.at_upper)))
    assert splitting_start(cov, lin, lower, upper, free) is None
    assert abs(float(found.weights.sum()) - 1.0) <= 1e-12
    assert np.array_equal(found.weights[found.at_lower], lower[found.at_lower])


@pytest.mark.parametrize("seed", range(6))
def test_projection_onto_box_and_budget_meets_its_optimality_conditions(seed: int) -> None:
    # w = clip(v + ν, lower, upper), Σw = 1: w − v = ν where w is inside its bounds,
    # v + ν ≤ lower where w = lower, ≥ upper where w = upper (some upper bounds infinite)
    rng = np.random.default_rng(seed)
    n = 50
    v = rng.normal(0.0, 0.3, n)
    lower = np.where(rng.random(n) < 0.3, -0.1, 0.0)
    upper = np.where(rng.random(n) < 0.3, np.inf, rng.uniform(0.02, 0.2, n))
    w, nu = project_to_box_budget(v, lower, upper, shift=rng.normal())
    assert abs(float(w.sum()) - 1.0) <= 1e-12
    assert (w >= lower).all() and (w <= upper).all()
    inside = (w > lower) & (w < upper)
    assert inside.any()
    np.testing.assert_allclose(w[inside] - v[inside], nu, rtol=0, atol=1e-12)
    assert (v[w == lower] + nu <= lower[w == lower] + 1e-12).all()
    assert (v[w == upper] + nu >= upper[w == upper] - 1e-12).all()
