"""Risk-based allocation: equal risk contribution (``risk_parity``) and hierarchical risk
parity (``hrp``). Both need only the covariance; neither takes ``bounds`` (ERC with a
budget vector has exactly one long-only, fully invested solution, and HRP's recursive
bisection fixes every weight), nor ``expected_returns``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.spatial.distance import squareform

from strategies.base import (
    ESTIMATION_MIN_SYMBOLS,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    finalize_array,
    mapping_symbols,
    register,
    too_few_symbols,
)
from strategies.estimators import EstimatorSettings
from strategies.free_set import cho_solve_lower, cholesky_lower

ERC_MAX_ITERATIONS = 100
ERC_WARM_SWEEPS = 12  # fixed-point sweeps y ← √(y·b/Σy) before Newton (matrix-vector only)
# A Newton step this deep in the quadratic region (decrement², taken in full) lets the next
# step reuse its Hessian factor: H changes by O(‖Δy‖), so the reused-factor step still
# squares the error to rounding (a chord step; Kelley 2003, "Solving Nonlinear Equations
# with Newton's Method", §2.3.3), and saves an N³/3 factorization.
ERC_REUSE_DECREMENT = 1e-6
LINKAGE_METHODS = ("single", "complete", "average", "ward")


@dataclass(frozen=True, slots=True)
class LowRankCovariance:
    """Σ = ridge·I + VᵀV with V (k × n), k < n (a Ledoit-Wolf Σ of k returns kept factored,
    ``EstimatorSettings.low_rank_covariance``): products with Σ cost 2kn flops, and the
    Newton systems (Σ + D)x = g are solved by Woodbury in the k-dimensional space."""

    factor: np.ndarray
    ridge: float


class _Covariance:
    """The products and Newton solves ``risk_budget_weights`` needs, for a dense Σ or a
    LowRankCovariance."""

    def __init__(self, cov: np.ndarray | LowRankCovariance) -> None:
        self.cov = cov

    def times(self, y: np.ndarray) -> np.ndarray:
        """Σy."""
        if isinstance(self.cov, LowRankCovariance):
            return self.cov.ridge * y + (self.cov.factor @ y) @ self.cov.factor
        return self.cov @ y

    def variances(self) -> np.ndarray:
        if isinstance(self.cov, LowRankCovariance):
            v = self.cov.factor
            return self.cov.ridge + np.einsum("ij,ij->j", v, v)
        return np.diag(self.cov)


def risk_budget_weights(cov: np.ndarray | LowRankCovariance,
                        budgets: np.ndarray) -> np.ndarray:
    """Long-only weights with risk contributions w_i(Σw)_i ∝ b_i, Σw = 1.

    Spinu (2013), "An algorithm for computing risk parity weights": the unique minimizer
    y* of the strictly convex f(y) = ½yᵀΣy − Σ b_i ln y_i over y > 0 satisfies
    y_i(Σy)_i = b_i, so w = y*/Σy*. Start: the inverse-volatility ray's optimum, refined
    by a few fixed-point sweeps y ← √(y·b/Σy) (matrix-vector products only, used while
    Σy > 0). Then damped Newton (Hessian Σ + diag(b/y²)); full steps once the Newton
    decrement² < 0.1 (the quadratic-convergence region), and after a full step with
    decrement² ≤ ERC_REUSE_DECREMENT the next steps reuse its factor while each cuts the
    residual 100-fold; stop when y_i(Σy)_i = b_i to 1e-12 relative (Σb = 1).
    ``cov`` dense or a LowRankCovariance (the same iterations, Σ applied in factored form).
    """
    op = _Covariance(cov)
    b = budgets / budgets.sum()
    y = _warm_start(op, b)
    factor, reuse, last = None, False, np.inf
    for _ in range(ERC_MAX_ITERATIONS):
        sy = op.times(y)
        residual = float(np.max(np.abs(y * sy - b)))
        if residual <= 1e-12 * b.max():  # y_i(Σy)_i = b_i, relative 1e-12
            break
        grad = sy - b / y
        if factor is None or not reuse or residual > 1e-2 * last:  # no fast progress: refresh
            factor = _newton_factor(cov, b, y)
        last = residual
        step = -_newton_solve(factor, grad)
        decrement = -float(grad @ step)
        shrink = step < 0
        alpha = min(1.0, 0.99 * float(np.min(-y[shrink] / step[shrink]))) if shrink.any() \
            else 1.0
        if decrement > 0.1:  # damped phase: Armijo backtracking (f is self-concordant)
            value = _spinu_objective(op, b, y)
            while alpha > 1e-12 and (_spinu_objective(op, b, y + alpha * step)
                                     > value - 0.25 * alpha * decrement):
                alpha *= 0.5
        y = y + alpha * step
        reuse = alpha == 1.0 and decrement <= ERC_REUSE_DECREMENT
    else:
        raise StrategyError("risk_parity: Newton iterations did not converge")
    return y / y.sum()


def _warm_start(op: _Covariance, b: np.ndarray) -> np.ndarray:
    """The inverse-volatility ray's optimum, then up to ERC_WARM_SWEEPS fixed-point
    sweeps y ← √(y·b/Σy) while every (Σy)_i > 0, each rescaled to its ray's optimum
    t² yᵀΣy = Σb = 1 (one matrix-vector product per sweep: Σ(ty) = tΣy)."""
    y = b / np.sqrt(op.variances())
    sy = op.times(y)
    scale = np.sqrt(1.0 / float(y @ sy))
    y, sy = y * scale, sy * scale
    for _ in range(ERC_WARM_SWEEPS):
        if (sy <= 0).any():
            break
        y = np.sqrt(y * b / sy)
        sy = op.times(y)
        scale = np.sqrt(1.0 / float(y @ sy))
        y, sy = y * scale, sy * scale
    return y


# A Newton factor: the dense Hessian's Cholesky factor (scipy's cho_factor pair), or for
# a LowRankCovariance (D^(-1/2), W = VD^(-1/2), Cholesky factor of I + WWᵀ).
NewtonFactor = tuple[np.ndarray, bool] | tuple[np.ndarray, np.ndarray, np.ndarray]


def _newton_factor(cov: np.ndarray | LowRankCovariance, b: np.ndarray,
                   y: np.ndarray) -> NewtonFactor:
    """A factorization of the Spinu objective's Hessian Σ + diag(b/y²): Cholesky for a
    dense Σ; for Σ = ridge·I + VᵀV the Woodbury pieces of (D + VᵀV)⁻¹ with
    D = ridge + b/y²: D^(-1/2)(I − Wᵀ(I + WWᵀ)⁻¹W)D^(-1/2), W = VD^(-1/2) (Golub & Van
    Loan 2013, §2.1.4): a k×k syrk and Cholesky (k returns) instead of an n×n one."""
    try:
        if isinstance(cov, LowRankCovariance):
            root = 1.0 / np.sqrt(cov.ridge + b / (y * y))  # D^(-1/2)
            scaled = cov.factor * root  # W = VD^(-1/2) (k × n)
            capacitance = scaled @ scaled.T  # WWᵀ: one syrk
            capacitance.flat[:: len(capacitance) + 1] += 1.0
            return root, scaled, cholesky_lower(capacitance)
        hess = cov.copy()
        hess.flat[:: len(y) + 1] += b / (y * y)
        return cho_factor(hess, lower=True, check_finite=False, overwrite_a=True)
    except LinAlgError as exc:
        raise StrategyError("risk_parity: Newton system not positive definite") from exc


def _newton_solve(factor: NewtonFactor, grad: np.ndarray) -> np.ndarray:
    """(Σ + diag(b/y²))⁻¹ grad from ``_newton_factor``'s result."""
    if len(factor) == 3:  # D^(-1/2)(I − Wᵀ(I + WWᵀ)⁻¹W)D^(-1/2) grad
        root, scaled, chol = factor
        g = root * grad
        return root * (g - cho_solve_lower(chol, scaled @ g) @ scaled)
    return cho_solve(factor, grad, check_finite=False)


