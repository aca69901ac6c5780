"""The box-and-budget constrained convex QP behind every mean-variance strategy.

    minimize ½ wᵀΣw − cᵀw   subject to   Σ_i w_i = 1,   lower ≤ w ≤ upper

with Σ symmetric positive definite (callers repair it first, see
``covariance_repair.repair_covariance``). KKT: with gradient g = Σw − c and budget multiplier ν,
z = g − ν·1 is ≥ 0 where w_i = lower_i, ≤ 0 where w_i = upper_i and 0 where w_i is free.

Algorithm: the primal-dual active-set method (Hintermüller, Ito & Kunisch 2002, SIAM J.
Optim. 13(3)) — guess which bounds are active, solve the equality-constrained problem on
the free set with one Cholesky factorization, re-guess from the primal/dual signs; it
changes many bounds per iteration and typically converges in 3–10 iterations. If it
cycles (possible when Σ is not an M-matrix) the classical primal active-set method
(Nocedal & Wright 2006, Algorithm 16.3), which converges finitely for strictly convex QPs,
finishes from a greedy feasible vertex. The result is exact up to rounding: the final
free set's KKT system is solved directly and the KKT signs are checked.

``frontier_piece.frontier_segment`` gives the efficient frontier piece on which a set of
active bounds stays optimal (Markowitz's critical line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from strategies.base import StrategyError
from strategies.free_set import FreeSetSolver, cholesky_append, cholesky_delete
from strategies.qp_ray import IterateResult, Pieces, Ray, ray_solve

PDAS_MAX_ITERATIONS = 60
REGULARIZATION_STEPS = (1e-6, 1e-8, 1e-10)  # costed_qp's continuation ridges (qp_regularized: ours)
ILL_CONDITIONED_PIVOT_RATIO = 1e-8
WEIGHT_TOLERANCE = 1e-12  # bound violation (in weight units) that counts as infeasible
DUAL_RELATIVE_TOLERANCE = 1e-12  # multiplier sign tolerance, relative to |Σ| + |c|
# A cold start without a factor of Σ from this many assets on solves on a working set
# first (``qp_working_set``): the first free set is then a few hundred assets, not all.
WORKING_SET_MIN_ASSETS = 1000
# The primal method updates its free set's Cholesky factor as one bound enters or leaves
# (m² flops, not m³/3) at most this many times in a row before factoring anew, bounding
# the rounding the updates accumulate.
PRIMAL_MAX_FACTOR_UPDATES = 100
# Deleting an asset from a factor costs (assets after it)² flops. The asset leaving is
# almost always the one of smallest weight (on a rank-deficient Σ the smallest 3 % in 95
# of 100 deletions), so when one would sit further than this share (or count) from the
# end, the free set is factored anew with the weights in decreasing order.
REORDER_TAIL_SHARE = 0.125
REORDER_TAIL_MIN = 16
#: The budgets of one free-set solve of Σw = 1 (read-only: shared by every solve).
UNIT_BUDGET = np.ones(1)
UNIT_BUDGET.flags.writeable = False


@dataclass(frozen=True, slots=True)
class QPSolution:
    """Optimal weights and the active bounds there (a warm start for a nearby problem)."""

    weights: np.ndarray
    at_lower: np.ndarray
    at_upper: np.ndarray
    iterations: int
    #: Cholesky factor of Σ on the free assets (what ``frontier_segment`` needs again).
    free_factor: np.ndarray | None = None
    #: (w₀, w₁, ν₀, ν₁) when solved along a ray lin = λd (``solve_qp``'s ``ray``): on these
    #: sets the weights are w₀ + λw₁ and the budget multiplier ν₀ + λν₁ for every λ (the
    #: frontier piece through this optimum, without solving for it again).
    pieces: Pieces | None = None
    #: Not an optimum: a feasible start for the primal method (the best iterate of
    #: primal-dual iterations that cycled, ``best_on_failure``).
    start_only: bool = False


def check_bounds(lower: np.ndarray, upper: np.ndarray, symbols: Sequence[str]) -> None:
    """Raise StrategyError naming the violated constraint if no weights satisfy
    lower ≤ w ≤ upper and Σw = 1."""
    if np.count_nonzero(lower > upper):  # (``.any()``'s wrapper costs ~0.9 µs)
        bad = [str(symbols[int(i)]) for i in np.flatnonzero(lower > upper)]
        raise StrategyError(f"bounds: lower bound above upper bound for {bad}")
    n = len(symbols)
    upper_sum, lower_sum = float(upper.sum()), float(lower.sum())  # np.sum's bits
    if upper_sum < 1.0 - 1e-12:
        raise StrategyError(
            f"bounds infeasible: the upper bounds sum to {upper_sum:.6g} over {n} "
            f"assets, below the full-investment constraint sum(w) = 1; raise the upper bounds "
            f"(e.g. to at least {1.0 / n:.4g} each)")
    if lower_sum > 1.0 + 1e-12:
        raise StrategyError(
            f"bounds infeasible: the lower bounds sum to {lower_sum:.6g} over {n} "
            f"assets, above the full-investment constraint sum(w) = 1; lower them")


def solve_qp(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
             warm: QPSolution | None = None, chol: np.ndarray | None = None,
             solver: FreeSetSolver | None = None,
             first: tuple[np.ndarray, np.ndarray] | None = None,
             ray: Ray | None = None) -> QPSolution:
    """Minimize ½wᵀΣw − linᵀw s.t. Σw = 1, lower ≤ w ≤ upper (feasible bounds assumed:
    call ``check_bounds`` first). ``warm`` seeds the active sets from a nearby solution;
    ``chol``, the lower Cholesky factor of Σ, saves the first factorization of a cold
    start and flags a near-singular Σ (then a warm start goes to the primal method);
    ``solver`` (from ``free_set_solver``) carries factors between the QPs of one walk;
    ``first``: the weights and multipliers z = Σw − lin − ν of the equality-constrained
    optimum on the start's active sets, when the caller has them (the primal-dual
    iterations then skip their first solve); ``ray`` (``Ray``) when lin = λd (a frontier
    walk): the primal-dual iterations solve for the columns [0 | d] (budgets 1 | 0) and
    combine them, so the answer carries its ``pieces``."""
    n = len(lin)
    fixed = lower >= upper
    if np.count_nonzero(fixed) == n:
        return QPSolution(lower.copy(), fixed.copy(), np.zeros(n, bool), 0)
    tol_z = DUAL_RELATIVE_TOLERANCE * (float(np.abs(cov.diagonal()).max())
                                       + float(np.abs(lin).max()))
    if warm is None and chol is None and n >= WORKING_SET_MIN_ASSETS:
        from strategies.qp_working_set import solve_by_working_set  # imports this module

        return solve_by_working_set(cov, lin, lower, upper, tol_z)
    return solve_restricted(cov, lin, lower, upper, warm, chol, tol_z, solver, first, ray)


def free_set_solver(cov: np.ndarray, chol: np.ndarray | None,
                    ill: bool | None = None) -> FreeSetSolver:
    """The free-set solver for Σ: with its Cholesky factor ``chol`` (reused for the
    all-free set, and for range-space solves when Σ is well conditioned) or without.
    ``ill``: ``ill_conditioned(chol)`` when the caller has it."""
    if ill is None:
        ill = chol is not None and ill_conditioned(chol)
    solver = FreeSetSolver(cov, None if ill else chol)
    if chol is not None and not ill:  # an ill-conditioned one may be a stand-in (see
        solver.remember(np.arange(len(cov)), chol, slot="all")  # ``factor_covariance``)
    return solver


def solve_restricted(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     warm: QPSolution | None, chol: np.ndarray | None,
                     tol_z: float, solver: FreeSetSolver | None = None,
                     first: tuple[np.ndarray, np.ndarray] | None = None,
                     ray: Ray | None = None) -> QPSolution:
    """``solve_qp`` on the whole universe at once (primal-dual active set, the primal
    method as the safe path) with the caller's dual tolerance ``tol_z``."""
    n = len(lin)
    fixed = lower >= upper
    if warm is not None:
        at_lo, at_hi = warm.at_lower | fixed, warm.at_upper & ~fixed
    else:
        at_lo, at_hi = fixed.copy(), np.zeros(n, bool)
    ill = chol is not None and ill_conditioned(chol)
    if ill and warm is not None:  # the nearby optimum is feasible: a few bound changes
        start = QPSolution(warm.weights, at_lo, at_hi & ~at_lo, 0)
        return _primal_active_set(cov, lin, lower, upper, tol_z, start)
    solution = None
    if not ill:
        solver = solver if solver is not None else free_set_solver(cov, chol, ill)
        if warm is not None and warm.free_factor is not None:
            solver.remember(np.flatnonzero(~(at_lo | at_hi)), warm.free_factor)
        lam = None if ray is None else ray.lam
        solution = _primal_dual_active_set(cov, lin, lower, upper, at_lo, at_hi, tol_z,
                                           solver, first=first, ray=ray)
        if solution is None and ray is not None and lam is not None:
            ray.lam = lam  # the paths below solve at the caller's λ
    if solution is None:
        from strategies.qp_regularized import regularized_start  # imports this module

        regularized, exact = regularized_start(cov, lin, lower, upper, tol_z,
                                               rank=None if chol is None else numerical_rank(chol))
        if exact and regularized is not None:
            return regularized  # the continuation's last step, on Σ itself, converged
        solution = _primal_active_set(cov, lin, lower, upper, tol_z, regularized)
    return solution


