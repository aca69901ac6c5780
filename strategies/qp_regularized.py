"""The regularized start of the box QP on a near-singular Σ (``qp.solve_qp``'s safe path):
continuation on Σ + ρI, ρ shrinking to 0, each step's primal-dual iterations warm-started
from the last, so the primal method ends with a few bound changes.
"""

from __future__ import annotations

import numpy as np

from strategies.free_set import FreeSetSolver, factor_matrix
from strategies.qp import QPSolution, _primal_dual_active_set
from strategies.qp_interior import interior_start
from strategies.qp_splitting import splitting_start
from strategies.qp_working_set import first_working_set

# The box QP's continuation: its last step is Σ itself (ρ = 0). Started next to its answer
# it settles in a couple of solves (or gives up after LATER_STEP_MAX_ITERATIONS), and its
# last factor is then Σ's own on the final free set: the primal method reuses it instead
# of factoring that set once more.
# Its first ridge 3e-7 (not qp.REGULARIZATION_STEPS' 1e-6) frees fewer assets that the later
# steps drop again: on 45 near-singular problems (3 seeds × N = 120, 300, 500 × the five
# optimizers) 17 % fewer factorization flops, the same answers; 1e-7 cycles on some.
BOX_REGULARIZATION_STEPS = (3e-7, 1e-8, 0.0)
# Iterations allowed to every continuation step after the first (they start next to their
# answer; a long run is cycling, seen taking 60 iterations of 150–200-asset factors on a
# near-singular min_variance: stop and let the primal method finish, as costed_qp does).
LATER_STEP_MAX_ITERATIONS = 12
# A regularized continuation step (ρ > 0) stops once an iteration changes at most this
# share of the bounds (at least 2): its answer is only the next step's start, and
# confirming it costs one more free-set factorization (a ~250-asset one on a near-singular
# Black-Litterman problem).
SETTLE_SHARE = 0.01
# Assets free in the first guess of the regularized start (the rest held at their lower
# bounds): a near-singular Σ's optimum holds a few dozen; the iterations add the rest.
REGULARIZED_GUESS_ASSETS = 64
# Iterations allowed to the guessed start before the all-free fallback (a start that does
# not settle this fast tends to cycle to the full limit: a bounded worst case).
GUESS_MAX_ITERATIONS = 12
# Iterations allowed to the all-free start, whose best iterate then starts the primal
# method should it not settle. On rank-deficient covariances it cycled in 92 of 125 calls,
# and its best iterate after 24 iterations serves as well as after 60: 500 assets × 250
# days, black_litterman 80 → 63 ms, min_variance 82–86 → 62–63 ms, efficient_risk 110 →
# 91–94 ms, uncapped max_sharpe 120–149 → 81–99 ms, the other families unchanged
# (alternated runs).
ALL_FREE_MAX_ITERATIONS = 24
# Most assets one iteration of the guessed start may free (at least; else the free set's
# size), the most negative multipliers first: from a 64-asset guess the first iteration
# would free ~420 of 500 on a near-singular Σ (a 485-asset factor) only to drop ~160 of
# them next; growing the set in steps (as ``qp_working_set`` does) factors smaller sets.
GUESS_MAX_JOINING = 256


