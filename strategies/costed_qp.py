"""The mean-variance QP with trading costs, a turnover cap and sector caps.

    minimize ½wᵀΣw − cᵀw + p·Σ_i |w_i − a_i|
    subject to Σw = 1,  lower ≤ w ≤ upper,  Σ_{i∈g} w_i ≤ cap_g (each sector g),
               Σ_i |w_i − a_i| ≤ τ

a = the current weights (w_now), p ≥ 0 the proportional cost in objective units, τ the
turnover cap. Each |w_i − a_i| is affine on either side of its kink a_i, so we treat a_i
as a third "bound": every asset is fixed at lower, upper or a_i (LO, HI, KINK) or free on
one side of a_i (DOWN: w < a, UP: w > a) with a known sign s_i. On a guess of these states
and of the active caps the problem is an equality-constrained QP: one Cholesky of Σ on the
free assets plus a k×k Schur system for the k active rows (budget, caps, turnover).

Optimality (the subgradient KKT conditions): with g = Σw − c, ν the budget multiplier,
ρ_g ≥ 0 the sector multipliers, η ≥ 0 the turnover multiplier, r = g + ν + ρ_{sector(i)}
and q = p + η: r_i = −q·s_i for a free asset, |r_i| ≤ q at a kink, r_i + q·s⁺_i ≥ 0 at its
lower bound and r_i + q·s⁻_i ≤ 0 at its upper bound (s± the sign just inside the bound).

Algorithm: the primal-dual active-set iterations of ``strategies.qp`` extended to these
states (Hintermüller, Ito & Kunisch 2002; for L1 terms this is the semismooth Newton method
of e.g. Byrd et al. 2016), started from "no trade"; if they cycle, the primal active-set
method (Nocedal & Wright 2006, Alg. 16.3) from a feasible point — the least-turnover
portfolio, an LP solved by HiGHS — which also proves infeasible caps infeasible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from strategies.base import StrategyError
from strategies.qp import (
    REGULARIZATION_STEPS,
    FrontierSegment,
    _ill_conditioned,
    _lambda_cap,
    _segment,
)

LO, HI, KINK, DOWN, UP = 0, 1, 2, 3, 4
PDAS_MAX_ITERATIONS = 60
WEIGHT_TOLERANCE = 1e-12
DUAL_RELATIVE_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class LinearTerms:
    """Everything beyond box and budget: current weights a (0 for symbols not held),
    sector index per asset (−1: none) with one cap per sector, and the turnover cap τ
    (inf: none)."""

    anchor: np.ndarray
    sector_of: np.ndarray
    sector_caps: np.ndarray
    max_turnover: float = np.inf

    @property
    def has_turnover(self) -> bool:
        return bool(np.isfinite(self.max_turnover))


@dataclass(frozen=True, slots=True)
class CostedSolution:
    """Optimal weights, each asset's state (LO/HI/KINK/DOWN/UP), the caps in the working
    set and the multipliers (ν, ρ per sector, η) found with them."""

    weights: np.ndarray
    states: np.ndarray
    sectors_active: np.ndarray
    turnover_active: bool
    nu: float
    rho: np.ndarray
    eta: float
    iterations: int


@dataclass(frozen=True, slots=True)
class _Geometry:
    """Per-asset constants: kink inside the box, the kink clipped into the box, the sign
    just above the lower and just below the upper bound."""

    kinked: np.ndarray
    kink: np.ndarray
    sign_up_from_lo: np.ndarray
    sign_down_from_hi: np.ndarray

    @staticmethod
    def of(lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
           with_kinks: bool) -> _Geometry:
        a = terms.anchor
        kinked = (lower < a) & (a < upper) & with_kinks
        return _Geometry(kinked=kinked, kink=np.clip(a, lower, upper),
                         sign_up_from_lo=np.where(a <= lower, 1.0, -1.0),
                         sign_down_from_hi=np.where(a >= upper, -1.0, 1.0))


def turnover(w: np.ndarray, terms: LinearTerms) -> float:
    """Σ|w − a|: the one-way traded fraction of equity (both legs counted)."""
    return float(np.sum(np.abs(w - terms.anchor)))


def _fixed_values(states: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  geo: _Geometry) -> np.ndarray:
    return np.select([states == LO, states == HI, states == KINK], [lower, upper, geo.kink],
                     0.0)


def _signs(states: np.ndarray) -> np.ndarray:
    return np.where(states == UP, 1.0, np.where(states == DOWN, -1.0, 0.0))


@dataclass(frozen=True, slots=True)
class _EqpResult:
    weights: np.ndarray
    nu: float
    rho: np.ndarray
    eta: float
    solved: bool  # False when no asset is free (multipliers undetermined)


def _solve_states(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                  upper: np.ndarray, terms: LinearTerms, geo: _Geometry, states: np.ndarray,
                  sectors_active: np.ndarray, turnover_active: bool) -> _EqpResult | None:
    """The minimizer with ``states`` held and the working caps at equality; None when the
    working rows are linearly dependent on the free assets."""
    w = _fixed_values(states, lower, upper, geo)
    free = np.flatnonzero(states >= DOWN)
    n_sectors = len(terms.sector_caps)
    if free.size == 0:
        return _EqpResult(w, float("nan"), np.zeros(n_sectors), 0.0, False)
    sign = _signs(states)[free]
    rows, rhs = [np.ones(free.size)], [1.0 - float(w.sum())]
    sector_rows = []
    for g in np.flatnonzero(sectors_active):
        members = terms.sector_of == g
        rows.append(members[free].astype(float))
        rhs.append(float(terms.sector_caps[g]) - float(w[members].sum()))
        sector_rows.append(g)
    if turnover_active:
        rows.append(sign)
        rhs.append(terms.max_turnover - float(np.sum(np.abs(w - terms.anchor)
                                                     * (states < DOWN)))
                   + float(sign @ terms.anchor[free]))
    a_free = np.array(rows)
    if np.linalg.matrix_rank(a_free) < len(rows):
        return None
    base = lin[free] - penalty * sign
    if w.any():
        base = base - cov[free] @ w
    solved = _saddle_solve(cov[np.ix_(free, free)], a_free, base, np.array(rhs))
    if solved is None:
        return None
    w[free], mult = solved
    rho = np.zeros(n_sectors)
    rho[sector_rows] = mult[1:1 + len(sector_rows)]
    eta = float(mult[-1]) if turnover_active else 0.0
    return _EqpResult(w, float(mult[0]), rho, eta, True)


def _saddle_solve(cov_free: np.ndarray, a_free: np.ndarray, base: np.ndarray,
                  rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Solve [Σ_FF Aᵀ; A 0][w; m] = [base; rhs] by Cholesky and the Schur complement
    AΣ⁻¹Aᵀ, plus two steps of iterative refinement: on a near-singular Σ the two terms of
    w = Σ⁻¹(base − Aᵀm) are large and cancel, and refinement brings both the rows and the
    stationarity residual back to rounding level (what the KKT checks measure)."""
    try:
        factor = cho_factor(cov_free, lower=True, check_finite=False)
    except LinAlgError as exc:
        raise StrategyError("covariance is not positive definite on the free assets; "
                            "repair it (estimators.repair_covariance) first") from exc
    y_mat = cho_solve(factor, a_free.T, check_finite=False)
    try:
        schur = cho_factor(a_free @ y_mat, lower=True, check_finite=False)
    except LinAlgError:
        return None
    w, mult = np.zeros(len(base)), np.zeros(len(rhs))
    r_top, r_bottom = base, rhs
    for _ in range(3):
        x = cho_solve(factor, r_top, check_finite=False)
        d_mult = cho_solve(schur, a_free @ x - r_bottom, check_finite=False)
        w, mult = w + x - y_mat @ d_mult, mult + d_mult
        r_top = base - cov_free @ w - a_free.T @ mult
        r_bottom = rhs - a_free @ w
    return w, mult


