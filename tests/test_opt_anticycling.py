"""Anti-cycling of the primal active-set methods: degenerate problems on which the box QP
(``qp._primal_active_set``) and the cost-aware QP (``costed_primal.primal``) cycled and
raised "did not converge (degenerate cycling)". Each now ends at the optimum: the KKT
conditions within 1e-9, and the objective of an independent solve (SLSQP) not beaten.

- Box QP, tied returns (c = k·1) on a sample covariance of fewer days than assets
  (repaired): the free-set solve's two terms of ~1e10 cancel, so the step after a bound
  is released heads back out and the bound re-enters, for ever.
- Cost-aware QP, a working cap that depends on the budget and the other rows over the
  free assets (every free asset in a capped sector, or all on the same side of their
  kinks under a working turnover cap): its multiplier was taken as 0, a held asset
  looked violated under that choice, and released it was pinned and re-entered at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from strategies.costed_qp import LinearTerms, solve_costed_qp, turnover
from strategies.covariance_repair import factor_covariance
from strategies.qp import DUAL_RELATIVE_TOLERANCE, _primal_active_set, solve_qp
from tests.test_opt_costs import assert_costed_feasible
from tests.test_opt_qp import assert_kkt


def sample_covariance(n: int, days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The repaired sample covariance (and its factor) of ``days`` < n days of independent
    returns: rank days − 1, the rest at the repair's loading (~1e-11)."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.01, (days, n)) * rng.uniform(0.5, 2.0, n)
    return factor_covariance(np.cov(returns.T) * 252)


def duplicated_covariance(n: int, distinct: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``distinct`` assets from a 3-factor model and n − distinct exact copies of them,
    repaired."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(distinct, 3)) * 0.15
    cov = loadings @ loadings.T + np.diag(rng.uniform(0.01, 0.09, distinct))
    copies = np.concatenate([np.arange(distinct), rng.integers(0, distinct, n - distinct)])
    return factor_covariance(cov[np.ix_(copies, copies)])


def slsqp_objective(objective, gradient, n: int, lower: np.ndarray, upper: np.ndarray,
                    constraints: list[dict]) -> float:
    result = minimize(objective, np.full(n, 1.0 / n), jac=gradient, method="SLSQP",
                      bounds=list(zip(lower, upper, strict=True)), constraints=constraints,
                      options={"ftol": 1e-15, "maxiter": 2000})
    return float(result.fun)


# (assets, days, seed, c, upper): each raised "mean-variance QP did not converge".
TIED_CASES = [(10, 5, 3, 0.5, 0.5), (20, 10, 0, 0.5, 0.25), (33, 16, 26, 0.5, 0.25)]


@pytest.mark.parametrize(("n", "days", "seed", "c", "cap"), TIED_CASES)
def test_solve_qp_tied_returns_rank_deficient_meets_kkt(n: int, days: int, seed: int,
                                                        c: float, cap: float) -> None:
    cov, _ = sample_covariance(n, days, seed)
    lin, lower, upper = np.full(n, c), np.zeros(n), np.full(n, cap)
    w = solve_qp(cov, lin, lower, upper).weights
    assert_kkt(cov, lin, w, lower, upper)
    # c·1 only shifts the budget multiplier: the same problem as minimum variance
    ones = {"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones(n)}
    reference = slsqp_objective(lambda x: 0.5 * x @ cov @ x, lambda x: cov @ x, n, lower,
                                upper, [ones])
    assert 0.5 * w @ cov @ w <= reference + 1e-12


@pytest.mark.parametrize(("n", "days", "seed", "c", "cap"), TIED_CASES[:1])
def test_primal_active_set_tied_returns_from_greedy_vertex_meets_kkt(
        n: int, days: int, seed: int, c: float, cap: float) -> None:
    cov, _ = sample_covariance(n, days, seed)
    lin, lower, upper = np.full(n, c), np.zeros(n), np.full(n, cap)
    tol = DUAL_RELATIVE_TOLERANCE * (float(cov.diagonal().max()) + c)
    w = _primal_active_set(cov, lin, lower, upper, tol).weights
    assert_kkt(cov, lin, w, lower, upper)


def assert_costed_optimal(cov: np.ndarray, lin: np.ndarray, penalty: float, w: np.ndarray,
                          lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
                          tol: float = 1e-9) -> None:
    """Feasibility, and multipliers ν, ρ ≥ 0 (binding sector caps), η ≥ 0 (binding
    turnover cap) meeting the subgradient KKT conditions within ``tol`` (relative to
    max|Σw − c| + penalty), found by an LP: at a degenerate optimum they are not unique
    and least squares over the free assets (``test_opt_costs.assert_subgradient_kkt``)
    need not pick valid ones."""
    from scipy.optimize import linprog

    a, near, n = terms.anchor, 1e-9, len(w)
    sums = assert_costed_feasible(w, lower, upper, terms)
    g = cov @ w - lin
    kink = (np.abs(w - a) <= near) & (a > lower) & (a < upper)
    at_lo = (w <= lower + near) & ~kink
    at_hi = (w >= upper - near) & ~kink & ~at_lo
    free = ~(kink | at_lo | at_hi)
    binding = np.flatnonzero(sums >= terms.sector_caps - near)
    capped = terms.has_turnover and turnover(w, terms) >= terms.max_turnover - near
    column = np.full(n, -1)
    column[np.isin(terms.sector_of, binding)] = np.searchsorted(
        binding, terms.sector_of[np.isin(terms.sector_of, binding)])
    sign = np.sign(w - a)
    up_sign, down_sign = np.where(a <= lower, 1.0, -1.0), np.where(a >= upper, -1.0, 1.0)
    conditions = []  # (asset, α, σ): α·(r_i + q·σ) ≤ t, r = g + ν + ρ, q = penalty + η
    for i in np.flatnonzero(lower < upper):
        if free[i]:
            conditions += [(i, 1.0, sign[i]), (i, -1.0, sign[i])]
        elif kink[i]:
            conditions += [(i, -1.0, 1.0), (i, 1.0, -1.0)]
        elif at_lo[i]:
            conditions.append((i, -1.0, up_sign[i]))
        else:
            conditions.append((i, 1.0, down_sign[i]))
    k = len(binding)
    a_ub = np.zeros((len(conditions), k + 3))
    b_ub = np.zeros(len(conditions))
    for row, (i, alpha, sigma) in enumerate(conditions):
        a_ub[row, 0] = alpha
        if column[i] >= 0:
            a_ub[row, 1 + column[i]] = alpha
        a_ub[row, 1 + k] = alpha * sigma if capped else 0.0
        a_ub[row, -1] = -1.0
        b_ub[row] = -alpha * (g[i] + penalty * sigma)
    bounds = [(None, None)] + [(0.0, None)] * k + [(0.0, None if capped else 0.0), (None, None)]
    cost = np.zeros(k + 3)
    cost[-1] = 1.0
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert result.status == 0
    assert result.x[-1] <= tol * (float(np.abs(g).max()) + penalty)


def costed_slsqp_objective(cov: np.ndarray, lin: np.ndarray, penalty: float,
                           lower: np.ndarray, upper: np.ndarray, terms: LinearTerms) -> float:
    """The costed QP as a smooth one in w and the trades u, v ≥ 0 (w = a + u − v)."""
    n, a = len(lin), terms.anchor
    zeros, ones = np.zeros(n), np.ones(n)

    def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[:n], x[n:2 * n] + x[2 * n:]

    def objective(x: np.ndarray) -> float:
        w, traded = split(x)
        return 0.5 * w @ cov @ w - lin @ w + penalty * traded.sum()

    def gradient(x: np.ndarray) -> np.ndarray:
        w, _ = split(x)
        return np.concatenate([cov @ w - lin, np.full(2 * n, penalty)])

    eye = np.eye(n)
    constraints = [
        {"type": "eq", "fun": lambda x: x[:n].sum() - 1.0,
         "jac": lambda x: np.concatenate([ones, zeros, zeros])},
        {"type": "eq", "fun": lambda x: x[:n] - a - x[n:2 * n] + x[2 * n:],
         "jac": lambda x: np.hstack([eye, -eye, eye])}]
    for sector, cap in enumerate(terms.sector_caps):
        row = np.concatenate([(terms.sector_of == sector).astype(float), zeros, zeros])
        constraints.append({"type": "ineq", "fun": lambda x, r=row, c=cap: c - r @ x,
                            "jac": lambda x, r=row: -r})
    if terms.has_turnover:
        row = np.concatenate([zeros, ones, ones])
        constraints.append({"type": "ineq", "fun": lambda x: terms.max_turnover - row @ x,
                            "jac": lambda x: -row})
    start = np.concatenate([np.full(n, 1.0 / n), np.maximum(1.0 / n - a, 0.0),
                            np.maximum(a - 1.0 / n, 0.0)])
    result = minimize(objective, start, jac=gradient, method="SLSQP",
                      bounds=list(zip(lower, upper, strict=True)) + [(0.0, None)] * (2 * n),
                      constraints=constraints, options={"ftol": 1e-15, "maxiter": 2000})
    return float(result.fun)


def assert_costed_answer(cov: np.ndarray, lin: np.ndarray, penalty: float,
                         lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
                         chol: np.ndarray) -> None:
    w = solve_costed_qp(cov, lin, penalty, lower, upper, terms, chol=chol).weights
    assert_costed_optimal(cov, lin, penalty, w, lower, upper, terms)
    ours = 0.5 * w @ cov @ w - lin @ w + penalty * turnover(w, terms)
    assert ours <= costed_slsqp_objective(cov, lin, penalty, lower, upper, terms) + 1e-9


@pytest.mark.parametrize("seed", [4, 14, 17])
def test_costed_qp_sector_caps_dependent_on_the_budget_meets_kkt(seed: int) -> None:
    """Minimum variance with a small cost over 5 assets and 13 copies, two sectors capped
    at 0.3 and the rest uncapped, from equal weights: on the way every free asset is in a
    capped sector and the uncapped ones are at their upper bounds, so the budget minus one
    sector's row is the other's."""
    n = 18
    cov, chol = duplicated_covariance(n, 5, seed)
    rng = np.random.default_rng(seed)
    anchor = np.full(n, 1.0 / (n - 1))
    anchor[rng.integers(n)] = 0.0
    terms = LinearTerms(anchor, rng.integers(-1, 2, n), np.array([0.3, 0.3]))
    assert_costed_answer(cov, np.zeros(n), 1e-4, np.zeros(n), np.full(n, 0.1), terms, chol)


@pytest.mark.parametrize("seed", [34, 46])
def test_costed_qp_turnover_cap_dependent_on_the_budget_meets_kkt(seed: int) -> None:
    """Tied returns (two values) on the sample covariance of 8 days of 27 assets, a
    turnover cap of 0.5 from 20 equal holdings: on the way the cap binds with every free
    asset bought, so its row is the budget's."""
    n = 27
    cov, chol = sample_covariance(n, 8, seed)
    rng = np.random.default_rng(seed)
    lin = np.where(rng.random(n) < 0.5, 0.0, 1.0)
    anchor = np.zeros(n)
    anchor[rng.choice(n, 20, replace=False)] = 0.05
    terms = LinearTerms(anchor, np.full(n, -1), np.zeros(0), 0.5)
    assert_costed_answer(cov, lin, 1e-4, np.zeros(n), np.full(n, 0.5), terms, chol)



