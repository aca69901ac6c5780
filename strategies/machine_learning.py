"""``ml_regression``: penalized linear forecasts of next-period returns fed to the shared
long-only mean-variance solver.

No look-ahead: every feature at price row p uses closes up to p only; a training label
(the forward ``horizon_days`` return from p) is used only when p + horizon_days ≤ the
as-of row, so every label is fully known on the as-of date; cross-validation folds leave a
``horizon_days`` gap so no training label overlaps its validation window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import structlog
from sklearn.linear_model import Lasso, Ridge
from sklearn.model_selection import TimeSeriesSplit

from strategies.base import (
    ESTIMATION_MIN_SYMBOLS,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    check_int,
    finalize_weights,
    register,
)
from strategies.estimators import ANNUALIZATION_DAYS, EstimatorSettings, simple_returns

log = structlog.get_logger("strategies")

RETURN_FEATURE_DAYS = (5, 21, 63, 126)  # trailing compound returns (momentum, reversal)
VOL_FEATURE_DAYS = (21, 63)  # trailing annualized volatility
FEATURE_NAMES = tuple([f"ret_{d}d" for d in RETURN_FEATURE_DAYS]
                      + [f"vol_{d}d" for d in VOL_FEATURE_DAYS])
FEATURE_HISTORY_DAYS = max(RETURN_FEATURE_DAYS + VOL_FEATURE_DAYS)
DEFAULT_ALPHAS = {
    # on standardized features; ridge penalty scales with the number of rows (~10^4)
    "ridge": tuple(float(a) for a in np.logspace(5, -1, 7)),
    # lasso objective is (1/2n)‖y − Xb‖² + α‖b‖₁; targets are ~1e-2 monthly returns
    "lasso": tuple(float(a) for a in np.logspace(-2, -6, 5)),
}


@dataclass(frozen=True, slots=True)
class Panel:
    """Pooled (date × asset) design. Rows are date-major: row = date_pos · n_assets + asset.

    ``train_rows_p`` are price-row positions (into the returns window's price rows, 0 = the
    first price) of the training dates; ``label_end_p`` = train_rows_p + horizon, the last
    price each label uses (≤ ``asof_p``).
    """

    symbols: pd.Index
    x_train: np.ndarray
    y_train: np.ndarray
    train_rows_p: np.ndarray
    label_end_p: np.ndarray
    x_pred: np.ndarray
    asof_p: int


def asset_features(log_prices: np.ndarray, returns: np.ndarray, rows_p: np.ndarray
                   ) -> np.ndarray:
    """Features at price rows ``rows_p`` (each ≥ FEATURE_HISTORY_DAYS), shape
    (len(rows_p), n_assets, n_features): trailing compound returns
    exp(lp_p − lp_{p−d}) − 1, and trailing volatility √252 · sd(r_{p−d+1..p}) (ddof 1)."""
    feats = [np.expm1(log_prices[rows_p] - log_prices[rows_p - d]) for d in RETURN_FEATURE_DAYS]
    zero = np.zeros((1, returns.shape[1]))
    s1 = np.vstack([zero, np.cumsum(returns, axis=0)])  # s1[p] = Σ r over price rows 1..p
    s2 = np.vstack([zero, np.cumsum(returns * returns, axis=0)])
    for d in VOL_FEATURE_DAYS:
        total = s1[rows_p] - s1[rows_p - d]
        var = (s2[rows_p] - s2[rows_p - d] - total * total / d) / (d - 1)
        feats.append(np.sqrt(np.maximum(var, 0.0) * ANNUALIZATION_DAYS))
    return np.stack(feats, axis=-1)


def build_panel(prices: pd.DataFrame, lookback_days: int, horizon_days: int) -> Panel:
    """Features and forward-return labels from the last ``lookback_days`` daily returns.

    Label at price row p: exp(lp_{p+h} − lp_p) − 1 (the simple h-day forward return);
    rows with p + h beyond the as-of row are not labelled (not known yet).
    """
    returns = simple_returns(prices, lookback_days)
    r = returns.to_numpy()
    lp = np.vstack([np.zeros((1, r.shape[1])), np.cumsum(np.log1p(r), axis=0)])
    asof_p = r.shape[0]
    train_p = np.arange(FEATURE_HISTORY_DAYS, asof_p - horizon_days + 1)
    x_all = asset_features(lp, r, np.r_[train_p, asof_p])
    y = np.expm1(lp[train_p + horizon_days] - lp[train_p])
    n_feat = x_all.shape[-1]
    return Panel(symbols=returns.columns,
                 x_train=x_all[:-1].reshape(-1, n_feat), y_train=y.reshape(-1),
                 train_rows_p=train_p, label_end_p=train_p + horizon_days,
                 x_pred=x_all[-1], asof_p=asof_p)


def cv_splits(n_dates: int, n_assets: int, n_splits: int, gap_days: int
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Time-ordered folds over dates (TimeSeriesSplit with ``gap_days``) mapped to
    date-major panel rows: the last training label ends before the validation window."""
    splitter = TimeSeriesSplit(n_splits=n_splits, gap=gap_days)
    assets = np.arange(n_assets)
    return [((tr[:, None] * n_assets + assets).ravel(), (te[:, None] * n_assets + assets).ravel())
            for tr, te in splitter.split(np.arange(n_dates))]