def _reduced_gradient(cov: np.ndarray, lin: np.ndarray, w: np.ndarray, nu: float,
                      rho: np.ndarray, terms: LinearTerms) -> np.ndarray:
    grouped = terms.sector_of >= 0
    r = cov @ w - lin + nu
    r[grouped] += rho[terms.sector_of[grouped]]
    return r


def _dual_violations(r: np.ndarray, q: float, states: np.ndarray,
                     geo: _Geometry) -> tuple[np.ndarray, np.ndarray]:
    """How much each fixed asset's optimality condition is violated toward an increase
    (``up``) and toward a decrease (``down``); ≤ 0 means satisfied."""
    up = np.where(states == LO, -(r + q * geo.sign_up_from_lo),
                  np.where(states == KINK, -(r + q), -np.inf))
    down = np.where(states == HI, r + q * geo.sign_down_from_hi,
                    np.where(states == KINK, r - q, -np.inf))
    return up, down


def _release_up(i: int, states: np.ndarray, geo: _Geometry) -> None:
    states[i] = UP if (states[i] == KINK or not geo.kinked[i]
                       and geo.sign_up_from_lo[i] > 0) else DOWN


def _release_down(i: int, states: np.ndarray, geo: _Geometry) -> None:
    states[i] = DOWN if (states[i] == KINK or not geo.kinked[i]
                         and geo.sign_down_from_hi[i] < 0) else UP


