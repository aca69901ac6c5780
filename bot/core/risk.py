"""The risk step: ex-ante VaR/CVaR of target weights and the limits that scale them (pure).

Returns are simple daily returns of adjusted closes (``strategies.estimators``); the
portfolio return is r_p = R·w with cash earning 0. VaR and CVaR are positive loss
fractions of equity at confidence β. Historical VaR uses numpy's default (linear)
quantile; parametric uses the normal model (Jorion, *Value at Risk*, 3rd ed., ch. 5;
CVaR: Rockafellar & Uryasev 2000). Multi-day figures use the square-root-of-time rule on
the whole 1-day figure, VaR_h = √h · VaR_1 (μ is scaled by √h too, not by h), which is
exact only for i.i.d. zero-mean returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd

from strategies.base import WEIGHT_SUM_TOLERANCE
from strategies.errors import InputDataError
from strategies.estimators import simple_returns

RiskMethod = Literal["historical", "parametric"]
BISECTION_TOLERANCE = 1e-10
_STANDARD_NORMAL = NormalDist()  # stdlib: exact to ~1e-15, no scipy.stats import


def _checked(port_returns: np.ndarray | pd.Series, confidence: float,
             horizon_days: int) -> np.ndarray:
    r = np.asarray(port_returns, dtype=float).ravel()
    if r.size < 2:
        raise InputDataError(f"need at least 2 portfolio returns for VaR, got {r.size}")
    if np.isnan(r).any():
        raise InputDataError(f"portfolio returns contain NaN at position {int(np.argmax(np.isnan(r)))}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be ≥ 1, got {horizon_days!r}")
    return r


def historical_var(port_returns: np.ndarray | pd.Series, confidence: float,
                   horizon_days: int = 1) -> float:
    """VaR = −quantile(r_p, 1 − β) (numpy linear interpolation) × √h."""
    r = _checked(port_returns, confidence, horizon_days)
    return float(-np.quantile(r, 1 - confidence)) * math.sqrt(horizon_days) + 0.0


def historical_cvar(port_returns: np.ndarray | pd.Series, confidence: float,
                    horizon_days: int = 1) -> float:
    """CVaR = −mean(r_p[r_p ≤ −VaR_1day]) × √h (the tail at or beyond the 1-day VaR)."""
    r = _checked(port_returns, confidence, horizon_days)
    threshold = np.quantile(r, 1 - confidence)
    return float(-r[r <= threshold].mean()) * math.sqrt(horizon_days) + 0.0


def _moments(r: np.ndarray) -> tuple[float, float]:
    """μ and σ (sample, ddof = 1) of daily portfolio returns."""
    return float(r.mean()), float(r.std(ddof=1))


def parametric_var(port_returns: np.ndarray | pd.Series, confidence: float,
                   horizon_days: int = 1) -> float:
    """Normal VaR = −(μ + σ·z_{1−β}) × √h, μ and σ of daily r_p (σ with ddof = 1)."""
    mu, sigma = _moments(_checked(port_returns, confidence, horizon_days))
    return -(mu + sigma * _STANDARD_NORMAL.inv_cdf(1 - confidence)) * math.sqrt(horizon_days) + 0.0


def parametric_cvar(port_returns: np.ndarray | pd.Series, confidence: float,
                    horizon_days: int = 1) -> float:
    """Normal CVaR = (−μ + σ·φ(z_β)/(1 − β)) × √h."""
    mu, sigma = _moments(_checked(port_returns, confidence, horizon_days))
    tail = _STANDARD_NORMAL.pdf(_STANDARD_NORMAL.inv_cdf(confidence)) / (1 - confidence)
    return (-mu + sigma * tail) * math.sqrt(horizon_days) + 0.0


def portfolio_returns(returns: pd.DataFrame, weights: pd.Series) -> np.ndarray:
    """r_p = R·w: assets without a weight get 0; cash earns 0.

    Raises ValueError when a symbol carrying weight has no returns column, or when a
    used return is NaN.
    """
    missing = [str(s) for s, w in weights.items() if w != 0 and s not in returns.columns]
    if missing:
        raise InputDataError(f"no returns for weighted symbol(s) {missing}")
    w = weights.reindex(returns.columns, fill_value=0.0).to_numpy(dtype=float)
    values = returns.to_numpy(dtype=float)
    used = values[:, w != 0]
    if np.isnan(used).any():
        col = returns.columns[w != 0][int(np.argmax(np.isnan(used).any(axis=0)))]
        raise InputDataError(f"returns of {col!r} contain NaN; fill or exclude it explicitly")
    return used @ w[w != 0]


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits on target weights.

    Args:
        max_var: VaR limit, fraction of equity over ``horizon_days``; None = no limit.
        confidence: β of VaR/CVaR, e.g. 0.95.
        method: ``historical`` or ``parametric`` (normal).
        horizon_days: h of the √h scaling.
        lookback_days: daily returns used for the estimate.
        max_weight: cap per asset, fraction of equity; None = no cap.
        safe_asset: symbol receiving what the limits take off (up to its own cap);
            None = cash.
    """

    max_var: float | None = None
    confidence: float = 0.95
    method: RiskMethod = "historical"
    horizon_days: int = 1
    lookback_days: int = 252
    max_weight: float | None = None
    safe_asset: str | None = None

    def __post_init__(self) -> None:
        if self.max_var is not None and not (math.isfinite(self.max_var) and self.max_var > 0):
            raise ValueError(f"risk max_var must be a number > 0 or unset, got {self.max_var!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"risk confidence must be in (0, 1), got {self.confidence!r}")
        if self.method not in ("historical", "parametric"):
            raise ValueError(
                f"risk method must be 'historical' or 'parametric', got {self.method!r}")
        if self.horizon_days < 1:
            raise ValueError(f"risk horizon_days must be ≥ 1, got {self.horizon_days!r}")
        if self.lookback_days < 2:
            raise ValueError(f"risk lookback_days must be ≥ 2, got {self.lookback_days!r}")
        if self.max_weight is not None and not 0 < self.max_weight <= 1:
            raise ValueError(f"risk max_weight must be in (0, 1] or unset, got {self.max_weight!r}")
        if self.safe_asset is not None and not self.safe_asset:
            raise ValueError("risk safe_asset must be a symbol or unset, got an empty string")


@dataclass(frozen=True, slots=True)
class RiskIntervention:
    """One limit that changed the weights, with the figures before and after (for the
    caller's ``risk_limited`` log event)."""

    rule: str  # "max_weight" or "max_var"
    before: dict[str, object]
    after: dict[str, object]


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """Weights after the limits, their VaR/CVaR (``limits.method``, horizon) before and
    after, and the interventions made (empty when within limits)."""

    weights: pd.Series
    var: float
    cvar: float
    var_before: float
    cvar_before: float
    interventions: tuple[RiskIntervention, ...]


def _risk_pair(r: np.ndarray, limits: RiskLimits) -> tuple[float, float]:
    if limits.method == "historical":
        return (historical_var(r, limits.confidence, limits.horizon_days),
                historical_cvar(r, limits.confidence, limits.horizon_days))
    return (parametric_var(r, limits.confidence, limits.horizon_days),
            parametric_cvar(r, limits.confidence, limits.horizon_days))


def _as_dict(weights: pd.Series) -> dict[str, float]:
    return {str(k): float(v) for k, v in weights.items()}


def _cap_weights(weights: pd.Series,
                 limits: RiskLimits) -> tuple[pd.Series, RiskIntervention | None]:
    """Cap each weight at max_weight; the excess goes to the safe asset up to its own cap,
    the rest to cash."""
    cap = limits.max_weight
    if cap is None or not (weights > cap).any():
        return weights, None
    capped = weights.clip(upper=cap)
    excess = float((weights - capped).sum())
    to_safe = 0.0
    safe = limits.safe_asset
    if safe is not None:
        room = cap - float(capped.get(safe, 0.0))
        to_safe = min(excess, max(room, 0.0))
        capped = capped.copy()
        capped.loc[safe] = float(capped.get(safe, 0.0)) + to_safe
    after = {"weights": _as_dict(capped), "excess_to_safe": to_safe,
             "excess_to_cash": excess - to_safe}
    return capped, RiskIntervention("max_weight", {"weights": _as_dict(weights)}, after)


def _scaled_with_safe(weights: pd.Series, safe: str, k: float, cap: float | None) -> pd.Series:
    """Risky weights × k; the safe asset takes the remainder up to ``cap``, rest is cash."""
    risky = weights.index != safe
    out = weights.copy()
    freed = float(weights[risky].sum()) * (1 - k)
    out[risky] = weights[risky] * k
    safe_w = float(weights.get(safe, 0.0)) + freed
    out.loc[safe] = safe_w if cap is None else min(safe_w, max(cap, float(weights.get(safe, 0.0))))
    return out


def _bisect_scale(var_at: Callable[[float], float], limit: float) -> float:
    """Largest-side k in [0, 1] with VaR(k) ≤ limit, given VaR(0) ≤ limit < VaR(1)."""
    lo, hi = 0.0, 1.0
    while hi - lo > BISECTION_TOLERANCE:
        mid = 0.5 * (lo + hi)
        if var_at(mid) <= limit:
            lo = mid
        else:
            hi = mid
    return lo


def _limit_var(weights: pd.Series, returns: pd.DataFrame, limits: RiskLimits,
               limit: float, figures: tuple[float, float],
               ) -> tuple[pd.Series, RiskIntervention, tuple[float, float]]:
    """Scale the risky weights by k so VaR meets ``limit``.

    Cash remainder: r_p(k) = k·r_p, and both VaR estimators are positively homogeneous of
    degree 1 (a quantile of k·r is k times the quantile; μ and σ scale by k), so
    k = max_var / VaR exactly. Safe-asset remainder: VaR(k) is not homogeneous; k is
    found by bisection to 1e-10, keeping VaR(k) ≤ limit. If the safe asset alone breaches
    the limit, every weight (safe asset included) is scaled with the remainder in cash.
    """
    var_now, cvar_now = figures
    safe = limits.safe_asset
    before = {"var": var_now, "cvar": cvar_now, "max_var": limit, "weights": _as_dict(weights)}
    remainder_to = "cash"
    note = ""
    k = limit / var_now
    scaled = weights * k
    if safe is not None:
        # r_p(k) = k·r_risky + w_safe(k)·r_safe: precomputed so each step is one quantile
        r_risky = portfolio_returns(returns, weights.drop(safe, errors="ignore"))
        r_safe = returns[safe].to_numpy(dtype=float)
        w_safe0 = float(weights.get(safe, 0.0))
        risky_sum = float(weights.drop(safe, errors="ignore").sum())
        cap = math.inf if limits.max_weight is None else max(limits.max_weight, w_safe0)

        def var_at(k: float) -> float:
            w_safe = min(w_safe0 + (1 - k) * risky_sum, cap)
            return _risk_pair(k * r_risky + w_safe * r_safe, limits)[0]

        if var_at(0.0) <= limit:
            k = _bisect_scale(var_at, limit)
            scaled = _scaled_with_safe(weights, safe, k, limits.max_weight)
            remainder_to = safe
        else:
            note = f"safe asset {safe} alone breaches max_var; remainder goes to cash"
    var_after, cvar_after = _risk_pair(portfolio_returns(returns, scaled), limits)
    if remainder_to == "cash" and var_after > limit:  # float rounding: land on the safe side
        k *= 1 - 1e-12
        scaled = weights * k
        var_after, cvar_after = _risk_pair(portfolio_returns(returns, scaled), limits)
    after = {"var": var_after, "cvar": cvar_after, "k": k, "remainder_to": remainder_to,
             "weights": _as_dict(scaled)}
    if note:
        after["note"] = note
    return scaled, RiskIntervention("max_var", before, after), (var_after, cvar_after)


def _returns_for(weights: pd.Series, prices: pd.DataFrame, limits: RiskLimits) -> pd.DataFrame:
    """Returns over the lookback for the weighted symbols and the safe asset.

    A symbol that carries weight (or is the safe asset) but lacks prices or a full
    lookback window is an error naming it. Zero-weight symbols without full history are
    left out. ``simple_returns`` needs two assets: a one-asset portfolio borrows another
    complete column of ``prices`` (weight 0, so it does not change r_p).
    """
    symbols = [str(s) for s in weights.index]
    if limits.safe_asset is not None and limits.safe_asset not in symbols:
        symbols.append(limits.safe_asset)
    # plain dicts and sets: a per-symbol pandas lookup costs µs, × 3 × the universe a call
    weight_of = {str(k): float(v) for k, v in weights.items()}
    needed = [s for s in symbols if s == limits.safe_asset or weight_of.get(s, 0.0) != 0]
    priced = set(prices.columns)
    absent = [s for s in needed if s not in priced]
    if absent:
        raise InputDataError(f"no price history for weighted symbol(s) {absent}")
    window = prices.iloc[-(limits.lookback_days + 1):]
    complete = dict(zip(window.columns, window.notna().all().to_numpy(), strict=True))
    short = [s for s in needed if not complete[s]]
    if short:
        raise InputDataError(
            f"symbol(s) {short} lack a full {limits.lookback_days}-day price history (window "
            f"ending {window.index[-1]}) but carry weight or are the safe asset; shorten "
            "lookback_days or drop them"
        )
    columns = [s for s in symbols if s in priced and complete[s]]
    if len(columns) < 2:
        spare = [c for c in prices.columns if complete[c] and c not in columns]
        columns += spare[:2 - len(columns)]
    return simple_returns(prices.loc[:, columns], limits.lookback_days)


def apply_risk_limits(weights: pd.Series, prices: pd.DataFrame,
                      limits: RiskLimits) -> RiskDecision:
    """Apply max_weight, then max_var, to target weights (fractions of equity).

    Returns weights indexed like the input (the safe asset appended if it was absent and
    receives weight), VaR/CVaR before and after, and every intervention with its figures.
    """
    w_in = weights.astype(float)
    if w_in.isna().any():
        raise InputDataError(f"weights: {w_in.index[w_in.isna()][0]!r} is NaN")
    if (w_in < 0).any():
        raise InputDataError(f"weights: {w_in.index[w_in < 0][0]!r} is negative; long-only weights")
    if float(w_in.sum()) > 1 + WEIGHT_SUM_TOLERANCE:
        raise InputDataError(f"weights sum to {float(w_in.sum()):.12g} > 1 (fractions of equity)")
    returns = _returns_for(w_in, prices, limits)
    var_before, cvar_before = _risk_pair(portfolio_returns(returns, w_in), limits)
    interventions: list[RiskIntervention] = []
    w, capped = _cap_weights(w_in, limits)
    if capped is not None:
        interventions.append(capped)
    var_now, cvar_now = _risk_pair(portfolio_returns(returns, w), limits)
    if limits.max_var is not None and var_now > limits.max_var:
        w, limited, (var_now, cvar_now) = _limit_var(w, returns, limits, limits.max_var,
                                                     (var_now, cvar_now))
        interventions.append(limited)
    safe = limits.safe_asset
    if safe is not None and safe not in weights.index and float(w.get(safe, 0.0)) == 0:
        w = w.drop(safe, errors="ignore")  # appended only when it receives weight
    return RiskDecision(w, float(var_now), float(cvar_now), var_before, cvar_before,
                        tuple(interventions))
