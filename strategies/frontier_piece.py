"""Pieces of the efficient frontier: w(λ) = w₀ + λw₁ for c = λμ on an interval of λ where
a set of active bounds stays optimal (Markowitz 1956's critical line), which the max-Sharpe
and target-volatility searches (``frontier``) use to land exactly on their optimum, and
the step across a piece's end to the next one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from strategies.free_set import SPARSE_GRADIENT_SHARE, FreeSetSolver
from strategies.qp import QPSolution


@dataclass(frozen=True, slots=True)
class FrontierSegment:
    """w(λ) = w0 + λ·w1 is the optimum of ½wᵀΣw − λμᵀw for every λ in [lam_lo, lam_hi]."""

    w0: np.ndarray
    w1: np.ndarray
    lam_lo: float
    lam_hi: float
    #: With trading costs the searches use the net return (μ − κs)ᵀw + const, affine on
    #: the piece (``costed_qp.costed_frontier_segment``); None: the plain μᵀw.
    mu_net: np.ndarray | None = None
    net_const: float = 0.0
    #: Σw0 and Σw1 when the piece's computation had them (the searches' moments reuse them).
    cov_w0: np.ndarray | None = None
    cov_w1: np.ndarray | None = None
    #: The bounds' multipliers z = Σw − λμ − ν (all assets) are z0 + λ·z1 on this piece's
    #: active sets: with w0 + λ·w1 they are a QP's first iterate on those sets at any λ.
    z0: np.ndarray | None = None
    z1: np.ndarray | None = None
    #: (at lower, at upper) beyond lam_hi: this piece's sets with the bound that ends it
    #: toggled (the next piece's, unless several bounds change at once); None if unknown.
    exit_sets: tuple[np.ndarray, np.ndarray] | None = None
    #: The same below lam_lo (the previous piece's sets); None if unknown or lam_lo = 0.
    entry_sets: tuple[np.ndarray, np.ndarray] | None = None

    def at(self, lam: float) -> np.ndarray:
        return self.w0 + lam * self.w1


def frontier_segment(cov: np.ndarray, mu: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     solution: QPSolution, lam: float,
                     solver: FreeSetSolver | None = None) -> FrontierSegment:
    """The frontier piece through ``solution`` (an optimum of ½wᵀΣw − λμᵀw for some
    λ ≥ 0): with its active bounds held, w and the multipliers are affine in λ; the
    segment is the λ-interval where the free weights stay in bounds and the active
    bounds' multipliers keep their signs (Markowitz 1956's critical line). ``lam`` is the
    λ the solution was computed at."""
    at_lo, at_hi = solution.at_lower, solution.at_upper
    fixed_w = np.where(at_lo, lower, np.where(at_hi, upper, 0.0))
    free = np.flatnonzero(~(at_lo | at_hi))
    if free.size == 0:
        return _vertex_segment(cov, mu, lower, upper, solution, fixed_w)
    if solution.pieces is not None:  # the QP solved along λμ: its pieces are this one's
        w0, w1, nu0, nu1 = solution.pieces
        both = np.column_stack([w0, w1])
    else:
        solver = solver if solver is not None else FreeSetSolver(cov)
        if solution.free_factor is not None:
            solver.remember(free, solution.free_factor)
        both, (nu0, nu1), _ = solver.solve(
            np.column_stack([np.zeros_like(mu), mu]), np.array([1.0, 0.0]),
            np.column_stack([fixed_w, np.zeros_like(fixed_w)]), at_lo | at_hi)
        w0, w1 = both[:, 0].copy(), both[:, 1].copy()
    fixed = lower >= upper
    cov_w0, cov_w1 = _cov_times(cov, both)
    z0 = cov_w0 - nu0
    z1 = cov_w1 - mu - nu1
    is_free = ~(at_lo | at_hi)
    # Constraints of the form a + λ·b ≥ 0.
    a = np.concatenate([(w0 - lower)[is_free], (upper - w0)[is_free],
                        z0[at_lo & ~fixed], -z0[at_hi]])
    b = np.concatenate([w1[is_free], -w1[is_free], z1[at_lo & ~fixed], -z1[at_hi]])
    seg = _segment(w0, w1, a, b, _lambda_cap(cov, mu))
    exit_sets = entry_sets = None
    if seg.lam_lo <= seg.lam_hi:
        if np.isfinite(seg.lam_hi):
            exit_sets = _toggled_sets(a, b, seg.lam_hi, at_lo, at_hi, fixed, b < 0)
        if seg.lam_lo > 0:
            entry_sets = _toggled_sets(a, b, seg.lam_lo, at_lo, at_hi, fixed, b > 0)
    return dataclasses.replace(seg, cov_w0=cov_w0, cov_w1=cov_w1, z0=z0, z1=z1,
                               exit_sets=exit_sets, entry_sets=entry_sets)


def _cov_times(cov: np.ndarray, both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σw₀ and Σw₁ (the columns of ``both``) in one pass over Σ, or over the rows of the
    weights' support when it is small (Σ symmetric: Σw = Σ_{S,:}ᵀw_S; each full pass
    over Σ is a memory-bound ~0.1 ms at N = 500)."""
    support = np.flatnonzero(both.any(axis=1))
    if support.size < SPARSE_GRADIENT_SHARE * len(cov):
        product = both[support].T @ cov.take(support, axis=0)
    else:
        product = (cov @ both).T
    return product[0].copy(), product[1].copy()


