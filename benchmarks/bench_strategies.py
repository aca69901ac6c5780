"""Median time of every registered strategy's ``target_weights`` and of each covariance
estimator, for N = 20, 100, 500 assets on 1,260 days of returns from a random factor model
(fixed seed). Prints a table; asserts nothing.

    /work/venv/bin/python benchmarks/bench_strategies.py [--sizes 20 100 500] [--repeat 15]
        [--blas-threads 1]

Strategies that take ``lookback_days`` get 1,260 so they use the whole history. Those that
cannot run on bare defaults (e.g. ``fixed`` needs weights) are listed as skipped with the
reason. The machine's load average is printed: medians are only meaningful when it is low.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import structlog

import strategies
from strategies.estimators import (
    ewma_covariance,
    ledoit_wolf_covariance,
    sample_covariance,
    simple_returns,
)

DAYS = 1260
SEED = 20240601
# Parameters a strategy needs to run sensibly on this synthetic universe.
PARAMS: dict[str, dict[str, object]] = {
    "efficient_risk": {"target_volatility": 0.15},
    "trend_filter": {"base": {"name": "equal_weight"}},
    "vol_target": {"base": {"name": "equal_weight"}},
    "core_satellite": {"core": {"name": "equal_weight"}, "satellite": {"name": "momentum"}},
}


def factor_model_prices(n_assets: int, n_days: int = DAYS, seed: int = SEED) -> pd.DataFrame:
    """Prices from r = Bf + ε: 5 factors (market-like first), loadings and idiosyncratic
    vols drawn once, daily drifts 0–12%/yr; ``n_days`` returns → n_days + 1 price rows."""
    rng = np.random.default_rng(seed + n_assets)
    factors = rng.normal(0.0, 1.0, (n_days, 5)) * np.array([0.010, 0.005, 0.004, 0.003, 0.002])
    loadings = rng.normal(0.0, 1.0, (n_assets, 5))
    loadings[:, 0] = rng.uniform(0.5, 1.5, n_assets)
    idio = rng.uniform(0.005, 0.02, n_assets)
    drift = rng.uniform(0.0, 0.12, n_assets) / 252
    rets = factors @ loadings.T + rng.normal(0.0, 1.0, (n_days, n_assets)) * idio + drift
    prices = 100.0 * np.vstack([np.ones(n_assets), np.cumprod(1.0 + rets, axis=0)])
    return pd.DataFrame(prices, index=pd.bdate_range("2019-01-02", periods=n_days + 1),
                        columns=[f"A{i:03d}" for i in range(n_assets)])


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm-up (imports, caches)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def build(name: str) -> strategies.Strategy:
    params = dict(PARAMS.get(name, {}))
    if "lookback_days" in strategies.parameters(name):
        params["lookback_days"] = DAYS
    return strategies.create(name, **params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="cap BLAS threads (default: the library's own choice)")
    args = parser.parse_args()
    if args.blas_threads:
        from strategies.blas import pin_blas_threads

        pin_blas_threads(args.blas_threads)
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # silence logs
    warnings.simplefilter("ignore")

    names = strategies.available()
    rows: dict[str, dict[int, str]] = {}
    skipped: dict[str, str] = {}
    for n in args.sizes:
        prices = factor_model_prices(n)
        returns = simple_returns(prices, DAYS)
        estimators = {
            "cov: sample": lambda r=returns: sample_covariance(r),
            "cov: ledoit_wolf": lambda r=returns: ledoit_wolf_covariance(r),
            "cov: ewma (half-life 63)": lambda r=returns: ewma_covariance(r, 63),
        }
        for label, call in estimators.items():
            rows.setdefault(label, {})[n] = f"{median_ms(call, args.repeat):9.2f}"
        for name in names:
            try:
                strategy = build(name)
                strategy.target_weights(prices)
            except Exception as exc:  # noqa: BLE001 — report, never stop the benchmark
                skipped[name] = f"{type(exc).__name__}: {str(exc)[:90]}"
                continue
            timed = median_ms(lambda s=strategy, p=prices: s.target_weights(p), args.repeat)
            rows.setdefault(name, {})[n] = f"{timed:9.2f}"

    load = os.getloadavg()
    print(f"median ms per call, {DAYS} days of returns, seed {SEED}, repeat {args.repeat}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} CPUs, BLAS threads {args.blas_threads or 'default'}")
    header = f"{'':28s}" + "".join(f"{'N=' + str(n):>10s}" for n in args.sizes)
    print(header)
    print("-" * len(header))
    for label, by_n in rows.items():
        print(f"{label:28s}" + "".join(f"{by_n.get(n, '      n/a'):>10s}" for n in args.sizes))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")


if __name__ == "__main__":
    main()