def solve_tangency_qp(cov: np.ndarray, excess: np.ndarray,
                      chol: np.ndarray) -> QPSolution | None:
    """argmin ½yᵀΣy s.t. excessᵀy = 1, y ≥ 0 — the max-Sharpe problem over {w ≥ 0, Σw = 1}
    made homogeneous (w = y/Σy; Cornuéjols & Tütüncü 2007, §8.2) — by the primal-dual
    iterations from Σ's factor, or for an ill-conditioned Σ the regularized start and the
    primal method. When those iterations cycle (or the regularized start fails), the
    primal method from the vertex of the best excess return (it converges finitely).
    None only when no asset's excess return is positive."""
    n = len(excess)
    if not float(excess.max()) > 0.0:
        return None
    tol_z = DUAL_RELATIVE_TOLERANCE * float(np.max(np.abs(np.diag(cov))))
    zero, unbounded = np.zeros(n), np.full(n, np.inf)
    start: QPSolution | None = None  # the primal method's, when it has to finish
    if ill_conditioned(chol):  # as in solve_qp: a regularized start, then the primal method
        from strategies.qp_regularized import regularized_start  # imports this module

        found, _ = regularized_start(cov, zero, zero, unbounded, tol_z, excess)
        if found is not None and found.weights.min() >= -WEIGHT_TOLERANCE:
            y = np.maximum(found.weights, 0.0)
            start = QPSolution(y / float(excess @ y), found.at_lower, found.at_upper,
                               found.iterations, found.free_factor)
    else:
        solver = FreeSetSolver(cov, chol, budget_row=excess)
        solver.remember(np.arange(n), chol, slot="all")
        none = np.zeros(n, bool)
        start = _primal_dual_active_set(cov, zero, zero, unbounded, none, none.copy(), tol_z,
                                        solver, best_on_failure=True)
        if start is not None and not start.start_only:
            return start  # converged
    return _primal_active_set(cov, zero, zero, unbounded, tol_z,
                              _best_excess_vertex(excess) if start is None else start, excess)


