"""Benchmark-relative statistics of a strategy's daily returns (pure functions).

Conventions (as ``bot.backtest.metrics``): simple daily returns of the two equity curves on
their common days (``metrics.aligned_returns``), 252 days a year, the annual risk-free rate
compounded daily, rf_d = (1 + rf)^(1/252) − 1, sample moments with ddof = 1; capture ratios
on calendar months. They agree with empyrical (Quantopian) on the same inputs, which
``tests/test_tearsheet_crosscheck.py`` checks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bot.backtest.metrics import daily_risk_free
from strategies.estimators import ANNUALIZATION_DAYS


def beta(returns: np.ndarray, benchmark: np.ndarray) -> float:
    """β = cov(r, b) / var(b) (the CAPM regression slope; rf, a constant, cancels)."""
    r, b = np.asarray(returns, dtype=float), np.asarray(benchmark, dtype=float)
    if len(r) < 2:
        return float("nan")
    var_b = float(np.var(b, ddof=1))
    return float(np.cov(r, b, ddof=1)[0, 1] / var_b) if var_b > 0 else float("nan")


def alpha(returns: np.ndarray, benchmark: np.ndarray, rate_annual: float) -> float:
    """Jensen's alpha, annualized by compounding: (1 + α_d)^252 − 1 with
    α_d = mean((r − rf_d) − β (b − rf_d)) (Jensen 1968; empyrical's ``alpha`` convention)."""
    rf_d = daily_risk_free(rate_annual)
    r = np.asarray(returns, dtype=float) - rf_d
    b = np.asarray(benchmark, dtype=float) - rf_d
    slope = beta(r, b)
    if not math.isfinite(slope):
        return float("nan")
    return float((1.0 + np.mean(r - slope * b)) ** ANNUALIZATION_DAYS - 1.0)


def tracking_error(returns: np.ndarray, benchmark: np.ndarray) -> float:
    """σ(r − b, ddof = 1) × √252: annualized volatility of the active return."""
    active = np.asarray(returns, dtype=float) - np.asarray(benchmark, dtype=float)
    return float(active.std(ddof=1) * math.sqrt(ANNUALIZATION_DAYS)) if len(active) > 1 \
        else float("nan")


def information_ratio(returns: np.ndarray, benchmark: np.ndarray) -> float:
    """mean(r − b) × 252 / tracking error: annualized active return per unit of active risk
    (Grinold & Kahn 2000, arithmetic; = empyrical ``excess_sharpe`` × √252)."""
    active = np.asarray(returns, dtype=float) - np.asarray(benchmark, dtype=float)
    te = tracking_error(returns, benchmark)
    if not (math.isfinite(te) and te > 0):
        return float("nan")
    return float(active.mean() * ANNUALIZATION_DAYS / te)


def _growth(returns: np.ndarray, periods_a_year: int = ANNUALIZATION_DAYS) -> float:
    """Annualized compound return of a return series: (Π(1 + r))^(periods_a_year / n) − 1."""
    r = np.asarray(returns, dtype=float)
    if len(r) == 0:
        return float("nan")
    return float(np.prod(1.0 + r) ** (periods_a_year / len(r)) - 1.0)


def monthly_returns_of(daily: pd.Series) -> pd.Series:
    """Calendar-month compound returns of daily returns (partial first/last months kept)."""
    return (1.0 + daily).groupby(daily.index.to_period("M")).prod() - 1.0


def capture(returns: pd.Series, benchmark: pd.Series, up: bool) -> float:
    """Up (down) capture ratio, Morningstar's definition: over the calendar months in which
    the benchmark rose (fell), the strategy's annualized geometric mean monthly return over
    the benchmark's ((Π(1 + r_m))^(12/n) − 1, same for b). Up capture > 1 gains more than the
    benchmark in rising months; down capture < 1 loses less in falling ones. Monthly, not
    daily: annualizing only the up (or down) days compounds 250-day streaks and inflates
    the ratio (a 2× levered benchmark would show up capture ≈ 8). Same as empyrical's
    ``up_capture``/``down_capture`` on monthly returns with ``period="monthly"``."""
    r, b = monthly_returns_of(returns), monthly_returns_of(benchmark)
    months = (b > 0 if up else b < 0).to_numpy()
    if not months.any():
        return float("nan")
    base = _growth(b.to_numpy()[months], 12)
    return _growth(r.to_numpy()[months], 12) / base if base != 0 else float("nan")


def relative_statistics(returns: pd.Series, benchmark: pd.Series, rate_annual: float
                        ) -> dict[str, float]:
    """The strategy-vs-benchmark block of metrics.json: both daily return series on the same
    days (``metrics.aligned_returns``), indexed by date."""
    r, b = returns.to_numpy(dtype=float), benchmark.to_numpy(dtype=float)
    corr = float(np.corrcoef(r, b)[0, 1]) if len(r) > 1 and r.std() > 0 and b.std() > 0 \
        else float("nan")
    return {"beta": beta(r, b), "alpha": alpha(r, b, rate_annual), "correlation": corr,
            "tracking_error": tracking_error(r, b), "information_ratio": information_ratio(r, b),
            "up_capture": capture(returns, benchmark, up=True),
            "down_capture": capture(returns, benchmark, up=False),
            "active_return": _growth(r) - _growth(b) if len(r) else float("nan")}
