"""The pieces of the cost-aware QP (see ``strategies.costed_qp``): the problem's terms,
the asset states (LO, HI, KINK, DOWN, UP) and the equality-constrained solve on a guess of
them, with the optimality conditions both active-set methods test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from strategies.base import StrategyError

LO, HI, KINK, DOWN, UP = 0, 1, 2, 3, 4
WEIGHT_TOLERANCE = 1e-12


# A turnover cap (beyond investing what is uninvested) this small trades nothing else: the
# frontier's bracket search cannot resolve such a sliver (it failed to converge at 1e-7),
# and 1e-6 of equity is below any order worth sending.
NEGLIGIBLE_TURNOVER = 1e-6


@dataclass(frozen=True, slots=True)
class LinearTerms:
    """Everything beyond box and budget: current weights a (0 for symbols not held),
    sector index per asset (−1: none) with one cap per sector, the turnover cap on
    Σ|w − a| (inf: none; the configured τ plus |``uninvested``|) and ``uninvested`` = 1 − Σa,
    the weight outside these assets now (cash, and held symbols the strategy cannot hold,
    which are sold): investing it is the least turnover, and outside τ."""

    anchor: np.ndarray
    sector_of: np.ndarray
    sector_caps: np.ndarray
    max_turnover: float = np.inf
    uninvested: float = 0.0

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
class Geometry:
    """Per-asset constants: kink inside the box, the kink clipped into the box, the sign
    just above the lower and just below the upper bound."""

    kinked: np.ndarray
    kink: np.ndarray
    sign_up_from_lo: np.ndarray
    sign_down_from_hi: np.ndarray

    @staticmethod
    def of(lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
           with_kinks: bool) -> Geometry:
        a = terms.anchor
        kinked = (lower < a) & (a < upper) & with_kinks
        return Geometry(kinked=kinked, kink=np.clip(a, lower, upper),
                         sign_up_from_lo=np.where(a <= lower, 1.0, -1.0),
                         sign_down_from_hi=np.where(a >= upper, -1.0, 1.0))


@dataclass(frozen=True, slots=True)
class EqpResult:
    weights: np.ndarray
    nu: float
    rho: np.ndarray
    eta: float
    solved: bool  # False when no asset is free (multipliers undetermined)


def turnover(w: np.ndarray, terms: LinearTerms) -> float:
    """Σ|w − a|: the one-way traded fraction of equity (both legs counted)."""
    return float(np.sum(np.abs(w - terms.anchor)))


def fixed_values(states: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  geo: Geometry) -> np.ndarray:
    return np.select([states == LO, states == HI, states == KINK], [lower, upper, geo.kink],
                     0.0)


def signs(states: np.ndarray) -> np.ndarray:
    return np.where(states == UP, 1.0, np.where(states == DOWN, -1.0, 0.0))


def solve_states(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                  upper: np.ndarray, terms: LinearTerms, geo: Geometry, states: np.ndarray,
                  sectors_active: np.ndarray, turnover_active: bool) -> EqpResult | None:
    """The minimizer with ``states`` held and the working caps at equality; None when the
    working rows are linearly dependent on the free assets."""
    w = fixed_values(states, lower, upper, geo)
    free = np.flatnonzero(states >= DOWN)
    n_sectors = len(terms.sector_caps)
    if free.size == 0:
        return EqpResult(w, float("nan"), np.zeros(n_sectors), 0.0, False)
    sign = signs(states)[free]
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
    return EqpResult(w, float(mult[0]), rho, eta, True)


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
                            "repair it (covariance_repair.repair_covariance) first") from exc
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


def reduced_gradient(cov: np.ndarray, lin: np.ndarray, w: np.ndarray, nu: float,
                      rho: np.ndarray, terms: LinearTerms) -> np.ndarray:
    grouped = terms.sector_of >= 0
    r = cov @ w - lin + nu
    r[grouped] += rho[terms.sector_of[grouped]]
    return r


def dual_violations(r: np.ndarray, q: float, states: np.ndarray,
                     geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """How much each fixed asset's optimality condition is violated toward an increase
    (``up``) and toward a decrease (``down``); ≤ 0 means satisfied."""
    up = np.where(states == LO, -(r + q * geo.sign_up_from_lo),
                  np.where(states == KINK, -(r + q), -np.inf))
    down = np.where(states == HI, r + q * geo.sign_down_from_hi,
                    np.where(states == KINK, r - q, -np.inf))
    return up, down


def release_up(i: int, states: np.ndarray, geo: Geometry) -> None:
    states[i] = UP if (states[i] == KINK or (not geo.kinked[i]
                       and geo.sign_up_from_lo[i] > 0)) else DOWN


def release_down(i: int, states: np.ndarray, geo: Geometry) -> None:
    states[i] = DOWN if (states[i] == KINK or (not geo.kinked[i]
                         and geo.sign_down_from_hi[i] < 0)) else UP


def segment_ends(states: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """The interval a free asset may move in without changing state."""
    seg_lo = np.where((states == UP) & geo.kinked, geo.kink, lower)
    seg_hi = np.where((states == DOWN) & geo.kinked, geo.kink, upper)
    return seg_lo, seg_hi


def state_at_end(at_low_end: bool, i: int, states: np.ndarray, geo: Geometry) -> int:
    if at_low_end:
        return KINK if states[i] == UP and geo.kinked[i] else LO
    return KINK if states[i] == DOWN and geo.kinked[i] else HI


def initial_states(lower: np.ndarray, upper: np.ndarray, geo: Geometry) -> np.ndarray:
    """No trade where the box allows it: assets at their kink, else at the nearer bound."""
    states = np.where(geo.kinked, KINK, np.where(geo.kink <= lower, LO, HI)).astype(np.int8)
    states[lower >= upper] = LO
    return states


def independent_rows(states: np.ndarray, sectors_active: np.ndarray, turnover_active: bool,
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
        if np.linalg.matrix_rank(np.array([*rows, candidate])) > len(rows):
            rows.append(candidate)
        else:
            keep[g] = False
    if turnover_active:
        candidate = signs(states)[free]
        turnover_active = bool(np.linalg.matrix_rank(np.array([*rows, candidate])) > len(rows))
    return keep, turnover_active


def working_rows(states: np.ndarray, sectors: np.ndarray, with_turnover: bool,
                  terms: LinearTerms, v: np.ndarray, free: np.ndarray
                  ) -> tuple[list[np.ndarray], list[float], list[int]]:
    rows, rhs, sector_rows = [np.ones(free.size)], [1.0 - float(v.sum())], []
    for g in np.flatnonzero(sectors):
        members = terms.sector_of == g
        rows.append(members[free].astype(float))
        rhs.append(float(terms.sector_caps[g]) - float(v[members].sum()))
        sector_rows.append(int(g))
    if with_turnover:
        sign = signs(states)[free]
        rows.append(sign)
        rhs.append(terms.max_turnover - float(np.sum(np.abs(v - terms.anchor) * (states < DOWN)))
                   + float(sign @ terms.anchor[free]))
    return rows, rhs, sector_rows


def caps_hold(w: np.ndarray, terms: LinearTerms) -> bool:
    grouped = terms.sector_of >= 0
    sums = np.bincount(terms.sector_of[grouped], weights=w[grouped],
                       minlength=len(terms.sector_caps))
    return bool((sums <= terms.sector_caps + WEIGHT_TOLERANCE).all()
                and turnover(w, terms) <= terms.max_turnover + WEIGHT_TOLERANCE)


def finish(w: np.ndarray, states: np.ndarray, sectors_active: np.ndarray,
            turnover_active: bool, eqp: EqpResult, iterations: int, lower: np.ndarray,
            upper: np.ndarray, geo: Geometry) -> CostedSolution:
    seg_lo, seg_hi = segment_ends(states, lower, upper, geo)
    free = states >= DOWN
    w = np.where(free, np.clip(w, seg_lo, seg_hi), fixed_values(states, lower, upper, geo))
    return CostedSolution(w, states, sectors_active, turnover_active, eqp.nu, eqp.rho,
                          eqp.eta, iterations)