def _best_excess_vertex(excess: np.ndarray) -> QPSolution:
    """A feasible start of the homogeneous max-Sharpe QP: all in the asset of the best
    (positive) excess return, y_j = 1/excess_j."""
    j = int(np.argmax(excess))
    y = np.zeros(len(excess))
    y[j] = 1.0 / float(excess[j])
    return QPSolution(y, y == 0.0, np.zeros(len(excess), bool), 0)


def ill_conditioned(chol: np.ndarray) -> bool:
    """Cholesky pivots spread beyond ILL_CONDITIONED_PIVOT_RATIO (cond(Σ) ≳ 1e8, e.g. a
    repaired covariance): cold primal-dual iterations would cycle, go straight to the
    regularized start. Such a factor serves this test only: the optimizers never solve
    with it (``factor_covariance(ill_factor=False)`` may hand over a stand-in)."""
    pivots = chol.diagonal()  # positive: min and max of their squares are these squared
    return bool(float(pivots.min()) ** 2 < ILL_CONDITIONED_PIVOT_RATIO * float(pivots.max()) ** 2)


def numerical_rank(chol: np.ndarray) -> int:
    """Cholesky pivots above ILL_CONDITIONED_PIVOT_RATIO of the largest (squared): Σ's rank
    up to rounding (a sample covariance of T < N days: T − 1)."""
    pivots = chol.diagonal()
    return int(np.count_nonzero(pivots * pivots >= ILL_CONDITIONED_PIVOT_RATIO
                                * float(pivots.max()) ** 2))


