"""Return and risk estimators shared by every strategy (one implementation each).

Convention: simple daily returns r_t = P_t / P_{t-1} - 1 of adjusted closes; annualized
with ANNUALIZATION_DAYS = 252 trading days per year. Expected returns are annual simple
returns, covariances annual (daily covariance × 252).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import structlog

from strategies.base import (
    ESTIMATION_MIN_SYMBOLS,
    StrategyConfigError,
    StrategyError,
    check_float,
    check_int,
)
from strategies.covariance_repair import (
    factor_covariance,
    ridge_certifies,
    ridge_certifies_diagonal,
)
from strategies.market_portfolio import (
    check_market_weights,
    equilibrium_returns,
    market_weight_vector,
)

ANNUALIZATION_DAYS = 252
EXPECTED_RETURN_METHODS = ("mean", "geometric", "ewma", "equilibrium")
COVARIANCE_METHODS = ("sample", "ledoit_wolf", "ewma")
# From this many assets on, a Ledoit-Wolf Σ whose ridge certifies it positive definite
# (``ridge_certifies``) is not factored: a full Cholesky (~0.45 s at N = 3,000) costs more
# than the QP, whose working-set solve factors only small free sets (``qp.solve_qp``).
CERTIFY_MIN_ASSETS = 1000
# A Ledoit-Wolf Σ of at most this share of N return rows may be kept as ridge·I + VᵀV
# (``EstimatorSettings.low_rank_covariance``): its T×T algebra then costs less than N×N.
LOW_RANK_MAX_ROW_SHARE = 0.6
log = structlog.get_logger("strategies")


def returns_from_closes(closes: np.ndarray) -> np.ndarray:
    """Simple daily returns r_t = P_t / P_{t−1} − 1 of a days × assets close array (the one
    definition every estimator and the risk step use)."""
    return closes[1:] / closes[:-1] - 1.0


def simple_returns(prices: pd.DataFrame, lookback_days: int | None = None) -> pd.DataFrame:
    """Simple daily returns over the last ``lookback_days`` return observations.

    Assets lacking a full window (a NaN anywhere in it) are excluded with an
    ``asset_excluded`` warning; fewer than 2 usable assets or rows is a StrategyError.
    """
    rets, columns, dates = returns_window(prices, lookback_days)
    return pd.DataFrame(rets, index=dates, columns=columns, copy=False)


def returns_window(prices: pd.DataFrame, lookback_days: int | None = None
                   ) -> tuple[np.ndarray, pd.Index, pd.Index]:
    """``simple_returns`` as (days × assets array, usable symbols, dates): the optimizers
    work on the array (no DataFrame round trip on their hot path)."""
    rets, columns, _ = _returns_and_sums(prices, lookback_days)
    return rets, columns, prices.index[len(prices) - len(rets):]


def _returns_and_sums(prices: pd.DataFrame, lookback_days: int | None
                      ) -> tuple[np.ndarray, pd.Index, np.ndarray]:
    """``returns_window``'s array and symbols (not its dates: slicing a DatetimeIndex costs
    ~25 µs of a 50-asset call), plus the returns' column sums (the estimators' mean for
    free).

    One fresh array: the returns are divided and shifted in place (each new 5 MB array at
    N = 500 costs page faults as well as a pass). A NaN price makes a NaN return, so the
    column sums flag the suspect columns; only those are re-scanned on the prices."""
    # The window by array slicing (``prices.iloc[-(lookback_days + 1):]``'s rows, the same
    # view of the same block): a DataFrame slice costs ~15 µs of a 50-asset call's ~500.
    start = 0 if lookback_days is None else slice(-(lookback_days + 1), None).indices(
        len(prices))[0]
    rows = len(prices) - start
    if rows < 3:
        raise StrategyError(
            f"need at least 3 price rows to estimate returns, got {rows}"
            + (f" (as of {prices.index[-1].date()})" if rows else "")
        )
    values = prices.to_numpy(dtype=float)[start:]
    rets = np.divide(values[1:], values[:-1])
    rets -= 1.0  # returns_from_closes' formula, in place
    sums = rets.sum(axis=0)
    suspect = np.isnan(sums)
    if not np.count_nonzero(suspect):  # every column complete (the usual case): no masks
        complete = None
        columns = prices.columns
    else:
        complete = np.ones(values.shape[1], dtype=bool)
        complete[suspect] = ~np.isnan(values[:, suspect]).any(axis=0)
        if not complete.all():  # (boolean-indexing an Index costs ~40 µs even when empty)
            for symbol in prices.columns[~complete]:
                log.warning("asset_excluded", symbol=str(symbol),
                            reason="insufficient history", asof=str(prices.index[-1].date()),
                            rows_needed=rows)
        columns = prices.columns[complete]
    if len(columns) < ESTIMATION_MIN_SYMBOLS:
        raise StrategyError(
            f"fewer than {ESTIMATION_MIN_SYMBOLS} assets with full history in the "
            f"{rows - 1}-day window ending {prices.index[-1].date()}: {list(columns)}"
        )
    if complete is not None and len(columns) < len(complete):
        rets, sums = rets[:, complete], sums[complete]
    return rets, columns, sums


def sample_covariance(returns: pd.DataFrame) -> pd.DataFrame:
    """Annualized sample covariance (ddof 1) × 252."""
    cov = sample_covariance_array(returns.to_numpy(dtype=float))
    return pd.DataFrame(cov, index=returns.columns, columns=returns.columns, copy=False)


def sample_covariance_array(x: np.ndarray, mean: np.ndarray | None = None,
                            overwrite: bool = False) -> np.ndarray:
    """``sample_covariance`` of a days × assets array (``mean``: its column means, if the
    caller has them): one Gram matrix XcᵀXc (numpy hands ``a.T @ a`` to BLAS syrk, half
    a GEMM), scaled in place. ``overwrite``: centre ``x`` itself (no copy)."""
    xc = _centred(x, mean, overwrite)
    cov = xc.T @ xc
    cov *= ANNUALIZATION_DAYS / (len(x) - 1)
    return cov


def _centred(x: np.ndarray, mean: np.ndarray | None, overwrite: bool) -> np.ndarray:
    """x minus its column means, in place when ``overwrite``."""
    mean = x.mean(axis=0) if mean is None else mean
    if overwrite:
        x -= mean
        return x
    return x - mean


def mean_returns(returns: pd.DataFrame) -> pd.Series:
    """Annualized arithmetic mean return: mean daily simple return × 252."""
    return returns.mean() * ANNUALIZATION_DAYS


# ---- expected returns (annual, simple) ---------------------------------------------------


def geometric_returns(returns: pd.DataFrame) -> pd.Series:
    """Compound annual growth rate: (∏(1 + r_t))^(252 / T) − 1 (PyPortfolioOpt's
    ``mean_historical_return(compounding=True)`` convention)."""
    growth = np.log1p(returns.to_numpy()).sum(axis=0) * (ANNUALIZATION_DAYS / len(returns))
    return pd.Series(np.expm1(growth), index=returns.columns)


def ewma_returns(returns: pd.DataFrame, span_days: float) -> pd.Series:
    """Exponentially weighted mean daily return × 252, weights ∝ (1 − α)^age with
    α = 2 / (span + 1) (pandas ``ewm(span=..., adjust=True)`` on the window, last row)."""
    if span_days < 1:
        raise StrategyConfigError(f"returns_span_days must be ≥ 1, got {span_days}")
    alpha = 2.0 / (span_days + 1.0)
    age = np.arange(len(returns) - 1, -1, -1, dtype=float)
    weights = (1.0 - alpha) ** age
    weights /= weights.sum()
    return pd.Series(weights @ returns.to_numpy() * ANNUALIZATION_DAYS, index=returns.columns)


# ---- covariance (annual) ------------------------------------------------------------------


def ledoit_wolf_covariance(returns: pd.DataFrame) -> pd.DataFrame:
    """Ledoit & Wolf (2004) shrinkage toward the scaled identity μI, × 252.

    Same estimator as ``sklearn.covariance.ledoit_wolf`` (maximum-likelihood empirical
    covariance S = XcᵀXc / T, target μ = tr(S)/p, shrinkage min(β, δ)/δ with
    δ = ‖S − μI‖²/p and β = (Σ_t ‖x_t‖⁴/T − ‖S‖²_F)/(pT)), computed in one pass: the
    Σ_ij (X²ᵀX²)_ij term is Σ_t (Σ_i x_ti²)², so it costs one Gram matrix.
    """
    cov, _ = ledoit_wolf_array(returns.to_numpy(dtype=float))
    return pd.DataFrame(cov, index=returns.columns, columns=returns.columns, copy=False)


def ledoit_wolf_array(x: np.ndarray, mean: np.ndarray | None = None,
                      overwrite: bool = False) -> tuple[np.ndarray, float]:
    """``ledoit_wolf_covariance`` of a days × assets array, and the ridge it put on the
    diagonal (annual units): Σ = (1 − s)·S·252 + ridge·I. One syrk for S; every other
    step is in place (at N = 3,000 each extra N×N temporary costs ~10 ms).
    ``overwrite``: centre ``x`` itself (no copy)."""
    n_obs, n_assets = x.shape
    xc = _centred(x, mean, overwrite)
    emp = xc.T @ xc
    emp /= n_obs
    row_sq = np.einsum("ij,ij->i", xc, xc)
    trace = float(np.trace(emp))
    shrinkage, target = _ledoit_wolf_shrinkage(n_obs, n_assets, trace,
                                               float(np.vdot(emp, emp)), row_sq)
    emp *= 1.0 - shrinkage
    emp.flat[:: n_assets + 1] += shrinkage * target
    emp *= ANNUALIZATION_DAYS
    return emp, shrinkage * target * ANNUALIZATION_DAYS


def ledoit_wolf_low_rank(x: np.ndarray, mean: np.ndarray | None = None,
                         overwrite: bool = False) -> tuple[np.ndarray, float]:
    """``ledoit_wolf_array``'s Σ as (V, ridge) with Σ = ridge·I + VᵀV, V = √((1 − s)·252/T)
    ·Xc (T × N), never forming the N×N matrix: for T < N the T×T Gram XcXcᵀ gives every
    ingredient (‖S‖_F = ‖XcXcᵀ‖_F/T, tr S = tr(XcXcᵀ)/T, and its diagonal is Σ_i x_ti²)
    in T²N flops instead of TN². A consumer that only multiplies by Σ or solves with
    Σ + diagonal (risk parity's Newton steps, by Woodbury) works in the T-dimensional
    space. ``overwrite``: centre and scale ``x`` itself (no copy)."""
    n_obs, n_assets = x.shape
    xc = _centred(x, mean, overwrite)
    gram = xc @ xc.T
    gram /= n_obs
    row_sq = np.diag(gram) * n_obs  # Σ_i x_ti², the diagonal of XcXcᵀ
    shrinkage, target = _ledoit_wolf_shrinkage(n_obs, n_assets, float(np.trace(gram)),
                                               float(np.vdot(gram, gram)), row_sq)
    xc *= np.sqrt((1.0 - shrinkage) * ANNUALIZATION_DAYS / n_obs)
    return xc, shrinkage * target * ANNUALIZATION_DAYS


def _ledoit_wolf_shrinkage(n_obs: int, n_assets: int, trace: float, frobenius_sq: float,
                           row_sq: np.ndarray) -> tuple[float, float]:
    """(s, μ) of Ledoit & Wolf (2004) from tr S, ‖S‖²_F and the rows' squared norms
    Σ_i x_ti² (S = XcᵀXc/T): target μ = tr S/p, δ = ‖S − μI‖²_F/p,
    β = (Σ_t ‖x_t‖⁴/T − ‖S‖²_F)/(pT), s = min(β, δ)/δ."""
    mu = trace / n_assets
    beta = (float(row_sq @ row_sq) / n_obs - frobenius_sq) / (n_assets * n_obs)
    delta = (frobenius_sq - 2.0 * mu * trace + n_assets * mu * mu) / n_assets
    beta = min(beta, delta)
    return (0.0 if beta == 0 else beta / delta), mu


def ewma_covariance(returns: pd.DataFrame, half_life_days: float) -> pd.DataFrame:
    """Exponentially weighted covariance × 252 (RiskMetrics-style, about the weighted mean).

    Weights w_t ∝ 0.5^(age_t / half_life), Σ w_t = 1; Σ = Σ_t w_t (r_t − r̄)(r_t − r̄)ᵀ /
    (1 − Σ w_t²), the unbiased form for reliability weights (equals ddof-1 sample covariance
    as half_life → ∞).
    """
    cov = ewma_covariance_array(returns.to_numpy(dtype=float), half_life_days)
    return pd.DataFrame(cov, index=returns.columns, columns=returns.columns, copy=False)


def ewma_covariance_array(x: np.ndarray, half_life_days: float) -> np.ndarray:
    """``ewma_covariance`` of a days × assets array."""
    if half_life_days <= 0:
        raise StrategyConfigError(f"cov_half_life_days must be > 0, got {half_life_days}")
    age = np.arange(len(x) - 1, -1, -1, dtype=float)
    weights = 0.5 ** (age / half_life_days)
    weights /= weights.sum()
    xc = x - weights @ x
    scaled = xc * np.sqrt(weights)[:, None]
    cov = (scaled.T @ scaled) / (1.0 - float(weights @ weights))
    cov *= ANNUALIZATION_DAYS
    return cov


# ---- settings shared by the optimizing strategies ------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the optimizers consume: usable symbols, annual μ and Σ (Σ repaired to PD)."""

    symbols: pd.Index
    mu: np.ndarray
    cov: np.ndarray
    #: lower Cholesky factor of cov (``estimate(ill_factor=False)``: for an ill-conditioned
    #: cov possibly a stand-in fit only for ``qp.ill_conditioned``, see factor_covariance)
    chol: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class EstimatorSettings:
    """The estimator choices a strategy's ``[strategy.params]`` make (validated on build)."""

    lookback_days: int = 252
    expected_returns: str = "mean"
    covariance: str = "sample"
    returns_span_days: float = 60.0
    cov_half_life_days: float = 63.0
    market_weights: Mapping[str, float] | None = None
    equilibrium_risk_aversion: float = 2.5

    def __post_init__(self) -> None:
        check_int(self.lookback_days, "lookback_days", 2)
        if self.expected_returns not in EXPECTED_RETURN_METHODS:
            raise StrategyConfigError(f"expected_returns: unknown method "
                                      f"{self.expected_returns!r}; accepted: "
                                      f"{', '.join(EXPECTED_RETURN_METHODS)}")
        if self.covariance not in COVARIANCE_METHODS:
            raise StrategyConfigError(f"covariance: unknown method {self.covariance!r}; "
                                      f"accepted: {', '.join(COVARIANCE_METHODS)}")
        check_float(self.returns_span_days, "returns_span_days", 1.0, math.inf)
        check_float(self.cov_half_life_days, "cov_half_life_days", 0.0, math.inf, lo_open=True)
        check_float(self.equilibrium_risk_aversion, "equilibrium_risk_aversion", 0.0, math.inf,
                    lo_open=True)
        check_market_weights(self.market_weights)

    def covariance_of(self, returns: pd.DataFrame) -> np.ndarray:
        """Annual covariance by the configured method, repaired to positive definite."""
        x = returns.to_numpy(dtype=float)
        return self._factored_covariance(x, returns.columns, x.mean(axis=0))[0]

    def _factored_covariance(self, x: np.ndarray, symbols: pd.Index, mean: np.ndarray,
                             overwrite: bool = False, factor: bool = True,
                             ill_factor: bool = True
                             ) -> tuple[np.ndarray, np.ndarray | None]:
        """(Σ, its lower Cholesky factor or None when a Ledoit-Wolf ridge certifies Σ
        positive definite at CERTIFY_MIN_ASSETS or more assets, or — ``factor`` False —
        at any size). ``overwrite``: ``x`` may be centred in place; ``ill_factor``: see
        ``factor_covariance``."""
        cov, ridge = self._raw_covariance(x, mean, overwrite)
        if (ridge is not None and (not factor or len(symbols) >= CERTIFY_MIN_ASSETS)
                and ridge_certifies(cov, ridge, len(x))):
            return cov, None
        # T centred rows span at most T − 1 dimensions: with fewer than N, Σ is singular.
        rank_deficient = ridge is None and len(x) - 1 < len(symbols)
        return factor_covariance(cov, symbols, gram=True, singular=rank_deficient,
                                 ill_factor=ill_factor)

    def _raw_covariance(self, x: np.ndarray, mean: np.ndarray, overwrite: bool
                        ) -> tuple[np.ndarray, float | None]:
        """(Σ by the configured method, unchecked; the Ledoit-Wolf ridge or None)."""
        if self.covariance == "ledoit_wolf":
            return ledoit_wolf_array(x, mean, overwrite)
        if self.covariance == "ewma":
            return ewma_covariance_array(x, self.cov_half_life_days), None
        return sample_covariance_array(x, mean, overwrite), None

    def low_rank_covariance(self, prices: pd.DataFrame
                            ) -> tuple[pd.Index, np.ndarray, float] | None:
        """(usable symbols, V, ridge) with Σ = ridge·I + VᵀV (``ledoit_wolf_low_rank``)
        for a Ledoit-Wolf Σ of at most LOW_RANK_MAX_ROW_SHARE × N returns whose ridge
        certifies it positive definite (``ridge_certifies_diagonal``); else None (then
        ``estimate`` gives the dense Σ)."""
        if self.covariance != "ledoit_wolf":
            return None
        x, symbols, sums = _returns_and_sums(prices, self.lookback_days)
        if len(x) > LOW_RANK_MAX_ROW_SHARE * len(symbols):
            return None
        factor, ridge = ledoit_wolf_low_rank(x, sums / len(x), overwrite=True)
        diag = ridge + np.einsum("ij,ij->j", factor, factor)
        if not ridge_certifies_diagonal(diag, ridge, len(x)):
            return None
        return symbols, factor, ridge

    def unchecked_covariance(self, prices: pd.DataFrame) -> tuple[pd.Index, np.ndarray]:
        """(usable symbols, Σ) without the positive-definite check and factor: for a caller
        that derives another matrix from Σ and checks and factors that one instead
        (Black-Litterman's posterior, which is positive definite whenever Σ is)."""
        x, symbols, sums = _returns_and_sums(prices, self.lookback_days)
        cov, _ = self._raw_covariance(x, sums / len(x), overwrite=True)
        return symbols, cov

    def expected_returns_of(self, returns: pd.DataFrame, cov: np.ndarray) -> np.ndarray:
        """Annual expected returns by the configured method (``cov`` for equilibrium)."""
        x = returns.to_numpy(dtype=float)
        return self._expected_returns(x, returns.columns, cov, x.mean(axis=0))

    def _expected_returns(self, x: np.ndarray, symbols: pd.Index, cov: np.ndarray,
                          mean: np.ndarray) -> np.ndarray:
        if self.expected_returns == "geometric":
            growth = np.log1p(x).sum(axis=0) * (ANNUALIZATION_DAYS / len(x))
            return np.expm1(growth)  # geometric_returns' formula, on the array
        if self.expected_returns == "ewma":
            frame = pd.DataFrame(x, columns=symbols, copy=False)
            return ewma_returns(frame, self.returns_span_days).to_numpy()
        if self.expected_returns == "equilibrium":
            w_mkt = market_weight_vector(self.market_weights, symbols)
            return equilibrium_returns(cov, w_mkt, self.equilibrium_risk_aversion)
        return mean * ANNUALIZATION_DAYS  # mean_returns' formula, on the array

    def estimate(self, prices: pd.DataFrame, with_returns: bool = True,
                 factor: bool = True, ill_factor: bool = True) -> Estimate:
        """Returns window → (symbols, μ, Σ); μ is zeros when ``with_returns`` is False.
        ``factor`` False: the caller needs no Cholesky factor of Σ (risk parity), so a
        Ledoit-Wolf Σ whose ridge certifies it positive definite is not factored.
        ``ill_factor`` False: the caller uses the factor of an ill-conditioned Σ only for
        ``qp.ill_conditioned`` (the optimizers), so a repaired near-singular Σ's may be a
        stand-in (``factor_covariance``).

        The returns array is this call's own: μ is taken from it first (the methods that
        read the returns), then it is centred in place for Σ (one array, one pass less)."""
        x, symbols, sums = _returns_and_sums(prices, self.lookback_days)
        mean = sums / len(x)  # daily (x.mean's bits); shared by Σ and μ
        mu = np.zeros(len(symbols))
        equilibrium = self.expected_returns == "equilibrium"
        if with_returns and not equilibrium:
            mu = self._expected_returns(x, symbols, np.empty(0), mean)
        cov, chol = self._factored_covariance(x, symbols, mean, overwrite=True, factor=factor,
                                              ill_factor=ill_factor)
        if with_returns and equilibrium:
            mu = self._expected_returns(x, symbols, cov, mean)  # π = δΣw reads only Σ
        if with_returns and not np.isfinite(mu).all():  # (zeros otherwise)
            bad = list(symbols[~np.isfinite(mu)])
            raise StrategyError(f"expected returns are not finite for {bad}")
        return Estimate(symbols=symbols, mu=mu, cov=cov, chol=chol)
