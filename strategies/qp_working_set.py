"""Cold start of the box-and-budget QP on a large universe by a working set.

A minimum-variance or mean-variance portfolio over thousands of assets holds a few dozen
to a few hundred of them. Starting the active-set iterations with every asset free costs
a Cholesky factorization of the whole Σ (~0.45 s at N = 3,000) and a second one nearly as
large. Instead solve the QP on a working set S (the assets with the best ½σᵢ² − cᵢ) with
every other asset held at its lower bound, then check the held assets' KKT multipliers
zⱼ = (Σw − c)ⱼ − ν on the full universe and add those with zⱼ < 0 (they would lower the
objective by entering); repeat. This is column generation for a convex QP (Gilmore &
Gomory 1961; the "working set" of Nocedal & Wright 2006, §16.5): every restricted optimum
is feasible for the full problem, each round strictly lowers the objective, and the last
one satisfies the full KKT conditions, so the answer is the same exact optimum. Only the
support's rows of Σ are read per round (Σw for a sparse w), never a full N² product.
"""

from __future__ import annotations

import numpy as np

from strategies.qp import QPSolution, solve_restricted

# Assets in the first working set (at least; more when their upper bounds cannot hold
# the budget), and the most assets one round may add (at least; else the set's size).
START_ASSETS = 256
# After this many rounds the rest is solved on the whole universe from the current active
# sets (a bounded worst case: at most this many small solves plus one full one).
MAX_ROUNDS = 30


def solve_by_working_set(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                         upper: np.ndarray, tol_z: float) -> QPSolution:
    """``qp.solve_qp``'s answer for a cold start without a factor of Σ (see module doc)."""
    n = len(lin)
    fixed = lower >= upper
    inside = first_working_set(cov, lin, lower, upper)
    warm: QPSolution | None = None
    iterations = 0
    for _ in range(MAX_ROUNDS):
        idx = np.flatnonzero(inside)
        sub = _solve_on_working_set(cov, lin, lower, upper, idx, warm, tol_z)
        iterations += sub.iterations
        m = len(idx)
        w = np.where(inside, 0.0, lower)
        w[idx] = sub.weights[:m]
        at_lo, at_hi = ~inside, np.zeros(n, bool)
        at_lo[idx], at_hi[idx] = sub.at_lower[:m], sub.at_upper[:m]
        g = _gradient(cov, lin, w)
        z = g - _budget_multiplier(g[idx], sub, m, fixed[idx])
        wanted = np.flatnonzero(~inside & ~fixed & (z < -tol_z))
        solution = QPSolution(w, at_lo, at_hi, iterations, sub.free_factor)
        if wanted.size == 0:
            return solution
        cap = max(m, START_ASSETS)
        if wanted.size > cap:
            wanted = wanted[np.argsort(z[wanted], kind="stable")[:cap]]
        inside[wanted] = True
        keep = inside.copy()
        warm = QPSolution(w[keep], at_lo[keep], at_hi[keep], 0)
    final = solve_restricted(cov, lin, lower, upper, solution, None, tol_z)
    return QPSolution(final.weights, final.at_lower, final.at_upper,
                      iterations + final.iterations, final.free_factor)


def first_working_set(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                      upper: np.ndarray, size: int = START_ASSETS) -> np.ndarray:
    """The ``size`` movable assets with the smallest ½σᵢ² − cᵢ, extended until their
    room above the lower bounds can hold the budget."""
    movable = np.flatnonzero(lower < upper)
    order = movable[np.argsort((0.5 * np.diag(cov) - lin)[movable], kind="stable")]
    room = np.cumsum((upper - lower)[order])
    needed = 1.0 - float(lower.sum())
    count = max(size, int(np.searchsorted(room, needed - 1e-12)) + 1)
    inside = np.zeros(len(lin), bool)
    inside[order[:count]] = True
    return inside


def _solve_on_working_set(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
                          upper: np.ndarray, idx: np.ndarray, warm: QPSolution | None,
                          tol_z: float) -> QPSolution:
    """The QP over the assets ``idx`` with all others at their lower bounds. Those others'
    weight (if any) is one extra fixed variable whose cross terms with ``idx`` are folded
    into the linear term (Σ's other entries only add a constant)."""
    held = np.ones(len(lin), bool)
    held[idx] = False
    base = np.where(held, lower, 0.0)
    sub_cov = cov[np.ix_(idx, idx)]
    sub_lin, sub_lo, sub_hi = lin[idx], lower[idx], upper[idx]
    if base.any():
        support = np.flatnonzero(base)
        sub_lin = sub_lin - cov[np.ix_(idx, support)] @ base[support]
        total = float(base.sum())
        m = len(idx)
        padded = np.zeros((m + 1, m + 1))
        padded[:m, :m] = sub_cov
        padded[m, m] = float(np.max(np.diag(sub_cov)))
        sub_cov = padded
        sub_lin = np.append(sub_lin, 0.0)
        sub_lo, sub_hi = np.append(sub_lo, total), np.append(sub_hi, total)
        if warm is not None:
            warm = QPSolution(np.append(warm.weights, total), np.append(warm.at_lower, True),
                              np.append(warm.at_upper, False), 0)
    return solve_restricted(sub_cov, sub_lin, sub_lo, sub_hi, warm, None, tol_z)


def _gradient(cov: np.ndarray, lin: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σw − c reading only the rows of w's support (Σ symmetric)."""
    support = np.flatnonzero(w)
    return w[support] @ cov[support] - lin


def _budget_multiplier(g: np.ndarray, sub: QPSolution, m: int, fixed: np.ndarray) -> float:
    """ν of the working-set optimum: the common gradient of its free assets; with none
    free, the smallest ν the upper-bound assets allow (−inf: every asset is at its lower
    bound, the only feasible point)."""
    free = ~(sub.at_lower[:m] | sub.at_upper[:m])
    if free.any():
        return float(np.mean(g[free]))
    at_hi = sub.at_upper[:m] & ~fixed
    return float(np.max(g[at_hi])) if at_hi.any() else -np.inf