def _solve_on_sets(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   at_lo: np.ndarray, at_hi: np.ndarray, solver: FreeSetSolver | None = None
                   ) -> tuple[np.ndarray, float, np.ndarray | None]:
    """Minimizer with the given bounds held active and Σw = 1, its budget multiplier ν
    (NaN when no variable is free) and the lower Cholesky factor of Σ on the free set
    (None when ``solver`` took the range-space path)."""
    solver = solver if solver is not None else FreeSetSolver(cov)
    held = (np.where(at_lo, lower, np.where(at_hi, upper, 0.0)) if np.count_nonzero(at_hi)
            else np.where(at_lo, lower, 0.0))  # (no upper bound held: one pass)
    w, nu, factor = solver.solve(lin[:, None], UNIT_BUDGET, held[:, None], at_lo | at_hi,
                                 held_zero_on_free=True)
    return w[:, 0], float(nu[0]), factor


def _iterate(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
             at_lo: np.ndarray, at_hi: np.ndarray, solver: FreeSetSolver,
             ray: Ray | None) -> IterateResult | None:
    """One primal-dual iteration's solve on the given sets: (w, z = Σw − lin − νa, factor,
    pieces), or None when nothing is free (along a ray: ``qp_ray.ray_solve``)."""
    if ray is not None:
        return ray_solve(cov, lin, lower, upper, at_lo, at_hi, solver, ray)
    w, nu, factor = _solve_on_sets(cov, lin, lower, upper, at_lo, at_hi, solver)
    if nu != nu:  # NaN: nothing free (np.isnan on a float costs ~0.4 µs)
        return None
    if solver.last_multipliers is not None:  # a range-space solve gave them
        z = solver.last_multipliers[:, 0]
    else:
        z = solver.gradient(w, lin)  # a new array: the multiplier comes off in place
        z -= nu if solver.unit_budget else nu * solver.budget_row
    return w, z, factor, None


