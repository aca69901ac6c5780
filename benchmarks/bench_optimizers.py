"""The mean-variance family against PyPortfolioOpt + Clarabel, per covariance family, on a
quiet machine and beside two CPU-burning processes. Prints tables; asserts nothing.

    python benchmarks/bench_optimizers.py [--n 500] [--days 1260] [--repeat 11]
        [--ref-repeat 3 (0: skip the reference)] [--no-load] [--kappa 0.002] [--big]
        [--methods min_variance ...] [--clock wall|cpu] [--small-only] [--churn]

The lead's check (a few minutes idle): ``--repeat 5 --ref-repeat 1 --big``.

Every figure is a median wall time (``--clock cpu``: CPU time of this process, which a
loaded machine inflates far less; beside busy processes ours and the reference alternate,
each sample spanning ≥ BUSY_BLOCK_MS, ours as the mean of back-to-back calls, and "1 call"
is the median of single calls of ours) of
``target_weights(prices)`` (estimation included:
returns, covariance, repair, μ) with one BLAS thread (``strategies.blas.pin_blas_threads``)
unless the row says "default threads". Reference = PyPortfolioOpt's estimators plus its
EfficientFrontier solved by Clarabel, same prices, same load, same BLAS policy. ``iters``
is the number of active-set iterations (all QP solves of the call), ``qp`` the number of
QP solves (a frontier walk solves several), ``chol`` the Cholesky factorizations of free
sets the QPs made (the rest of their solves reuse a factor: range-space solves from Σ's
factor, or a factor kept from the previous solve); "est" is the estimation alone (returns,
Σ, its PD check/factor, μ); "×floor" is ours over the floor (one covariance syrk plus one
Cholesky of Σ, timed in the same run on the T-day factor family; nan for the short
windows, whose syrk is of N/2 days); "ours dflt" is the same call with the BLAS
library's default threads (one call after a warm-up, measured after the pinned ones and
followed by a pause: OpenBLAS's idle workers spin for a while after a multi-threaded call
and would slow the next pinned measurement ~1.5×). ``--kappa`` adds a run with
turnover_penalty κ from equal weights (one BLAS thread); ``--big`` adds min_variance at
N = 3,000 with Ledoit-Wolf. Last, ``risk_parity`` with covariance = "ledoit_wolf" at N on
252 days (the shape the 500-asset backtest calls every rebalance; Σ kept as ridge·I + VᵀV,
Newton steps by Woodbury), beside skfolio's RiskBudgeting with its Ledoit-Wolf prior (same
returns) when ``--ref-repeat`` > 0.
Then the backtest's small case: min_variance and mean_variance on 50 assets × 252 days
(``factor`` family), median CPU time per call over SMALL_CALLS calls, where fixed costs
(Python, scipy's and pandas' wrappers) rather than flops set the time; ``--small-only``
prints just that line. ``--churn`` prints only the cost of other work between calls: each
method on the near-singular family with pandas work on the prices before every call (as a
cycle does), median CPU ms and minor page faults per call with glibc's default heap, then
with ``strategies.heap_policy.retain_freed_heap()``.

Families (daily returns, fixed seeds): ``random`` — a random well-conditioned covariance
(eigenvalues spread 1:4); ``factor`` — 5 common factors + idiosyncratic noise (what equity
returns look like); ``near_singular`` — half the assets are near-copies of the other half
(σ_diff 1e-7/day), so the sample covariance fails the PD check and is repaired
(diagonal loading at 2e-10 × mean variance: condition number ~1e10); ``short_window`` —
``random``'s returns over N/2 days (fewer days than assets, as a wide universe with the
default 252-day lookback has): the sample covariance has rank N/2 − 1, fails the PD
check and is repaired the same way, and the long-only optimum sits on its null space;
``short_window_iid`` — independent returns over N/2 days, daily volatilities 0.5–2 %
(the same rank, a harder shape: the regularized start cycles there too).
``--families`` picks some; ``--seed`` draws others (the published figures: the default).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import pandas as pd
import structlog

import strategies
from strategies import costed_qp, free_set, frontier, qp
from strategies.blas import pin_blas_threads
from strategies.covariance_repair import factor_covariance

SEED = 20240601
BUSY_REF_REPEAT = 5  # reference samples (and paired samples of ours) in the busy table (see main)
BUSY_REPEAT = 11  # samples of ours in the busy table (see main)
# Beside busy processes each sample of ours and of the reference spans at least this much
# wall time (ours: the mean of back-to-back calls), so that both sides see the scheduler's
# share of the core averaged over the same kind of window (see main).
BUSY_BLOCK_MS = 100.0
SETTLE_SECS = 1.0  # after a default-threads call, before the next pinned measurement
SMALL_CALLS = 500  # calls per method of the small case (50 assets × 252 days)
METHODS = ("min_variance", "mean_variance", "max_sharpe", "efficient_risk", "black_litterman")
FAMILIES = ("random", "factor", "near_singular", "short_window", "short_window_iid")
SHORT_WINDOW_TARGET_VOL = 0.10  # efficient_risk's target on the short windows (annual)


def family_prices(family: str, n: int, days: int, seed: int = SEED) -> pd.DataFrame:
    """``days`` daily returns of ``n`` assets from the named family, as a price frame."""
    rng = np.random.default_rng(seed + n + len(family))
    drift = rng.uniform(0.0, 0.15, n) / 252
    if family in ("short_window", "short_window_iid"):  # fewer days than assets
        days = min(days, n // 2)
    if family == "short_window_iid":
        rets = rng.normal(0.0, 0.01, (days, n)) * rng.uniform(0.5, 2.0, n)
    elif family in ("random", "short_window"):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        scale = np.sqrt(rng.uniform(1.0, 4.0, n)) * 0.012
        rets = (rng.normal(size=(days, n)) * scale) @ q.T
    elif family == "factor":
        rets = _factor_returns(rng, n, days)
    elif family == "near_singular":
        half = n // 2
        base = _factor_returns(rng, n - half, days)
        copies = base[:, :half] + rng.normal(0.0, 1e-7, (days, half))
        rets = np.hstack([base, copies])
    else:
        raise ValueError(family)
    rets = rets + drift
    prices = 100.0 * np.vstack([np.ones(n), np.cumprod(1.0 + rets, axis=0)])
    return pd.DataFrame(prices, index=pd.bdate_range("2019-01-02", periods=days + 1),
                        columns=[f"A{i:04d}" for i in range(n)])


def _factor_returns(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    factors = rng.normal(0.0, 1.0, (days, 5)) * np.array([0.010, 0.005, 0.004, 0.003, 0.002])
    loadings = rng.normal(0.0, 1.0, (n, 5))
    loadings[:, 0] = rng.uniform(0.5, 1.5, n)
    idio = rng.uniform(0.005, 0.02, n)
    return factors @ loadings.T + rng.normal(0.0, 1.0, (days, n)) * idio


class SolveCounter:
    """Counts QP solves, active-set iterations and free-set factorizations by wrapping
    ``qp.solve_qp`` where the strategies look it up and ``free_set.factor_matrix``
    (instrumentation for this benchmark only)."""

    def __init__(self) -> None:
        self.solves = self.iterations = self.factorizations = 0
        self._originals = {"solve_qp": qp.solve_qp, "solve_costed_qp": costed_qp.solve_costed_qp,
                           "solve_tangency_qp": qp.solve_tangency_qp}
        self._factor = free_set.factor_matrix

    def _modules(self) -> tuple[object, ...]:
        import strategies.black_litterman as bl
        import strategies.mean_variance as mv
        return (qp, costed_qp, frontier, mv, bl)

    def __enter__(self) -> Self:
        for name, original in self._originals.items():
            def counted(*args: object, _original=original, **kwargs: object) -> object:
                result = _original(*args, **kwargs)
                if result is not None:
                    self.solves += 1
                    self.iterations += result.iterations
                return result

            for module in self._modules():
                if hasattr(module, name):
                    setattr(module, name, counted)

        def factor(matrix: np.ndarray) -> np.ndarray:
            self.factorizations += 1
            return self._factor(matrix)

        free_set.factor_matrix = factor
        return self

    def __exit__(self, *exc: object) -> None:
        free_set.factor_matrix = self._factor
        for name, original in self._originals.items():
            for module in self._modules():
                if hasattr(module, name):
                    setattr(module, name, original)


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter  # set by --clock


def median_ms(call: Callable[[], object], repeat: int, block_ms: float = 0.0,
              warm: bool = True) -> float:
    """Median ms per call over ``repeat`` samples after a warm-up call (``warm``). Each
    sample is one call, or with ``block_ms`` the mean over back-to-back calls until that
    much time has passed (see BUSY_BLOCK_MS)."""
    if warm:
        call()
    times = []
    for _ in range(repeat):
        calls, start = 0, clock()
        while True:
            call()
            calls += 1
            elapsed = clock() - start
            if 1e3 * elapsed >= block_ms:
                break
        times.append(elapsed / calls)
    return 1e3 * statistics.median(times)


def paired_ms(ours_call: Callable[[], object], ref_call: Callable[[], object], pairs: int,
              block_ms: float) -> tuple[float, float, float]:
    """(ours, reference, ratio): ``pairs`` rounds of one sample of ours (back-to-back calls
    over ``block_ms``, their mean) then one reference call, so both sides run in the same
    scheduling conditions; medians of each side, and the median of the rounds' ratios."""
    ours_call()
    ref_call()
    ours_ms, ref_ms = [], []
    for _ in range(pairs):
        ours_ms.append(median_ms(ours_call, 1, block_ms, warm=False))
        ref_ms.append(median_ms(ref_call, 1, warm=False))
    return (statistics.median(ours_ms), statistics.median(ref_ms),
            statistics.median(r / o for r, o in zip(ref_ms, ours_ms, strict=True)))


