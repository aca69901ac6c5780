"""The process's heap policy: freed large buffers stay in the heap for the next call instead
of going back to the operating system (glibc's ``mallopt``).

Why: glibc serves allocations above M_MMAP_THRESHOLD (128 KiB at start, raised on the fly up
to 32 MiB) by mmap and hands the heap's free top back beyond M_TRIM_THRESHOLD. When other
work runs between two optimizer calls (a cycle's pandas steps), each call's arrays (the
returns window of a 500-asset call is 5 MB, Σ 2 MB) come back as fresh pages: measured
~900–1,700 minor page faults and +2–3.5 ms of CPU a call (``python
benchmarks/bench_optimizers.py --churn``). With both thresholds at 32 MiB the pages are
reused and the faults are gone. Processes that pin their BLAS threads at start (the CLI, the
backtest, sweep workers: ``blas.pin_blas_threads``) call ``retain_freed_heap()`` too;
``ALLOCBOT_HEAP_RETAIN_MB`` overrides the size (0 leaves glibc's defaults). The cost: up to
that many MiB of freed memory stay mapped to the process.
"""

from __future__ import annotations

import ctypes

from strategies.blas import int_from_env
from strategies.errors import ConfigError

HEAP_RETAIN_ENV = "ALLOCBOT_HEAP_RETAIN_MB"
DEFAULT_HEAP_RETAIN_MB = 32
# glibc's mallopt parameters (malloc.h) and its mmap-threshold ceiling on 64-bit systems
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX_MB = 32
HEAP_RETAIN_MAX_MB = 2047  # mallopt takes an int of bytes


def heap_retain_from_env(default: int = DEFAULT_HEAP_RETAIN_MB) -> int:
    """MiB from ``ALLOCBOT_HEAP_RETAIN_MB`` (an integer 0–2047) or ``default``."""
    return int_from_env(HEAP_RETAIN_ENV, default, 0, HEAP_RETAIN_MAX_MB,
                        f"an integer from 0 to {HEAP_RETAIN_MAX_MB} (MiB)")


def retain_freed_heap(megabytes: int | None = None) -> bool:
    """Keep up to ``megabytes`` MiB (default: ``ALLOCBOT_HEAP_RETAIN_MB`` or 32) of freed
    memory in the heap, and serve allocations below that size (at most 32 MiB) from it:
    glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD. True when applied; False for 0 or where
    the C library has no glibc ``mallopt`` (then nothing changes). Process-wide, for good."""
    count = heap_retain_from_env() if megabytes is None else megabytes
    if isinstance(count, bool) or not isinstance(count, int) or not (
            0 <= count <= HEAP_RETAIN_MAX_MB):
        raise ConfigError(f"heap retention must be an integer from 0 to "
                          f"{HEAP_RETAIN_MAX_MB} (MiB), got {count!r}")
    if count == 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows): its allocator's defaults
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trimmed = mallopt(M_TRIM_THRESHOLD, count << 20)
    mapped = mallopt(M_MMAP_THRESHOLD, min(count, MMAP_THRESHOLD_MAX_MB) << 20)
    return bool(trimmed and mapped)
