"""Tearsheet metrics agree with an independent implementation (empyrical-reloaded).

Real-shaped data: the bundled sample market (8 ETFs, 20 years of daily closes). The
strategy is an equal-weight portfolio rebalanced daily; the benchmark is SPY. Conventions
on both sides: simple daily returns, 252 periods a year, sample standard deviation
(ddof = 1), the annual risk-free rate converted to a daily one, rf_d = (1 + rf)^(1/252) − 1,
and passed to empyrical as its per-period ``risk_free``/``required_return``. Agreement is
to 1e-9 relative: both compute the same closed forms in float64, so any larger gap is a
convention bug.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bot.backtest.metrics import (
    aligned_returns,
    cagr,
    daily_risk_free,
    drawdowns,
    return_series,
    sharpe,
    sortino,
    volatility,
)
from bot.backtest.periods import rolling_sharpe, rolling_volatility
from bot.backtest.relative import (
    alpha,
    beta,
    capture,
    information_ratio,
    monthly_returns_of,
    relative_statistics,
    tracking_error,
)
from tests.conftest import SAMPLE_PRICES

RF = 0.02
REL = 1e-9


@pytest.fixture(scope="module")
def empyrical():
    """The reference library, imported by the worker that runs these tests only (~0.5 s)."""
    import empyrical

    return empyrical


@pytest.fixture(scope="module")
def curves() -> tuple[pd.Series, pd.Series]:
    """(strategy equity, benchmark equity) on the sample market's trading days."""
    prices = pd.read_csv(SAMPLE_PRICES, index_col="date", parse_dates=True)
    asset_returns = prices.pct_change().iloc[1:]
    strategy = 100_000.0 * np.concatenate([[1.0], np.cumprod(1 + asset_returns.mean(axis=1))])
    benchmark = prices["SPY"] / prices["SPY"].iloc[0] * 100_000.0
    return pd.Series(strategy, index=prices.index), benchmark


@pytest.fixture(scope="module")
def returns(curves) -> tuple[pd.Series, pd.Series]:
    s, b = curves
    return aligned_returns(return_series(s.index, s.to_numpy()),
                           return_series(b.index, b.to_numpy()))


def test_crosscheck_sample_market_is_real_shaped(returns):
    r, b = returns
    assert len(r) == len(b) > 5000  # 20 years of days, equal length
    assert 0.05 < r.std() * math.sqrt(252) < 0.4


def test_crosscheck_sharpe_sortino_volatility_cagr_match_empyrical(curves, returns, empyrical):
    r, _ = returns
    rf_d = daily_risk_free(RF)
    equity = curves[0].to_numpy()
    assert sharpe(r.to_numpy(), RF) == pytest.approx(
        empyrical.sharpe_ratio(r, risk_free=rf_d), rel=REL)
    assert sortino(r.to_numpy(), RF) == pytest.approx(
        empyrical.sortino_ratio(r, required_return=rf_d), rel=REL)
    assert volatility(r.to_numpy()) == pytest.approx(empyrical.annual_volatility(r), rel=REL)
    assert cagr(equity) == pytest.approx(empyrical.cagr(r), rel=REL)
    assert drawdowns(equity).max() == pytest.approx(-empyrical.max_drawdown(r), rel=REL)


def test_crosscheck_beta_alpha_match_empyrical(returns, empyrical):
    r, b = returns
    rf_d = daily_risk_free(RF)
    e_alpha, e_beta = empyrical.alpha_beta(r, b, risk_free=rf_d)
    assert beta(r.to_numpy(), b.to_numpy()) == pytest.approx(e_beta, rel=REL)
    assert alpha(r.to_numpy(), b.to_numpy(), RF) == pytest.approx(e_alpha, rel=REL)
    assert 0.1 < e_beta < 1.5 and e_alpha != 0.0  # a non-trivial case


def test_crosscheck_information_ratio_and_tracking_error_match_empyrical(returns, empyrical):
    """empyrical's ``excess_sharpe`` is the daily IR, mean(r − b) / σ(r − b, ddof = 1); ours
    is annualized (× √252), and our tracking error is that σ × √252."""
    r, b = returns
    daily_ir = empyrical.excess_sharpe(r, b)
    assert information_ratio(r.to_numpy(), b.to_numpy()) == pytest.approx(
        daily_ir * math.sqrt(252), rel=REL)
    active = r - b
    assert tracking_error(r.to_numpy(), b.to_numpy()) == pytest.approx(
        (active.mean() / daily_ir) * math.sqrt(252), rel=REL)


def test_crosscheck_up_and_down_capture_match_empyrical_on_monthly_returns(returns, empyrical):
    """Morningstar's capture ratios are on monthly returns: empyrical with period="monthly"
    on the calendar-month compounding of the same daily returns."""
    r, b = returns
    r_m, b_m = monthly_returns_of(r), monthly_returns_of(b)
    assert r_m.loc["2008-10"] == pytest.approx(np.prod(1 + r.loc["2008-10"]) - 1, rel=1e-12)
    up, down = capture(r, b, up=True), capture(r, b, up=False)
    assert up == pytest.approx(empyrical.up_capture(r_m, b_m, period="monthly"), rel=REL)
    assert down == pytest.approx(empyrical.down_capture(r_m, b_m, period="monthly"), rel=REL)
    stats = relative_statistics(r, b, RF)
    assert (stats["up_capture"], stats["down_capture"]) == (up, down)
    assert 0.1 < up < 1.5 and 0.1 < down < 1.5  # a non-trivial case


def test_crosscheck_rolling_sharpe_and_volatility_match_empyrical(returns, empyrical):
    r, _ = returns
    ours = rolling_sharpe(r, 126, 0.0).dropna()
    theirs = empyrical.roll_sharpe_ratio(r, window=126)
    assert len(ours) == len(theirs)
    np.testing.assert_allclose(ours.to_numpy(), np.asarray(theirs), rtol=1e-8)
    np.testing.assert_allclose(rolling_volatility(r, 252).dropna().to_numpy(),
                               np.asarray(empyrical.roll_annual_volatility(r, window=252)),
                               rtol=1e-8)