def fit_predict(model: str, alpha: float, x_fit: np.ndarray, y_fit: np.ndarray,
                x_new: np.ndarray) -> np.ndarray:
    """Fit ridge/lasso with an unpenalized intercept and predict ``x_new``.

    ``x_fit`` must be column-centred (see ``standardize``); the intercept is then ȳ and the
    slopes are fit on y − ȳ without sklearn re-centring (same solution, less copying).
    """
    y_mean = float(y_fit.mean())
    if model == "ridge":
        est: Ridge | Lasso = Ridge(alpha=alpha, fit_intercept=False, solver="cholesky")
    else:  # Gram matrix: only 6 features, so coordinate descent is cheap
        est = Lasso(alpha=alpha, fit_intercept=False, precompute=True, max_iter=5000, tol=1e-6)
    return est.fit(x_fit, y_fit - y_mean).predict(x_new) + y_mean


def standardize(x_fit: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale by ``x_fit``'s mean/sd (sd 0 → 1) and apply the same map to ``others``."""
    mean = x_fit.mean(axis=0)
    sd = x_fit.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(x - mean) / sd for x in (x_fit, *others)]


def select_alpha(panel: Panel, model: str, alphas: Sequence[float], n_splits: int,
                 gap_days: int) -> tuple[float, np.ndarray]:
    """Penalty with the lowest mean validation MSE over time-ordered folds (ties → the
    larger penalty). Returns (alpha, mean MSE per alpha in the order given)."""
    n_assets = len(panel.symbols)
    folds = cv_splits(len(panel.train_rows_p), n_assets, n_splits, gap_days)
    mse = np.zeros(len(alphas))
    for train, test in folds:
        x_tr, x_te = standardize(panel.x_train[train], panel.x_train[test])
        y_tr, y_te = panel.y_train[train], panel.y_train[test]
        for i, alpha in enumerate(alphas):
            pred = fit_predict(model, alpha, x_tr, y_tr, x_te)
            mse[i] += float(np.mean((pred - y_te) ** 2)) / len(folds)
    order = np.argsort(-np.asarray(alphas), kind="stable")  # larger penalty first on ties
    best = order[int(np.argmin(mse[order]))]
    return float(alphas[best]), mse


@dataclass(frozen=True, slots=True)
class Forecast:
    """Fitted forecast: usable symbols, annualized predicted return, chosen penalty."""

    symbols: pd.Index
    mu_annual: np.ndarray
    alpha: float
    cv_mse: np.ndarray