def _primal_dual_active_set(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                            upper: np.ndarray, at_lo: np.ndarray, at_hi: np.ndarray,
                            tol_z: float, solver: FreeSetSolver | None = None,
                            max_iterations: int = PDAS_MAX_ITERATIONS,
                            max_joining: int | None = None,
                            first: tuple[np.ndarray, np.ndarray] | None = None,
                            settle: int = 0,
                            ray: Ray | None = None,
                            best_on_failure: bool = False) -> QPSolution | None:
    """HIK primal-dual active-set iterations; None if they cycle or stall (but see
    ``best_on_failure``). ``max_joining``
    caps the assets one iteration frees (see ``qp_regularized.GUESS_MAX_JOINING``);
    ``first`` is the first iteration's (w, z) when the caller has it (see ``solve_qp``).
    ``settle`` > 0 (a continuation step, whose answer is only the next step's start):
    once an iteration changes at most that many bounds, stop with the new sets and the
    last weights made feasible for them, instead of solving once more to confirm.
    ``ray``: see ``solve_qp``. ``best_on_failure``: when the iterations cycle or run out,
    return the iterate whose sets were changing least, made feasible the same way (or, in
    the homogeneous max-Sharpe QP, scaled to its budget), marked ``start_only`` (on a
    rank-deficient Σ the primal method then finishes from ~250 assets in place instead
    of walking up from one)."""
    n = len(lin)
    fixed = lower >= upper
    movable, any_fixed = ~fixed, bool(np.count_nonzero(fixed))
    # The feasibility thresholds once (each iteration compared against lower − 1e-12 anew:
    # the same bits), and the sets' state as bytes: comparing and remembering those is
    # ~0.1 µs where np.array_equal and np.packbits cost ~3 µs an iteration.
    below, above = lower - WEIGHT_TOLERANCE, upper + WEIGHT_TOLERANCE
    state = at_lo.tobytes() + at_hi.tobytes()
    seen: set[bytes] = set()
    solver = solver if solver is not None else FreeSetSolver(cov)
    best: tuple[int, QPSolution] | None = None  # (bound changes, feasible start)
    for iteration in range(1, max_iterations + 1):
        factor = pieces = None
        if first is not None:
            (w, z), first = first, None
        else:
            solved = _iterate(cov, lin, lower, upper, at_lo, at_hi, solver, ray)
            if solved is None:
                return None
            w, z, factor, pieces = solved
        free = ~(at_lo | at_hi)
        new_lo = (free & (w < below)) | (at_lo & (z > -tol_z))
        new_hi = (free & (w > above)) | (at_hi & (z < tol_z))
        if any_fixed:  # (a fixed asset stays at its lower bound)
            new_lo |= fixed
            new_hi &= movable
        if max_joining is not None:  # free the most negative multipliers first
            joining = (at_lo & ~new_lo).nonzero()[0]
            cap = max(max_joining, int(np.count_nonzero(free)))
            if joining.size > cap:
                new_lo[joining[np.argsort(z[joining], kind="stable")[cap:]]] = True
        changes = (int(np.count_nonzero(new_lo != at_lo))  # (counted only when used)
                   + int(np.count_nonzero(new_hi != at_hi))) if settle or best_on_failure else 0
        if best_on_failure and (best is None or changes < best[0]):
            start = (_feasible_for(w, new_lo, new_hi, lower, upper) if solver.unit_budget
                     else _homogeneous_feasible_for(w, new_lo, new_hi, lower, upper,
                                                    solver.budget_row))
            if start is not None:
                best = (changes, QPSolution(start, new_lo, new_hi, iteration, None,
                                            start_only=True))
        key = new_lo.tobytes() + new_hi.tobytes()
        if key == state:
            if solver.unit_budget:
                w = polish_weights(w, lower, upper, free)
            return QPSolution(w, at_lo, at_hi, iteration, factor, pieces)
        if settle and solver.unit_budget and changes <= settle:
            start = _feasible_for(w, new_lo, new_hi, lower, upper)
            if start is not None:  # (else iterate on as usual)
                return QPSolution(start, new_lo, new_hi, iteration, None)
        if np.count_nonzero(new_lo | new_hi) == n:  # keep one asset free for the budget
            keep = int(np.argmin(np.where(fixed, np.inf, np.abs(z))))
            new_lo[keep] = new_hi[keep] = False
            key = new_lo.tobytes() + new_hi.tobytes()
        if key in seen:
            return None if best is None else best[1]
        seen.add(key)
        at_lo, at_hi, state = new_lo, new_hi, key
    return None if best is None else best[1]


def _feasible_for(w: np.ndarray, at_lo: np.ndarray, at_hi: np.ndarray, lower: np.ndarray,
                  upper: np.ndarray) -> np.ndarray | None:
    """The weights made feasible for the sets (budget Σw = 1): the held assets at their
    bounds, the budget residual spread over the free ones (``polish_weights``); None when
    their room cannot take it."""
    start = polish_weights(np.where(at_lo, lower, np.where(at_hi, upper, w)), lower, upper,
                           ~(at_lo | at_hi))
    if (np.array_equal(start[at_lo], lower[at_lo]) and np.array_equal(start[at_hi], upper[at_hi])
            and abs(float(start.sum()) - 1.0) <= WEIGHT_TOLERANCE):
        return start
    return None


