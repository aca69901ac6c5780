"""The heap policy: an optimizer call after other work reuses the heap's pages instead of
faulting fresh ones in (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from strategies.errors import ConfigError
from strategies.heap_policy import HEAP_RETAIN_ENV, heap_retain_from_env, retain_freed_heap

# One process: a 500-asset min_variance call on 1,260 days, each after pandas work on the
# same prices (what a cycle does between two strategy calls); prints the minor page faults
# of the strategy calls alone, per call, after applying the policy the environment asks.
FAULTS_SCRIPT = """
import resource
import numpy as np, pandas as pd, structlog
structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
import strategies
from strategies.blas import pin_blas_threads
from strategies.heap_policy import retain_freed_heap
pin_blas_threads(1)
applied = retain_freed_heap()
rng = np.random.default_rng(5)
rets = np.vstack([np.zeros(500), rng.normal(0.0003, 0.01, (1260, 500))])
prices = pd.DataFrame(100.0 * np.cumprod(1.0 + rets, axis=0),
                      index=pd.bdate_range("2020-01-01", periods=1261),
                      columns=[f"A{i}" for i in range(500)])
strategy = strategies.create("min_variance", lookback_days=1260)
strategy.target_weights(prices)
faults = 0
for _ in range(5):
    prices.pct_change().rolling(5).mean()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    strategy.target_weights(prices)
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, faults / 5)
"""


def _faults_per_call(retain_mb: str) -> tuple[bool, float]:
    env = {**os.environ, HEAP_RETAIN_ENV: retain_mb}
    out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", float(faults)


# benchmark-like (two processes of 500-asset optimizations counting page faults): in the
# slow run, beside the soak; the policy's settings are checked below in the default run
@pytest.mark.slow
def test_retain_freed_heap_optimizer_after_other_work_faults_no_pages_in() -> None:
    applied_default, faults_default = _faults_per_call("0")  # glibc's own thresholds
    if faults_default < 200:
        pytest.skip(f"this C library gave the pages back only {faults_default} times a call")
    applied, faults = _faults_per_call("32")
    assert not applied_default and applied
    assert faults < 0.1 * faults_default  # measured here: ~1,300 → 0 a call


def test_retain_freed_heap_zero_leaves_allocator_alone() -> None:
    assert retain_freed_heap(0) is False


@pytest.mark.parametrize("raw", ["-1", "2048", "lots"])
def test_heap_retain_from_env_invalid_names_variable(monkeypatch, raw: str) -> None:
    monkeypatch.setenv(HEAP_RETAIN_ENV, raw)
    with pytest.raises(ConfigError, match=HEAP_RETAIN_ENV):
        heap_retain_from_env()


def test_heap_retain_from_env_unset_is_default(monkeypatch) -> None:
    monkeypatch.delenv(HEAP_RETAIN_ENV, raising=False)
    assert heap_retain_from_env() == 32
    monkeypatch.setenv(HEAP_RETAIN_ENV, "64")
    assert heap_retain_from_env() == 64


@pytest.mark.parametrize("value", [True, -3, 4096, 1.5])
def test_retain_freed_heap_bad_size_is_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="heap retention"):
        retain_freed_heap(value)  # type: ignore[arg-type]