def ours(method: str, prices: pd.DataFrame, target_vol: float,
         extra: dict[str, object]) -> Callable[[], object]:
    strategy, current = build(method, prices, target_vol, extra)
    return lambda: strategy.target_weights(prices, current)


def build(method: str, prices: pd.DataFrame, target_vol: float,
          extra: dict[str, object]) -> tuple[Any, pd.Series | None]:
    """The strategy as configured for this benchmark, and the current weights to pass."""
    days = len(prices) - 1
    extra = dict(extra)
    current = extra.pop("_current", None)
    params: dict[str, object] = {"lookback_days": days, **extra}
    if method == "efficient_risk":
        params["target_volatility"] = target_vol
    if method == "black_litterman":
        params["views"] = [{"assets": {prices.columns[0]: 1.0}, "return": 0.10},
                           {"assets": {prices.columns[1]: 1.0, prices.columns[2]: -1.0},
                            "return": 0.02}]
    return strategies.create(method, **params), current


def estimation(method: str, prices: pd.DataFrame) -> Callable[[], object]:
    """The estimation part of ``ours`` alone: returns, Σ with its PD check / factor, μ
    (Black-Litterman: the posterior and its factor)."""
    strategy, _ = build(method, prices, 0.1, {})
    if method == "black_litterman":
        def posterior() -> object:
            symbols, _, cov = strategy.posterior(prices)
            return factor_covariance(cov, symbols, gram=True, ill_factor=False)
        return posterior
    return lambda: strategy.settings.estimate(prices, strategy.uses_expected_returns,
                                              ill_factor=False)


