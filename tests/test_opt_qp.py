"""The box-and-budget QP: KKT conditions, closed forms and a scipy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.base import StrategyError
from strategies.frontier_piece import frontier_segment
from strategies.mean_variance import optimize_mean_variance
from strategies.qp import (
    DUAL_RELATIVE_TOLERANCE,
    _primal_active_set,
    _primal_dual_active_set,
    check_bounds,
    solve_qp,
)


def random_problem(n: int, seed: int, factors: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A factor-model covariance (annual scale) and expected returns."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(n, factors)) * 0.15
    cov = loadings @ loadings.T + np.diag(rng.uniform(0.01, 0.09, n))
    mu = rng.uniform(-0.02, 0.15, n)
    return cov, mu


def assert_kkt(cov: np.ndarray, lin: np.ndarray, w: np.ndarray, lower: np.ndarray,
               upper: np.ndarray, tol: float = 1e-9) -> None:
    """Feasibility, and a budget multiplier ν with z = Σw − c − ν ≥ 0 at lower bounds,
    ≤ 0 at upper bounds, = 0 in between (first-order optimality of a convex QP)."""
    assert abs(w.sum() - 1.0) <= 1e-12
    assert (w >= lower - 1e-12).all() and (w <= upper + 1e-12).all()
    g = cov @ w - lin
    free = (w > lower + 1e-9) & (w < upper - 1e-9)
    assert free.any()
    nu = float(np.mean(g[free]))
    z = g - nu
    scale = np.abs(g).max()
    assert np.abs(z[free]).max() <= tol * scale
    assert (z[~free & (w <= lower + 1e-9)] >= -tol * scale).all()
    assert (z[~free & (w >= upper - 1e-9)] <= tol * scale).all()


def objective(cov: np.ndarray, lin: np.ndarray, w: np.ndarray) -> float:
    return 0.5 * float(w @ cov @ w) - float(lin @ w)


def scipy_reference(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                    upper: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize  # here: ~0.2 s of every worker's collection

    n = len(lin)
    result = minimize(lambda w: objective(cov, lin, w), np.full(n, 1.0 / n),
                      jac=lambda w: cov @ w - lin, method="SLSQP",
                      bounds=list(zip(lower, upper, strict=True)),
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                    "jac": lambda w: np.ones(n)}],
                      options={"ftol": 1e-15, "maxiter": 1000})
    return result.x


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("lam", [0.0, 0.3, 3.0])
def test_solve_qp_random_problem_satisfies_kkt_and_beats_slsqp(seed: int, lam: float) -> None:
    cov, mu = random_problem(12, seed)
    rng = np.random.default_rng(100 + seed)
    lower = np.where(rng.random(12) < 0.3, 0.02, 0.0)
    upper = np.where(rng.random(12) < 0.5, 0.15, 1.0)
    w = solve_qp(cov, lam * mu, lower, upper).weights
    assert_kkt(cov, lam * mu, w, lower, upper)
    ref = scipy_reference(cov, lam * mu, lower, upper)
    f, f_ref = objective(cov, lam * mu, w), objective(cov, lam * mu, ref)
    assert f <= f_ref + 1e-7 * abs(f_ref)


def test_solve_qp_two_assets_min_variance_matches_closed_form() -> None:
    s1, s2, rho = 0.2, 0.3, 0.25
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    w = solve_qp(cov, np.zeros(2), np.zeros(2), np.ones(2)).weights
    w1 = (s2**2 - rho * s1 * s2) / (s1**2 + s2**2 - 2 * rho * s1 * s2)
    np.testing.assert_allclose(w, [w1, 1 - w1], atol=1e-14)


def test_mean_variance_unconstrained_budget_closed_form() -> None:
    """max wᵀμ − (δ/2)wᵀΣw s.t. Σw = 1: w = Σ⁻¹(μ − ν1)/δ, ν fixing the budget."""
    cov, mu = random_problem(10, seed=3)
    delta = 4.0
    inv_mu, inv_one = np.linalg.solve(cov, mu), np.linalg.solve(cov, np.ones(10))
    nu = (inv_mu.sum() - delta) / inv_one.sum()
    expected = (inv_mu - nu * inv_one) / delta
    w = optimize_mean_variance(mu, cov, delta, np.full(10, -10.0), np.full(10, 10.0))
    np.testing.assert_allclose(w, expected, atol=1e-12)


def test_mean_variance_when_inverse_solution_sums_to_one_equals_sigma_inv_mu() -> None:
    cov, _ = random_problem(8, seed=4)
    target = np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    mu = 2.0 * cov @ target  # Σ⁻¹μ/δ = target, already fully invested
    w = optimize_mean_variance(mu, cov, 2.0, np.zeros(8), np.ones(8))
    np.testing.assert_allclose(w, np.linalg.solve(cov, mu) / 2.0, atol=1e-12)


def test_primal_active_set_fallback_satisfies_kkt() -> None:
    cov, mu = random_problem(40, seed=7)
    lower, upper = np.zeros(40), np.full(40, 0.08)
    tol = DUAL_RELATIVE_TOLERANCE * (np.abs(np.diag(cov)).max() + np.abs(mu).max())
    w = _primal_active_set(cov, mu, lower, upper, tol).weights
    assert_kkt(cov, mu, w, lower, upper)


@pytest.mark.parametrize("budget", ["ones", "excess"])
def test_primal_active_set_on_rank_deficient_sample_cov_updates_factor_and_meets_kkt(
        budget: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # 160 assets' sample covariance of 100 days (rank 99, repaired by loading): from a
    # greedy vertex the method frees assets one at a time for hundreds of iterations. It
    # updates its factor instead of factoring each free set anew, and must still land on
    # the same exact optimum as with every free set factored anew.
    from strategies import free_set, qp
    from strategies.covariance_repair import factor_covariance

    rng = np.random.default_rng(12)
    returns = rng.normal(0.0005, 0.01, (100, 160))
    cov = factor_covariance(np.cov(returns.T) * 252)[0]
    lower, upper = np.zeros(160), np.full(160, 0.05)
    lin = np.zeros(160)
    row = None if budget == "ones" else rng.uniform(0.02, 0.2, 160)
    tol = DUAL_RELATIVE_TOLERANCE * float(np.abs(np.diag(cov)).max())
    start = None
    if row is not None:  # the homogeneous max-Sharpe QP: y ≥ 0, rowᵀy = 1, from a vertex
        lower, upper = np.zeros(160), np.full(160, np.inf)
        y = np.zeros(160)
        y[int(np.argmax(row))] = 1.0 / row.max()
        start = qp.QPSolution(y, y == 0, np.zeros(160, bool), 0)
    counted = []
    original = free_set.factor_matrix
    monkeypatch.setattr(free_set, "factor_matrix", lambda m: counted.append(len(m)) or original(m))
    updated = _primal_active_set(cov, lin, lower, upper, tol, start, row)
    with_updates = len(counted)
    monkeypatch.setattr(qp, "PRIMAL_MAX_FACTOR_UPDATES", 0)
    fresh = _primal_active_set(cov, lin, lower, upper, tol, start, row)
    assert updated.iterations > 60  # the long walk this is about
    assert with_updates * 5 < len(counted) - with_updates  # the updates did the work
    np.testing.assert_allclose(updated.weights, fresh.weights, rtol=0, atol=1e-12)
    if row is None:
        assert_kkt(cov, lin, updated.weights, lower, upper)
    free = ~(updated.at_lower | updated.at_upper)
    assert updated.free_factor is not None  # Σ's on the sorted free set, for a warm start
    low = np.tril(updated.free_factor)
    np.testing.assert_allclose(low @ low.T, cov[np.ix_(free, free)], rtol=0, atol=1e-13)


def test_primal_active_set_from_a_dense_start_deletes_from_its_factor_and_meets_kkt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # From equal weights (every asset free) on a rank-deficient Σ the method holds assets
    # at their bounds one at a time: each leaves the factor by a rank-one update, or the
    # free set is factored anew with the smallest weights last. The answer must be the one
    # every free set factored anew gives.
    from strategies import qp
    from strategies.covariance_repair import factor_covariance

    rng = np.random.default_rng(13)
    cov = factor_covariance(np.cov(rng.normal(0.0005, 0.01, (100, 160)).T) * 252)[0]
    lin = 0.01 * rng.uniform(0.0, 0.15, 160)
    lower, upper = np.zeros(160), np.full(160, 0.05)
    tol = DUAL_RELATIVE_TOLERANCE * (float(np.abs(np.diag(cov)).max()) + float(lin.max()))
    start = qp.QPSolution(np.full(160, 1 / 160), np.zeros(160, bool), np.zeros(160, bool), 0)
    deleted = []
    original = qp.cholesky_delete
    monkeypatch.setattr(qp, "cholesky_delete",
                        lambda factor, k: deleted.append(k) or original(factor, k))
    updated = _primal_active_set(cov, lin, lower, upper, tol, start)
    assert len(deleted) > 40  # the deletions this is about
    monkeypatch.setattr(qp, "PRIMAL_MAX_FACTOR_UPDATES", 0)
    fresh = _primal_active_set(cov, lin, lower, upper, tol, start)
    np.testing.assert_allclose(updated.weights, fresh.weights, rtol=0, atol=1e-12)
    assert_kkt(cov, lin, updated.weights, lower, upper)


@pytest.mark.parametrize("seed", [3, 98, 102])
def test_solve_qp_return_heavy_on_rank_deficient_caps_ends_on_its_vertex(seed: int) -> None:
    """A return-heavy objective (c = 100μ: a small risk aversion) on a short window's
    repaired Σ with caps: the optimum is a vertex with the budget pinning the one asset
    short of its cap. The primal method released that asset, whose step then pointed
    back out by rounding (1e-14); re-adding it released it again until it gave up
    ("did not converge (degenerate cycling)"). The answer is now the vertex, and no
    budget multiplier is wrong-signed there."""
    from strategies.covariance_repair import factor_covariance

    rng = np.random.default_rng(seed)
    n = int(rng.choice([20, 40, 60]))
    returns = (rng.normal(0, 0.01, (n // 2, 3)) @ rng.normal(0, 1, (n, 3)).T
               + rng.normal(0, 0.01, (n // 2, n)))
    cov, chol = factor_covariance(np.cov(returns.T) * 252)
    lin = 100.0 * rng.uniform(-0.05, 0.2, n)
    lower, upper = np.zeros(n), np.full(n, float(rng.choice([0.05, 0.1, 0.2, 0.25])))
    w = solve_qp(cov, lin, lower, upper, chol=chol).weights
    assert abs(w.sum() - 1.0) <= 1e-12
    assert (w >= lower - 1e-12).all() and (w <= upper + 1e-12).all()
    g = cov @ w - lin
    at_lo, at_hi = w <= lower + 1e-9, w >= upper - 1e-9
    assert not (~at_lo & ~at_hi).any()  # a vertex: every weight at a bound
    assert float(g[at_hi].max()) <= float(g[at_lo].min()) + 1e-9 * float(np.abs(g).max())


def test_solve_qp_rank_deficient_cycling_start_hands_its_best_iterate_to_the_primal_method(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 120 assets' sample covariance of 60 days: the primal-dual iterations of the
    # regularized start cycle from the guess and from all assets free. The iterate whose
    # sets changed least, made feasible, starts the primal method (which used to walk up
    # from a single asset); the optimum is the one that walk finds.
    from strategies import qp
    from strategies.covariance_repair import factor_covariance

    rng = np.random.default_rng(1)
    cov, chol = factor_covariance(np.cov((rng.normal(0.0, 0.01, (60, 120))
                                          * rng.uniform(0.5, 2.0, 120)).T) * 252)
    lin = np.zeros(120)  # minimum variance, capped at 10 %
    lower, upper = np.zeros(120), np.full(120, 0.1)
    starts = []
    original = qp._primal_active_set
    monkeypatch.setattr(qp, "_primal_active_set",
                        lambda *args: starts.append(args[5]) or original(*args))
    w = solve_qp(cov, lin, lower, upper, chol=chol).weights
    assert len(starts) == 1 and starts[0].start_only  # the path this is about
    assert np.count_nonzero(~(starts[0].at_lower | starts[0].at_upper)) > 40
    tol = DUAL_RELATIVE_TOLERANCE * float(np.abs(np.diag(cov)).max())
    from_vertex = original(cov, lin, lower, upper, tol)
    np.testing.assert_allclose(w, from_vertex.weights, rtol=0, atol=1e-12)
    assert_kkt(cov, lin, w, lower, upper)


def test_tangency_qp_rank_deficient_cycling_start_hands_its_best_iterate_to_the_primal_method(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The homogeneous max-Sharpe QP (excessᵀy = 1, y ≥ 0) on 100 assets' sample covariance
    # of 50 days, without the interior start (``test_opt_interior``; here as if its
    # iterations had not converged): its regularized start cycles from all assets free;
    # the best iterate, scaled to the budget, starts the primal method. Its answer meets
    # the QP's KKT conditions: y ≥ 0, excessᵀy = 1, Σy = ν·excess on the held assets'
    # complement and ≥ it where y = 0 (ν = yᵀΣy).
    from strategies import qp_regularized
    from strategies.qp import solve_tangency_qp

    cov, chol, excess = rank_deficient_tangency_problem()
    ends = []
    original = qp_regularized._primal_dual_active_set

    def spy(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("best_on_failure"):
            ends.append(result)
        return result

    monkeypatch.setattr(qp_regularized, "_primal_dual_active_set", spy)
    monkeypatch.setattr(qp_regularized, "interior_start", lambda *args: None)
    y = solve_tangency_qp(cov, excess, chol).weights
    assert len(ends) == 1 and ends[0].start_only  # the path this is about
    assert_tangency_kkt(cov, excess, y)


def rank_deficient_tangency_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Σ (repaired), its factor and excess returns: 100 assets' sample covariance of 50
    days of independent returns (rank 49)."""
    from strategies.covariance_repair import factor_covariance

    rng = np.random.default_rng(0)
    returns = rng.normal(0.0, 0.01, (50, 100)) * rng.uniform(0.5, 2.0, 100)
    cov, chol = factor_covariance(np.cov(returns.T) * 252)
    return cov, chol, rng.uniform(-0.02, 0.15, 100)


