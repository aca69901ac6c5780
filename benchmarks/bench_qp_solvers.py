"""Our active-set QP beside the compiled QP solvers the fast-core issue names (DAQP,
PIQP, ProxSuite's ProxQP, Clarabel), on the very problems the optimizers solve. Prints a
table; asserts nothing.

    python benchmarks/bench_qp_solvers.py [--n 500] [--days 1260] [--repeat 11]

Needs ``pip install -e '.[bench]'`` (a solver that is not installed is left out).

Per covariance family (``bench_optimizers.family_prices``: random, factor, near-singular
after repair) one estimate (sample Σ, mean μ, annual; the same arrays for every solver)
and three problems over Σw = 1, 0 ≤ w ≤ 1:

  min_variance   min ½wᵀΣw
  mean_variance  min ½wᵀΣw − μᵀw/δ, δ = 2.5
  max_sharpe     max μᵀw/√(wᵀΣw) as one QP in y = κw: min ½yᵀΣy s.t. μᵀy = 1, y ≥ 0,
                 w = y/Σy (Cornuéjols & Tütüncü 2007, §8.2; w ≤ 1 cannot bind): ours
                 through ``MaxSharpe.optimize``, which makes the same reduction

Each figure is the median wall time of ``--repeat`` calls with one BLAS thread, the
solver's set-up from our dense arrays included (what a strategy would pay every call);
ours is given Σ's Cholesky factor, as the strategies give it. The solvers run at tight
tolerances (1e-10) because the optimizers promise KKT within 1e-9; a call of over a second
is timed once. "kkt" is the relative first-order residual of the answer (``kkt_residual``:
a budget multiplier with z = Σw − c − ν zero on free weights, ≥ 0 at 0 and ≤ 0 at 1,
over max|Σw − c|; a weight within 1e-9 of a bound counts as at it, as in the tests: an
interior-point answer's 1e-8 where the optimum has 0 shows as a large residual), "feas"
the largest violation of Σw = 1 or of a bound; for max_sharpe "gap" is
1 − Sharpe(w)/Sharpe(ours).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimizers import family_prices

import strategies
from strategies.blas import pin_blas_threads
from strategies.estimators import Estimate, EstimatorSettings
from strategies.qp import solve_qp

FAMILIES = ("random", "factor", "near_singular")
RISK_AVERSION = 2.5
TIGHT = 1e-10
SLOW_CALL_MS = 1000.0
Solver = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def kkt_residual(cov: np.ndarray, lin: np.ndarray, w: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray) -> tuple[float, float]:
    """(relative KKT residual, feasibility violation) of w for min ½wᵀΣw − cᵀw s.t.
    Σw = 1, lower ≤ w ≤ upper (the tests' ``assert_kkt`` as a number)."""
    g = cov @ w - lin
    at_lower, at_upper = w <= lower + 1e-9, w >= upper - 1e-9
    free = ~(at_lower | at_upper)
    if free.any():
        nu = float(np.mean(g[free]))
    else:  # a vertex: ν may be anything in [max g at upper, min g at lower]; take the middle
        ends = [float(g[at_upper].max())] if at_upper.any() else []
        ends += [float(g[at_lower].min())] if at_lower.any() else []
        nu = 0.5 * (ends[0] + ends[-1])
    z = g - nu
    worst = max(float(np.abs(z[free]).max()) if free.any() else 0.0,
                max(0.0, -float(z[at_lower].min())) if at_lower.any() else 0.0,
                max(0.0, float(z[at_upper].max())) if at_upper.any() else 0.0)
    feasibility = max(abs(float(w.sum()) - 1.0), float(np.maximum(lower - w, 0).max()),
                      float(np.maximum(w - upper, 0).max()))
    return worst / float(np.abs(g).max()), feasibility


# ---- each solver on min ½xᵀΣx − cᵀx s.t. aᵀx = 1, lower ≤ x ≤ upper (upper may be inf) --------
# The box QP takes a = 1 and upper = 1; max Sharpe takes a = μ, c = 0, x ≥ 0 (see below).

def ours_qp(chol: np.ndarray | None) -> Solver:
    def solve(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
              upper: np.ndarray) -> np.ndarray:
        return solve_qp(cov, lin, lower, upper, chol=chol).weights
    return solve


def daqp_qp(cov: np.ndarray, lin: np.ndarray, row: np.ndarray, lower: np.ndarray,
            upper: np.ndarray) -> np.ndarray:
    import daqp
    n = len(lin)
    # the first n bounds are simple bounds on x; the last row is aᵀx = 1 (sense 5: =)
    sense = np.zeros(n + 1, dtype=np.int32)
    sense[-1] = 5
    x, _, flag, _ = daqp.solve(cov, -lin, row[None, :], np.append(np.minimum(upper, 1e30), 1.0),
                               np.append(lower, 1.0), sense, primal_tol=TIGHT,
                               dual_tol=TIGHT)
    if flag != 1:
        raise RuntimeError(f"daqp exit flag {flag}")
    return np.asarray(x)


def piqp_qp(cov: np.ndarray, lin: np.ndarray, row: np.ndarray, lower: np.ndarray,
            upper: np.ndarray) -> np.ndarray:
    import piqp
    solver = piqp.DenseSolver()
    solver.settings.eps_abs = solver.settings.eps_rel = TIGHT
    solver.setup(np.asfortranarray(cov), -lin, np.asfortranarray(row[None, :]), np.ones(1),
                 None, None, None, lower, upper)
    status = solver.solve()
    if status != piqp.PIQP_SOLVED:
        raise RuntimeError(f"piqp status {status}")
    return np.array(solver.result.x)


def proxqp_qp(cov: np.ndarray, lin: np.ndarray, row: np.ndarray, lower: np.ndarray,
              upper: np.ndarray) -> np.ndarray:
    from proxsuite import proxqp
    result = proxqp.dense.solve(cov, -lin, row[None, :], np.ones(1), l_box=lower,
                                u_box=np.minimum(upper, 1e20), eps_abs=TIGHT, eps_rel=0.0)
    if result.info.status != proxqp.QPSolverOutput.PROXQP_SOLVED:
        raise RuntimeError(f"proxqp status {result.info.status}")
    return np.array(result.x)


def clarabel_qp(cov: np.ndarray, lin: np.ndarray, row: np.ndarray, lower: np.ndarray,
                upper: np.ndarray) -> np.ndarray:
    import clarabel
    from scipy import sparse
    capped = np.isfinite(upper)
    eye = sparse.identity(len(lin), format="csc")
    a = sparse.vstack([sparse.csc_matrix(row[None, :]), -eye, eye[capped]], format="csc")
    b = np.concatenate([[1.0], -lower, upper[capped]])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = TIGHT
    cones = [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(len(b) - 1)]
    solution = clarabel.DefaultSolver(sparse.triu(sparse.csc_matrix(cov), format="csc"), -lin,
                                      a, b, cones, settings).solve()
    if str(solution.status) != "Solved":
        raise RuntimeError(f"clarabel status {solution.status}")
    return np.array(solution.x)


GeneralSolver = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                         np.ndarray]