def reference(method: str, prices: pd.DataFrame, target_vol: float) -> Callable[[], object]:
    """PyPortfolioOpt + Clarabel doing the same job, estimation included."""
    from pypfopt import BlackLittermanModel, EfficientFrontier, expected_returns, risk_models

    def run() -> object:
        cov = risk_models.sample_cov(prices, frequency=252)
        if method == "black_litterman":
            n = len(prices.columns)
            pi = 2.5 * cov.to_numpy() @ np.full(n, 1.0 / n)
            picks = np.zeros((2, n))
            picks[0, 0], picks[1, 1], picks[1, 2] = 1.0, 1.0, -1.0
            model = BlackLittermanModel(cov, pi=pd.Series(pi, index=cov.index), P=picks,
                                        Q=np.array([0.10, 0.02]), tau=0.05)
            ef = EfficientFrontier(model.bl_returns(), model.bl_cov(), solver="CLARABEL")
            return ef.max_quadratic_utility(risk_aversion=2.5)
        mu = None
        if method != "min_variance":
            mu = expected_returns.mean_historical_return(prices, compounding=False)
        ef = EfficientFrontier(mu, cov, solver="CLARABEL")
        if method == "min_variance":
            return ef.min_volatility()
        if method == "mean_variance":
            return ef.max_quadratic_utility(risk_aversion=2.5)
        if method == "max_sharpe":
            return ef.max_sharpe(risk_free_rate=0.0)
        return ef.efficient_risk(target_vol)

    return run


