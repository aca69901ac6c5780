"""Searches along the constrained efficient frontier: max Sharpe and target volatility.

The frontier is w(λ) = argmin ½wᵀΣw − λμᵀw over {Σw = 1, lower ≤ w ≤ upper}, λ ≥ 0. It is
piecewise affine in λ (Markowitz 1956, the critical line algorithm), and along it the return
μᵀw and the variance wᵀΣw are non-decreasing. We search λ with a safeguarded bracket:
each probe solves one warm-started QP, takes the affine piece through that optimum
(``frontier_piece.frontier_segment``) and solves the 1-D problem on that piece in closed form. When the
optimum falls inside the piece the answer is exact — no tolerance on λ.

Why not the homogenized max-Sharpe QP (min yᵀΣy s.t. (μ−r_f)ᵀy = 1, y ≥ 0)? With upper
bounds it needs the coupled constraints y_i ≤ u_i·Σy, which are not box constraints;
the frontier search handles any box bounds with the one QP solver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import structlog

from strategies.base import StrategyError
from strategies.costed_frontier import costed_frontier_segment
from strategies.costed_model import NEGLIGIBLE_TURNOVER
from strategies.costed_qp import CostedSolution, LinearTerms, solve_costed_qp
from strategies.free_set import FreeSetSolver
from strategies.frontier_piece import FrontierSegment, frontier_segment
from strategies.frontier_target import budget_only_guess, model_root
from strategies.qp import (
    QPSolution,
    free_set_solver,
    polish_weights,
    solve_qp,
    solve_tangency_qp,
)
from strategies.qp_ray import Ray

log = structlog.get_logger("strategies")

MAX_PROBES = 200
# A candidate λ within this many widths of the current piece past its end is reached by
# crossing breakpoints (one free-set solve each: the critical line algorithm's step,
# Markowitz 1956) instead of a warm-started QP at the candidate; at most MAX_CROSSINGS.
CROSS_WIDTHS = 2.0
MAX_CROSSINGS = 20
# Leftwards (a probe just past the optimum) only within this many widths: the pieces
# shrink towards λ = 0, so farther back a warm-started QP costs less than the crossings.
CROSS_LEFT_WIDTHS = 1.0
# The walk from the frontier's top (``_walk_from_top``) is worth it only while its probes
# are few and narrow (near the top a few assets are free): past this many probes, or a
# probe's answer with more free assets than this, it stops and the walk from the
# minimum-variance portfolio runs instead.
TOP_WALK_MAX_PROBES = 24
TOP_WALK_MAX_FREE = 64
# ... and it starts only for a target variance at least this share of the top's (a
# volatility at least 0.3 × the top's): on 560 rank-deficient problems (30–300 assets,
# 0.3–0.8 × as many days, capped and uncapped, targets across the frontier) the walk from
# the top took 19 % of the time from the bottom above that share (870 against 4,561 ms),
# and 1.3–1.8 × as long below it.
TOP_WALK_MIN_VARIANCE_SHARE = 0.09


@dataclass(frozen=True, slots=True)
class TradingCosts:
    """Cost-aware frontier: proportional cost ``kappa`` on Σ|w − a| subtracted from the
    return, and the caps in ``terms`` (current weights a, sectors, turnover)."""

    terms: LinearTerms
    kappa: float = 0.0

    @property
    def kinks(self) -> bool:
        return self.kappa > 0 or self.terms.has_turnover


class _Abandoned(Exception):
    """The walk from the top passed its limits (TOP_WALK_MAX_PROBES, TOP_WALK_MAX_FREE)."""


class _Frontier:
    """The two operations the search needs, for the plain or the cost-aware frontier."""

    def __init__(self, cov: np.ndarray, mu: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray, costs: TradingCosts | None) -> None:
        self.cov, self.mu, self.lower, self.upper, self.costs = cov, mu, lower, upper, costs
        self.chol: np.ndarray | None = None
        self.solver: FreeSetSolver | None = None
        #: A walk that may be abandoned (``_walk_from_top``): its probe limit and the most
        #: free assets a probe's answer may hold; past either it raises _Abandoned.
        self.abandon_after: tuple[int, int] | None = None

    def start(self, chol: np.ndarray | None, lam: float = 0.0,
              first: np.ndarray | None = None,
              ray: Ray | None = None) -> QPSolution | CostedSolution:
        """The frontier's portfolio at ``lam`` (default: the minimum-variance one), cold;
        ``first``: the weights with every asset free at ``lam``, when known; ``ray``: the
        QP's ray (one aimed at a variance moves λ, see ``qp.Ray``)."""
        self.chol = chol
        zero = np.zeros_like(self.mu)
        if self.costs is None:
            self.solver = free_set_solver(self.cov, chol)
            return solve_qp(self.cov, lam * self.mu if lam else zero, self.lower, self.upper,
                            chol=chol, solver=self.solver,
                            first=None if first is None else (first, zero),
                            ray=Ray(lam, self.mu) if ray is None else ray)
        return solve_costed_qp(self.cov, zero, 0.0, self.lower, self.upper, self.costs.terms,
                               kinks=self.costs.kinks, chol=chol)

    def solve(self, lam: float, warm: QPSolution | CostedSolution,
              piece: FrontierSegment | None = None) -> QPSolution | CostedSolution:
        """The frontier's portfolio at ``lam`` from ``warm``'s active sets; ``piece``: the
        segment on those very sets, whose affine w and z are the QP's first iterate."""
        if self.costs is None:
            first = None
            if piece is not None and piece.z0 is not None and piece.z1 is not None:
                first = (piece.at(lam), piece.z0 + lam * piece.z1)
            solved = solve_qp(self.cov, lam * self.mu, self.lower, self.upper,
                              warm=warm, chol=self.chol,  # type: ignore[arg-type]
                              solver=self.solver, first=first, ray=Ray(lam, self.mu))
            if (self.abandon_after is not None and len(self.mu) - self.abandon_after[1]
                    > np.count_nonzero(solved.at_lower | solved.at_upper)):
                raise _Abandoned
            return solved
        return solve_costed_qp(self.cov, lam * self.mu, lam * self.costs.kappa, self.lower,
                               self.upper, self.costs.terms, warm=warm,  # type: ignore[arg-type]
                               kinks=self.costs.kinks, chol=self.chol)

    def segment(self, solution: QPSolution | CostedSolution, lam: float) -> FrontierSegment:
        if self.costs is None:
            return frontier_segment(self.cov, self.mu, self.lower, self.upper,
                                    solution, lam, self.solver)  # type: ignore[arg-type]
        return costed_frontier_segment(self.cov, self.mu, self.costs.kappa, self.lower,
                                       self.upper, self.costs.terms,
                                       solution)  # type: ignore[arg-type]

    def single_point(self) -> bool:
        """max_turnover 0 (or negligible): the current weights are the only portfolio."""
        return self.costs is not None and self.costs.terms.max_turnover <= NEGLIGIBLE_TURNOVER

    @cached_property
    def top(self) -> FrontierSegment | None:
        """The frontier's last piece (``_top_segment``); None with costs."""
        if self.costs is not None:
            return None
        return _top_segment(self.cov, self.mu, self.lower, self.upper)


