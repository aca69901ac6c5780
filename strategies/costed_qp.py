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

import numpy as np

from strategies.costed_model import (
    DOWN,
    HI,
    KINK,
    LO,
    UP,
    WEIGHT_TOLERANCE,
    CostedSolution,
    EqpResult,
    Geometry,
    LinearTerms,
    caps_hold,
    dual_violations,
    finish,
    initial_states,
    reduced_gradient,
    release_down,
    release_up,
    segment_ends,
    solve_states,
    turnover,
)
from strategies.costed_primal import feasible_start, primal, vertex_step
from strategies.qp import REGULARIZATION_STEPS, ill_conditioned

__all__ = ["CostedSolution", "LinearTerms", "solve_costed_qp", "turnover"]
PDAS_MAX_ITERATIONS = 60
CONTINUATION_MAX_ITERATIONS = 12
DUAL_RELATIVE_TOLERANCE = 1e-12


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
    geo = Geometry.of(lower, upper, terms,
                       penalty > 0 or terms.has_turnover if kinks is None else kinks)
    tol = _tolerance(cov, lin, penalty)
    if warm is not None:
        start = (warm.states.copy(), warm.sectors_active.copy(), warm.turnover_active)
    else:
        start = (initial_states(lower, upper, geo),
                 np.zeros(len(terms.sector_caps), bool), False)
    solution = None
    if chol is None or not ill_conditioned(chol):
        solution = _primal_dual(cov, lin, penalty, lower, upper, terms, geo, tol, *start)
    if solution is None:
        regularized = _regularized_start(cov, lin, penalty, lower, upper, terms, geo, tol,
                                         start)
        if regularized is None and warm is not None:  # a nearby optimum is feasible too
            feasible = (warm.weights, warm.states, warm.sectors_active, warm.turnover_active)
        elif regularized is None:
            feasible = feasible_start(lower, upper, terms, geo)
        else:
            feasible = (regularized.weights, regularized.states,
                        regularized.sectors_active, regularized.turnover_active)
        solution = primal(cov, lin, penalty, lower, upper, terms, geo, tol, feasible)
    return solution


def _regularized_start(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                       upper: np.ndarray, terms: LinearTerms, geo: Geometry, tol: float,
                       start: tuple[np.ndarray, np.ndarray, bool]) -> CostedSolution | None:
    """A feasible near-optimal start for the primal method: the primal-dual iterations
    on Σ + ρI, ρ shrinking (continuation), as ``qp_regularized.regularized_start`` does for the box
    QP — they cycle on near-singular Σ, the proximal term tames them."""
    scale = float(np.mean(np.diag(cov)))
    best = None
    for rho in REGULARIZATION_STEPS:
        regularized = cov.copy()
        regularized.flat[:: len(lin) + 1] += rho * scale
        # Later stages start next to their answer: a long run means cycling, stop early.
        limit = PDAS_MAX_ITERATIONS if best is None else CONTINUATION_MAX_ITERATIONS
        found = _primal_dual(regularized, lin, penalty, lower, upper, terms, geo, tol, *start,
                             max_iterations=limit)
        if found is None:
            break
        best = found
        start = (found.states.copy(), found.sectors_active.copy(), found.turnover_active)
    return best


def _primal_dual(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                 upper: np.ndarray, terms: LinearTerms, geo: Geometry, tol: float,
                 states: np.ndarray, sectors_active: np.ndarray,
                 turnover_active: bool,
                 max_iterations: int = PDAS_MAX_ITERATIONS) -> CostedSolution | None:
    """Primal-dual active-set iterations over the asset states and the caps; None if they
    cycle or stall."""
    fixed = lower >= upper
    seen: set[bytes] = set()
    for iteration in range(1, max_iterations + 1):
        eqp = solve_states(cov, lin, penalty, lower, upper, terms, geo, states,
                            sectors_active, turnover_active)
        if eqp is None:
            return None
        w = eqp.weights
        if not eqp.solved:  # a vertex: every asset at a bound or its kink
            nu, release, up = vertex_step(cov, lin, penalty, lower, upper, terms, geo, tol,
                                           w, states, fixed)
            if release is None:
                if caps_hold(w, terms):
                    result = EqpResult(w, nu, np.zeros(len(terms.sector_caps)), 0.0, False)
                    return finish(w, states, np.zeros_like(sectors_active), False, result,
                                   iteration, lower, upper, geo)
                return None
            states = states.copy()
            (release_up if up else release_down)(release, states, geo)
            continue
        r = reduced_gradient(cov, lin, w, eqp.nu, eqp.rho, terms)
        up_viol, down_viol = dual_violations(r, penalty + eqp.eta, states, geo)
        new = _next_states(states, w, up_viol > tol, down_viol > tol, lower, upper, geo)
        sums = np.bincount(terms.sector_of[terms.sector_of >= 0],
                           weights=w[terms.sector_of >= 0], minlength=len(terms.sector_caps))
        new_sectors = np.where(sectors_active, eqp.rho >= -tol,
                               sums > terms.sector_caps + WEIGHT_TOLERANCE)
        new_turnover = (eqp.eta >= -tol if turnover_active
                        else turnover(w, terms) > terms.max_turnover + WEIGHT_TOLERANCE)
        if (np.array_equal(new, states) and np.array_equal(new_sectors, sectors_active)
                and new_turnover == turnover_active):
            return finish(w, states, sectors_active, turnover_active, eqp, iteration,
                           lower, upper, geo)
        key = (new.tobytes() + np.packbits(new_sectors).tobytes() + bytes([new_turnover]))
        if key in seen:
            return None
        seen.add(key)
        states, sectors_active, turnover_active = new, new_sectors, bool(new_turnover)
    return None


def _next_states(states: np.ndarray, w: np.ndarray, raise_up: np.ndarray,
                 raise_down: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 geo: Geometry) -> np.ndarray:
    """The primal-dual update, vectorized: a free asset past its segment's end is fixed
    there (bound or kink); a fixed asset whose condition is violated is released toward
    the improving side (the rules of ``release_up``/``release_down``, ``state_at_end``)."""
    seg_lo, seg_hi = segment_ends(states, lower, upper, geo)
    free = states >= DOWN
    movable = lower < upper
    new = states.copy()
    below = free & (w < seg_lo - WEIGHT_TOLERANCE)
    above = free & (w > seg_hi + WEIGHT_TOLERANCE)
    new[below] = np.where((states == UP) & geo.kinked, KINK, LO)[below]
    new[above] = np.where((states == DOWN) & geo.kinked, KINK, HI)[above]
    up = raise_up & movable & ~free
    down = raise_down & movable & ~free & ~up
    to_up = (states == KINK) | (~geo.kinked & (geo.sign_up_from_lo > 0))
    to_down = (states == KINK) | (~geo.kinked & (geo.sign_down_from_hi < 0))
    new[up] = np.where(to_up, UP, DOWN)[up]
    new[down] = np.where(to_down, DOWN, UP)[down]
    return new
