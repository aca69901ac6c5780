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
from typing import Any, Literal

import numpy as np
import pandas as pd

from strategies.base import WEIGHT_SUM_TOLERANCE
from strategies.errors import InputDataError
from strategies.estimators import returns_from_closes

RiskMethod = Literal["historical", "parametric"]
BISECTION_TOLERANCE = 1e-10
REMAINDER_NOISE = 1e-12  # a remainder over the safe asset's cap by less went all to it (sums' noise)
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


def linear_quantile(r: np.ndarray, q: float) -> float:
    """numpy's default (``linear``, Hyndman & Fan 1996 type 7) quantile of a 1-D NaN-free
    array, bit for bit, from one partial sort: ``np.quantile`` costs ~10× more per call and
    the risk step takes one or more every cycle."""
    n = r.size
    virtual = (n - 1) * q  # numpy's virtual index for the linear method
    lo = math.floor(virtual)
    hi = min(lo + 1, n - 1)
    part = np.partition(r, (lo, hi) if hi != lo else lo)
    a, b = float(part[lo]), float(part[hi])
    t, diff = virtual - lo, b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t  # numpy's _lerp, both branches


def historical_var(port_returns: np.ndarray | pd.Series, confidence: float,
                   horizon_days: int = 1) -> float:
    """VaR = −quantile(r_p, 1 − β) (numpy linear interpolation) × √h."""
    r = _checked(port_returns, confidence, horizon_days)
    return -linear_quantile(r, 1 - confidence) * math.sqrt(horizon_days) + 0.0


def historical_cvar(port_returns: np.ndarray | pd.Series, confidence: float,
                    horizon_days: int = 1) -> float:
    """CVaR = −mean(r_p[r_p ≤ −VaR_1day]) × √h (the tail at or beyond the 1-day VaR)."""
    r = _checked(port_returns, confidence, horizon_days)
    threshold = linear_quantile(r, 1 - confidence)
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


def below_drawdown_limit(equity: Any, peak: Any, max_drawdown: float) -> Any:
    """The drawdown kill switch's test: equity more than ``max_drawdown`` below a positive peak
    (floats, or arrays elementwise: the backtest's scan tests its skipped days alike)."""
    return (peak > 0) & (equity < peak * (1 - max_drawdown))


def peak_after_transfers(peak: float, equity: float, net_transfer: float) -> float:
    """The equity peak rescaled for money moved in or out (``net_transfer``, already in
    ``equity``): peak × equity / (equity − net_transfer), so the drawdown is the one the
    account shows without that money (a withdrawal is not a loss, a deposit not a gain).
    The money is taken to have moved when this is called: the market's move since the
    last cycle counts as if made with it, which a time-weighted return would split at the
    transfer. The peak is kept when none is recorded yet (0); an account that held nothing
    before a deposit starts afresh from ``equity``; never below 0 (a margin account's
    equity can be)."""
    before = equity - net_transfer
    if peak <= 0:
        return peak
    if before <= 0:
        return max(equity, 0.0)
    return max(peak * equity / before, 0.0)


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
    """(VaR, CVaR) by ``limits.method``; the historical pair shares one quantile."""
    if limits.method == "historical":
        r = _checked(r, limits.confidence, limits.horizon_days)
        threshold = linear_quantile(r, 1 - limits.confidence)
        scale = math.sqrt(limits.horizon_days)
        return -threshold * scale + 0.0, float(-r[r <= threshold].mean()) * scale + 0.0
    return (parametric_var(r, limits.confidence, limits.horizon_days),
            parametric_cvar(r, limits.confidence, limits.horizon_days))


@dataclass(frozen=True, slots=True)
class _Book:
    """The risk step's working arrays: ``symbols`` (the input's, then the safe asset if it
    was absent), their weights ``w``, and the simple daily returns ``R`` (rows × ``cols``)
    of the symbols that carry weight or are the safe asset, in ``symbols`` order."""

    symbols: list[str]
    cols: np.ndarray  # positions in ``symbols`` of R's columns
    returns: np.ndarray
    safe_pos: int | None

    def portfolio(self, w: np.ndarray) -> np.ndarray:
        """r_p = R·w over the columns with returns (every other weight is 0)."""
        if self.cols.size == 0:
            return np.zeros(self.returns.shape[0])
        return self.returns @ w[self.cols]

    def as_dict(self, w: np.ndarray) -> dict[str, float]:
        return {s: float(v) for s, v in zip(self.symbols, w.tolist(), strict=True)}