def box_qp(general: GeneralSolver) -> Solver:
    """The optimizers' QP: Σw = 1, lower ≤ w ≤ upper."""
    def solve(cov: np.ndarray, lin: np.ndarray, lower: np.ndarray,
              upper: np.ndarray) -> np.ndarray:
        return general(cov, lin, np.ones(len(lin)), lower, upper)
    return solve


def sharpe_by_qp(general: GeneralSolver) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Max Sharpe as one QP in y = κw: min ½yᵀΣy s.t. μᵀy = 1, y ≥ 0, then w = y/Σy."""
    def solve(cov: np.ndarray, mu: np.ndarray) -> np.ndarray:
        n = len(mu)
        y = np.maximum(general(cov, np.zeros(n), mu, np.zeros(n), np.full(n, np.inf)), 0.0)
        return y / y.sum()
    return solve


def median_ms(call: Callable[[], object], repeat: int) -> float:
    """Median of ``repeat`` calls after a warm-up (imports, first-touch pages); a call of
    over SLOW_CALL_MS is timed once (its warm-up)."""
    start = time.perf_counter()
    call()
    first = (time.perf_counter() - start) * 1e3
    if first > SLOW_CALL_MS:
        return first
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--days", type=int, default=1260)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES),
                        choices=[*FAMILIES, "short_window", "short_window_iid"],
                        help="short_window*: N/2 return days (a rank-deficient sample Σ)")
    args = parser.parse_args()
    pin_blas_threads(1)
    others = {name: solver for name, module, solver in (
        ("daqp", "daqp", daqp_qp), ("piqp", "piqp", piqp_qp),
        ("proxqp", "proxsuite", proxqp_qp), ("clarabel", "clarabel", clarabel_qp))
        if installed(module)}
    print(f"N={args.n}, T={args.days}, median wall ms of {args.repeat} calls, 1 BLAS thread; "
          f"solvers found: {', '.join(others) or 'none'}")
    print(f"{'family':14s}{'problem':15s}{'solver':10s}{'ms':>9s}{'× ours':>8s}"
          f"{'kkt / gap':>11s}{'feas':>10s}")
    for family in args.families:
        est = EstimatorSettings(lookback_days=args.days).estimate(
            family_prices(family, args.n, args.days), with_returns=True, ill_factor=False)
        for problem, lin in (("min_variance", np.zeros(len(est.mu))),
                             ("mean_variance", est.mu / RISK_AVERSION)):
            _qp_rows(f"{family:14s}{problem:15s}", est, lin,
                     {name: box_qp(general) for name, general in others.items()}, args.repeat)
        _sharpe_rows(f"{family:14s}{'max_sharpe':15s}", est, others, args.days,
                     args.repeat)


def _qp_rows(label: str, est: Estimate, lin: np.ndarray, others: dict[str, Solver],
             repeat: int) -> None:
    """One problem's rows: ours, then each solver, with time, KKT residual, feasibility."""
    lower, upper = np.zeros(len(lin)), np.ones(len(lin))
    solvers = {"ours": ours_qp(est.chol), **others}
    ours_ms = 0.0
    for name, solver in solvers.items():
        try:
            w = solver(est.cov, lin, lower, upper)
        except RuntimeError as exc:
            print(f"{label}{name:10s}  failed: {exc}")
            continue
        ms = median_ms(lambda solver=solver: solver(est.cov, lin, lower, upper), repeat)
        ours_ms = ours_ms or ms
        kkt, feas = kkt_residual(est.cov, lin, w, lower, upper)
        print(f"{label}{name:10s}{ms:9.2f}{ms / ours_ms:8.1f}{kkt:11.1e}{feas:10.1e}")


def _sharpe_rows(label: str, est: Estimate, others: dict[str, GeneralSolver], days: int,
                 repeat: int) -> None:
    """max_sharpe: ours, then each solver's one QP, with the Sharpe ratio's gap to ours."""
    lower, upper = np.zeros(len(est.mu)), np.ones(len(est.mu))
    strategy = strategies.create("max_sharpe", lookback_days=days)
    solvers = {"ours": lambda cov, mu: strategy.optimize(est, lower, upper),
               **{name: sharpe_by_qp(general) for name, general in others.items()}}
    best = ours_ms = 0.0
    for name, solve in solvers.items():
        try:
            w = solve(est.cov, est.mu)
        except RuntimeError as exc:
            print(f"{label}{name:10s}  failed: {exc}")
            continue
        ms = median_ms(lambda solve=solve: solve(est.cov, est.mu), repeat)
        ratio = float(est.mu @ w) / float(np.sqrt(w @ est.cov @ w))
        best, ours_ms = best or ratio, ours_ms or ms
        print(f"{label}{name:10s}{ms:9.2f}{ms / ours_ms:8.1f}{1 - ratio / best:11.1e}"
              f"{abs(float(w.sum()) - 1):10.1e}")

if __name__ == "__main__":
    main()