def _homogeneous_feasible_for(w: np.ndarray, at_lo: np.ndarray, at_hi: np.ndarray,
                              lower: np.ndarray, upper: np.ndarray,
                              row: np.ndarray) -> np.ndarray | None:
    """``_feasible_for`` for the homogeneous max-Sharpe QP (aᵀy = 1, y ≥ 0, no upper
    bound): the held assets at 0, the rest clipped at 0 and scaled to aᵀy = 1; None for
    any other bounds, or when aᵀy is not positive."""
    if lower.any() or np.isfinite(upper).any() or at_hi.any():
        return None
    y = np.maximum(np.where(at_lo, 0.0, w), 0.0)
    scale = float(row @ y)
    return y / scale if scale > 0.0 else None


def _greedy_vertex(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                   upper: np.ndarray) -> np.ndarray:
    """A feasible start: lower bounds, then fill the budget in order of ½σᵢ² − cᵢ."""
    w = lower.copy()
    room = 1.0 - float(w.sum())
    for i in np.argsort(0.5 * np.diag(cov) - lin, kind="stable"):
        if room <= 0.0:
            break
        add = min(upper[i] - lower[i], room)
        w[i] += add
        room -= add
    return w


def _primal_active_set(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                       upper: np.ndarray, tol_z: float, start: QPSolution | None = None,
                       budget_row: np.ndarray | None = None) -> QPSolution:
    """Nocedal & Wright (2006) Algorithm 16.3 from ``start`` (a feasible point and its
    active bounds) or a greedy vertex: finite, one bound change per iteration; the safe
    path when the primal-dual iterations cycle. ``budget_row`` a (default 1) makes the
    budget aᵀw = 1; then ``start`` is required and the weights are not polished.

    Each iteration changes one bound, so the free set's Cholesky factor is updated rather
    than recomputed (``cholesky_append``/``cholesky_delete``: on a rank-deficient Σ,
    e.g. 500 assets' sample covariance of 252 days, the method takes hundreds of
    iterations over free sets of hundreds of assets). The answer is confirmed on a new
    factorization of the final free set, so it is as exact as without the updates.

    Anti-cycling: the working sets the method releases a bound from are remembered (a
    hash of their bytes, a set lookup); one seen before means it cycles. Seen with tied
    returns (c = 0.5·1) on a repaired sample covariance of fewer days than assets (pivots
    ~1e-11): the target Σ_F⁻¹(c_F − ν1) is two terms of ~1e10 that cancel, its rounding
    (up to 1e-4 of the weights, and of the budget) outweighs the released bound's
    multiplier, the step heads back out, the bound re-enters and is released again. From
    then on (``careful``) each solve is for the step p from w (Nocedal & Wright 2006,
    (16.39)) with the gradient's common part taken out first (``_step_target``: it only
    shifts ν, and it is what cancelled), ν comes from the gradient at w, and Bland's rule
    (Bland 1977) picks the bound to release (the smallest index among the violated) and
    the blocking bound among ties. The working constraints (bounds and budget) are
    linearly independent, so in exact arithmetic the objective falls at each step that
    moves and the smallest-index rule ends any run of steps that do not: no working set
    repeats. One that still does raises as before. Before a first repeat nothing changes
    (the fast path's bits and speed)."""
    n = len(lin)
    fixed = lower >= upper
    w, at_lo, at_hi = _primal_start(cov, lin, lower, upper, start)
    done = 0 if start is None else start.iterations
    solver = FreeSetSolver(cov, budget_row=budget_row)
    # The sets as masks, held values (0 on the free assets) and free indices, updated one
    # bound at a time: each n-sized pass is ~1 µs of a ~30 µs iteration.
    active = at_lo | at_hi
    held = np.where(at_lo, lower, np.where(at_hi, upper, 0.0))
    moving = np.flatnonzero(~active)  # the step moves only the free weights
    if start is not None:  # Σ's factor on the start's free set (an exact last step's)
        solver.remember(moving, start.free_factor)
    row, lin_column, budgets = solver.budget_row, lin[:, None], np.ones(1)
    arrived = False  # the last step reached its target: w is this free set's optimum
    nu, factor = np.nan, None  # ``factor``: Σ's on ``moving``, in that order
    # ``updated``: the factor was updated, or ``moving`` left sorted order, since the last
    # factorization of the sorted free set; ``updates``: updates since any factorization
    updated, updates = False, 0
    released = -1  # the bound released by the last iteration, if it released one
    seen: set[int] = set()  # the working sets released from, hashed (see Anti-cycling)
    careful = False
    for iteration in range(done + 1, done + 20 * n + 100 + PRIMAL_MAX_FACTOR_UPDATES):
        if arrived:  # the same sets' solve again would give the same bits: skip it
            target, arrived = w, False
        elif not moving.size:  # every weight at a bound
            target, nu, factor = held.copy(), np.nan, None
        elif careful:
            target, nu, factor = _step_target(solver, w, lin, moving, active, factor)
        else:
            solved, nus, factor = solver.solve_factored(lin_column, budgets,
                                                        held[:, None].copy(), moving, active,
                                                        factor)
            target, nu = solved[:, 0], float(nus[0])
        step = target[moving] - w[moving]
        if not moving.size or np.abs(step).max() <= 1e-14:
            g = solver.gradient(w, lin)  # Σw − c from the support's rows when w is sparse
            if careful and moving.size:  # ν from the gradient at w (least squares)
                nu = float(row[moving] @ g[moving]) / float(row[moving] @ row[moving])
            if np.isnan(nu):
                movable_lo = at_lo & ~fixed
                nu = float(np.min(g[movable_lo])) if movable_lo.any() else float(np.max(g[at_hi]))
            z = g - nu * row
            violation = np.where(at_lo & ~fixed, -z, 0.0) + np.where(at_hi, z, 0.0)
            worst = int(np.argmax(violation))
            if violation[worst] <= tol_z and updated:  # confirm on a new factorization
                moving, factor, updated, updates = np.sort(moving), None, False, 0
                continue
            if violation[worst] <= tol_z:
                if solver.unit_budget:
                    w = polish_weights(w, lower, upper, ~active)
                return QPSolution(w, at_lo, at_hi, iteration, factor)
            key = hash(at_lo.tobytes() + at_hi.tobytes())
            if key in seen:  # cycling: solve this working set again with care, then go on
                if careful:
                    break
                careful, released = True, -1
                seen.clear()
                continue
            seen.add(key)
            if careful:  # Bland's rule: the smallest index among the violated
                worst = int(np.argmax(violation > tol_z))
            at_lo[worst] = at_hi[worst] = active[worst] = False
            held[worst] = 0.0
            released = worst
            if factor is not None and updates < PRIMAL_MAX_FACTOR_UPDATES:
                factor = cholesky_append(factor, cov[worst].take(moving),
                                         float(cov[worst, worst]))
                updates += 1
            else:
                factor, updates = None, 0
            moving, updated = np.append(moving, worst), True  # the factor's order
            continue
        w_moving = w[moving]
        ratio = _step_ratios(step, lower[moving] - w_moving, upper[moving] - w_moving)
        first = int(np.argmin(ratio))
        if careful:  # Bland's rule among blocking ties: the smallest index
            ties = np.flatnonzero(ratio == ratio[first])
            first = int(ties[np.argmin(moving[ties])])
        if ratio[first] >= 1.0:
            w[moving] = target[moving]
            arrived, released = True, -1
            continue
        if ratio[first] == 0.0 and moving[first] == released:
            # The bound just released blocks the step at once: its weight heads back out,
            # which only rounding does (a released bound's step points inwards, Nocedal &
            # Wright Thm 16.5). Seen when the budget pins the free set (one asset free, the
            # rest at bounds): re-adding it released it again, for ever. w is this free
            # set's optimum; the multipliers choose the next bound.
            arrived, released = True, -1
            continue
        released = -1
        w[moving] = w_moving + ratio[first] * step
        block = int(moving[first])
        if step[first] < 0:
            w[block], at_lo[block] = lower[block], True
        else:
            w[block], at_hi[block] = upper[block], True
        held[block], active[block] = w[block], True
        moving = np.concatenate((moving[:first], moving[first + 1:]))  # np.delete: ~4 µs more
        if (factor is not None and updates < PRIMAL_MAX_FACTOR_UPDATES
                and len(moving) - first <= max(REORDER_TAIL_SHARE * len(moving),
                                               REORDER_TAIL_MIN)):
            factor, updates, updated = cholesky_delete(factor, first), updates + 1, True
        else:  # factor anew, the smallest weights last: they are the next to leave
            moving = moving[np.argsort(-w[moving], kind="stable")]
            factor, updates, updated = None, 0, True
    raise StrategyError("mean-variance QP did not converge (degenerate cycling); "
                        "check the covariance and bounds")


