"""The net-of-cost efficient frontier's pieces for the max-Sharpe and target-volatility
searches of ``strategies.frontier`` (the cost-aware critical line)."""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from strategies.costed_model import (
    DOWN,
    HI,
    KINK,
    LO,
    CostedSolution,
    Geometry,
    LinearTerms,
    fixed_values,
    independent_rows,
    segment_ends,
    signs,
    working_rows,
)
from strategies.frontier_piece import FrontierSegment, _lambda_cap, _segment


def costed_frontier_segment(cov: np.ndarray, mu: np.ndarray, kappa: float,
                            lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
                            solution: CostedSolution) -> FrontierSegment:
    """The piece of the net-of-cost frontier w(λ) = argmin ½wᵀΣw − λ(μᵀw − κΣ|w − a|)
    through ``solution``: with its states and caps held, w and the multipliers are affine
    in λ; the piece is where free assets stay on their side of their kink and bounds, the
    fixed ones' conditions and the caps' signs hold (the critical line of
    ``frontier_piece.frontier_segment`` with kinks and caps). The segment carries the net return's
    affine form (μ − κs)ᵀw + const for the searches."""
    states = solution.states
    geo = Geometry.of(lower, upper, terms, kappa > 0 or terms.has_turnover)
    sign = signs(states)
    v = fixed_values(states, lower, upper, geo)
    free = np.flatnonzero(states >= DOWN)
    fixed_mask = states < DOWN
    mu_net = mu - kappa * sign
    net_const = kappa * (float(sign @ terms.anchor) - float(np.sum(np.abs(v - terms.anchor)
                                                                   * fixed_mask)))
    if free.size == 0:
        return _vertex_piece(cov, mu, kappa, lower, upper, states, geo, v, mu_net, net_const)
    sectors, with_turnover = independent_rows(states, solution.sectors_active,
                                               solution.turnover_active, terms)
    rows, rhs, sector_rows = working_rows(states, sectors, with_turnover, terms, v, free)
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
    seg_lo, seg_hi = segment_ends(states, lower, upper, geo)
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


def _vertex_piece(cov: np.ndarray, mu: np.ndarray, kappa: float, lower: np.ndarray,
                  upper: np.ndarray, states: np.ndarray, geo: Geometry, w: np.ndarray,
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
