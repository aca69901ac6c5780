"""The process's BLAS thread policy: one thread per process unless asked otherwise.

Why: on a shared machine (a bot beside a backtest, a sweep's worker processes) a
multi-threaded BLAS spins threads that fight the other processes for the same cores; the
optimizers' small factorizations then run several times slower than single-threaded
(measured in ``benchmarks/bench_optimizers.py``). One thread per process degrades only in
proportion to the load. Callers (the CLI, the backtest, each sweep worker) call
``pin_blas_threads()`` once at start; ``ALLOCBOT_BLAS_THREADS`` overrides the default.
"""

from __future__ import annotations

import os
from typing import Any

from strategies.errors import ConfigError

BLAS_THREADS_ENV = "ALLOCBOT_BLAS_THREADS"
DEFAULT_BLAS_THREADS = 1


def int_from_env(name: str, default: int, low: int, high: int | None, what: str) -> int:
    """The integer in environment variable ``name`` (``default`` when unset or blank), in
    ``low`` … ``high``; anything else is a ConfigError naming the variable and ``what`` it
    must be. The process policies (this module's, ``heap_policy``'s) read theirs so."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value: int | None = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be {what}, got {raw!r}")
    return value


def blas_threads_from_env(default: int = DEFAULT_BLAS_THREADS) -> int:
    """Thread count from ``ALLOCBOT_BLAS_THREADS`` (a positive integer) or ``default``."""
    return int_from_env(BLAS_THREADS_ENV, default, 1, None, "a positive integer")


def pin_blas_threads(threads: int | None = None) -> Any:
    """Limit every BLAS/OpenMP pool of this process to ``threads`` (default: the
    environment's ``ALLOCBOT_BLAS_THREADS`` or 1) and return the threadpoolctl limiter.

    Effective at once; use the result as a context manager (``with pin_blas_threads(1):``)
    to restore the previous limits on exit, or call ``.restore_original_limits()``.
    """
    from threadpoolctl import threadpool_limits  # lazy: keeps CLI start-up light

    count = blas_threads_from_env() if threads is None else threads
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"BLAS threads must be a positive integer, got {count!r}")
    return threadpool_limits(limits=count, user_api="blas")


def blas_threads_now() -> int:
    """The largest thread count among the loaded BLAS libraries (for logs and benchmarks)."""
    from threadpoolctl import threadpool_info

    counts = [int(info["num_threads"]) for info in threadpool_info()
              if info.get("user_api") == "blas"]
    return max(counts, default=1)