def regularized_start(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                      upper: np.ndarray, tol_z: float,
                      budget_row: np.ndarray | None = None, rank: int | None = None
                      ) -> tuple[QPSolution | None, bool]:
    """A feasible, near-optimal start for the primal method by continuation: the
    primal-dual iterations on Σ + ρI for ρ = 3e-7, 1e-8, 0 × mean variance
    (BOX_REGULARIZATION_STEPS), each warm-started from the last. They cycle on
    near-singular Σ (its flat directions make the free-set solves swing wildly); the
    proximal term tames them, and shrinking it moves the active set toward the true one,
    so the primal method ends with a few bound changes. The first run starts from a
    guess — the REGULARIZED_GUESS_ASSETS assets with the smallest ½σᵢ² − cᵢ free, the
    rest at their lower bounds — so its solves factor small free sets; should it cycle,
    the active bounds an operator splitting settles on start the primal method
    (``qp_splitting``; ``rank``, Σ's numerical rank, bounds the free set it may settle
    on); should those not settle either, for the minimum-variance objective (c = 0) the
    bounds interior-point iterations separate start it (``qp_interior``); else it starts
    again with every asset free
    (at once for the homogeneous max-Sharpe QP, ``budget_row``) from one factor of
    Σ + ρI, reused for
    range-space solves (accuracy is immaterial here: the start only has to be feasible);
    should that cycle too (a rank-deficient Σ), the interior start (the homogeneous QP)
    or its best iterate, ``start_only``, is the start, without the later steps. Also
    returns whether the last step, on Σ itself (ρ = 0), converged: its answer then
    satisfies the KKT conditions the primal method would check, and is the optimum."""
    fixed = lower >= upper
    scale = float(np.mean(np.diag(cov)))
    best: QPSolution | None = None
    at_lo, at_hi = fixed.copy(), np.zeros(len(lin), bool)
    for rho in BOX_REGULARIZATION_STEPS:
        solver = FreeSetSolver(cov, budget_row=budget_row, ridge=rho * scale)
        if best is None:
            # the homogeneous max-Sharpe QP (a budget row, c = 0) starts with every asset
            # free: its guess ranks by σᵢ² alone, and on a short window (500 assets × 250
            # days, ~280 held) it ran its 12 iterations out before that start was tried
            start = (_guessed_start(cov, lin, lower, upper, tol_z, solver)
                     if budget_row is None else None)
            if start is None and budget_row is None and rank is not None:
                split = splitting_start(cov, lin, lower, upper, rank)  # the guess cycled
                if split is not None:
                    return split, False
            if start is None and budget_row is None and not lin.any():
                interior = interior_start(cov, lin, lower, upper)  # see qp_interior
                if interior is not None:
                    return interior, False
            if start is None:
                solver = _all_free_solver(cov, budget_row, rho * scale)
                start = _primal_dual_active_set(cov, lin, lower, upper, at_lo, at_hi, tol_z,
                                                solver, ALL_FREE_MAX_ITERATIONS,
                                                best_on_failure=True)
                if start is not None and start.start_only:  # it cycled: the primal
                    if budget_row is not None:              # method finishes from the
                        interior = interior_start(cov, lin, lower, upper, budget_row)
                        if interior is not None:            # interior start's bounds,
                            return interior, False          # else from the best iterate
                    return start, False
        else:
            start = _primal_dual_active_set(cov, lin, lower, upper, at_lo, at_hi, tol_z,
                                            solver, LATER_STEP_MAX_ITERATIONS,
                                            settle=settle_changes(len(lin)) if rho else 0)
        if start is None:
            return best, False
        at_lo, at_hi = start.at_lower | fixed, start.at_upper & ~fixed
        done = start.iterations + (0 if best is None else best.iterations)
        best = QPSolution(start.weights, start.at_lower, start.at_upper, done,
                          None if rho else start.free_factor)
    return best, BOX_REGULARIZATION_STEPS[-1] == 0.0


def settle_changes(n: int) -> int:
    """Bound changes small enough to end a continuation step (see SETTLE_SHARE)."""
    return max(2, int(SETTLE_SHARE * n))


def _guessed_start(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   tol_z: float, solver: FreeSetSolver) -> QPSolution | None:
    """The primal-dual iterations from the working-set guess (see ``regularized_start``)."""
    fixed = lower >= upper
    inside = first_working_set(cov, lin, lower, upper, REGULARIZED_GUESS_ASSETS)
    return _primal_dual_active_set(cov, lin, lower, upper, fixed | ~inside,
                                   np.zeros(len(lin), bool), tol_z, solver,
                                   GUESS_MAX_ITERATIONS, GUESS_MAX_JOINING,
                                   settle=settle_changes(len(lin)))


def _all_free_solver(cov: np.ndarray, budget_row: np.ndarray | None,
                     ridge: float) -> FreeSetSolver:
    """A solver for Σ + ridge·I holding its factor (for the all-free start)."""
    solver = FreeSetSolver(cov, budget_row=budget_row, ridge=ridge)
    shifted = cov.copy()
    shifted.flat[:: len(cov) + 1] += ridge
    solver.chol = factor_matrix(shifted)
    solver.remember(np.arange(len(cov)), solver.chol, slot="all")
    return solver