def _spinu_objective(op: _Covariance, b: np.ndarray, y: np.ndarray) -> float:
    return 0.5 * float(y @ op.times(y)) - float(b @ np.log(y))


def hrp_weights(cov: np.ndarray, method: str = "single") -> np.ndarray:
    """Hierarchical risk parity (López de Prado 2016, "Building diversified portfolios
    that outperform out of sample", J. Portfolio Mgmt 42(4)).

    1. distance d_ij = √(½(1 − ρ_ij)) from the correlation of ``cov``;
    2. agglomerative clustering of d (scipy linkage, ``method``; the paper uses single);
    3. quasi-diagonalization: order assets by the dendrogram's leaves;
    4. recursive bisection: split each contiguous cluster in halves, give the halves
       α = 1 − V₀/(V₀+V₁) and 1 − α, with V the variance of the half's inverse-variance
       portfolio.
    """
    sigma = np.sqrt(np.diag(cov))
    corr = np.clip(cov / np.outer(sigma, sigma), -1.0, 1.0)
    dist = np.sqrt(np.clip(0.5 * (1.0 - corr), 0.0, None))
    np.fill_diagonal(dist, 0.0)
    order = leaves_list(linkage(squareform(dist, checks=False), method=method))
    return _recursive_bisection(cov[np.ix_(order, order)])[np.argsort(order)]


