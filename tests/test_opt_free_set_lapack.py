"""The direct LAPACK calls of ``strategies.free_set`` give scipy.linalg's bits exactly (the
optimizers' answers must not move when the wrappers are bypassed), and fail as scipy does."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import LinAlgError, cho_factor, cho_solve, cholesky, solve_triangular

from strategies.free_set import (
    cho_solve_lower,
    cholesky_append,
    cholesky_delete,
    cholesky_lower,
    solve_lower,
)


def _spd(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(2 * n, n))
    return x.T @ x / n


@pytest.mark.parametrize("n", [1, 7, 60])
def test_cholesky_lower_matches_scipy_bitwise(n: int) -> None:
    a = _spd(n, n)
    factor = cholesky_lower(a)
    expected = cho_factor(a, lower=True, check_finite=False)[0]
    assert np.array_equal(factor, expected)  # upper triangle left as the input's, too
    assert factor.flags.f_contiguous == expected.flags.f_contiguous
    assert np.array_equal(cholesky_lower(a, clean=True),
                          cholesky(a, lower=True, check_finite=False))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("rhs_shape", [(40,), (40, 1), (40, 5)])
def test_solve_lower_matches_solve_triangular_bitwise(order: str, trans: bool,
                                                       rhs_shape: tuple[int, ...]) -> None:
    chol = np.asarray(np.linalg.cholesky(_spd(40, 3)), order=order)
    rhs = np.random.default_rng(4).normal(size=rhs_shape)
    expected = solve_triangular(chol, rhs, lower=True, trans="T" if trans else "N",
                                check_finite=False)
    assert np.array_equal(solve_lower(chol, rhs, trans=trans), expected)


def test_cho_solve_lower_matches_cho_solve_bitwise() -> None:
    a = _spd(30, 5)
    factor = cho_factor(a, lower=True, check_finite=False)[0]
    rhs = np.random.default_rng(6).normal(size=(30, 3))
    assert np.array_equal(cho_solve_lower(factor, rhs),
                          cho_solve((factor, True), rhs, check_finite=False))


def test_lapack_calls_empty_right_hand_side_returns_empty() -> None:
    chol = np.linalg.cholesky(_spd(4, 7))
    assert solve_lower(chol, np.empty((4, 0))).shape == (4, 0)
    assert cho_solve_lower(chol, np.empty((4, 0))).shape == (4, 0)


def test_cholesky_lower_not_positive_definite_raises_linalgerror() -> None:
    with pytest.raises(LinAlgError, match="not positive definite"):
        cholesky_lower(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_solve_lower_singular_factor_raises_linalgerror() -> None:
    with pytest.raises(LinAlgError, match="singular"):
        solve_lower(np.array([[1.0, 0.0], [1.0, 0.0]], order="F"), np.ones(2))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("count", [5, 70])  # one solve, or groups of trailing triangles
def test_lower_unit_columns_equal_full_triangular_solves(order: str, count: int) -> None:
    from strategies.free_set import lower_unit_columns

    chol = np.asarray(np.linalg.cholesky(_spd(120, 5)), order=order)
    rows = np.random.default_rng(6).choice(120, count, replace=False)  # any order
    unit = np.zeros((120, count))
    unit[rows, np.arange(count)] = 1.0
    np.testing.assert_allclose(lower_unit_columns(chol, rows),
                               solve_triangular(chol, unit, lower=True), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("n", [1, 2, 9, 80])
def test_cholesky_delete_gives_the_factor_without_that_asset(n: int) -> None:
    # The primal method drops an asset from its free set's factor instead of factoring
    # anew; every position, first to last, must give the reduced matrix's factor.
    a = _spd(n + 1, n)
    factor = cholesky_lower(a)
    before = factor.copy()
    for k in sorted({0, 1, n // 2, n - 1, n}):  # first, second, middle, last but one, last
        keep = np.delete(np.arange(n + 1), k)
        shrunk = cholesky_delete(factor, k)
        low = np.tril(shrunk)
        np.testing.assert_allclose(low @ low.T, a[np.ix_(keep, keep)], rtol=0, atol=1e-13)
        assert (np.diag(shrunk) > 0).all()  # pivots positive, as a new factor's
        assert np.array_equal(factor, before)  # the caller's factor is not overwritten


def test_cholesky_append_borders_the_factor_or_refuses_a_singular_border() -> None:
    a = _spd(31, 11)
    grown = cholesky_append(cholesky_lower(a[:30, :30]), a[:30, 30], float(a[30, 30]))
    assert grown is not None
    np.testing.assert_allclose(np.tril(grown) @ np.tril(grown).T, a, rtol=0, atol=1e-13)
    # an asset that duplicates one already in: the bordered matrix is singular
    assert cholesky_append(cholesky_lower(a[:30, :30]), a[:30, 4], float(a[4, 4])) is None