def _segment_ends(states: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  geo: _Geometry) -> tuple[np.ndarray, np.ndarray]:
    """The interval a free asset may move in without changing state."""
    seg_lo = np.where((states == UP) & geo.kinked, geo.kink, lower)
    seg_hi = np.where((states == DOWN) & geo.kinked, geo.kink, upper)
    return seg_lo, seg_hi


def _state_at_end(at_low_end: bool, i: int, states: np.ndarray, geo: _Geometry) -> int:
    if at_low_end:
        return KINK if states[i] == UP and geo.kinked[i] else LO
    return KINK if states[i] == DOWN and geo.kinked[i] else HI


def _initial_states(lower: np.ndarray, upper: np.ndarray, geo: _Geometry) -> np.ndarray:
    """No trade where the box allows it: assets at their kink, else at the nearer bound."""
    states = np.where(geo.kinked, KINK, np.where(geo.kink <= lower, LO, HI)).astype(np.int8)
    states[lower >= upper] = LO
    return states


def _tolerance(cov: np.ndarray, lin: np.ndarray, penalty: float) -> float:
    return DUAL_RELATIVE_TOLERANCE * (float(np.max(np.abs(np.diag(cov))))
                                      + float(np.max(np.abs(lin))) + penalty)


def solve_costed_qp(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                    upper: np.ndarray, terms: LinearTerms,
                    warm: CostedSolution | None = None,
                    kinks: bool | None = None,
                    chol: np.ndarray | None = None) -> CostedSolution:
    """Minimize ½wᵀΣw − linᵀw + penalty·Σ|w − a| s.t. Σw = 1, bounds, sector caps and the
    turnover cap (see the module docstring). ``warm`` seeds states and caps from a nearby
    solution; ``kinks`` (default: penalty > 0 or a turnover cap) keeps the kink states
    even at zero penalty, as the frontier search needs; ``chol`` (Σ's Cholesky factor)
    flags a near-singular Σ, for which the regularized start is taken at once (if that
    fails too, the primal method starts from ``warm``, feasible here as well). Infeasible
    caps raise
    StrategyError naming them."""
    geo = _Geometry.of(lower, upper, terms,
                       penalty > 0 or terms.has_turnover if kinks is None else kinks)
    tol = _tolerance(cov, lin, penalty)
    if warm is not None:
        start = (warm.states.copy(), warm.sectors_active.copy(), warm.turnover_active)
    else:
        start = (_initial_states(lower, upper, geo),
                 np.zeros(len(terms.sector_caps), bool), False)
    solution = None
    if chol is None or not _ill_conditioned(chol):
        solution = _primal_dual(cov, lin, penalty, lower, upper, terms, geo, tol, *start)
    if solution is None:
        regularized = _regularized_start(cov, lin, penalty, lower, upper, terms, geo, tol,
                                         start)
        if regularized is None and warm is not None:  # a nearby optimum is feasible too
            feasible = (warm.weights, warm.states, warm.sectors_active, warm.turnover_active)
        elif regularized is None:
            feasible = _feasible_start(lower, upper, terms, geo)
        else:
            feasible = (regularized.weights, regularized.states,
                        regularized.sectors_active, regularized.turnover_active)
        solution = _primal(cov, lin, penalty, lower, upper, terms, geo, tol, feasible)
    return solution


def _regularized_start(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                       upper: np.ndarray, terms: LinearTerms, geo: _Geometry, tol: float,
                       start: tuple[np.ndarray, np.ndarray, bool]) -> CostedSolution | None:
    """A feasible near-optimal start for the primal method: the primal-dual iterations
    on Σ + ρI, ρ shrinking (continuation), as ``qp._regularized_start`` does for the box
    QP — they cycle on near-singular Σ, the proximal term tames them."""
    scale = float(np.mean(np.diag(cov)))
    best = None
    for rho in REGULARIZATION_STEPS:
        regularized = cov.copy()
        regularized.flat[:: len(lin) + 1] += rho * scale
        found = _primal_dual(regularized, lin, penalty, lower, upper, terms, geo, tol, *start)
        if found is None:
            break
        best = found
        start = (found.states.copy(), found.sectors_active.copy(), found.turnover_active)
    return best