def _step_target(solver: FreeSetSolver, w: np.ndarray, lin: np.ndarray, moving: np.ndarray,
                 active: np.ndarray, factor: np.ndarray | None
                 ) -> tuple[np.ndarray, float, np.ndarray]:
    """The primal method's target w + p on its free set ``moving``, its budget multiplier
    ν and Σ's factor on ``moving``, solved for the step p from w: p minimizes
    ½pᵀΣp + (g − s·a)ᵀp with aᵀp = 1 − aᵀw (the budget's rounding put right) and p = 0 on
    the held assets, g = Σw − c and s = a_Fᵀg_F / a_Fᵀa_F. Subtracting s·a only shifts ν,
    so the right-hand side is the part of g that moves w, small near the optimum, not c
    (see ``_primal_active_set``'s Anti-cycling)."""
    row = solver.budget_row
    g = solver.gradient(w, lin)
    shift = float(row[moving] @ g[moving]) / float(row[moving] @ row[moving])
    residual = np.array([1.0 - float(row @ w)])  # the budget's, which the step restores
    step, nus, factor = solver.solve_factored((shift * row - g)[:, None], residual,
                                              np.zeros((len(w), 1)), moving, active, factor)
    target = w.copy()
    target[moving] += step[moving, 0]
    return target, shift + float(nus[0]), factor


