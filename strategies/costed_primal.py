"""The safe path of the cost-aware QP: the primal active-set method (Nocedal & Wright
2006, Algorithm 16.3) over asset states and caps, from a feasible start — a nearby optimum
or the least-turnover portfolio (an LP, HiGHS), which also proves infeasible caps
infeasible."""

from __future__ import annotations

import numpy as np

from strategies.base import StrategyError
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
    dual_violations,
    finish,
    fixed_values,
    independent_rows,
    reduced_gradient,
    release_down,
    release_up,
    segment_ends,
    signs,
    solve_states,
    state_at_end,
    turnover,
)


def _vertex_multiplier(cov: np.ndarray, lin: np.ndarray, penalty: float, w: np.ndarray,
                       states: np.ndarray, geo: Geometry, fixed: np.ndarray
                       ) -> tuple[float, bool]:
    """At a vertex (no free asset) the budget multiplier is any ν in an interval set by
    the fixed assets' conditions (caps taken inactive): its midpoint, and whether the
    interval is non-empty (then the vertex is optimal if it is feasible)."""
    g = cov @ w - lin
    q = penalty
    movable = ~fixed
    lows = np.concatenate([(-g - q * geo.sign_up_from_lo)[(states == LO) & movable],
                           (-g - q)[states == KINK]])
    highs = np.concatenate([(-g - q * geo.sign_down_from_hi)[states == HI],
                            (-g + q)[states == KINK]])
    low = float(np.max(lows, initial=-np.inf))
    high = float(np.min(highs, initial=np.inf))
    if not np.isfinite(low):
        low = high
    if not np.isfinite(high):
        high = low
    return 0.5 * (low + high), low <= high


def vertex_step(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                 upper: np.ndarray, terms: LinearTerms, geo: Geometry, tol: float,
                 w: np.ndarray, states: np.ndarray, fixed: np.ndarray
                 ) -> tuple[float, int | None, bool]:
    """(ν, the asset to release with its direction up?, or None when the vertex is optimal)."""
    nu, separable = _vertex_multiplier(cov, lin, penalty, w, states, geo, fixed)
    r = cov @ w - lin + nu
    up, down = dual_violations(r, penalty, states, geo)
    up[fixed | (states == HI)] = -np.inf
    down[fixed | (states == LO)] = -np.inf
    deficit = 1.0 - float(w.sum())
    if deficit > WEIGHT_TOLERANCE:
        return nu, int(np.argmax(up)), True
    if deficit < -WEIGHT_TOLERANCE:
        return nu, int(np.argmax(down)), False
    best_up, best_down = int(np.argmax(up)), int(np.argmax(down))
    if separable and max(up[best_up], down[best_down]) <= tol:
        return nu, None, True
    return (nu, best_up, True) if up[best_up] >= down[best_down] else (nu, best_down, False)