def _book(weights: pd.Series, prices: pd.DataFrame, limits: RiskLimits) -> tuple[_Book, np.ndarray]:
    """The working arrays and the input weights, checked. A symbol that carries weight (or
    is the safe asset) but lacks prices or a full lookback window is an error naming it;
    zero-weight symbols need no history."""
    symbols = weights.index.tolist()
    w = (weights.to_numpy() if weights.dtype == np.float64  # read-only view: never written
         else weights.to_numpy(dtype=float, na_value=np.nan))
    if not (w >= 0).all():  # one check for both (NaN compares false)
        if np.isnan(w).any():
            raise InputDataError(f"weights: {symbols[int(np.argmax(np.isnan(w)))]!r} is NaN")
        raise InputDataError(
            f"weights: {symbols[int(np.argmax(w < 0))]!r} is negative; long-only weights")
    if float(w.sum()) > 1 + WEIGHT_SUM_TOLERANCE:
        raise InputDataError(f"weights sum to {float(w.sum()):.12g} > 1 (fractions of equity)")
    safe = limits.safe_asset
    if safe is not None and safe not in symbols:
        symbols.append(safe)
        w = np.append(w, 0.0)
    safe_pos = None if safe is None else symbols.index(safe)
    cols = np.flatnonzero(w != 0)
    if safe_pos is not None and w[safe_pos] == 0:
        cols = np.sort(np.append(cols, safe_pos))
    columns = prices.columns.tolist()
    if columns == symbols[:len(columns)] and cols.size and cols[-1] < len(columns):
        picked: list[int] | np.ndarray = cols  # weights indexed like the prices (the cycle)
    else:
        col_of = {c: j for j, c in enumerate(columns)}
        needed = [symbols[i] for i in cols]
        absent = [sym for sym in needed if sym not in col_of]
        if absent:
            raise InputDataError(f"no price history for weighted symbol(s) {absent}")
        picked = [col_of[sym] for sym in needed]
    window = prices.to_numpy(dtype=float)[-(limits.lookback_days + 1):]
    if len(window) < 3:
        raise InputDataError(f"need at least 3 price rows to estimate VaR, got {len(window)}")
    # ``cols`` is sorted and unique: as long as the price columns, it is every one of them
    every = picked is cols and len(cols) == window.shape[1]
    closes = window if every else window[:, picked]  # a view, not a copy, then
    incomplete = np.isnan(closes).any(axis=0)
    if incomplete.any():
        short = [symbols[cols[i]] for i in np.flatnonzero(incomplete)]
        raise InputDataError(
            f"symbol(s) {short} lack a full {limits.lookback_days}-day price history (window "
            f"ending {prices.index[-1].date()}) but carry weight or are the safe asset; shorten "
            "lookback_days or drop them"
        )
    return _Book(symbols, cols, returns_from_closes(closes), safe_pos), w


def capped_weights(w: np.ndarray, cap: float, safe_pos: int | None) -> tuple[np.ndarray, float]:
    """Each weight capped at ``cap``; the excess to the safe asset (position ``safe_pos``)
    up to its own cap, the rest to cash. Returns the weights and what went to the safe
    asset (the start-up check of a fixed target against the order guard uses it too)."""
    capped = np.minimum(w, cap)
    excess = float((w - capped).sum())
    to_safe = 0.0
    if safe_pos is not None:
        to_safe = min(excess, max(cap - float(capped[safe_pos]), 0.0))
        capped[safe_pos] += to_safe
    return capped, to_safe


def _cap_weights(book: _Book, w: np.ndarray,
                 limits: RiskLimits) -> tuple[np.ndarray, RiskIntervention | None]:
    """Cap each weight at max_weight (``capped_weights``), as a logged intervention."""
    cap = limits.max_weight
    if cap is None or not (w > cap).any():
        return w, None
    capped, to_safe = capped_weights(w, cap, book.safe_pos)
    after = {"weights": book.as_dict(capped), "excess_to_safe": to_safe,
             "excess_to_cash_weight": float((w - np.minimum(w, cap)).sum()) - to_safe}
    return capped, RiskIntervention("max_weight", {"weights": book.as_dict(w)}, after)


def _scaled_with_safe(w: np.ndarray, safe_pos: int, k: float, cap: float | None) -> np.ndarray:
    """Risky weights × k; the safe asset takes the remainder up to ``cap``, rest is cash."""
    risky = np.ones(len(w), dtype=bool)
    risky[safe_pos] = False
    out = np.where(risky, w * k, w)
    safe_w = float(w[safe_pos]) + float(w[risky].sum()) * (1 - k)
    out[safe_pos] = safe_w if cap is None else min(safe_w, max(cap, float(w[safe_pos])))
    return out


def _remainder_split(safe: str, w_safe0: float, remainder: float, cap: float
                     ) -> tuple[str, float]:
    """Where the remainder of a VaR scaling went when the safe asset takes it up to ``cap``
    (``_scaled_with_safe``): ``safe``, ``"<safe>+cash"`` (its cap bit) or ``"cash"`` (it was
    at its cap already), and the weight that went to cash (0.0 when none did, float noise
    of the sums aside)."""
    if w_safe0 + remainder <= cap + REMAINDER_NOISE:
        return safe, 0.0
    to_safe = cap - w_safe0
    if to_safe <= REMAINDER_NOISE:
        return "cash", remainder
    return f"{safe}+cash", remainder - to_safe


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


