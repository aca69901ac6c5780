"""The BLAS thread policy: one thread per process unless configured otherwise."""

from __future__ import annotations

import pytest

from strategies.blas import (
    BLAS_THREADS_ENV,
    blas_threads_from_env,
    blas_threads_now,
    pin_blas_threads,
)
from strategies.errors import ConfigError


def test_pin_blas_threads_default_one_thread_restored_on_exit(monkeypatch) -> None:
    monkeypatch.delenv(BLAS_THREADS_ENV, raising=False)
    with pin_blas_threads(2):
        before = blas_threads_now()
        with pin_blas_threads():
            assert blas_threads_now() == 1
        assert blas_threads_now() == before


def test_pin_blas_threads_env_sets_count(monkeypatch) -> None:
    monkeypatch.setenv(BLAS_THREADS_ENV, "1")
    assert blas_threads_from_env() == 1
    monkeypatch.setenv(BLAS_THREADS_ENV, "3")
    assert blas_threads_from_env() == 3


@pytest.mark.parametrize("raw", ["0", "-2", "many"])
def test_blas_threads_from_env_invalid_names_variable(monkeypatch, raw: str) -> None:
    monkeypatch.setenv(BLAS_THREADS_ENV, raw)
    with pytest.raises(ConfigError, match=BLAS_THREADS_ENV):
        blas_threads_from_env()


def test_pin_blas_threads_zero_is_config_error() -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        pin_blas_threads(0)