@contextmanager
def busy_processes(count: int):  # type: ignore[no-untyped-def]
    """``count`` CPU-burning child processes for the duration (ended by their own pids)."""
    children = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(count)]
    time.sleep(0.5)
    try:
        yield
    finally:
        for child in children:
            child.kill()
            child.wait()


def min_variance_vol(prices: pd.DataFrame) -> float:
    w = strategies.create("min_variance", lookback_days=len(prices) - 1).target_weights(prices)
    rets = prices.pct_change().dropna().to_numpy()
    return float(np.sqrt(252 * w.to_numpy() @ np.cov(rets.T) @ w.to_numpy()))


def run_table(args: argparse.Namespace, condition: str, families: dict[str, pd.DataFrame],
              vols: dict[str, float], floor_ms: float) -> None:
    short = "".join(f" ({f}: T={len(p) - 1})" for f, p in families.items()
                    if f.startswith("short_window"))
    print(f"\n== {condition}: N={args.n}, T={args.days}{short}, median {args.clock} ms "
          f"(ours × {args.repeat}, reference × {args.ref_repeat}), load average "
          f"{os.getloadavg()[0]:.2f}; floor (syrk + Cholesky) {floor_ms:.2f} ms")
    if args.block_ms:
        print(f"ours 1thr and PyPfOpt: {args.ref_repeat} alternating samples, ours the mean of "
              f"back-to-back calls over ≥ {args.block_ms:.0f} ms, theirs one call; medians, "
              f"ratio = median of the pairs' ratios; 1 call: ours, median of single calls")
    print(f"{'method':16s}{'family':15s}{'ours 1thr':>10s}"
          + (f"{'1 call':>8s}" if args.block_ms else "") + f"{'est':>7s}{'×floor':>7s}"
          f"{'ours dflt':>10s}{'iters':>6s}{'qp':>4s}{'chol':>5s}{'PyPfOpt':>9s}{'ratio':>8s}"
          + (f"{'κ>0 1thr':>10s}{'iters':>7s}" if args.kappa else ""))
    worst: dict[str, float] = {}
    ratios: dict[str, list[float]] = {}
    for method in args.methods:
        for family, prices in families.items():
            call = ours(method, prices, vols[family], {})
            full_window = not family.startswith("short_window")  # (the floor's T days)
            with pin_blas_threads(1):
                with SolveCounter() as counter:
                    call()
                t_one = t_call = median_ms(call, args.repeat)
                t_est = median_ms(estimation(method, prices), args.repeat)
                t_ref = ratio = float("nan")
                if args.ref_repeat > 0 and args.block_ms:
                    t_one, t_ref, ratio = paired_ms(call, reference(method, prices, vols[family]),
                                                    args.ref_repeat, args.block_ms)
                elif args.ref_repeat > 0:
                    t_ref = median_ms(reference(method, prices, vols[family]), args.ref_repeat)
                    ratio = t_ref / t_one
            t_default = default_threads_ms(call)
            line = (f"{method:16s}{family:15s}{t_one:10.2f}"
                    + (f"{t_call:8.2f}" if args.block_ms else "")
                    + f"{t_est:7.2f}{t_one / floor_ms if full_window else float('nan'):7.2f}"
                    f"{t_default:10.2f}{counter.iterations:6d}{counter.solves:4d}"
                    f"{counter.factorizations:5d}{t_ref:9.1f}{ratio:7.1f}×")
            if args.kappa:
                current = pd.Series(1.0 / args.n, index=prices.columns)
                costed = ours(method, prices, vols[family],
                              {"turnover_penalty": args.kappa, "_current": current})
                with pin_blas_threads(1):
                    with SolveCounter() as counter:
                        costed()
                    t_cost = median_ms(costed, args.repeat)
                line += f"{t_cost:10.2f}{counter.iterations:7d}"
            print(line, flush=True)
            worst[method] = max(worst.get(method, 0.0), t_one)
            ratios.setdefault(method, []).append(ratio)
    print("worst over families (1 BLAS thread): " + ", ".join(
        f"{m} {t:.1f} ms (lowest ratio {min(ratios[m]):.1f}×)" for m, t in worst.items()))


