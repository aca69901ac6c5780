"""Backtest metrics on curves whose answers are known by hand; walk-forward fitting windows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import strategies
from bot.backtest.metrics import (
    annual_turnover,
    cagr,
    drawdowns,
    sharpe,
    sortino,
    summarize,
    var_breaches,
    volatility,
)
from bot.backtest.walk_forward import (
    WalkForward,
    WalkForwardStrategy,
    fold_starts,
    parse_walk_forward,
)
from tests.conftest import random_walk_prices


def test_cagr_doubling_over_252_days_is_100_percent():
    equity = np.linspace(100.0, 200.0, 253)
    assert cagr(equity) == pytest.approx(1.0, rel=1e-12)
    assert cagr(np.linspace(100.0, 200.0, 505)) == pytest.approx(math.sqrt(2) - 1, rel=1e-12)


def test_max_drawdown_is_the_deepest_fall_from_a_running_peak():
    equity = np.array([100, 120, 90, 130, 104, 140.0])
    assert drawdowns(equity).max() == pytest.approx(0.25)
    assert summarize(pd.bdate_range("2020-01-01", periods=6), equity, 0.0)["max_drawdown"] \
        == pytest.approx(0.25)


def test_sharpe_and_sortino_match_hand_computation():
    r = np.array([0.01, -0.02, 0.015, 0.003, -0.004])
    rf = 0.02
    x = r - ((1 + rf) ** (1 / 252) - 1)
    assert sharpe(r, rf) == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(252))
    dd = math.sqrt(np.mean(np.minimum(x, 0) ** 2))
    assert sortino(r, rf) == pytest.approx(x.mean() / dd * math.sqrt(252))
    assert volatility(r) == pytest.approx(r.std(ddof=1) * math.sqrt(252))


def test_turnover_full_switch_once_a_year_is_one():
    # sell 100 of A and buy 100 of B on an equity of 100: two-way 200, one-sided 1
    assert annual_turnover(np.array([200.0]), np.array([100.0]), 252) == pytest.approx(1.0)


def test_var_breaches_count_losses_beyond_the_ex_ante_var_only():
    r = np.array([-0.03, -0.01, 0.02, -0.025, -0.02])
    var = np.array([0.02, 0.02, np.nan, 0.02, 0.02])
    out = var_breaches(r, var, 0.95)
    assert out["var_breaches"] == 2  # −3% and −2.5%; −2% equals the VaR, not beyond
    assert out["var_days_evaluated"] == 4
    assert out["var_breaches_expected"] == pytest.approx(0.2)


def test_parse_walk_forward_rejects_a_bad_spec_naming_it():
    assert parse_walk_forward("756:63") == WalkForward(756, 63)
    with pytest.raises(ValueError, match="756-63"):
        parse_walk_forward("756-63")


def test_walk_forward_fits_only_on_the_training_window_before_each_test_window():
    prices = random_walk_prices(["AAA", "BBB", "CCC"], 200, seed=4)
    seen: list[pd.DataFrame] = []

    class Recording(strategies.Strategy):
        name = "recording"
        lookback_days = 10

        def target_weights(self, window: pd.DataFrame,
                           current_weights: pd.Series | None = None) -> pd.Series:
            seen.append(window)
            return strategies.create("inverse_volatility", lookback_days=20).target_weights(
                window)

    wf = WalkForward(60, 30)
    starts = fold_starts(prices.index, 60, 30)
    strategy = WalkForwardStrategy(Recording(), wf, starts)
    for row in range(60, 200):
        asof = prices.index[row]
        out = strategy.target_weights(
            prices.iloc[max(0, row + 1 - strategy.lookback_days): row + 1])
        k = starts.searchsorted(asof, side="right") - 1
        assert out.equals(strategy.fits[starts[k]].reindex(prices.columns, fill_value=0.0))
    assert len(seen) == len(starts) == 5
    for window, start in zip(seen, starts, strict=True):
        assert window.index[-1] == start and len(window) == wf.train_days + 1


def test_ex_ante_var_1d_is_the_last_cycles_var_of_the_evening_before():
    from bot.backtest.metrics import ex_ante_var_1d

    dates = pd.bdate_range("2021-01-04", periods=6)
    d = [x.date() for x in dates]
    # day 1: two cycles (the last wins); day 3: a cycle without a VaR keeps day 1's
    var = ex_ante_var_1d(dates, [d[1], d[1], d[3]], [0.04, 0.08, None], horizon_days=4)
    assert len(var) == 5 and np.isnan(var[0])  # the return of day 1 sees day 0: no cycle yet
    np.testing.assert_allclose(var[1:], [0.04] * 4)  # 0.08 / √4 from day 1 on


def test_return_matrix_keeps_only_the_days_every_curve_has():
    from bot.backtest.metrics import return_matrix

    days = pd.bdate_range("2021-01-04", periods=4)
    a = pd.Series([100.0, 110, 99, 99], index=days)
    b = pd.Series([10.0, 10, 11], index=days[1:])
    m = return_matrix({"a": a, "b": b})
    assert list(m.columns) == ["a", "b"] and list(m.index) == list(days[2:])
    np.testing.assert_allclose(m.to_numpy(), [[-0.1, 0.0], [0.0, 0.1]])


def test_sharpe_sortino_volatility_undefined_are_none_never_zero_or_nan():
    """All cash at rf 2 %: excess returns −rf_d every day, zero volatility: no Sharpe (not
    0, which outranks every strategy with a negative Sharpe) and no Sortino; one return: no volatility,
    Sharpe or Sortino; no return below the risk-free rate: no Sortino."""
    import json

    from bot.backtest.report import summary_rows

    cash = np.zeros(2520)
    assert sharpe(cash, 0.02) is None and sharpe(cash, 0.0) is None
    assert volatility(cash) == 0.0
    # DD = rf_d makes mean/DD = −1 whatever the rate: −√252 said nothing about the account
    assert sortino(cash, 0.02) is None
    assert sortino(cash, 0.0) is None  # nothing below the target
    assert sharpe(np.full(500, 0.001), 0.02) is None  # constant: σ 0, not rounding noise
    one = np.array([0.01])
    assert volatility(one) is None and sharpe(one, 0.0) is None and sortino(one, 0.0) is None
    assert sortino(np.array([0.01, 0.02, 0.005]), 0.0) is None
    dates = pd.bdate_range("2020-01-01", periods=len(cash) + 1)
    block = summarize(dates, np.full(len(dates), 100_000.0), 0.02)
    assert block["sharpe"] is None and block["calmar"] is None
    assert json.loads(json.dumps(block, allow_nan=False))["sharpe"] is None  # null, not NaN
    two_day = summarize(dates[:2], np.array([100.0, 101.0]), 0.0)
    assert two_day["volatility"] is None and two_day["sharpe"] is None
    rows = {label: value for label, value, *_ in summary_rows(
        {"settings": {"risk_free_rate": 0.02}, "strategy": block})}
    assert rows["Sharpe (rf 2.00%)"] == "—" and rows["Volatility"] == "0.00%"