def assert_tangency_kkt(cov: np.ndarray, excess: np.ndarray, y: np.ndarray) -> None:
    """The homogeneous max-Sharpe QP's KKT conditions: y ≥ 0, excessᵀy = 1, Σy = ν·excess
    where y > 0 and ≥ it where y = 0 (ν = yᵀΣy)."""
    assert (y >= 0).all() and abs(float(excess @ y) - 1.0) <= 1e-12
    z = cov @ y - float(y @ cov @ y) * excess
    tol = DUAL_RELATIVE_TOLERANCE * float(np.abs(np.diag(cov)).max())
    assert np.abs(z[y > 0]).max() <= tol and z[y == 0].min() >= -tol


def test_primal_dual_and_primal_active_set_agree_on_kkt_point() -> None:
    cov, mu = random_problem(60, seed=8)
    lower, upper = np.zeros(60), np.full(60, 0.05)
    tol = DUAL_RELATIVE_TOLERANCE * (np.abs(np.diag(cov)).max() + np.abs(mu).max())
    fast = _primal_dual_active_set(cov, mu * 0.2, lower, upper, lower > 1, lower > 1, tol)
    safe = _primal_active_set(cov, mu * 0.2, lower, upper, tol)
    assert fast is not None
    np.testing.assert_allclose(fast.weights, safe.weights, atol=1e-10)