def feasible_start(lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
                    geo: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The least-turnover portfolio meeting budget, bounds and sector caps (an LP, HiGHS)
    and its states; StrategyError if the caps or max_turnover make the problem infeasible."""
    from scipy.optimize import linprog

    n, a = len(lower), terms.anchor
    eye = np.eye(n)
    groups = [(terms.sector_of == g).astype(float) for g in range(len(terms.sector_caps))]
    a_ub = np.vstack([np.hstack([eye, -eye]), np.hstack([-eye, -eye])]
                     + [np.hstack([row, np.zeros(n)])[None, :] for row in groups])
    b_ub = np.concatenate([a, -a, terms.sector_caps])
    result = linprog(np.concatenate([np.zeros(n), np.ones(n)]), A_ub=a_ub, b_ub=b_ub,
                     A_eq=np.concatenate([np.ones(n), np.zeros(n)])[None, :], b_eq=[1.0],
                     bounds=list(zip(lower, upper, strict=True)) + [(0.0, None)] * n,
                     method="highs")
    if result.status != 0:
        raise StrategyError("sector_limits infeasible: no fully invested portfolio meets "
                            "the sector caps and the weight bounds; raise the caps")
    w = result.x[:n]
    least = turnover(w, terms)
    if least > terms.max_turnover + 1e-9:
        remainder = abs(terms.uninvested)  # investing it is outside max_turnover
        raise StrategyError(
            f"max_turnover {terms.max_turnover - remainder:.6g} is below the "
            f"{least - remainder:.6g} of trading that the budget, bounds and sector caps "
            f"need from the current weights (beyond investing the {remainder:.6g} of "
            f"equity they do not hold: cash, and holdings this strategy cannot hold); "
            f"raise max_turnover to at least that")
    return _snap(w, lower, upper, terms, geo)


def _snap(w: np.ndarray, lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
          geo: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    near = 1e-10
    states = np.where(w > geo.kink, UP, DOWN).astype(np.int8)
    states[~geo.kinked & (geo.kink <= lower)] = UP
    states[np.abs(w - lower) <= near] = LO
    states[np.abs(w - upper) <= near] = HI
    states[geo.kinked & (np.abs(w - geo.kink) <= near)] = KINK
    states[lower >= upper] = LO
    w = np.where(states < DOWN, fixed_values(states, lower, upper, geo), w)
    sums = np.bincount(terms.sector_of[terms.sector_of >= 0],
                       weights=w[terms.sector_of >= 0], minlength=len(terms.sector_caps))
    return (w, states, sums >= terms.sector_caps - near,
            turnover(w, terms) >= terms.max_turnover - near)


def primal(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
            upper: np.ndarray, terms: LinearTerms, geo: Geometry, tol: float,
            start: tuple[np.ndarray, np.ndarray, np.ndarray, bool]) -> CostedSolution:
    """Nocedal & Wright (2006) Algorithm 16.3 over asset states and caps from a feasible
    start: step to the working set's minimizer, stop at the first bound, kink or cap in
    the way; at a minimizer release the most violated condition. Finite.

    Anti-cycling: the working sets released from are remembered (a hash); one seen
    before means the method cycles. Seen where a working cap depends on the budget and the
    other rows over the free assets (every free asset in a capped sector with the uncapped
    ones held, or every free asset on the same side of its kink under a working turnover
    cap): ``independent_rows`` leaves that cap out with a zero multiplier, one choice
    among many, under which a held asset looks violated though other choices satisfy it;
    released, the asset is pinned by the rows, its rounding-sized step heads out, and it
    re-enters at once, for ever. From then on (``careful``) the multipliers at a
    minimizer are those that violate the optimality conditions least (an LP over ν, ρ,
    η: ``_least_violating``), so a minimizer that has valid multipliers is recognized as
    optimal; a released asset that would block its own step at once is taken as rounding
    (under any valid multipliers its step points inwards, Nocedal & Wright Thm 16.5, and
    is zero when the rows pin it); and Bland's rule (Bland 1977) picks the condition to
    release (the smallest index; the ratio test already takes the smallest among ties).
    A working set that repeats even so raises as before. Before a first repeat nothing
    changes."""
    w, states, sectors_active, turnover_active = start
    states = states.copy()
    fixed = lower >= upper
    n = len(w)
    seen: set[int] = set()  # hashes of the working sets released from
    careful = False
    released = -1  # (careful) the asset the last iteration released, if one
    for iteration in range(1, 20 * n + 100):
        eqp_sectors, eqp_turnover = independent_rows(states, sectors_active,
                                                      turnover_active, terms)
        eqp = solve_states(cov, lin, penalty, lower, upper, terms, geo, states,
                            eqp_sectors, eqp_turnover)
        if eqp is None:
            break
        if not eqp.solved:
            nu, release, up = vertex_step(cov, lin, penalty, lower, upper, terms, geo, tol,
                                           w, states, fixed)
            if release is None:
                result = EqpResult(w, nu, np.zeros(len(terms.sector_caps)), 0.0, False)
                return finish(w, states, sectors_active, False, result, iteration, lower,
                               upper, geo)
            (release_up if up else release_down)(release, states, geo)
            continue
        free = states >= DOWN
        step = np.where(free, eqp.weights - w, 0.0)
        own_block = careful and released >= 0 and _blocks_at_once(
            w, step, released, states, lower, upper, geo)
        released = -1
        if own_block or np.max(np.abs(step)) <= 1e-14:
            if not own_block:
                w = np.where(free, eqp.weights, w)
            key = hash(states.tobytes() + sectors_active.tobytes() + bytes([turnover_active]))
            if key in seen:
                if careful:
                    break
                careful = True
                seen.clear()
            seen.add(key)
            if careful:
                eqp, choice = _least_violating(cov, lin, penalty, terms, geo, tol, w, states,
                                               fixed, sectors_active, turnover_active)
                if choice is None:
                    return finish(w, states, sectors_active, turnover_active, eqp, iteration,
                                   lower, upper, geo)
                sectors_active, turnover_active, released = _release(
                    choice, states, geo, sectors_active, turnover_active)
                continue
            changed, sectors_active, turnover_active = _release_worst(
                cov, lin, penalty, terms, geo, tol, w, states, fixed, sectors_active,
                turnover_active, eqp)
            if changed:
                continue
            return finish(w, states, sectors_active, turnover_active, eqp, iteration,
                           lower, upper, geo)
        w, sectors_active, turnover_active = _step(w, step, states, sectors_active,
                                                   turnover_active, lower, upper, terms, geo)
    raise StrategyError("cost-aware mean-variance QP did not converge (degenerate cycling); "
                        "check the covariance, bounds and caps")


def _blocks_at_once(w: np.ndarray, step: np.ndarray, i: int, states: np.ndarray,
                    lower: np.ndarray, upper: np.ndarray, geo: Geometry) -> bool:
    """Asset ``i``, just released, sits at the end of its segment that ``step`` heads
    for: the ratio test would fix it again at once."""
    seg_lo, seg_hi = segment_ends(states, lower, upper, geo)
    return bool((step[i] < 0 and w[i] <= seg_lo[i]) or (step[i] > 0 and w[i] >= seg_hi[i]))


def _least_violating(cov: np.ndarray, lin: np.ndarray, penalty: float, terms: LinearTerms,
                     geo: Geometry, tol: float, w: np.ndarray, states: np.ndarray,
                     fixed: np.ndarray, sectors_active: np.ndarray, turnover_active: bool
                     ) -> tuple[EqpResult, tuple[str, int, bool] | None]:
    """At a minimizer of the working set: the multipliers ν, ρ (working sectors), η
    (working turnover cap) that minimize the largest violation t of the optimality
    conditions (an LP, HiGHS), and the condition to release by Bland's rule — the
    asset of the smallest index whose condition is violated beyond ``tol`` (and whether
    up), else the sector, else the turnover cap — or None: optimal."""
    from scipy.optimize import linprog

    g = cov @ w - lin
    sectors = np.flatnonzero(sectors_active)
    k = len(sectors)
    column = np.full(len(w), -1)  # each asset's working sector's column, −1: none
    for j, sector in enumerate(sectors):
        column[terms.sector_of == sector] = j
    sign = np.where(states == UP, 1.0, -1.0)
    # Each condition as α·(r_i + q·σ) ≤ t with r = g + ν + ρ_sector, q = penalty + η.
    alpha: list[np.ndarray] = []
    sigma: list[np.ndarray] = []
    which: list[np.ndarray] = []
    kinds: list[np.ndarray] = []  # 0: up-violation, 1: down-violation, 2: stationarity
    movable = ~fixed
    for mask, a, s, kind in (
            ((states >= DOWN) & movable, 1.0, sign, 2),
            ((states >= DOWN) & movable, -1.0, sign, 2),
            ((states == LO) & movable, -1.0, geo.sign_up_from_lo, 0),
            ((states == HI) & movable, 1.0, geo.sign_down_from_hi, 1),
            ((states == KINK) & movable, -1.0, np.ones(len(w)), 0),
            ((states == KINK) & movable, 1.0, -np.ones(len(w)), 1)):
        idx = np.flatnonzero(mask)
        which.append(idx)
        alpha.append(np.full(idx.size, a))
        sigma.append(s[idx])
        kinds.append(np.full(idx.size, kind))
    rows, a_vec, s_vec = np.concatenate(which), np.concatenate(alpha), np.concatenate(sigma)
    kind_vec = np.concatenate(kinds)
    m = rows.size
    size = 1 + k + 1 + 1  # ν, ρ…, η, t
    a_ub = np.zeros((m + k + 1, size))
    a_ub[:m, 0] = a_vec
    capped = column[rows] >= 0
    a_ub[np.flatnonzero(capped), 1 + column[rows[capped]]] = a_vec[capped]
    if turnover_active:
        a_ub[:m, 1 + k] = a_vec * s_vec
    a_ub[:m, -1] = -1.0
    b_ub = np.concatenate([-a_vec * (g[rows] + penalty * s_vec), np.zeros(k + 1)])
    a_ub[m + np.arange(k), 1 + np.arange(k)] = -1.0  # −ρ ≤ t
    a_ub[m + k, 1 + k] = -1.0 if turnover_active else 0.0  # −η ≤ t
    a_ub[m:, -1] = -1.0
    cost = np.zeros(size)
    cost[-1] = 1.0
    bounds = [(None, None)] * (1 + k) + [(None, None) if turnover_active else (0.0, 0.0),
                                         (None, None)]
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if result.status != 0:
        raise StrategyError("cost-aware mean-variance QP: no multipliers at a degenerate "
                            "point; check the covariance, bounds and caps")
    x = result.x
    rho = np.zeros(len(terms.sector_caps))
    rho[sectors] = x[1:1 + k]
    eta = float(x[1 + k]) if turnover_active else 0.0
    eqp = EqpResult(w, float(x[0]), rho, eta, True)
    violation = a_ub[:m] @ np.append(x[:-1], 0.0) - b_ub[:m]
    violated = (violation > tol) & (kind_vec < 2)
    if violated.any():
        first = int(np.min(rows[violated]))
        up = bool(np.any(violated & (rows == first) & (kind_vec == 0)))
        return eqp, ("asset", first, up)
    if k and float(np.min(x[1:1 + k])) < -tol:
        return eqp, ("sector", int(sectors[int(np.argmax(x[1:1 + k] < -tol))]), False)
    if turnover_active and eta < -tol:
        return eqp, ("turnover", 0, False)
    return eqp, None


def _release(release: tuple[str, int, bool], states: np.ndarray, geo: Geometry,
             sectors_active: np.ndarray, turnover_active: bool) -> tuple[np.ndarray, bool, int]:
    """Release what ``_least_violating`` chose: an asset's state (in place), a sector's
    cap or the turnover cap; and the asset released (−1: a cap)."""
    kind, i, up = release
    if kind == "asset":
        (release_up if up else release_down)(i, states, geo)
        return sectors_active, turnover_active, i
    if kind == "sector":
        sectors_active = sectors_active.copy()
        sectors_active[i] = False
        return sectors_active, turnover_active, -1
    return sectors_active, False, -1


def _release_worst(cov: np.ndarray, lin: np.ndarray, penalty: float, terms: LinearTerms,
                   geo: Geometry, tol: float, w: np.ndarray, states: np.ndarray,
                   fixed: np.ndarray, sectors_active: np.ndarray, turnover_active: bool,
                   eqp: EqpResult) -> tuple[bool, np.ndarray, bool]:
    """Release the most violated condition (an asset's state, in place, or a cap from the
    working set); (False, …) when none is violated: optimal."""
    r = reduced_gradient(cov, lin, w, eqp.nu, eqp.rho, terms)
    up, down = dual_violations(r, penalty + eqp.eta, states, geo)
    up[fixed], down[fixed] = -np.inf, -np.inf
    cap_violation = np.where(sectors_active, -eqp.rho, -np.inf)
    turnover_violation = -eqp.eta if turnover_active else -np.inf
    candidates = [float(np.max(up)), float(np.max(down)),
                  float(np.max(cap_violation, initial=-np.inf)), turnover_violation]
    kind = int(np.argmax(candidates))
    if candidates[kind] <= tol:
        return False, sectors_active, turnover_active
    if kind == 0:
        release_up(int(np.argmax(up)), states, geo)
    elif kind == 1:
        release_down(int(np.argmax(down)), states, geo)
    elif kind == 2:
        sectors_active = sectors_active.copy()
        sectors_active[int(np.argmax(cap_violation))] = False
    else:
        turnover_active = False
    return True, sectors_active, turnover_active


def _step(w: np.ndarray, step: np.ndarray, states: np.ndarray, sectors_active: np.ndarray,
          turnover_active: bool, lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
          geo: Geometry) -> tuple[np.ndarray, np.ndarray, bool]:
    """Move along ``step`` to the first blocking bound, kink or cap (or all the way);
    the blocking one joins the working set (states changed in place)."""
    free = states >= DOWN
    seg_lo, seg_hi = segment_ends(states, lower, upper, geo)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(step < -1e-18, (seg_lo - w) / step,
                         np.where(step > 1e-18, (seg_hi - w) / step, np.inf))
    ratio = np.where(free, np.maximum(ratio, 0.0), np.inf)
    tiny = 1e-12 * float(np.max(np.abs(step)))  # a sum of steps this small is cancellation
    grouped = terms.sector_of >= 0
    size = len(terms.sector_caps)
    rate = np.bincount(terms.sector_of[grouped], weights=step[grouped], minlength=size)
    slack = terms.sector_caps - np.bincount(terms.sector_of[grouped], weights=w[grouped],
                                            minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap_ratio = np.where(~sectors_active & (rate > tiny),
                             np.maximum(slack, 0.0) / rate, np.inf)
    turnover_ratio = np.inf
    if terms.has_turnover and not turnover_active:
        rate_t = float(signs(states) @ step)
        if rate_t > tiny:
            turnover_ratio = max(terms.max_turnover - turnover(w, terms), 0.0) / rate_t
    limits = [float(np.min(ratio)), float(np.min(cap_ratio, initial=np.inf)), turnover_ratio]
    kind = int(np.argmin(limits))
    if limits[kind] >= 1.0:
        return np.where(free, w + step, w), sectors_active, turnover_active
    w = w + limits[kind] * step
    if kind == 0:
        block = int(np.argmin(ratio))
        states[block] = state_at_end(bool(step[block] < 0), block, states, geo)
        w[block] = fixed_values(states, lower, upper, geo)[block]
    elif kind == 1:
        sectors_active = sectors_active.copy()
        sectors_active[int(np.argmin(cap_ratio))] = True
    else:
        turnover_active = True
    return w, sectors_active, turnover_active
