"""An interior-point start of the box QP on a rank-deficient Σ (``qp_regularized``): for
the minimum-variance objective when the guessed start and the splitting cycle, and for
the homogeneous max-Sharpe QP when the all-free start does.

Mehrotra's predictor-corrector primal-dual method (Mehrotra 1992, "On the implementation
of a primal-dual interior point method", SIAM J. Optim. 2(4); Nocedal & Wright 2006,
§16.6) on

    minimize ½wᵀΣw − cᵀw   subject to   aᵀw = 1,   lower ≤ w ≤ upper

with slacks s = w − lower, t = upper − w and their multipliers z, y. Each iteration
factors Σ + D once (D = z/s + y/t, the barrier's diagonal) and solves it for aᵀ's column
and the predictor's and the corrector's right-hand sides. Its iteration count hardly
depends on Σ's conditioning, where the active-set methods' free-set solves swing on a
rank-deficient Σ's flat directions: on 500 assets × 250 days of returns (the sample Σ
repaired by a loading of ~1e-7 of its mean variance), min_variance's guessed start
cycled on 7 of 10 draws and the primal method walked 100–200 bound changes to the
optimum; from the bounds this method ended on it took one or two (15–27 iterations
here, ~2.5 ms each). Only the start comes from here: the primal method makes it exact.
Not with a linear term (mean-variance, Black-Litterman): there the optimum on such a Σ
tends to sit where the gradient vanishes along a flat face, every multiplier stays under
its slack, and the bounds this method separated left the primal method 216 changes on
one Black-Litterman draw of 500 × 250 (the other starts' whole solve: 13 iterations).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import dtrsv
from scipy.linalg.lapack import dpotrf

from strategies.qp import QPSolution, _feasible_for, _homogeneous_feasible_for

# A bounded worst case (~2.5 ms an iteration at 500 assets): Mehrotra's method took 15–27
# on the rank-deficient draws above; unconverged by then, the caller's next start is tried.
INTERIOR_MAX_ITERATIONS = 50
# Fraction of the step to the boundary taken (Mehrotra 1992 and most codes: 0.99–0.995).
STEP_TO_BOUNDARY = 0.995
# A bound counts as decided when the smaller of its slack and multiplier is at most this
# share of the larger (strict complementarity shows), for every bound.
SEPARATION_RATIO = 1e-2
# The iterations end once, besides, the average complementarity is this small relative
# to |∇|·|w| (on a flat face of a rank-deficient Σ the gradient at the optimum is of the
# repair's loading's size: an absolute test stopped before the zero weights showed).
RELATIVE_COMPLEMENTARITY = 1e-6
# Dual residual, relative to 1 + |∇| (scaled units), and budget residual that count as met.
DUAL_RESIDUAL_TOLERANCE = 1e-9
BUDGET_RESIDUAL_TOLERANCE = 1e-12


def interior_start(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   budget_row: np.ndarray | None = None) -> QPSolution | None:
    """A feasible start for the primal method (``start_only``) on the bounds Mehrotra's
    iterations separate (wᵢ − lowerᵢ < zᵢ: at the lower bound); None when they do not
    converge within INTERIOR_MAX_ITERATIONS, Σ + D cannot be factored, a lower bound is
    not finite, or the weights cannot be made feasible on those bounds. ``budget_row`` a
    (default 1) makes the budget aᵀw = 1 (the homogeneous max-Sharpe QP)."""
    n = len(lin)
    fixed = lower >= upper
    if not np.isfinite(lower).all() or np.count_nonzero(fixed) == n:
        return None
    row = np.ones(n) if budget_row is None else budget_row
    free = ~fixed
    solved = _mehrotra(cov, lin, lower, upper, row, free)
    if solved is None:
        return None
    w_free, at_lo_free, at_hi_free, iterations = solved
    w = lower.copy()
    w[free] = w_free
    at_lo, at_hi = fixed.copy(), np.zeros(n, bool)
    at_lo[free], at_hi[free] = at_lo_free, at_hi_free
    if budget_row is None:
        start = _feasible_for(w, at_lo, at_hi, lower, upper)
    else:
        start = _homogeneous_feasible_for(w, at_lo, at_hi, lower, upper, budget_row)
    if start is None:
        return None
    return QPSolution(start, at_lo, at_hi, iterations, None, start_only=True)


def _mehrotra(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
              row: np.ndarray, free: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """The iterations on the assets not fixed by their bounds (the fixed ones move the
    linear term and the budget); their weights, at-lower and at-upper sets, iterations."""
    scale = float(np.mean(np.diag(cov)))
    if not scale > 0.0:
        return None
    held = ~free
    sigma = cov[np.ix_(free, free)] / scale
    c = lin[free] / scale
    budget = 1.0
    if held.any():
        c = c - cov[np.ix_(free, held)] @ lower[held] / scale
        budget -= float(row[held] @ lower[held])
    a, lo, up = row[free], lower[free], upper[free]
    n = len(c)
    capped = np.isfinite(up)
    w = _interior_point(lo, up, capped, n)
    z, y, nu = np.ones(n), np.where(capped, 1.0, 0.0), 0.0
    bounds = n + int(np.count_nonzero(capped))
    diagonal = np.arange(n) * (n + 1)
    for iteration in range(1, INTERIOR_MAX_ITERATIONS + 1):
        s = w - lo
        t = np.where(capped, up - w, 1.0)  # uncapped: a unit slack with y = 0 (inert)
        grad = sigma @ w - c
        r_dual = grad - nu * a - z + y
        r_budget = float(a @ w) - budget
        mu = (float(s @ z) + float(t @ y)) / bounds
        if _converged(s, z, t, y, capped, grad, w, r_dual, r_budget, mu):
            at_lo = s < z
            return w, at_lo, capped & (t < y) & ~at_lo, iteration
        matrix = sigma.copy()
        matrix.flat[diagonal] += z / s + y / t
        # .T: the same symmetric matrix in Fortran order, factored in place (a C-ordered
        # array with overwrite_a took 5.4 ms at 500 assets here, this 1.5–2 ms)
        factor, info = dpotrf(matrix.T, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return None
        newton = _Newton(factor, a, s, z, t, y, capped, r_dual, r_budget)
        zero = np.zeros(n)
        d_w, d_nu, d_z, d_y = newton.direction(zero, zero)  # the affine-scaling predictor
        alpha = _step_length(s, t, z, y, d_w, d_z, d_y, capped)
        mu_affine = (float((s + alpha * d_w) @ (z + alpha * d_z))
                     + float(((t - alpha * d_w) * (y + alpha * d_y))[capped].sum())) / bounds
        centring = (mu_affine / mu) ** 3 if mu > 0.0 else 0.0
        d_w, d_nu, d_z, d_y = newton.direction(centring * mu - d_w * d_z,
                                               np.where(capped, centring * mu + d_w * d_y, 0.0))
        alpha = min(1.0, STEP_TO_BOUNDARY * _step_length(s, t, z, y, d_w, d_z, d_y, capped))
        w = w + alpha * d_w
        nu += alpha * d_nu
        z = z + alpha * d_z
        y = y + alpha * d_y
        if not (np.isfinite(w).all() and np.isfinite(z).all() and np.isfinite(y).all()):
            return None
    return None


class _Newton:
    """Newton's steps at one iterate, from one factor of Σ + D: for s∘z = target_s,
    t∘y = target_t and the two residuals, reduced to (Σ + D)Δw − aΔν = h, aᵀΔw = −r_budget
    (Nocedal & Wright 2006, (16.58))."""

    def __init__(self, factor: np.ndarray, a: np.ndarray, s: np.ndarray, z: np.ndarray,
                 t: np.ndarray, y: np.ndarray, capped: np.ndarray, r_dual: np.ndarray,
                 r_budget: float) -> None:
        self.factor, self.a, self.capped = factor, a, capped
        self.s, self.z, self.t, self.y = s, z, t, y
        self.r_dual, self.r_budget = r_dual, r_budget
        self.solve_a = self._solve(a)
        self.a_solve_a = float(a @ self.solve_a)

    def _solve(self, rhs: np.ndarray) -> np.ndarray:
        """(Σ + D)⁻¹rhs by two triangular solves (BLAS dtrsv: ~40 µs each at 500 assets,
        LAPACK's dpotrs ~200 µs for the pair)."""
        return dtrsv(self.factor, dtrsv(self.factor, rhs, lower=1), lower=1, trans=1,
                     overwrite_x=1)

    def direction(self, target_s: np.ndarray, target_t: np.ndarray
                  ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        s, z, t, y, capped = self.s, self.z, self.t, self.y, self.capped
        h = -self.r_dual + (target_s / s - z) - np.where(capped, target_t / t - y, 0.0)
        solve_h = self._solve(h)
        d_nu = (-self.r_budget - float(self.a @ solve_h)) / self.a_solve_a
        d_w = solve_h + d_nu * self.solve_a
        d_z = (target_s - s * z - z * d_w) / s
        d_y = np.where(capped, (target_t - t * y + y * d_w) / t, 0.0)
        return d_w, d_nu, d_z, d_y


def _interior_point(lo: np.ndarray, up: np.ndarray, capped: np.ndarray, n: int) -> np.ndarray:
    """Equal weights pulled strictly inside the bounds (the iterations need s, t > 0; they
    meet the budget on the way)."""
    room = np.where(capped, up - lo, 1.0)
    margin = 0.01 * np.minimum(room, 1.0 / n)
    return np.minimum(np.maximum(np.full(n, 1.0 / n), lo + margin),
                      np.where(capped, up - margin, np.inf))


def _step_length(s: np.ndarray, t: np.ndarray, z: np.ndarray, y: np.ndarray, d_w: np.ndarray,
                 d_z: np.ndarray, d_y: np.ndarray, capped: np.ndarray) -> float:
    """The largest step ≤ 1 keeping the slacks and multipliers non-negative."""
    alpha = 1.0
    for value, change in ((s, d_w), (t, -np.where(capped, d_w, 0.0)), (z, d_z), (y, d_y)):
        falling = change < 0.0
        if np.count_nonzero(falling):
            alpha = min(alpha, float(np.min(-value[falling] / change[falling])))
    return alpha


def _converged(s: np.ndarray, z: np.ndarray, t: np.ndarray, y: np.ndarray,
               capped: np.ndarray, grad: np.ndarray, w: np.ndarray, r_dual: np.ndarray,
               r_budget: float, mu: float) -> bool:
    """Residuals met, every bound separated (SEPARATION_RATIO) and the complementarity
    small relative to the gradient (RELATIVE_COMPLEMENTARITY)."""
    grad_size = float(np.abs(grad).max())
    if not (float(np.abs(r_dual).max()) <= DUAL_RESIDUAL_TOLERANCE * (1.0 + grad_size)
            and abs(r_budget) <= BUDGET_RESIDUAL_TOLERANCE):
        return False
    if mu > RELATIVE_COMPLEMENTARITY * grad_size * float(np.abs(w).max()):
        return False
    lower_sep = np.minimum(s, z) <= SEPARATION_RATIO * np.maximum(s, z)
    upper_sep = np.minimum(t, y) <= SEPARATION_RATIO * np.maximum(t, y)
    return bool(lower_sep.all() and upper_sep[capped].all())