def _recursive_bisection(cov: np.ndarray) -> np.ndarray:
    """Recursive bisection of quasi-diagonalized ``cov`` (López de Prado's getRecBipart),
    one tree level at a time. Clusters are contiguous index ranges, so the variance of a
    range's inverse-variance portfolio, Σ_ij v_i v_j C_ij / (Σ_i v_i)² with v = 1/diag(C),
    comes from 2-D prefix sums (in extended precision, so block sums keep ~1e-14 relative
    accuracy) in O(1) per cluster."""
    n = len(cov)
    inv_var = 1.0 / np.diag(cov)
    scaled = (cov * inv_var[:, None] * inv_var[None, :]).astype(np.longdouble)
    prefix = np.zeros((n + 1, n + 1), dtype=np.longdouble)
    prefix[1:, 1:] = scaled.cumsum(axis=0).cumsum(axis=1)
    inv_prefix = np.concatenate([[0.0], np.cumsum(inv_var, dtype=np.longdouble)])

    def ivp_variance(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        block = prefix[hi, hi] - prefix[lo, hi] - prefix[hi, lo] + prefix[lo, lo]
        return np.asarray(block / (inv_prefix[hi] - inv_prefix[lo]) ** 2, dtype=float)

    weights = np.empty(n)
    lo, hi, mass = np.array([0]), np.array([n]), np.array([1.0])
    while lo.size:
        leaf = hi - lo == 1
        weights[lo[leaf]] = mass[leaf]
        lo, hi, mass = lo[~leaf], hi[~leaf], mass[~leaf]
        mid = lo + (hi - lo) // 2
        v_left, v_right = ivp_variance(lo, mid), ivp_variance(mid, hi)
        alpha = 1.0 - v_left / (v_left + v_right)
        lo, hi = np.concatenate([lo, mid]), np.concatenate([mid, hi])
        mass = np.concatenate([mass * alpha, mass * (1.0 - alpha)])
    return weights


def _check_covariance(lookback_days: int, covariance: str,
                      cov_half_life_days: float) -> EstimatorSettings:
    return EstimatorSettings(lookback_days=lookback_days, covariance=covariance,
                             cov_half_life_days=cov_half_life_days)


def _singular_covariance(covariance: str, returns: int, n_symbols: int) -> str | None:
    """What is wrong with a plain (sample or EWMA) covariance of ``returns`` daily returns of
    ``n_symbols`` assets when it is singular: its centred returns span at most returns − 1
    dimensions, so from ``returns`` ≤ ``n_symbols`` on. None for Ledoit-Wolf (its ridge keeps
    Σ positive definite) or enough returns."""
    if covariance == "ledoit_wolf" or returns > n_symbols:
        return None
    return (f"the {_method_name(covariance)} covariance of {returns} days is singular for "
            f"{n_symbols} symbols; use covariance = \"ledoit_wolf\" or lookback_days above "
            f"{n_symbols}")


def _method_name(covariance: str) -> str:
    return "EWMA" if covariance == "ewma" else covariance


def _budget_vector(budgets: Mapping[str, float] | None, symbols: pd.Index) -> np.ndarray:
    """Risk budgets over ``symbols`` (unlisted: 1); only the listed symbols are looked up
    (iterating a 500-symbol str Index in Python costs ~0.8 ms)."""
    b = np.ones(len(symbols))
    for symbol, budget in (budgets or {}).items():
        if symbol in symbols:
            b[symbols.get_loc(symbol)] = float(budget)
    return b


@register("risk_parity")
@dataclass(frozen=True, slots=True)
class RiskParity(Strategy):
    """Equal risk contribution (Maillard, Roncalli & Teïletche 2010): w_i(Σw)_i equal for
    every asset, or ∝ ``budgets`` — a table symbol = relative risk budget > 0, unlisted
    symbols 1 (so ``{SPY = 2}`` gives SPY twice the risk of each other asset); long-only,
    Σw = 1."""

    name: ClassVar[str] = "risk_parity"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS
    lookback_days: int = 252
    covariance: str = "sample"
    cov_half_life_days: float = 63.0
    budgets: Mapping[str, float] | None = None
    settings: EstimatorSettings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", _check_covariance(
            self.lookback_days, self.covariance, self.cov_half_life_days))
        if self.budgets is not None:
            if not isinstance(self.budgets, Mapping) or not self.budgets:
                raise StrategyConfigError("budgets must be a table symbol = risk budget")
            for symbol, budget in self.budgets.items():
                check_float(budget, f"budgets.{symbol}", 0.0, math.inf, lo_open=True,
                            meaning="a relative risk budget")

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return mapping_symbols("budgets", self.budgets)

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        """Too few symbols for Σ, else a sample/EWMA Σ singular for this many symbols (ERC
        on it does not converge, or its weights follow the repair's ridge, not the data)."""
        few = too_few_symbols(self, symbols)
        singular = _singular_covariance(self.covariance, self.lookback_days, len(symbols))
        return few or ({"covariance": singular} if singular else {})

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        # No factor of Σ needed: a certified Ledoit-Wolf Σ skips its Cholesky, and one of
        # few returns stays factored (ridge·I + VᵀV: Woodbury Newton steps).
        low_rank = self.settings.low_rank_covariance(prices)
        if low_rank is not None:
            symbols, v, ridge = low_rank
            cov: np.ndarray | LowRankCovariance = LowRankCovariance(v, ridge)
        else:
            est = self.settings.estimate(prices, with_returns=False, factor=False)
            symbols, cov = est.symbols, est.cov
        b = _budget_vector(self.budgets, symbols)
        try:
            w = risk_budget_weights(cov, b)
        except StrategyError as exc:  # a singular or near-singular Σ: name the fix
            if self.covariance == "ledoit_wolf":
                raise
            returns = min(self.lookback_days, len(prices) - 1)
            why = _singular_covariance(self.covariance, returns, len(symbols)) or (
                f"the {_method_name(self.covariance)} covariance is near-singular (assets "
                "moving together or barely moving?); use covariance = \"ledoit_wolf\"")
            raise StrategyError(f"{exc}: {why}") from exc
        return finalize_array(w, symbols, prices.columns, self.name)


@register("hrp")
@dataclass(frozen=True, slots=True)
class HierarchicalRiskParity(Strategy):
    """López de Prado's hierarchical risk parity; ``linkage`` one of single (default),
    complete, average, ward."""

    name: ClassVar[str] = "hrp"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS
    lookback_days: int = 252
    covariance: str = "sample"
    cov_half_life_days: float = 63.0
    linkage: str = "single"
    settings: EstimatorSettings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", _check_covariance(
            self.lookback_days, self.covariance, self.cov_half_life_days))
        if self.linkage not in LINKAGE_METHODS:
            raise StrategyConfigError(f"linkage: unknown method {self.linkage!r}; accepted: "
                                      f"{', '.join(LINKAGE_METHODS)}")

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        est = self.settings.estimate(prices, with_returns=False, factor=False)
        return finalize_array(hrp_weights(est.cov, self.linkage), est.symbols, prices.columns,
                              self.name)