def max_return_portfolio(mu: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """argmax μᵀw over {Σw = 1, lower ≤ w ≤ upper}: lower bounds, then the budget to the
    highest μ first (the LP's greedy solution; ties go to the first listed asset)."""
    order = np.argsort(-mu, kind="stable")
    span = (upper - lower)[order]
    before = np.cumsum(span) - span  # room the better assets take first
    w = lower.copy()
    w[order] += np.clip(1.0 - float(lower.sum()) - before, 0.0, span)
    return w


def max_feasible_return(mu: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """max μᵀw over {Σw = 1, lower ≤ w ≤ upper}."""
    return float(mu @ max_return_portfolio(mu, lower, upper))


def _top_segment(cov: np.ndarray, mu: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray) -> FrontierSegment | None:
    """The frontier's last piece [λ_top, ∞), where w is the max-return portfolio; None if
    ties in μ make the greedy vertex not the frontier's top. Bounding the search by λ_top
    keeps it away from huge λ, where the QP loses precision."""
    w = max_return_portfolio(mu, lower, upper)
    top = QPSolution(w, *_vertex_sets(w, lower, upper), 0)
    seg = frontier_segment(cov, mu, lower, upper, top, np.inf)
    if not seg.lam_lo <= seg.lam_hi or np.isfinite(seg.lam_hi) or not _is_flat(seg):
        return None
    return seg


class _Bracket:
    """The λ-interval [left, right] known to contain the optimum, and the next probe."""

    def __init__(self, scale: float, abandon_after: int | None = None) -> None:
        self.left, self.right, self.scale, self.probes = 0.0, np.inf, scale, 0
        self.abandon_after = abandon_after  # probes after which the walk is abandoned

    def next_probe(self, candidate: float | None) -> float:
        self.probes += 1
        if self.abandon_after is not None and self.probes > self.abandon_after:
            raise _Abandoned
        if self.probes > MAX_PROBES:
            raise StrategyError("efficient-frontier search did not converge")
        lo, hi = self.left, self.right
        margin = 1e-10 * (1.0 + lo)
        inside = (candidate is not None and np.isfinite(candidate)
                  and lo + margin < candidate
                  and (not np.isfinite(hi) or candidate < hi - 1e-10 * (1.0 + hi)))
        if inside and self.probes <= 30:
            return float(candidate)  # type: ignore[arg-type]
        if not np.isfinite(hi):
            return 2.0 * lo + self.scale
        return 0.5 * (lo + hi) if lo <= 0 or hi / lo < 4 else float(np.sqrt(lo * hi))

    def closed(self) -> bool:
        """Closed to 1e-12 relative (near-singular Σ puts a whole frontier below λ = 1e-11)."""
        return bool(np.isfinite(self.right) and self.right - self.left <= 1e-12 * self.right)


def _moments(seg: FrontierSegment, mu: np.ndarray, cov: np.ndarray) -> tuple[float, ...]:
    """Return r0 + λr1 and variance q0 + 2λq1 + λ²q2 of the piece's weights."""
    s0 = cov @ seg.w0 if seg.cov_w0 is None else seg.cov_w0
    s1 = cov @ seg.w1 if seg.cov_w1 is None else seg.cov_w1
    m = mu if seg.mu_net is None else seg.mu_net
    return (float(m @ seg.w0) + seg.net_const, float(m @ seg.w1), float(seg.w0 @ s0),
            float(seg.w0 @ s1), float(seg.w1 @ s1))


# A piece's verdict: go RIGHT (optimum beyond lam_hi), LEFT (before lam_lo), STOP at a λ
# inside it, or NEIGHBOURS (a flat piece — one portfolio — whose neighbours must decide).
RIGHT, LEFT, STOP, NEIGHBOURS = "right", "left", "stop", "neighbours"
Verdict = tuple[str, float | None]


def _walk(frontier: _Frontier, start: QPSolution | CostedSolution,
          judge: Callable[[FrontierSegment], Verdict], lam: float = 0.0,
          first: FrontierSegment | None = None) -> np.ndarray:
    """Bracketed search over λ ≥ 0 for the piece holding the optimum, from ``start`` (the
    optimum at ``lam``; ``first``: its piece, if computed); ``judge`` gives a piece's
    verdict and a candidate λ (the 1-D optimum of the piece's extension)."""
    cov, mu, lower, upper = frontier.cov, frontier.mu, frontier.lower, frontier.upper
    bracket = _Bracket(float(np.mean(np.diag(cov))) / max(float(np.max(np.abs(mu))), 1e-12),
                       None if frontier.abandon_after is None else frontier.abandon_after[0])
    solution = start
    top = frontier.top
    if top is not None:
        verdict, _ = judge(top)
        if verdict == STOP:
            return top.w0
        bracket.right = top.lam_lo
    crossings = 0
    fallback: tuple[QPSolution | CostedSolution, float] | None = None  # before a crossing
    flat: tuple[float, float] | None = None  # the λ-run of the flat pieces just judged
    while True:
        seg = frontier.segment(solution, lam) if first is None else first
        first = None
        if fallback is not None and not seg.lam_lo <= seg.lam_hi:  # degenerate crossing
            solution, retry = fallback
            fallback = None
            lam = bracket.next_probe(retry)
            solution = frontier.solve(lam, solution)
            continue
        solved, fallback = fallback is None, None  # ``solution``: the QP's at ``lam``
        if (solved and not seg.lam_lo - 1e-9 * lam <= lam <= seg.lam_hi + 1e-9 * lam
                and not _is_flat(seg)):  # (flat pieces: their neighbours decide, below)
            # A piece that misses its own probe, or is empty (rounding on a near-singular
            # Σ, whose whole frontier may lie below λ = 1e-11): judge the probe's point,
            # the QP's answer there, so the bracket moves past it (else the same probe
            # came back until the search gave up).
            seg = replace(seg, lam_lo=lam, lam_hi=lam, exit_sets=None, entry_sets=None)
        verdict, candidate = judge(seg)
        flat = _flat_run(flat, seg) if verdict == NEIGHBOURS else None
        if verdict == STOP:
            return polish_weights(seg.at(seg.lam_lo if candidate is None else candidate),
                                  lower, upper)
        if verdict == RIGHT:
            bracket.left = max(bracket.left, seg.lam_hi)
        elif verdict == LEFT:
            bracket.right = min(bracket.right, seg.lam_lo)
        elif flat is not None and (bracket.left >= flat[0] - 1e-9 * (1.0 + flat[0])
                                   and bracket.right <= flat[1] + 1e-9 * (1.0 + flat[1])):
            return seg.w0  # a flat run (one portfolio) with the optimum on neither side
        elif flat is not None and bracket.right > flat[1] + 1e-9 * (1.0 + flat[1]):
            candidate = flat[1] + 1e-9 * (1.0 + flat[1])  # ask the right neighbour
        elif flat is not None:
            candidate = flat[0] - 1e-9 * (1.0 + flat[0])  # ask the left neighbour
        if bracket.closed():
            return frontier.solve(bracket.left, solution, seg).weights
        if (verdict == RIGHT and seg.exit_sets is not None and crossings < MAX_CROSSINGS
                and candidate is not None and candidate < bracket.right
                and candidate - seg.lam_hi <= CROSS_WIDTHS * (seg.lam_hi - seg.lam_lo)):
            crossings += 1
            fallback = (solution, candidate)
            lam = seg.lam_hi
            solution = QPSolution(seg.at(lam), *seg.exit_sets, 0)
            continue
        if (verdict == LEFT and seg.entry_sets is not None and crossings < MAX_CROSSINGS
                and candidate is not None and candidate > bracket.left
                and seg.lam_lo - candidate <= CROSS_LEFT_WIDTHS * (seg.lam_hi - seg.lam_lo)):
            crossings += 1  # the same step leftwards (a probe that just overshot)
            fallback = (solution, candidate)
            lam = seg.lam_lo
            solution = QPSolution(seg.at(lam), *seg.entry_sets, 0)
            continue
        lam = bracket.next_probe(candidate)
        solution = frontier.solve(lam, solution, seg)


def _flat_run(run: tuple[float, float] | None, seg: FrontierSegment) -> tuple[float, float]:
    """The λ-range of adjacent flat pieces judged one after the other, ``seg`` included:
    w(λ) is continuous, so they hold one portfolio, and their neighbours are those of the
    run (asking a flat piece's flat neighbour back and forth never ends)."""
    lo, hi = seg.lam_lo, seg.lam_hi
    if run is not None and run[0] - 1e-9 * (1.0 + abs(run[0])) <= hi \
            and lo <= run[1] + 1e-9 * (1.0 + abs(run[1])):
        return min(lo, run[0]), max(hi, run[1])
    return lo, hi


def _is_flat(seg: FrontierSegment) -> bool:
    return bool(np.max(np.abs(seg.w1)) <= 1e-13)


def max_sharpe_weights(mu: np.ndarray, cov: np.ndarray, lower: np.ndarray,
                       upper: np.ndarray, risk_free_rate: float,
                       chol: np.ndarray | None = None,
                       costs: TradingCosts | None = None) -> np.ndarray | None:
    """argmax (μᵀw − r_f)/√(wᵀΣw) over {Σw = 1, lower ≤ w ≤ upper}; None when no feasible
    portfolio returns more than r_f (the ratio then has no meaningful maximum).

    On a piece, dS/dλ has the sign of D(λ) = (r1q0 − e0q1) + λ(r1q1 − e0q2), e0 = r0 − r_f
    (the λ² terms cancel), so the maximizer on a piece is the root of a linear function.
    Along the frontier S rises while the excess return is negative and is quasi-concave in
    the return after (σ is convex in the return), so the bracket logic is sound; a flat
    piece (a corner portfolio held over a λ-range) is judged by its neighbours.
    With ``costs`` the return is net of κΣ|w − a| (affine on each piece, so the same
    algebra holds) and the feasible set has the caps. Without costs, with bounds [0, ≥ 1]
    (the upper bounds never bind) and Σ's factor, one homogeneous QP gives the same point
    (``qp.solve_tangency_qp``); the walk remains for caps, floors and near-singular Σ.
    """
    best = max_feasible_return(mu, lower, upper)
    if best <= risk_free_rate + 1e-12 * (1.0 + abs(risk_free_rate)):
        return None
    if costs is None and chol is not None and not lower.any() and (upper >= 1.0).all():
        tangency = solve_tangency_qp(cov, mu - risk_free_rate, chol)
        if tangency is not None and tangency.weights.sum() > 0:
            return polish_weights(tangency.weights / tangency.weights.sum(), lower, upper)

    def judge(seg: FrontierSegment) -> Verdict:
        if _is_flat(seg):
            return NEIGHBOURS, None
        r0, r1, q0, q1, q2 = _moments(seg, mu, cov)
        e0 = r0 - risk_free_rate
        const, slope = r1 * q0 - e0 * q1, r1 * q1 - e0 * q2
        root = -const / slope if slope != 0 else None
        if np.isfinite(seg.lam_hi) and const + slope * seg.lam_hi > 0:
            return RIGHT, root
        if seg.lam_lo > 0 and const + slope * seg.lam_lo < 0:
            return LEFT, root
        if root is None or not np.isfinite(root):
            return STOP, seg.lam_lo
        return STOP, min(max(root, seg.lam_lo), seg.lam_hi)

    frontier = _Frontier(cov, mu, lower, upper, costs)
    start = frontier.start(chol)
    if frontier.single_point():
        return start.weights
    return _walk(frontier, start, judge)


def efficient_risk_weights(mu: np.ndarray, cov: np.ndarray, lower: np.ndarray,
                           upper: np.ndarray, target_volatility: float,
                           chol: np.ndarray | None = None,
                           costs: TradingCosts | None = None) -> np.ndarray:
    """argmax μᵀw s.t. √(wᵀΣw) ≤ σ*, Σw = 1, bounds: the frontier point whose volatility is
    σ* (or the frontier's top when even it is less risky). On a piece the variance is
    q0 + 2λq1 + λ²q2, so the crossing is a quadratic root. Raises StrategyError when the
    minimum-variance portfolio is already above σ*. With ``costs`` the return is net of
    κΣ|w − a| and the caps hold; when only the turnover cap keeps σ* out of reach (the
    minimum variance without it is ≤ σ*²) the answer is the least risk within the cap
    (the costed minimum-variance portfolio, moving toward σ* at the allowed rate), with a
    warning. The walk starts with one QP from the budget-only
    frontier's λ whose iterations aim λ at σ*² (``qp_ray.Ray``): it usually ends on the
    target's piece, so the walk stops there. Without that start (no factor of Σ, or an
    ill-conditioned one) the walk first tries from the frontier's top
    (``_walk_from_top``)."""
    target = target_volatility**2
    frontier = _Frontier(cov, mu, lower, upper, costs)
    model: dict[str, float | None] = {"min_var": None}  # v₀ of power_root's model
    seen: list[tuple[float, float, float]] = []  # (λ, v, v') at judged pieces' ends

    def judge(seg: FrontierSegment) -> Verdict:
        _, _, q0, q1, q2 = _moments(seg, mu, cov)
        root = _larger_root(q2, 2.0 * q1, q0 - target)
        min_var = model["min_var"]
        if np.isfinite(seg.lam_hi) and q0 + 2 * q1 * seg.lam_hi + q2 * seg.lam_hi**2 < target:
            return RIGHT, model_root(seen, seg.lam_hi, q0, q1, q2, min_var, target, root)
        if seg.lam_lo > 0 and q0 + 2 * q1 * seg.lam_lo + q2 * seg.lam_lo**2 > target:
            return LEFT, model_root(seen, seg.lam_lo, q0, q1, q2, min_var, target, root)
        if root is None or _is_flat(seg):
            return STOP, seg.lam_lo
        return STOP, min(max(root, seg.lam_lo), seg.lam_hi)

    lam, free_optimum = budget_only_guess(mu, lower, upper, target, chol, costs)
    if lam <= 0 and costs is None:  # no factor to guess from: try the top end first
        model["min_var"] = 0.0  # (a lower bound of v₀ for the model's candidates)
        found = _walk_from_top(frontier, chol, target, judge)
        if found is not None and float(found @ cov @ found) <= target * (1.0 + 1e-9):
            return found
        seen.clear()
    if lam > 0:  # start on the piece at the budget-only frontier's λ (a lower estimate)
        aim = Ray(lam, mu, target)  # its QP moves λ to where its pieces reach the target
        start = frontier.start(chol, lam, free_optimum, aim)
        lam = aim.lam
        first = frontier.segment(start, lam)
        _, _, q0, q1, q2 = _moments(first, mu, cov)
        lo = first.lam_lo
        if first.lam_lo <= first.lam_hi and q0 + 2 * q1 * lo + q2 * lo * lo <= target:
            return _walk(frontier, start, judge, lam, first)
    start = frontier.start(chol)
    min_vol = float(np.sqrt(start.weights @ cov @ start.weights))
    if min_vol > target_volatility * (1.0 + 1e-12):
        floor = min_vol
        if costs is not None and costs.terms.has_turnover:
            floor = _uncapped_min_volatility(cov, lower, upper, chol, costs)
            if floor <= target_volatility * (1.0 + 1e-12):
                # Only the turnover cap keeps σ* out of reach from the current weights: the
                # least risk within the cap moves toward it at the allowed rate (raising
                # here held the riskier portfolio on every cycle, never de-risking).
                log.warning("target_volatility_out_of_reach_within_turnover_cap",
                            target_volatility=target_volatility, reachable_volatility=min_vol,
                            max_turnover=costs.terms.max_turnover - abs(costs.terms.uninvested))
                return start.weights
        raise StrategyError(
            f"target_volatility {target_volatility:.4g} is below the minimum achievable "
            f"volatility {floor:.4g} under these bounds; raise target_volatility")
    model["min_var"] = min_vol**2
    if frontier.single_point():
        return start.weights
    return _walk(frontier, start, judge)


def _uncapped_min_volatility(cov: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                             chol: np.ndarray | None, costs: TradingCosts) -> float:
    """The minimum volatility under the bounds and sector caps without the turnover cap
    (κ does not change it: at λ = 0 the cost term has weight 0)."""
    terms = replace(costs.terms, max_turnover=np.inf)
    w = solve_costed_qp(cov, np.zeros(len(lower)), 0.0, lower, upper, terms, chol=chol).weights
    return float(np.sqrt(w @ cov @ w))


def _walk_from_top(frontier: _Frontier, chol: np.ndarray | None, target: float,
                   judge: Callable[[FrontierSegment], Verdict]) -> np.ndarray | None:
    """The walk started at the frontier's top (the max-return vertex, known without a
    QP) instead of its minimum-variance portfolio. Without Σ's factor, or with an
    ill-conditioned one, that portfolio costs a regularized QP over hundreds of assets
    on a rank-deficient Σ, and the walk's warm-started probes then drop them one bound
    at a time, while a target near the top is held by a few (500 assets × 250 days, a
    10 % target: 780 primal iterations and ~100 ms from the bottom; 21 and ~6 ms from
    the top, estimation included). None without a top piece, for a target far below
    it (TOP_WALK_MIN_VARIANCE_SHARE), past the walk's limits (TOP_WALK_MAX_PROBES,
    TOP_WALK_MAX_FREE) or when a probe's QP fails; the answer may lie above the target
    when even the minimum-variance portfolio does. The caller then walks from that
    portfolio (and names an infeasible target)."""
    top = frontier.top
    if top is None:
        return None
    if _moments(top, frontier.mu, frontier.cov)[2] * TOP_WALK_MIN_VARIANCE_SHARE > target:
        return None
    frontier.chol, frontier.solver = chol, free_set_solver(frontier.cov, chol)
    frontier.abandon_after = (TOP_WALK_MAX_PROBES, TOP_WALK_MAX_FREE)
    vertex = QPSolution(top.w0, *_vertex_sets(top.w0, frontier.lower, frontier.upper), 0)
    try:
        return _walk(frontier, vertex, judge, top.lam_lo, top)
    except (_Abandoned, StrategyError):  # (the walk from the bottom gives its own answer)
        return None
    finally:
        frontier.abandon_after = None


def _vertex_sets(w: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The active sets of a vertex (every weight at a bound but at most one)."""
    at_lo = (w <= lower) | (lower >= upper)
    return at_lo, ~at_lo & (w >= upper)


def _larger_root(a: float, b: float, c: float) -> float | None:
    """Larger real root of aλ² + bλ + c (linear when a ≈ 0); None if none is real."""
    if abs(a) <= 1e-300:
        return None if b == 0 else -c / b
    disc = b * b - 4 * a * c
    if disc < 0:
        return None
    sq = np.sqrt(disc)
    q = -0.5 * (b + np.copysign(sq, b))  # numerically stable pair
    roots = [q / a] + ([c / q] if q != 0 else [])
    return float(max(roots))