def default_threads_ms(call: Callable[[], object], repeat: int = 1) -> float:
    """``median_ms`` with the BLAS library's default threads, then a pause: OpenBLAS's
    idle workers keep spinning for a while after a multi-threaded call, and a pinned
    measurement taken meanwhile (ours or the reference) runs ~1.5× slower beside them."""
    elapsed = median_ms(call, repeat)
    time.sleep(SETTLE_SECS)
    return elapsed


def run_big(args: argparse.Namespace) -> None:
    prices = family_prices("factor", 3000, args.days)
    params: dict[str, object] = {"covariance": "ledoit_wolf"}
    call = ours("min_variance", prices, 0.0, params)
    strategy, _ = build("min_variance", prices, 0.0, params)
    x = prices.pct_change().to_numpy()[1:]
    xc = x - x.mean(axis=0)

    def ref() -> object:
        from pypfopt import EfficientFrontier, risk_models
        cov = risk_models.CovarianceShrinkage(prices, frequency=252).ledoit_wolf()
        return EfficientFrontier(None, cov, solver="CLARABEL").min_volatility()

    with pin_blas_threads(1):
        with SolveCounter() as counter:
            call()
        t_syrk = median_ms(lambda: xc.T @ xc, 3)
        t_one = median_ms(call, 3)
        t_est = median_ms(lambda: strategy.settings.estimate(prices, False), 3)
        t_ref = median_ms(ref, 1) if args.ref_repeat > 0 else float("nan")
    t_default = default_threads_ms(call, 3)
    print(f"\n== min_variance N=3000 T={args.days} ledoit_wolf, factor family, load average "
          f"{os.getloadavg()[0]:.2f}: ours {t_one:.0f} ms (1 thread; estimation {t_est:.0f} ms, "
          f"floor = one syrk XcᵀXc {t_syrk:.0f} ms, ours/floor {t_one / t_syrk:.2f}), "
          f"{t_default:.0f} ms (default threads); {counter.iterations} iterations, "
          f"{counter.solves} QP, {counter.factorizations} free-set factorizations; "
          f"PyPortfolioOpt + Clarabel {t_ref:.0f} ms; ratio {t_ref / t_one:.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--days", type=int, default=1260)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--ref-repeat", type=int, default=3)
    parser.add_argument("--no-load", action="store_true", help="skip the under-load table")
    parser.add_argument("--kappa", type=float, default=0.0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seed", type=int, default=SEED, help="the families' draw")
    parser.add_argument("--big", action="store_true")
    parser.add_argument("--small-only", action="store_true",
                        help="only the 50-asset, 252-day per-call timing")
    parser.add_argument("--churn", action="store_true",
                        help="only the page-fault cost of other work between calls")
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                        help="cpu: this process's CPU time (robust on a loaded machine; "
                             "both sides are single-threaded)")
    args = parser.parse_args()
    args.block_ms = 0.0  # one call a sample (the busy table sets BUSY_BLOCK_MS)
    global clock
    clock = CLOCK[args.clock]
    # SIGTERM unwinds (so the busy children are ended) instead of killing outright.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    warnings.simplefilter("ignore")
    if args.small_only:
        run_small()
        return
    if args.churn:
        run_churn(args)
        return
    families = {f: family_prices(f, args.n, args.days, args.seed) for f in args.families}
    with pin_blas_threads(1):
        # (the short windows' in-sample minimum volatility is ~0: a 10 % target there)
        vols = {f: SHORT_WINDOW_TARGET_VOL if f.startswith("short_window")
                else 1.3 * min_variance_vol(p) for f, p in families.items()}
    time.sleep(SETTLE_SECS)  # the price generation ran with the default BLAS threads
    print(f"{os.cpu_count()} CPUs; physical floor at N={args.n}: one covariance GEMM and one "
          f"Cholesky, measured below")
    floor_prices = families.get("factor")
    if floor_prices is None:
        floor_prices = family_prices("factor", args.n, args.days, args.seed)
    floor_ms = floor_report(floor_prices, args.days)
    run_table(args, "quiet", families, vols, floor_ms)
    if not args.no_load:
        # Beside busy processes the scheduler shares each core between us and a burner in
        # slices of a few ms. A ~200 ms reference call averages over many slices, but one
        # sample may still run unslowed (black_litterman read 6.0x with one, 12.5x with
        # three): the busy table takes at least BUSY_REF_REPEAT reference samples. A
        # single ~12 ms call of ours either misses the slices or waits out one (×1 or
        # ×2-3): a median of such calls read 23.8 ms against 11.9 quiet in one run (a
        # ratio of 9.2x). And the scheduler's placement drifts: 3 tasks on 2 cores, now
        # sharing a core with a burner (×2), now alone (×1), for seconds at a time (ours
        # read 25.6 then 13.0 ms a call within one busy minute, the reference 353 then
        # 266 ms). So the busy table alternates: one sample of ours (the mean of
        # back-to-back calls over BUSY_BLOCK_MS, the window a reference call spans), one
        # reference call, BUSY_REF_REPEAT times (``paired_ms``); the ratio is the median
        # of the pairs' ratios. "1 call" keeps the median of single calls of ours.
        busy = argparse.Namespace(**{**vars(args), "repeat": max(args.repeat, BUSY_REPEAT),
                                     "ref_repeat": max(args.ref_repeat, BUSY_REF_REPEAT)
                                     if args.ref_repeat > 0 else 0,
                                     "block_ms": BUSY_BLOCK_MS})
        with busy_processes(2):
            run_table(busy, "beside two busy processes", families, vols,
                      floor_report(floor_prices, args.days))
    if args.big:
        run_big(args)
    run_erc(args)
    run_small()