def _primal_start(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  start: QPSolution | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The primal method's first point and active sets (copies): ``start``'s, or a greedy
    vertex's."""
    if start is not None:
        return start.weights.copy(), start.at_lower.copy(), start.at_upper.copy()
    w = _greedy_vertex(cov, lin, lower, upper)
    at_lo = (lower >= upper) | (w <= lower)
    return w, at_lo, ~at_lo & (w >= upper)


def _step_ratios(step: np.ndarray, to_lower: np.ndarray, to_upper: np.ndarray) -> np.ndarray:
    """The fraction of ``step`` each moving weight takes to reach the bound it heads for
    (``to_lower``/``to_upper``: the room to it), ≥ 0; inf when it does not move. Masked
    divisions rather than np.errstate, whose context manager costs ~5 µs an iteration."""
    ratio = np.full(step.size, np.inf)
    np.divide(to_lower, step, out=ratio, where=step < -1e-18)
    np.divide(to_upper, step, out=ratio, where=step > 1e-18)
    return np.maximum(ratio, 0.0, out=ratio)


def polish_weights(w: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   free: np.ndarray | None = None) -> np.ndarray:
    """Clip to the bounds and spread the rounding residual of Σw = 1 over the free assets
    (all assets when ``free`` is None) in proportion to their room."""
    given = w
    w = np.asarray(w).clip(lower, upper)  # np.clip's bits, without its ~1 µs wrapper
    for _ in range(3):
        residual = 1.0 - float(w.sum())
        if abs(residual) <= 1e-15:
            break
        if free is None:  # (the unclipped weights strictly inside their bounds)
            free = (given > lower) & (given < upper)
        room = (upper - w) if residual > 0 else (w - lower)
        room = np.where(free, room, 0.0) if free.any() and room[free].sum() > abs(residual) \
            else room
        w = np.clip(w + residual * room / room.sum(), lower, upper)
    return w