def test_solve_qp_warm_start_from_other_lambda_gives_same_optimum() -> None:
    cov, mu = random_problem(50, seed=9)
    lower, upper = np.zeros(50), np.full(50, 0.2)
    cold = solve_qp(cov, 0.5 * mu, lower, upper)
    warm = solve_qp(cov, 0.5 * mu, lower, upper, warm=solve_qp(cov, 0.0 * mu, lower, upper))
    np.testing.assert_allclose(warm.weights, cold.weights, atol=1e-12)


def test_frontier_segment_is_optimal_along_its_interval() -> None:
    cov, mu = random_problem(15, seed=10)
    lower, upper = np.zeros(15), np.full(15, 0.3)
    sol = solve_qp(cov, 0.2 * mu, lower, upper)
    seg = frontier_segment(cov, mu, lower, upper, sol, 0.2)
    assert seg.lam_lo <= 0.2 <= seg.lam_hi
    hi = min(seg.lam_hi, 10.0)
    for lam in np.linspace(seg.lam_lo, hi, 5):
        assert_kkt(cov, lam * mu, seg.at(lam), lower, upper, tol=1e-8)


def test_check_bounds_upper_sum_below_one_names_constraint() -> None:
    with pytest.raises(StrategyError, match=r"upper bounds sum to 0.5 .*sum\(w\) = 1"):
        check_bounds(np.zeros(5), np.full(5, 0.1), list("ABCDE"))