def run_small() -> None:
    """min_variance and mean_variance on 50 assets × 252 days (the backtest's rebalance
    call): median CPU time per call, one BLAS thread."""
    prices = family_prices("factor", 50, 252)
    figures = []
    with pin_blas_threads(1):
        for method in ("min_variance", "mean_variance"):
            strategy = strategies.create(method, lookback_days=252)
            strategy.target_weights(prices)
            times = []
            for _ in range(SMALL_CALLS):
                start = time.process_time()
                strategy.target_weights(prices)
                times.append(time.process_time() - start)
            figures.append(f"{method} {1e3 * statistics.median(times):.3f} ms")
    print(f"\n== small: N=50, T=252, median CPU ms per call over {SMALL_CALLS} calls "
          f"(1 BLAS thread), load average {os.getloadavg()[0]:.2f}: " + ", ".join(figures))


def run_churn(args: argparse.Namespace) -> None:
    """``--churn``: see the module docstring. One process, default heap first: the policy
    holds for the rest of the process."""
    import resource

    from strategies.heap_policy import retain_freed_heap

    prices = family_prices("near_singular", args.n, args.days)
    with pin_blas_threads(1):
        vol = 1.3 * min_variance_vol(prices)
        calls = {m: ours(m, prices, vol, {}) for m in args.methods}

        def measure() -> dict[str, tuple[float, float]]:
            figures = {}
            for method, call in calls.items():
                call()
                times, faults = [], 0
                for _ in range(args.repeat):
                    prices.pct_change().rolling(5).mean()  # the cycle's other work
                    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    start = time.process_time()
                    call()
                    times.append(time.process_time() - start)
                    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
                figures[method] = (1e3 * statistics.median(times), faults / args.repeat)
            return figures

        default = measure()
        applied = retain_freed_heap()
        retained = measure()
    print(f"\n== other work between calls: near_singular N={args.n} T={args.days}, median CPU "
          f"ms and minor page faults per call over {args.repeat} calls, load average "
          f"{os.getloadavg()[0]:.2f}; heap policy applied: {applied}")
    for method in calls:
        (t_default, f_default), (t_kept, f_kept) = default[method], retained[method]
        print(f"{method:16s} default heap {t_default:6.2f} ms {f_default:7.0f} faults   "
              f"retain_freed_heap {t_kept:6.2f} ms {f_kept:7.0f} faults")