def _primal_dual(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                 upper: np.ndarray, terms: LinearTerms, geo: _Geometry, tol: float,
                 states: np.ndarray, sectors_active: np.ndarray,
                 turnover_active: bool) -> CostedSolution | None:
    """Primal-dual active-set iterations over the asset states and the caps; None if they
    cycle, stall or meet a vertex (no free asset)."""
    fixed = lower >= upper
    seen: set[bytes] = set()
    for iteration in range(1, PDAS_MAX_ITERATIONS + 1):
        eqp = _solve_states(cov, lin, penalty, lower, upper, terms, geo, states,
                            sectors_active, turnover_active)
        if eqp is None:
            return None
        w = eqp.weights
        if not eqp.solved:  # a vertex: every asset at a bound or its kink
            nu, release, up = _vertex_step(cov, lin, penalty, lower, upper, terms, geo, tol,
                                           w, states, fixed)
            if release is None:
                if _caps_hold(w, terms):
                    result = _EqpResult(w, nu, np.zeros(len(terms.sector_caps)), 0.0, False)
                    return _finish(w, states, np.zeros_like(sectors_active), False, result,
                                   iteration, lower, upper, geo)
                return None
            states = states.copy()
            (_release_up if up else _release_down)(release, states, geo)
            continue
        r = _reduced_gradient(cov, lin, w, eqp.nu, eqp.rho, terms)
        up, down = _dual_violations(r, penalty + eqp.eta, states, geo)
        seg_lo, seg_hi = _segment_ends(states, lower, upper, geo)
        free = states >= DOWN
        new = states.copy()
        for i in np.flatnonzero(free & (w < seg_lo - WEIGHT_TOLERANCE)):
            new[i] = _state_at_end(True, i, states, geo)
        for i in np.flatnonzero(free & (w > seg_hi + WEIGHT_TOLERANCE)):
            new[i] = _state_at_end(False, i, states, geo)
        for i in np.flatnonzero((up > tol) & ~fixed):
            _release_up(i, new, geo)
        for i in np.flatnonzero((down > tol) & ~fixed):
            _release_down(i, new, geo)
        sums = np.bincount(terms.sector_of[terms.sector_of >= 0],
                           weights=w[terms.sector_of >= 0], minlength=len(terms.sector_caps))
        new_sectors = np.where(sectors_active, eqp.rho >= -tol,
                               sums > terms.sector_caps + WEIGHT_TOLERANCE)
        new_turnover = (eqp.eta >= -tol if turnover_active
                        else turnover(w, terms) > terms.max_turnover + WEIGHT_TOLERANCE)
        if (np.array_equal(new, states) and np.array_equal(new_sectors, sectors_active)
                and new_turnover == turnover_active):
            return _finish(w, states, sectors_active, turnover_active, eqp, iteration,
                           lower, upper, geo)
        key = (new.tobytes() + np.packbits(new_sectors).tobytes() + bytes([new_turnover]))
        if key in seen:
            return None
        seen.add(key)
        states, sectors_active, turnover_active = new, new_sectors, bool(new_turnover)
    return None


def _caps_hold(w: np.ndarray, terms: LinearTerms) -> bool:
    grouped = terms.sector_of >= 0
    sums = np.bincount(terms.sector_of[grouped], weights=w[grouped],
                       minlength=len(terms.sector_caps))
    return bool((sums <= terms.sector_caps + WEIGHT_TOLERANCE).all()
                and turnover(w, terms) <= terms.max_turnover + WEIGHT_TOLERANCE)


def _finish(w: np.ndarray, states: np.ndarray, sectors_active: np.ndarray,
            turnover_active: bool, eqp: _EqpResult, iterations: int, lower: np.ndarray,
            upper: np.ndarray, geo: _Geometry) -> CostedSolution:
    seg_lo, seg_hi = _segment_ends(states, lower, upper, geo)
    free = states >= DOWN
    w = np.where(free, np.clip(w, seg_lo, seg_hi), _fixed_values(states, lower, upper, geo))
    return CostedSolution(w, states, sectors_active, turnover_active, eqp.nu, eqp.rho,
                          eqp.eta, iterations)