def test_check_bounds_lower_sum_above_one_names_constraint() -> None:
    with pytest.raises(StrategyError, match=r"lower bounds sum to 1\.5"):
        check_bounds(np.full(3, 0.5), np.ones(3), list("ABC"))


def test_check_bounds_lower_above_upper_names_symbol() -> None:
    with pytest.raises(StrategyError, match=r"\['B'\]"):
        check_bounds(np.array([0.0, 0.6]), np.array([1.0, 0.5]), ["A", "B"])


def test_optimize_mean_variance_singular_covariance_warns_not_crashes() -> None:
    from tests.conftest import capture_logs

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 10)) * 0.01
    cov = np.cov(x, rowvar=False) * 252  # rank 4 < 10 assets
    with capture_logs() as logs:
        w = optimize_mean_variance(np.full(10, 0.05), cov, 2.0, np.zeros(10), np.ones(10))
    assert abs(w.sum() - 1) < 1e-12 and (w >= 0).all()
    assert any(e["event"] == "covariance_repaired" for e in logs)


@given(seed=st.integers(0, 10_000), n=st.integers(2, 9), lam=st.floats(0.0, 20.0),
       cap=st.floats(0.0, 1.0))
@settings(max_examples=60, deadline=None)
def test_solve_qp_any_feasible_box_kkt_holds(seed: int, n: int, lam: float, cap: float) -> None:
    """Property: for any factor-model Σ, μ, λ and feasible caps, the solution is feasible
    and no feasible direction improves the objective (checked against SLSQP)."""
    cov, mu = random_problem(n, seed, factors=2)
    lower = np.zeros(n)
    upper = np.full(n, max(cap, 1.0 / n + 1e-3))
    w = solve_qp(cov, lam * mu, lower, upper).weights
    assert abs(w.sum() - 1) <= 1e-12
    assert (w >= lower - 1e-12).all() and (w <= upper + 1e-12).all()
    ref = scipy_reference(cov, lam * mu, lower, upper)
    f, f_ref = objective(cov, lam * mu, w), objective(cov, lam * mu, ref)
    assert f <= f_ref + 1e-7 * max(abs(f_ref), 1e-12)