def run_erc(args: argparse.Namespace) -> None:
    """risk_parity, Ledoit-Wolf, N assets on 252 days: ours, its estimation alone, the
    Newton factorizations, and skfolio's RiskBudgeting (Ledoit-Wolf prior) once."""
    import strategies.risk_parity as rp

    prices = family_prices("factor", args.n, args.days).iloc[-253:]
    strategy = strategies.create("risk_parity", lookback_days=252, covariance="ledoit_wolf")
    factorizations = []
    original = rp._newton_factor

    def counted(*call_args: Any) -> Any:
        factorizations.append(1)
        return original(*call_args)

    with pin_blas_threads(1):
        rp._newton_factor = counted  # type: ignore[assignment]
        strategy.target_weights(prices)
        rp._newton_factor = original  # type: ignore[assignment]
        t_one = median_ms(lambda: strategy.target_weights(prices), args.repeat)
        t_est = median_ms(lambda: strategy.settings.low_rank_covariance(prices)  # as
                          or strategy.settings.estimate(prices, False, factor=False),  # used
                          args.repeat)
        t_ref = float("nan")
        if args.ref_repeat > 0:
            from skfolio.moments import LedoitWolf
            from skfolio.optimization import RiskBudgeting
            from skfolio.prior import EmpiricalPrior
            rets = prices.pct_change().iloc[1:]
            t_ref = median_ms(lambda: RiskBudgeting(prior_estimator=EmpiricalPrior(
                covariance_estimator=LedoitWolf())).fit(rets), args.ref_repeat)
    print(f"\n== risk_parity N={args.n} T=252 ledoit_wolf, factor family, load average "
          f"{os.getloadavg()[0]:.2f}: ours {t_one:.2f} ms (1 thread; estimation {t_est:.2f} "
          f"ms), {len(factorizations)} Newton factorization(s); skfolio RiskBudgeting "
          f"{t_ref:.0f} ms; ratio {t_ref / t_one:.0f}×")


def floor_report(prices: pd.DataFrame, days: int) -> float:
    """Times one covariance syrk (XcᵀXc) and one Cholesky of Σ, prints them and returns
    their sum in ms: no estimation-plus-QP can beat it."""
    from scipy.linalg import cholesky

    x = prices.pct_change().to_numpy()[1:]
    xc = x - x.mean(axis=0)
    with pin_blas_threads(1):
        gemm = median_ms(lambda: xc.T @ xc, 11)
        cov = xc.T @ xc
        chol = median_ms(lambda: cholesky(cov, lower=True, check_finite=False), 11)
    print(f"floor (1 BLAS thread): covariance syrk XcᵀXc {gemm:.2f} ms, Cholesky {chol:.2f} ms"
          f", load average {os.getloadavg()[0]:.2f}")
    return gemm + chol


if __name__ == "__main__":
    main()