def _toggled_sets(a: np.ndarray, b: np.ndarray, lam_end: float, at_lo: np.ndarray,
                  at_hi: np.ndarray, fixed: np.ndarray, closing: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The active sets past the piece's end ``lam_end``: the constraint a + λb ≥ 0 (in
    frontier_segment's order: free ≥ lower, free ≤ upper, lower multipliers, upper
    multipliers) among the ``closing`` ones (b < 0 past lam_hi, b > 0 below lam_lo) that
    reaches 0 there changes side — a free weight joins its bound, or a bound is
    released."""
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = np.where(closing, -a / b, np.inf)
    k = int(np.argmin(np.abs(limits - lam_end)))
    free = np.flatnonzero(~(at_lo | at_hi))
    lows, highs = np.flatnonzero(at_lo & ~fixed), np.flatnonzero(at_hi)
    new_lo, new_hi = at_lo.copy(), at_hi.copy()
    if k < free.size:
        new_lo[free[k]] = True
    elif k < 2 * free.size:
        new_hi[free[k - free.size]] = True
    elif k < 2 * free.size + lows.size:
        new_lo[lows[k - 2 * free.size]] = False
    else:
        new_hi[highs[k - 2 * free.size - lows.size]] = False
    return new_lo, new_hi


def _lambda_cap(cov: np.ndarray, mu: np.ndarray) -> float:
    """Breakpoints beyond this λ are rounding noise (a rate over a ~1e-17 slope): λ this
    large weighs return 1e9 times more than the problem's own variance/return scale."""
    return 1e9 * float(np.mean(np.diag(cov))) / max(float(np.max(np.abs(mu))), 1e-300)


def _segment(w0: np.ndarray, w1: np.ndarray, a: np.ndarray, b: np.ndarray,
             cap: float) -> FrontierSegment:
    """The λ-interval where every a + λ·b ≥ 0, as a FrontierSegment (empty, lam_lo >
    lam_hi, when a constraint with b = 0 is violated for every λ)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = -a / b
    never = (np.abs(limits) >= cap) & (a < -1e-10 * max(1.0, float(np.max(np.abs(a),
                                                                          initial=0.0))))
    if never.any():
        return FrontierSegment(w0=w0, w1=w1, lam_lo=np.inf, lam_hi=-np.inf)
    real = np.abs(limits) < cap
    lam_lo = float(np.max(limits[(b > 0) & real], initial=0.0))
    lam_hi = float(np.min(limits[(b < 0) & real], initial=np.inf))
    return FrontierSegment(w0=w0, w1=w1, lam_lo=max(lam_lo, 0.0), lam_hi=lam_hi)


def _vertex_segment(cov: np.ndarray, mu: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                    solution: QPSolution, w: np.ndarray) -> FrontierSegment:
    """Every weight at a bound: w stays optimal while some ν separates the gradients,
    max over upper-bound assets of g_i(λ) ≤ min over lower-bound ones, g(λ) = Σw − λμ."""
    g0, _ = _cov_times(cov, np.column_stack([w, np.zeros_like(w)]))  # a vertex: few w ≠ 0
    fixed = lower >= upper
    lo_idx = np.flatnonzero(solution.at_lower & ~fixed)
    hi_idx = np.flatnonzero(solution.at_upper)
    # Pairwise (g0_l − g0_h) + λ(μ_h − μ_l) ≥ 0.
    a = (g0[lo_idx][None, :] - g0[hi_idx][:, None]).ravel()
    b = (mu[hi_idx][:, None] - mu[lo_idx][None, :]).ravel()
    flat = np.zeros_like(w)  # Σw₀ = g0 and Σw₁ = 0 for the searches' moments (two N² passes)
    return dataclasses.replace(_segment(w, flat, a, b, _lambda_cap(cov, mu)), cov_w0=g0,
                               cov_w1=flat)