def _vertex_multiplier(cov: np.ndarray, lin: np.ndarray, penalty: float, w: np.ndarray,
                       states: np.ndarray, geo: _Geometry, fixed: np.ndarray
                       ) -> tuple[float, bool]:
    """At a vertex (no free asset) the budget multiplier is any ν in an interval set by
    the fixed assets' conditions (caps taken inactive): its midpoint, and whether the
    interval is non-empty (then the vertex is optimal if it is feasible)."""
    g = cov @ w - lin
    q = penalty
    movable = ~fixed
    lows = np.concatenate([(-g - q * geo.sign_up_from_lo)[(states == LO) & movable],
                           (-g - q)[states == KINK]])
    highs = np.concatenate([(-g - q * geo.sign_down_from_hi)[states == HI],
                            (-g + q)[states == KINK]])
    low = float(np.max(lows, initial=-np.inf))
    high = float(np.min(highs, initial=np.inf))
    if not np.isfinite(low):
        low = high
    if not np.isfinite(high):
        high = low
    return 0.5 * (low + high), low <= high


def _vertex_step(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                 upper: np.ndarray, terms: LinearTerms, geo: _Geometry, tol: float,
                 w: np.ndarray, states: np.ndarray, fixed: np.ndarray
                 ) -> tuple[float, int | None, bool]:
    """(ν, the asset to release with its direction up?, or None when the vertex is optimal)."""
    nu, separable = _vertex_multiplier(cov, lin, penalty, w, states, geo, fixed)
    r = cov @ w - lin + nu
    up, down = _dual_violations(r, penalty, states, geo)
    up[fixed | (states == HI)] = -np.inf
    down[fixed | (states == LO)] = -np.inf
    deficit = 1.0 - float(w.sum())
    if deficit > WEIGHT_TOLERANCE:
        return nu, int(np.argmax(up)), True
    if deficit < -WEIGHT_TOLERANCE:
        return nu, int(np.argmax(down)), False
    best_up, best_down = int(np.argmax(up)), int(np.argmax(down))
    if separable and max(up[best_up], down[best_down]) <= tol:
        return nu, None, True
    return (nu, best_up, True) if up[best_up] >= down[best_down] else (nu, best_down, False)


def _independent_rows(states: np.ndarray, sectors_active: np.ndarray, turnover_active: bool,
                      terms: LinearTerms) -> tuple[np.ndarray, bool]:
    """The working caps to impose in the equality-constrained solve: those linearly
    independent of the budget and earlier caps over the free assets. A dependent one (e.g.
    a sector whose assets are all fixed) holds by itself; it stays in the working set
    with a zero multiplier."""
    free = np.flatnonzero(states >= DOWN)
    rows = [np.ones(free.size)]
    keep = sectors_active.copy()
    for g in np.flatnonzero(sectors_active):
        candidate = (terms.sector_of[free] == g).astype(float)
        if np.linalg.matrix_rank(np.array(rows + [candidate])) > len(rows):
            rows.append(candidate)
        else:
            keep[g] = False
    if turnover_active:
        candidate = _signs(states)[free]
        turnover_active = bool(np.linalg.matrix_rank(np.array(rows + [candidate])) > len(rows))
    return keep, turnover_active