def _limit_var(book: _Book, w: np.ndarray, limits: RiskLimits, limit: float,
               figures: tuple[float, float],
               ) -> tuple[np.ndarray, RiskIntervention, tuple[float, float]]:
    """Scale the risky weights by k so VaR meets ``limit``.

    Cash remainder: r_p(k) = k·r_p, and both VaR estimators are positively homogeneous of
    degree 1 (a quantile of k·r is k times the quantile; μ and σ scale by k), so
    k = max_var / VaR exactly. Safe-asset remainder: VaR(k) is not homogeneous; k is
    found by bisection to 1e-10, keeping VaR(k) ≤ limit. If the safe asset alone breaches
    the limit, every weight (safe asset included) is scaled with the remainder in cash.
    """
    var_now, cvar_now = figures
    safe = book.safe_pos
    before = {"var": var_now, "cvar": cvar_now, "max_var": limit, "weights": book.as_dict(w)}
    remainder_to = "cash"
    to_cash = 0.0  # of the remainder, when the safe asset's max_weight sent some to cash
    note = ""
    k = limit / var_now
    scaled = w * k
    scaled_all = True  # every weight scaled by k, the remainder in cash
    if safe is not None:
        # r_p(k) = k·r_risky + w_safe(k)·r_safe: precomputed so each step is one quantile
        risky_w = w.copy()
        risky_w[safe] = 0.0
        r_risky = book.portfolio(risky_w)
        r_safe = book.returns[:, int(np.flatnonzero(book.cols == safe)[0])]
        w_safe0 = float(w[safe])
        risky_sum = float(risky_w.sum())
        cap = math.inf if limits.max_weight is None else max(limits.max_weight, w_safe0)

        def var_at(k: float) -> float:
            w_safe = min(w_safe0 + (1 - k) * risky_sum, cap)
            return _risk_pair(k * r_risky + w_safe * r_safe, limits)[0]

        if var_at(0.0) <= limit:
            k = _bisect_scale(var_at, limit)
            scaled, scaled_all = _scaled_with_safe(w, safe, k, limits.max_weight), False
            remainder_to, to_cash = _remainder_split(book.symbols[safe], w_safe0,
                                                     risky_sum * (1 - k), cap)
            if remainder_to == "cash":
                note = (f"safe asset {book.symbols[safe]} already at its max_weight {cap:g}; "
                        "remainder goes to cash")
            elif to_cash:
                note = (f"safe asset {book.symbols[safe]} takes the remainder up to its "
                        f"max_weight {cap:g}; the rest goes to cash")
        else:
            note = f"safe asset {book.symbols[safe]} alone breaches max_var; remainder goes to cash"
    var_after, cvar_after = _risk_pair(book.portfolio(scaled), limits)
    if scaled_all and var_after > limit:  # float rounding: land on the safe side
        k *= 1 - 1e-12
        scaled = w * k
        var_after, cvar_after = _risk_pair(book.portfolio(scaled), limits)
    after = {"var": var_after, "cvar": cvar_after, "k": k, "remainder_to": remainder_to,
             "weights": book.as_dict(scaled)}
    if to_cash:
        after["remainder_cash_weight"] = to_cash
    if note:
        after["note"] = note
    return scaled, RiskIntervention("max_var", before, after), (var_after, cvar_after)


def apply_risk_limits(weights: pd.Series, prices: pd.DataFrame,
                      limits: RiskLimits) -> RiskDecision:
    """Apply max_weight, then max_var, to target weights (fractions of equity).

    Returns weights indexed like the input (the safe asset appended if it was absent and
    receives weight), VaR/CVaR before and after, and every intervention with its figures.
    The work is on numpy arrays over the weighted symbols' returns window (this runs in
    every cycle of every backtest day).
    """
    book, w_in = _book(weights, prices, limits)
    var_before, cvar_before = _risk_pair(book.portfolio(w_in), limits)
    interventions: list[RiskIntervention] = []
    w, capped = _cap_weights(book, w_in, limits)
    var_now, cvar_now = var_before, cvar_before
    if capped is not None:
        interventions.append(capped)
        var_now, cvar_now = _risk_pair(book.portfolio(w), limits)
    if limits.max_var is not None and var_now > limits.max_var:
        w, limited, (var_now, cvar_now) = _limit_var(book, w, limits, limits.max_var,
                                                     (var_now, cvar_now))
        interventions.append(limited)
    index = weights.index
    if len(book.symbols) > len(weights):  # the safe asset was appended
        if w[-1] == 0:
            w = w[:-1]  # ... and received nothing: leave it out
        else:
            index = index.append(pd.Index([book.symbols[-1]]))
    if not interventions and weights.dtype == np.float64:
        out = weights  # within every limit (the usual case): the input, untouched
    else:
        out = pd.Series(w, index=index, dtype=float, copy=False)
    return RiskDecision(out, float(var_now), float(cvar_now), var_before, cvar_before,
                        tuple(interventions))
