"""The fixed-cost cuts of a small optimizer call (50 assets × 252 days): each shortcut gives
the same bits as the general path it skips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_opt_qp import assert_kkt, random_problem

from strategies.base import StrategyError, finalize_array, finalize_weights
from strategies.estimators import EstimatorSettings
from strategies.free_set import FreeSetSolver, cholesky_lower
from strategies.qp import (
    DUAL_RELATIVE_TOLERANCE,
    _primal_active_set,
    _primal_dual_active_set,
    solve_qp,
)

COLUMNS = pd.Index([f"S{i}" for i in range(6)])


def placed_series(weights: np.ndarray, symbols: pd.Index, columns: pd.Index) -> pd.Series:
    """What the optimizers built before ``finalize_array``: a Series by column, 0 for the
    symbols left out."""
    out = np.zeros(len(columns))
    out[columns.get_indexer(symbols)] = weights
    return pd.Series(out, index=columns)


@pytest.mark.parametrize(("weights", "usable"), [
    (np.array([0.1, 0.2, 0.3, 0.15, 0.15, 0.1]), slice(None)),  # tidy, every column
    (np.array([0.5, 0.25, 0.25 + 5e-10, 0.0, -0.0, 0.0]), slice(None)),  # sum just above 1
    (np.array([0.4, -1e-12, 0.3, 0.3]), [0, 2, 3, 5]),  # tiny negative clipped, 2 left out
])
def test_finalize_array_same_series_as_finalize_weights_of_placed_weights(
        weights: np.ndarray, usable: slice | list[int]) -> None:
    symbols = COLUMNS[usable]
    got = finalize_array(weights, symbols, COLUMNS, "min_variance")
    want = finalize_weights(placed_series(weights, symbols, COLUMNS), "min_variance")
    assert got.index.equals(COLUMNS)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    assert (np.signbit(got.to_numpy()) == np.signbit(want.to_numpy())).all()
    assert (got >= 0).all() and got.sum() <= 1.0


def test_finalize_array_sum_just_above_one_scaled_back() -> None:
    got = finalize_array(np.array([0.5, 0.5 + 5e-10]), COLUMNS[:2], COLUMNS[:2], "x")
    assert got.sum() == pytest.approx(1.0, abs=1e-15)
    assert got.iloc[1] < 0.5 + 5e-10


def test_finalize_array_negative_weight_names_symbol() -> None:
    with pytest.raises(StrategyError, match=r"negative weights: \{'S1': -0\.01\}"):
        finalize_array(np.array([0.51, -0.01, 0.5]), COLUMNS[:3], COLUMNS, "x")


def test_finalize_array_non_finite_weight_names_symbol() -> None:
    with pytest.raises(StrategyError, match=r"non-finite weights for \['S2'\]"):
        finalize_array(np.array([0.5, 0.5, np.nan]), COLUMNS[:3], COLUMNS[:3], "x")


def test_finalize_array_sum_above_one_raises() -> None:
    with pytest.raises(StrategyError, match=r"sum to 1\.1"):
        finalize_array(np.array([0.6, 0.5]), COLUMNS[:2], COLUMNS[:2], "x")


def test_finalize_weights_non_float_series_tidied_as_float() -> None:
    got = finalize_weights(pd.Series([1, 0], index=COLUMNS[:2]), "x")
    assert got.dtype == np.float64
    assert got.tolist() == [1.0, 0.0]


def test_free_set_solver_unit_budget_same_bits_as_explicit_ones_row() -> None:
    cov, mu = random_problem(30, seed=3)
    active = np.zeros(30, bool)
    active[[2, 7, 11]] = True
    held = np.zeros((30, 1))
    held[[2, 7, 11], 0] = [0.01, 0.02, 0.0]
    unit = FreeSetSolver(cov).solve(mu[:, None], np.ones(1), held.copy(), active)
    ones = FreeSetSolver(cov, budget_row=np.ones(30)).solve(mu[:, None], np.ones(1),
                                                           held.copy(), active)
    np.testing.assert_array_equal(unit[0], ones[0])
    np.testing.assert_array_equal(unit[1], ones[1])
    assert abs(float(unit[0].sum()) - 1.0) < 1e-12


def test_free_set_solve_held_zero_on_free_same_as_masked_copy() -> None:
    cov, mu = random_problem(20, seed=4)
    active = np.zeros(20, bool)
    active[[0, 5]] = True
    held = np.zeros((20, 1))
    held[5, 0] = 0.03
    noisy = held.copy()
    noisy[~active, 0] = 7.0  # the masked path must ignore the free assets' entries
    masked = FreeSetSolver(cov).solve(mu[:, None], np.ones(1), noisy, active)
    own = FreeSetSolver(cov).solve(mu[:, None], np.ones(1), held, active,
                                   held_zero_on_free=True)
    np.testing.assert_array_equal(masked[0], own[0])
    np.testing.assert_array_equal(masked[1], own[1])
    assert own[0] is held  # the caller's array became the answer, no copy


def test_free_set_solver_remembered_int32_indices_reused() -> None:
    cov, mu = random_problem(12, seed=5)
    solver = FreeSetSolver(cov)
    solver.remember(np.arange(12, dtype=np.int32), cholesky_lower(cov))
    solver.solve(mu[:, None], np.ones(1), np.zeros((12, 1)), np.zeros(12, bool))
    assert solver.factorizations == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_primal_dual_iterations_stop_on_repeated_sets_with_kkt_point(seed: int) -> None:
    cov, mu = random_problem(50, seed=seed)
    lower, upper = np.zeros(50), np.full(50, 0.1)
    tol = DUAL_RELATIVE_TOLERANCE * (np.abs(np.diag(cov)).max() + np.abs(mu).max())
    none = np.zeros(50, bool)
    solution = _primal_dual_active_set(cov, 0.3 * mu, lower, upper, none, none.copy(), tol)
    assert solution is not None
    assert solution.iterations >= 2  # the start (all free) is not the optimum's sets
    assert_kkt(cov, 0.3 * mu, solution.weights, lower, upper)
    again = _primal_dual_active_set(cov, 0.3 * mu, lower, upper, solution.at_lower,
                                    solution.at_upper, tol)
    assert again is not None and again.iterations == 1  # started on the answer's sets
    np.testing.assert_array_equal(again.weights, solution.weights)


def test_primal_dual_iterations_with_fixed_assets_keep_them_at_their_bound() -> None:
    cov, mu = random_problem(30, seed=6)
    lower, upper = np.zeros(30), np.full(30, 0.2)
    lower[[3, 4]] = upper[[3, 4]] = 0.05
    mu[[3, 4]] = 3 * np.abs(mu).max()  # they would rise above 0.05 if they could move
    solution = solve_qp(cov, 0.2 * mu, lower, upper)
    np.testing.assert_array_equal(solution.weights[[3, 4]], [0.05, 0.05])
    assert solution.at_lower[[3, 4]].all() and not solution.at_upper[[3, 4]].any()
    tol = DUAL_RELATIVE_TOLERANCE * (np.abs(np.diag(cov)).max() + np.abs(0.2 * mu).max())
    safe = _primal_active_set(cov, 0.2 * mu, lower, upper, tol)
    np.testing.assert_allclose(solution.weights, safe.weights, atol=1e-10)


def test_estimate_complete_columns_same_as_frame_without_excluded_one() -> None:
    rng = np.random.default_rng(9)
    prices = pd.DataFrame(100 * np.cumprod(1 + rng.normal(0, 0.01, (80, 5)), axis=0),
                          index=pd.bdate_range("2020-01-01", periods=80),
                          columns=[f"S{i}" for i in range(5)])
    gappy = prices.copy()
    gappy.iloc[40, 2] = np.nan
    settings = EstimatorSettings(lookback_days=60)
    got = settings.estimate(gappy)
    want = settings.estimate(prices.drop(columns="S2"))
    assert list(got.symbols) == ["S0", "S1", "S3", "S4"]
    np.testing.assert_array_equal(got.cov, want.cov)
    np.testing.assert_array_equal(got.mu, want.mu)


@pytest.mark.parametrize("tail", [[-0.0], [-0.0, -1e-12]])
def test_finalize_weights_rescaled_sum_has_no_negative_zero(tail: list[float]) -> None:
    weights = pd.Series([0.5, 0.5 + 5e-10, *tail], index=COLUMNS[:2 + len(tail)])
    got = finalize_weights(weights, "x").to_numpy()
    assert not np.signbit(got).any()  # −0.0 (and a tiny negative) became +0.0
    assert got.sum() == pytest.approx(1.0, abs=1e-15)


def test_finalize_weights_tidy_series_returned_unchanged() -> None:
    weights = pd.Series([0.5, 0.25, -0.0], index=COLUMNS[:3])
    assert finalize_weights(weights, "x") is weights


def test_finalize_weights_tiny_negative_clipped_to_zero() -> None:
    weights = pd.Series([0.5, 0.25, -1e-12], index=COLUMNS[:3])
    got = finalize_weights(weights, "x")
    assert got.tolist() == [0.5, 0.25, 0.0]