def _feasible_start(lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
                    geo: _Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The least-turnover portfolio meeting budget, bounds and sector caps (an LP, HiGHS)
    and its states; StrategyError if the caps or max_turnover make the problem infeasible."""
    from scipy.optimize import linprog

    n, a = len(lower), terms.anchor
    eye = np.eye(n)
    groups = [(terms.sector_of == g).astype(float) for g in range(len(terms.sector_caps))]
    a_ub = np.vstack([np.hstack([eye, -eye]), np.hstack([-eye, -eye])]
                     + [np.hstack([row, np.zeros(n)])[None, :] for row in groups])
    b_ub = np.concatenate([a, -a, terms.sector_caps])
    result = linprog(np.concatenate([np.zeros(n), np.ones(n)]), A_ub=a_ub, b_ub=b_ub,
                     A_eq=np.concatenate([np.ones(n), np.zeros(n)])[None, :], b_eq=[1.0],
                     bounds=list(zip(lower, upper, strict=True)) + [(0.0, None)] * n,
                     method="highs")
    if result.status != 0:
        raise StrategyError("sector_limits infeasible: no fully invested portfolio meets "
                            "the sector caps and the weight bounds; raise the caps")
    w = result.x[:n]
    least = turnover(w, terms)
    if least > terms.max_turnover + 1e-9:
        raise StrategyError(
            f"max_turnover {terms.max_turnover:.6g} is below the least turnover "
            f"{least:.6g} that meets the budget, bounds and sector caps from the current "
            f"weights; raise max_turnover")
    return _snap(w, lower, upper, terms, geo)


def _snap(w: np.ndarray, lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
          geo: _Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    near = 1e-10
    states = np.where(w > geo.kink, UP, DOWN).astype(np.int8)
    states[~geo.kinked & (geo.kink <= lower)] = UP
    states[np.abs(w - lower) <= near] = LO
    states[np.abs(w - upper) <= near] = HI
    states[geo.kinked & (np.abs(w - geo.kink) <= near)] = KINK
    states[lower >= upper] = LO
    w = np.where(states < DOWN, _fixed_values(states, lower, upper, geo), w)
    sums = np.bincount(terms.sector_of[terms.sector_of >= 0],
                       weights=w[terms.sector_of >= 0], minlength=len(terms.sector_caps))
    return (w, states, sums >= terms.sector_caps - near,
            turnover(w, terms) >= terms.max_turnover - near)


def _primal(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
            upper: np.ndarray, terms: LinearTerms, geo: _Geometry, tol: float,
            start: tuple[np.ndarray, np.ndarray, np.ndarray, bool]) -> CostedSolution:
    """Nocedal & Wright (2006) Algorithm 16.3 over asset states and caps from a feasible
    start: step to the working set's minimizer, stop at the first bound, kink or cap in
    the way; at a minimizer release the most violated condition. Finite."""
    w, states, sectors_active, turnover_active = start
    states = states.copy()
    fixed = lower >= upper
    n = len(w)
    for iteration in range(1, 20 * n + 100):
        eqp_sectors, eqp_turnover = _independent_rows(states, sectors_active,
                                                      turnover_active, terms)
        eqp = _solve_states(cov, lin, penalty, lower, upper, terms, geo, states,
                            eqp_sectors, eqp_turnover)
        if eqp is None:
            break
        if not eqp.solved:
            nu, release, up = _vertex_step(cov, lin, penalty, lower, upper, terms, geo, tol,
                                           w, states, fixed)
            if release is None:
                result = _EqpResult(w, nu, np.zeros(len(terms.sector_caps)), 0.0, False)
                return _finish(w, states, sectors_active, False, result, iteration, lower,
                               upper, geo)
            (_release_up if up else _release_down)(release, states, geo)
            continue
        free = states >= DOWN
        step = np.where(free, eqp.weights - w, 0.0)
        if np.max(np.abs(step)) <= 1e-14:
            w = np.where(free, eqp.weights, w)
            released, sectors_active, turnover_active = _release_worst(
                cov, lin, penalty, terms, geo, tol, w, states, fixed, sectors_active,
                turnover_active, eqp)
            if released:
                continue
            return _finish(w, states, sectors_active, turnover_active, eqp, iteration,
                           lower, upper, geo)
        w, sectors_active, turnover_active = _step(w, step, states, sectors_active,
                                                   turnover_active, lower, upper, terms, geo)
    raise StrategyError("cost-aware mean-variance QP did not converge (degenerate cycling); "
                        "check the covariance, bounds and caps")


def _release_worst(cov: np.ndarray, lin: np.ndarray, penalty: float, terms: LinearTerms,
                   geo: _Geometry, tol: float, w: np.ndarray, states: np.ndarray,
                   fixed: np.ndarray, sectors_active: np.ndarray, turnover_active: bool,
                   eqp: _EqpResult) -> tuple[bool, np.ndarray, bool]:
    """Release the most violated condition (an asset's state, in place, or a cap from the
    working set); (False, …) when none is violated: optimal."""
    r = _reduced_gradient(cov, lin, w, eqp.nu, eqp.rho, terms)
    up, down = _dual_violations(r, penalty + eqp.eta, states, geo)
    up[fixed], down[fixed] = -np.inf, -np.inf
    cap_violation = np.where(sectors_active, -eqp.rho, -np.inf)
    turnover_violation = -eqp.eta if turnover_active else -np.inf
    candidates = [float(np.max(up)), float(np.max(down)),
                  float(np.max(cap_violation, initial=-np.inf)), turnover_violation]
    kind = int(np.argmax(candidates))
    if candidates[kind] <= tol:
        return False, sectors_active, turnover_active
    if kind == 0:
        _release_up(int(np.argmax(up)), states, geo)
    elif kind == 1:
        _release_down(int(np.argmax(down)), states, geo)
    elif kind == 2:
        sectors_active = sectors_active.copy()
        sectors_active[int(np.argmax(cap_violation))] = False
    else:
        turnover_active = False
    return True, sectors_active, turnover_active


def _step(w: np.ndarray, step: np.ndarray, states: np.ndarray, sectors_active: np.ndarray,
          turnover_active: bool, lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
          geo: _Geometry) -> tuple[np.ndarray, np.ndarray, bool]:
    """Move along ``step`` to the first blocking bound, kink or cap (or all the way);
    the blocking one joins the working set (states changed in place)."""
    free = states >= DOWN
    seg_lo, seg_hi = _segment_ends(states, lower, upper, geo)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(step < -1e-18, (seg_lo - w) / step,
                         np.where(step > 1e-18, (seg_hi - w) / step, np.inf))
    ratio = np.where(free, np.maximum(ratio, 0.0), np.inf)
    tiny = 1e-12 * float(np.max(np.abs(step)))  # a sum of steps this small is cancellation
    grouped = terms.sector_of >= 0
    size = len(terms.sector_caps)
    rate = np.bincount(terms.sector_of[grouped], weights=step[grouped], minlength=size)
    slack = terms.sector_caps - np.bincount(terms.sector_of[grouped], weights=w[grouped],
                                            minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap_ratio = np.where(~sectors_active & (rate > tiny),
                             np.maximum(slack, 0.0) / rate, np.inf)
    turnover_ratio = np.inf
    if terms.has_turnover and not turnover_active:
        rate_t = float(_signs(states) @ step)
        if rate_t > tiny:
            turnover_ratio = max(terms.max_turnover - turnover(w, terms), 0.0) / rate_t
    limits = [float(np.min(ratio)), float(np.min(cap_ratio, initial=np.inf)), turnover_ratio]
    kind = int(np.argmin(limits))
    if limits[kind] >= 1.0:
        return np.where(free, w + step, w), sectors_active, turnover_active
    w = w + limits[kind] * step
    if kind == 0:
        block = int(np.argmin(ratio))
        states[block] = _state_at_end(bool(step[block] < 0), block, states, geo)
        w[block] = _fixed_values(states, lower, upper, geo)[block]
    elif kind == 1:
        sectors_active = sectors_active.copy()
        sectors_active[int(np.argmin(cap_ratio))] = True
    else:
        turnover_active = True
    return w, sectors_active, turnover_active


def costed_frontier_segment(cov: np.ndarray, mu: np.ndarray, kappa: float,
                            lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
                            solution: CostedSolution) -> FrontierSegment:
    """The piece of the net-of-cost frontier w(λ) = argmin ½wᵀΣw − λ(μᵀw − κΣ|w − a|)
    through ``solution``: with its states and caps held, w and the multipliers are affine
    in λ; the piece is where free assets stay on their side of their kink and bounds, the
    fixed ones' conditions and the caps' signs hold (the critical line of
    ``qp.frontier_segment`` with kinks and caps). The segment carries the net return's
    affine form (μ − κs)ᵀw + const for the searches."""
    states = solution.states
    geo = _Geometry.of(lower, upper, terms, kappa > 0 or terms.has_turnover)
    sign = _signs(states)
    v = _fixed_values(states, lower, upper, geo)
    free = np.flatnonzero(states >= DOWN)
    fixed_mask = states < DOWN
    mu_net = mu - kappa * sign
    net_const = kappa * (float(sign @ terms.anchor) - float(np.sum(np.abs(v - terms.anchor)
                                                                   * fixed_mask)))
    if free.size == 0:
        return _vertex_piece(cov, mu, kappa, lower, upper, states, geo, v, mu_net, net_const)
    sectors, with_turnover = _independent_rows(states, solution.sectors_active,
                                               solution.turnover_active, terms)
    rows, rhs, sector_rows = _working_rows(states, sectors, with_turnover, terms, v, free)
    a_free = np.array(rows)
    base0 = -(cov[free] @ v) if v.any() else np.zeros(free.size)
    factor = cho_factor(cov[np.ix_(free, free)], lower=True, check_finite=False)
    solved = cho_solve(factor, np.column_stack([base0, mu_net[free], a_free.T]),
                       check_finite=False)
    x0, x1, y_mat = solved[:, 0], solved[:, 1], solved[:, 2:]
    schur = a_free @ y_mat
    m0 = np.linalg.solve(schur, a_free @ x0 - np.array(rhs))
    m1 = np.linalg.solve(schur, a_free @ x1)
    w0, w1 = v.copy(), np.zeros_like(v)
    w0[free], w1[free] = x0 - y_mat @ m0, x1 - y_mat @ m1
    n_sec = len(terms.sector_caps)
    rho0, rho1 = np.zeros(n_sec), np.zeros(n_sec)
    rho0[sector_rows], rho1[sector_rows] = m0[1:1 + len(sector_rows)], m1[1:1 + len(sector_rows)]
    eta0, eta1 = (float(m0[-1]), float(m1[-1])) if with_turnover else (0.0, 0.0)
    grouped = terms.sector_of >= 0
    r0 = cov @ w0 + m0[0]
    r1 = cov @ w1 - mu + m1[0]
    r0[grouped] += rho0[terms.sector_of[grouped]]
    r1[grouped] += rho1[terms.sector_of[grouped]]
    q0, q1 = eta0, kappa + eta1
    seg_lo, seg_hi = _segment_ends(states, lower, upper, geo)
    movable = lower < upper
    lo_, hi_, kink_ = (states == LO) & movable, states == HI, states == KINK
    is_free = states >= DOWN
    sums0 = np.bincount(terms.sector_of[grouped], weights=w0[grouped], minlength=n_sec)
    sums1 = np.bincount(terms.sector_of[grouped], weights=w1[grouped], minlength=n_sec)
    idle = ~solution.sectors_active
    a = [(w0 - seg_lo)[is_free], (seg_hi - w0)[is_free],
         (r0 + q0 * geo.sign_up_from_lo)[lo_], -(r0 + q0 * geo.sign_down_from_hi)[hi_],
         (r0 + q0)[kink_], (q0 - r0)[kink_], rho0[sectors], (terms.sector_caps - sums0)[idle]]
    b = [w1[is_free], -w1[is_free], (r1 + q1 * geo.sign_up_from_lo)[lo_],
         -(r1 + q1 * geo.sign_down_from_hi)[hi_], (r1 + q1)[kink_], (q1 - r1)[kink_],
         rho1[sectors], -sums1[idle]]
    if with_turnover:
        a.append(np.array([eta0]))
        b.append(np.array([eta1]))
    elif terms.has_turnover and not solution.turnover_active:
        moved0 = float(sign @ (w0 - terms.anchor)) + float(np.sum(np.abs(v - terms.anchor)
                                                                   * fixed_mask))
        a.append(np.array([terms.max_turnover - moved0]))
        b.append(np.array([-float(sign @ w1)]))
    seg = _segment(w0, w1, np.concatenate(a), np.concatenate(b), _lambda_cap(cov, mu))
    return FrontierSegment(seg.w0, seg.w1, seg.lam_lo, seg.lam_hi, mu_net, net_const)


def _working_rows(states: np.ndarray, sectors: np.ndarray, with_turnover: bool,
                  terms: LinearTerms, v: np.ndarray, free: np.ndarray
                  ) -> tuple[list[np.ndarray], list[float], list[int]]:
    rows, rhs, sector_rows = [np.ones(free.size)], [1.0 - float(v.sum())], []
    for g in np.flatnonzero(sectors):
        members = terms.sector_of == g
        rows.append(members[free].astype(float))
        rhs.append(float(terms.sector_caps[g]) - float(v[members].sum()))
        sector_rows.append(int(g))
    if with_turnover:
        sign = _signs(states)[free]
        rows.append(sign)
        rhs.append(terms.max_turnover - float(np.sum(np.abs(v - terms.anchor) * (states < DOWN)))
                   + float(sign @ terms.anchor[free]))
    return rows, rhs, sector_rows


def _vertex_piece(cov: np.ndarray, mu: np.ndarray, kappa: float, lower: np.ndarray,
                  upper: np.ndarray, states: np.ndarray, geo: _Geometry, w: np.ndarray,
                  mu_net: np.ndarray, net_const: float) -> FrontierSegment:
    """Every asset at a bound or its kink: w stays optimal while some ν satisfies every
    asset's interval condition (caps taken inactive); pairwise affine conditions in λ."""
    sw = cov @ w
    movable = lower < upper
    lo_, hi_, kink_ = (states == LO) & movable, states == HI, states == KINK
    low_a = np.concatenate([-sw[lo_], -sw[kink_]])
    low_b = np.concatenate([(mu - kappa * geo.sign_up_from_lo)[lo_], (mu - kappa)[kink_]])
    high_a = np.concatenate([-sw[hi_], -sw[kink_]])
    high_b = np.concatenate([(mu - kappa * geo.sign_down_from_hi)[hi_], (mu + kappa)[kink_]])
    a = (high_a[:, None] - low_a[None, :]).ravel()
    b = (high_b[:, None] - low_b[None, :]).ravel()
    seg = _segment(w, np.zeros_like(w), a, b, _lambda_cap(cov, mu))
    return FrontierSegment(w, np.zeros_like(w), seg.lam_lo, seg.lam_hi, mu_net, net_const)
