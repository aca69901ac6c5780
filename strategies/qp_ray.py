"""The frontier walk's QPs solved along their ray lin = λd (``qp.solve_qp``'s ``ray``):
each free-set solve takes the two columns [0 | d] (budgets 1 | 0), so the optimum carries
its affine pieces w₀ + λw₁, ν₀ + λν₁ — the frontier piece through it (Markowitz 1956's
critical line) without a second solve — and, aimed at a variance, each iteration moves λ
to where its piece reaches that variance (efficient_risk's first QP then lands on the
target's piece: a Newton-like step on λ inside the primal-dual active-set iterations of
Hintermüller, Ito & Kunisch 2002; the walk still checks the piece it lands on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategies.free_set import FreeSetSolver

Pieces = tuple[np.ndarray, np.ndarray, float, float]
#: (w, z = Σw − lin − νa, the free set's factor or None, the pieces or None)
IterateResult = tuple[np.ndarray, np.ndarray, np.ndarray | None, Pieces | None]


@dataclass(slots=True)
class Ray:
    """A frontier walk's QP: lin = lam·direction. With ``target_variance`` the solves re-aim
    λ each iteration to where their piece's variance w(λ)ᵀΣw(λ) reaches it (the last λ
    used is left in ``lam``): efficient_risk's first QP then lands on the target's piece."""

    lam: float
    direction: np.ndarray
    target_variance: float | None = None


def ray_solve(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray, upper: np.ndarray,
              at_lo: np.ndarray, at_hi: np.ndarray, solver: FreeSetSolver, ray: Ray
              ) -> IterateResult | None:
    """One primal-dual iteration's solve on the given sets along ``ray`` (see module doc;
    unit budget, lin = ray.lam·ray.direction): (w, z, factor, pieces) at ``ray.lam``
    (re-aimed first when it has a target variance), or None when nothing is free."""
    direction = ray.direction
    held = np.where(at_lo, lower, np.where(at_hi, upper, 0.0))
    both, nus, factor = solver.solve(
        np.column_stack([np.zeros_like(direction), direction]), np.array([1.0, 0.0]),
        np.column_stack([held, np.zeros_like(held)]), at_lo | at_hi, held_zero_on_free=True)
    pieces = (both[:, 0].copy(), both[:, 1].copy(), float(nus[0]), float(nus[1]))
    if np.isnan(pieces[2]):
        return None
    if ray.target_variance is not None:
        return _aimed(cov, ray, ray.target_variance, pieces, solver.last_multipliers, factor)
    w, nu = pieces[0] + ray.lam * pieces[1], pieces[2] + ray.lam * pieces[3]
    multipliers = solver.last_multipliers  # a range-space solve gives them
    if multipliers is not None:
        z = multipliers[:, 0] + ray.lam * multipliers[:, 1]
    else:
        z = solver.gradient(w, lin) - nu  # lin = λd
    return w, z, factor, pieces


def _aimed(cov: np.ndarray, ray: Ray, target: float, pieces: Pieces,
           multipliers: np.ndarray | None, factor: np.ndarray | None) -> IterateResult:
    """``ray_solve``'s answer at the λ where this solve's piece has the target variance
    (q₀ + 2λq₁ + λ²q₂ = v*, the larger root; λ kept when there is none), stored in
    ``ray.lam``. Σw₀ and Σw₁ come from the range-space multipliers Z = Σw − c − ν1 when
    the solve gave them, else from one product with Σ."""
    w0, w1, nu0, nu1 = pieces
    if multipliers is not None:
        cov_w0, cov_w1 = multipliers[:, 0] + nu0, multipliers[:, 1] + ray.direction + nu1
    else:
        product = cov @ np.column_stack([w0, w1])
        cov_w0, cov_w1 = product[:, 0], product[:, 1]
    q0, q1, q2 = float(w0 @ cov_w0), float(w0 @ cov_w1), float(w1 @ cov_w1)
    disc = q1 * q1 - q2 * (q0 - target)
    if q2 > 0 and disc >= 0:
        root = (-q1 + float(np.sqrt(disc))) / q2
        if root > 0 and np.isfinite(root):
            ray.lam = root
    lam = ray.lam
    z = (cov_w0 - nu0) + lam * (cov_w1 - ray.direction - nu1)
    return w0 + lam * w1, z, factor, pieces