@register("ml_regression")
@dataclass(frozen=True, slots=True)
class MLRegression(Strategy):
    """Ridge/lasso forecasts of ``horizon_days`` returns → long-only mean-variance.

    One pooled linear model over all assets and dates of the window, features
    (standardized on the training rows) per asset: trailing 5/21/63/126-day compound
    returns and 21/63-day annualized volatility. Penalty chosen from ``alphas`` by
    ``n_splits``-fold ``TimeSeriesSplit`` with gap = ``horizon_days``. Prediction for the
    as-of date, annualized as μ = ŷ · 252 / horizon_days, and Σ (shared estimator,
    ``covariance`` over ``cov_lookback_days``) go to
    ``strategies.mean_variance.optimize_mean_variance`` (max wᵀμ − (δ/2)wᵀΣw, Σw = 1,
    0 ≤ w ≤ ``max_weight``).

    Args:
        model: ``ridge`` or ``lasso``.
        horizon_days: forecast horizon in trading days (default 21 ≈ 1 month).
        lookback_days: daily return observations in the training window (default 756).
        alphas: candidate penalties (None = a model-specific grid, DEFAULT_ALPHAS).
        n_splits: time-ordered CV folds (default 5).
        risk_aversion: δ of the mean-variance step (default 2.5).
        cov_lookback_days: return observations for Σ (default 252).
        covariance: ``sample`` | ``ledoit_wolf`` | ``ewma``.
        cov_half_life_days: half-life of the ``ewma`` covariance (default 63).
        max_weight: per-asset upper bound (default 1.0).
    """

    model: str = "ridge"
    horizon_days: int = 21
    lookback_days: int = 756
    alphas: Sequence[float] | None = None
    n_splits: int = 5
    risk_aversion: float = 2.5
    cov_lookback_days: int = 252
    covariance: str = "sample"
    cov_half_life_days: float = 63.0
    max_weight: float = 1.0
    _estimator: EstimatorSettings = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "ml_regression"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS

    def __post_init__(self) -> None:
        if self.model not in DEFAULT_ALPHAS:
            raise StrategyConfigError(f"model: expected one of {', '.join(DEFAULT_ALPHAS)}, "
                                      f"got {self.model!r}")
        check_int(self.horizon_days, "horizon_days", 1)
        check_int(self.lookback_days, "lookback_days", 2)
        check_int(self.n_splits, "n_splits", 2)
        check_int(self.cov_lookback_days, "cov_lookback_days", 2)
        if self.cov_lookback_days > self.lookback_days:
            raise StrategyConfigError(
                f"cov_lookback_days: {self.cov_lookback_days} exceeds lookback_days "
                f"{self.lookback_days} (the history the cycle fetches); lower it or raise "
                f"lookback_days")
        check_float(self.risk_aversion, "risk_aversion", 0.0, math.inf, lo_open=True)
        check_float(self.max_weight, "max_weight", 0.0, 1.0, lo_open=True)
        if self.alphas is not None:
            alphas = tuple(self.alphas) if isinstance(self.alphas, Sequence) else ()
            if not alphas or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                     and math.isfinite(a) and a > 0 for a in alphas):
                raise StrategyConfigError(f"alphas: expected a non-empty list of positive "
                                          f"numbers, got {self.alphas!r}")
            object.__setattr__(self, "alphas", tuple(float(a) for a in alphas))
        object.__setattr__(self, "_estimator", EstimatorSettings(
            lookback_days=self.cov_lookback_days, covariance=self.covariance,
            cov_half_life_days=self.cov_half_life_days))

    @property
    def min_training_dates(self) -> int:
        """Labelled dates needed: each of n_splits + 1 blocks at least one horizon long."""
        return (self.n_splits + 1) * self.horizon_days + self.horizon_days

    def forecast(self, prices: pd.DataFrame) -> Forecast:
        """Fit on the labelled rows known at the as-of date and predict its returns."""
        panel = build_panel(prices, self.lookback_days, self.horizon_days)
        n_dates = len(panel.train_rows_p)
        if n_dates < self.min_training_dates:
            raise StrategyError(
                f"ml_regression: only {max(n_dates, 0)} labelled dates as of "
                f"{prices.index[-1].date()} ({panel.asof_p} return rows, {FEATURE_HISTORY_DAYS} for "
                f"features, {self.horizon_days} horizon); need {self.min_training_dates}: "
                f"raise lookback_days or supply more history")
        alphas = self.alphas if self.alphas is not None else DEFAULT_ALPHAS[self.model]
        alpha, mse = select_alpha(panel, self.model, alphas, self.n_splits, self.horizon_days)
        x_train, x_pred = standardize(panel.x_train, panel.x_pred)
        predicted = fit_predict(self.model, alpha, x_train, panel.y_train, x_pred)
        log.debug("model_fitted", strategy=self.name, model=self.model, alpha=alpha,
                  training_rows=len(panel.y_train), asof=str(prices.index[-1].date()))
        mu = predicted * (ANNUALIZATION_DAYS / self.horizon_days)
        return Forecast(symbols=panel.symbols, mu_annual=mu, alpha=alpha, cv_mse=mse)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        from strategies.mean_variance import optimize_mean_variance  # H1's shared solver

        fc = self.forecast(prices)
        returns = simple_returns(prices[fc.symbols], self.cov_lookback_days)
        if list(returns.columns) != list(fc.symbols):
            missing = [s for s in fc.symbols if s not in returns.columns]
            raise StrategyError(f"ml_regression: no covariance estimate for {missing} as of "
                                f"{prices.index[-1].date()}")
        cov = self._estimator.covariance_of(returns)
        n = len(fc.symbols)
        w = optimize_mean_variance(fc.mu_annual, cov, float(self.risk_aversion),
                                   np.zeros(n), np.full(n, float(self.max_weight)))
        out = pd.Series(np.asarray(w, dtype=float), index=fc.symbols)
        return finalize_weights(out.reindex(prices.columns, fill_value=0.0), self.name)
