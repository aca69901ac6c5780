"""Where efficient_risk's frontier walk starts and where it probes next: the budget-only
frontier's λ (a lower estimate of the target's, from Σ's factor) and the candidate λ from
a model of the variance along the frontier, v(λ) = c + aλᵖ, fitted to the pieces seen
(each piece's own parabola undershoots: as bounds become active the variance grows more
slowly). The walk (``frontier._walk``) keeps its bracket, so a poor candidate costs a
probe, never the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from strategies.free_set import cho_solve_lower
from strategies.qp import ill_conditioned

if TYPE_CHECKING:
    from strategies.frontier import TradingCosts


def budget_only_guess(mu: np.ndarray, lower: np.ndarray, upper: np.ndarray, target: float,
                      chol: np.ndarray | None, costs: TradingCosts | None
                      ) -> tuple[float, np.ndarray | None]:
    """(λ, w) of the frontier with the budget as its only constraint, from Σ's factor:
    w(λ) = Σ⁻¹(λμ + ν1) = λb + νa (a = Σ⁻¹1, b = Σ⁻¹μ) has variance v₀ + λ²q with
    v₀ = 1/(1ᵀa) and q = μᵀb − (1ᵀb)²/(1ᵀa); λ is where that reaches ``target``. The bounds
    only slow the variance's growth (the constrained optimum's λ is larger), so the walk
    starts there instead of at the minimum-variance portfolio, and w(λ) is its cold QP's
    first iterate (None when some asset is fixed, lower = upper: then it is not). λ = 0
    (start at λ = 0): costs, no factor or an ill-conditioned one, or a target ≤ v₀."""
    if costs is not None or chol is None or ill_conditioned(chol):
        return 0.0, None
    both = cho_solve_lower(chol, np.column_stack([np.ones(len(mu)), mu]))
    ones, ret = float(both[:, 0].sum()), float(both[:, 1].sum())
    if not ones > 0:
        return 0.0, None
    v0 = 1.0 / ones
    q = float(mu @ both[:, 1]) - ret * ret / ones
    if not (q > 0 and target > v0 and np.isfinite(q)):
        return 0.0, None
    lam = float(np.sqrt((target - v0) / q))
    if (lower >= upper).any():
        return lam, None
    return lam, lam * both[:, 1] + (1.0 - lam * ret) / ones * both[:, 0]


def model_root(seen: list[tuple[float, float, float]], lam: float, q0: float, q1: float,
               q2: float, min_var: float | None, target: float,
               root: float | None) -> float | None:
    """The candidate λ from the model v(λ) = c + aλᵖ: fitted to this piece's end and the
    last other end seen (slopes give p, then a and c), else ``power_root``."""
    var = q0 + 2.0 * q1 * lam + q2 * lam * lam
    slope = 2.0 * (q1 + q2 * lam)
    previous = seen[-1] if seen else None
    seen.append((lam, var, slope))
    if previous is not None and lam > 0 and previous[0] > 0 and slope > 0 and previous[2] > 0:
        ratio = lam / previous[0]
        if abs(np.log(ratio)) > 1e-3:
            power = 1.0 + float(np.log(slope / previous[2]) / np.log(ratio))
            if 1.0 <= power <= 2.0:
                a = slope / (power * lam ** (power - 1.0))
                c = var - a * lam**power
                if target > c:
                    return float(((target - c) / a) ** (1.0 / power))
    return power_root(lam, q0, q1, q2, min_var, target, root)


def power_root(lam: float, q0: float, q1: float, q2: float, min_var: float | None,
               target: float, root: float | None) -> float | None:
    """The λ where the variance reaches ``target`` on the model v(λ) = v₀ + aλᵖ through the
    piece's end (λ, v(λ), v'(λ)), v₀ the minimum variance (λ = 0): on the unconstrained
    frontier p = 2 (v = v₀ + q₂λ²); as bounds become active the variance grows more slowly
    than each piece's own parabola, whose root (``root``) then undershoots. ``min_var``
    None (unknown): the tangent's root (p = 1)."""
    var = q0 + 2.0 * q1 * lam + q2 * lam * lam
    slope = 2.0 * (q1 + q2 * lam)
    if min_var is None:
        return float(lam + (target - var) / slope) if lam > 0 and slope > 0 else root
    rise = var - min_var
    if not (lam > 0 and rise > 0 and slope > 0 and target > min_var):
        return root
    power = min(max(slope * lam / rise, 1.0), 2.0)
    return float(lam * ((target - min_var) / rise) ** (1.0 / power))