@pytest.mark.parametrize("seed", [1, 23])
def test_min_variance_duplicated_symbols_sector_caps_and_cost_meets_kkt(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a user meets: min_variance with turnover_penalty and sector_limits over 18
    symbols of which 13 copy 5 others' prices, 60 days, from equal holdings; the cycle
    held on "cost-aware mean-variance QP did not converge". The weights are now the
    costed QP's optimum (its inputs captured on the way)."""
    import pandas as pd

    import strategies
    from strategies import mean_variance

    rng = np.random.default_rng(seed)
    n, distinct, days = 18, 5, 80
    returns = rng.normal(0.0004, 0.01, (days, distinct))
    copies = np.concatenate([np.arange(distinct), rng.integers(0, distinct, n - distinct)])
    prices = pd.DataFrame(100 * np.cumprod(1 + returns[:, copies], axis=0),
                          index=pd.bdate_range("2022-01-03", periods=days),
                          columns=[f"S{i}" for i in range(n)])
    sector = rng.integers(-1, 2, n)
    sectors = {f"S{i}": "AB"[s] for i, s in enumerate(sector) if s >= 0}
    current = pd.Series(1.0 / (n - 1), index=prices.columns)
    current.iloc[rng.integers(n)] = 0.0
    calls = []

    def spy(*args, **kwargs):
        solution = solve_costed_qp(*args, **kwargs)
        calls.append((args, kwargs, solution))
        return solution

    monkeypatch.setattr(mean_variance, "solve_costed_qp", spy)
    strategy = strategies.create("min_variance", lookback_days=60, bounds=[0.0, 0.1],
                                 turnover_penalty=2e-4, sectors=sectors,
                                 sector_limits={"A": 0.3, "B": 0.3})
    weights = strategy.target_weights(prices, current)
    assert weights.sum() == pytest.approx(1.0, abs=1e-9) and (weights <= 0.1 + 1e-12).all()
    (cov, lin, penalty, lower, upper, terms), _, solution = calls[-1]
    assert_costed_optimal(cov, lin, penalty, solution.weights, lower, upper, terms)
