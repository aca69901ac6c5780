"""Mean-variance strategies: min_variance, mean_variance, max_sharpe, efficient_risk.

All are long-only by default, fully invested (Σw = 1) with per-asset ``bounds``, and solve
their problem exactly with the active-set QP in ``strategies.qp`` (Markowitz 1952; annual μ
and Σ from ``strategies.estimators``). ``optimize_mean_variance`` is the shared entry point
for other strategies that bring their own μ and Σ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import structlog

from strategies.base import (
    ANNUAL_RATE,
    ANNUAL_VOLATILITY,
    ESTIMATION_MIN_SYMBOLS,
    MAX_ANNUAL_VOLATILITY,
    RISK_FREE_RATE_RANGE,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    finalize_array,
    mapping_symbols,
    register,
    too_few_symbols,
)
from strategies.costed_model import NEGLIGIBLE_TURNOVER
from strategies.costed_qp import LinearTerms, solve_costed_qp
from strategies.covariance_repair import factor_covariance
from strategies.estimators import Estimate, EstimatorSettings
from strategies.frontier import TradingCosts, efficient_risk_weights, max_sharpe_weights
from strategies.qp import check_bounds, polish_weights, solve_qp
from strategies.trade_constraints import (
    TradeSettings,
    linear_terms,
    sector_caps_problem,
    sector_limit_problems,
    validate_trade_settings,
)

log = structlog.get_logger("strategies")
DEFAULT_BOUNDS = (0.0, 1.0)


def optimize_mean_variance(mu: np.ndarray, cov: np.ndarray, risk_aversion: float,
                           lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """argmax wᵀμ − (δ/2)wᵀΣw s.t. Σw = 1, lower ≤ w ≤ upper (Markowitz 1952).

    Args:
        mu: expected returns (annual, any consistent unit), shape (n,).
        cov: covariance in the same units, (n, n); repaired with a warning if not PD.
        risk_aversion: δ > 0 (equivalently λ = 1/δ in min ½wᵀΣw − λμᵀw).
        lower, upper: per-asset weight bounds; infeasible bounds raise StrategyError.
    Returns the weights, feasible to 1e-12 and optimal up to rounding.
    """
    mu = np.asarray(mu, dtype=float)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if not (risk_aversion > 0 and np.isfinite(risk_aversion)):
        raise StrategyError(f"risk_aversion must be a finite number > 0, got {risk_aversion}")
    if not np.isfinite(mu).all():
        raise StrategyError("expected returns contain NaN or inf")
    cov, chol = factor_covariance(cov)
    check_bounds(lower, upper, [f"asset {i}" for i in range(len(mu))])
    return solve_qp(cov, mu / risk_aversion, lower, upper, chol=chol).weights


def validate_bounds(bounds: Any) -> tuple[float, float] | dict[str, tuple[float, float]]:
    """Config check for ``bounds``: a [lo, hi] pair for every asset, or a table
    symbol = [lo, hi] (unlisted symbols get [0, 1]); 0 ≤ lo ≤ hi ≤ 1 (long-only)."""
    if isinstance(bounds, Mapping):
        return {str(sym): _pair(pair, f"bounds.{sym}") for sym, pair in bounds.items()}
    return _pair(bounds, "bounds")


def _pair(pair: Any, key: str) -> tuple[float, float]:
    if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise StrategyConfigError(f"{key} must be a [lower, upper] pair, got {pair!r}")
    lo, hi = (check_float(v, key, 0.0, 1.0) for v in pair)
    if not (0.0 <= lo <= hi <= 1.0):
        raise StrategyConfigError(f"{key} = [{lo}, {hi}] must satisfy 0 ≤ lower ≤ upper ≤ 1")
    return lo, hi


def bound_vectors(bounds: tuple[float, float] | Mapping[str, tuple[float, float]],
                  symbols: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bound arrays aligned with ``symbols``."""
    n = len(symbols)
    if not isinstance(bounds, Mapping):
        return np.full(n, bounds[0]), np.full(n, bounds[1])
    pairs = [bounds.get(str(s), DEFAULT_BOUNDS) for s in symbols]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def fit_problems(strategy: Any, symbols: tuple[str, ...]) -> dict[str, str]:
    """An optimizer's ``universe_problems``: too few symbols for Σ, else ``bounds`` no
    fully invested portfolio satisfies, else sector caps that cannot hold one."""
    problems = too_few_symbols(strategy, symbols) or bounds_problems(strategy.bounds, symbols)
    if problems or not strategy.trade.sector_limits:
        return problems
    lower, upper = bound_vectors(strategy.bounds, pd.Index(symbols, dtype=object))
    return sector_limit_problems(strategy.trade, symbols, lower, upper)


def bounds_problems(bounds: tuple[float, float] | Mapping[str, tuple[float, float]],
                    symbols: tuple[str, ...]) -> dict[str, str]:
    """``{"bounds": reason}`` when no fully invested portfolio of ``symbols`` (the universe
    the strategy sees, at least one symbol) satisfies ``bounds``: ``check_bounds``' verdict
    and wording, the check every run makes on the assets with full history. Upper bounds
    summing below 1 do so on any subset too; lower bounds summing above 1 fail whenever
    every asset has its full history."""
    lower, upper = bound_vectors(bounds, pd.Index(symbols, dtype=object))
    try:
        check_bounds(lower, upper, symbols)
    except StrategyError as exc:
        return {"bounds": str(exc).removeprefix("bounds: ")}
    return {}


@dataclass(frozen=True, slots=True)
class RiskModelStrategy(Strategy):
    """Shared parameters (config keys under ``[strategy.params]``) of the optimizers that
    need only Σ:

    Args:
        lookback_days: daily return observations in the window ending at the as-of row.
        covariance: "sample" (ddof 1), "ledoit_wolf" or "ewma"; annualized × 252.
        cov_half_life_days: half-life in trading days for covariance = "ewma".
        bounds: ``[lo, hi]`` for every asset, or ``{SYMBOL = [lo, hi]}`` (unlisted symbols
            [0, 1]); 0 ≤ lo ≤ hi ≤ 1. Bounds no fully invested portfolio of the universe
            satisfies are refused before the first cycle (``universe_problems``); of the
            assets with full history, a StrategyError at run time.
        turnover_penalty: κ ≥ 0, a proportional trading cost per unit of Σ|w − w_now|
            (e.g. 0.001 = 10 bp), added to the objective: min_variance minimizes
            wᵀΣw + κΣ|w − w_now|, the others subtract it from the expected return. 0 (the
            default) gives exactly the cost-free optimum.
        max_turnover: τ, a cap on Σ|w − w_now| (both legs; 0.2 = trade at most 20 % of
            equity counting buys and sells); None = no cap.
        sectors: ``{SYMBOL = "sector"}``; with sector_limits ``{sector = max weight}`` each
            sector's total weight is capped (linear constraints in the QP). A symbol not
            priced or a limit for an unnamed sector is a config error naming the key;
            caps that cannot hold a fully invested portfolio are a StrategyError.

    w_now is ``target_weights``' ``current_weights`` (fractions of equity by symbol;
    missing symbols hold 0, the rest is cash). When it is None (unknown, e.g. the first
    cycle) turnover_penalty and max_turnover do not apply; sector limits always do.
    """

    name: ClassVar[str] = "risk_model"
    uses_expected_returns: ClassVar[bool] = False
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS

    lookback_days: int = 252
    covariance: str = "sample"
    cov_half_life_days: float = 63.0
    bounds: Any = DEFAULT_BOUNDS
    turnover_penalty: float = 0.0
    max_turnover: float | None = None
    sectors: Mapping[str, str] | None = None
    sector_limits: Mapping[str, float] | None = None
    settings: EstimatorSettings = field(init=False, repr=False, compare=False)
    trade: TradeSettings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", validate_bounds(self.bounds))
        object.__setattr__(self, "settings", self._settings())
        object.__setattr__(self, "trade", validate_trade_settings(
            self.turnover_penalty, self.max_turnover, self.sectors, self.sector_limits))

    def _settings(self) -> EstimatorSettings:
        return EstimatorSettings(lookback_days=self.lookback_days, covariance=self.covariance,
                                 cov_half_life_days=self.cov_half_life_days)

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        bounds = self.bounds if isinstance(self.bounds, Mapping) else None
        return {**mapping_symbols("bounds", bounds), **mapping_symbols("sectors", self.sectors)}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        return fit_problems(self, symbols)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        """Weights from the last ``lookback_days`` returns up to the last row (as-of date);
        assets without full history get 0."""
        # ill_factor False: the QPs and the frontier walk only test an ill-conditioned factor
        est = self.settings.estimate(prices, with_returns=self.uses_expected_returns,
                                     ill_factor=False)
        lower, upper = bound_vectors(self.bounds, est.symbols)
        check_bounds(lower, upper, est.symbols)
        costs, lower = trading_costs(self.trade, est.symbols, prices.columns, lower, upper,
                                     current_weights)
        if costs is None:
            w = polish_weights(self.optimize(est, lower, upper), lower, upper)
        else:
            w = self.optimize_with_costs(est, lower, upper, costs)
        return finalize_array(w, est.symbols, prices.columns, self.name)

    def optimize(self, est: Estimate, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def optimize_with_costs(self, est: Estimate, lower: np.ndarray, upper: np.ndarray,
                            costs: TradingCosts) -> np.ndarray:
        raise NotImplementedError


def trading_costs(trade: TradeSettings, symbols: pd.Index, columns: pd.Index,
                  lower: np.ndarray, upper: np.ndarray, current_weights: pd.Series | None,
                  ) -> tuple[TradingCosts | None, np.ndarray]:
    """The costs and caps of one run, or None when none applies (then the optimizers take
    their cost-free path, bit for bit), and the lower bounds to use. With max_turnover 0
    (or negligible) the only trades allowed invest what is uninvested: {Σ|w − a| ≤ 1 − Σa}
    is exactly {w ≥ a} on the budget, so a is the lower bound and no cap remains (the
    frontier's bracket search did not converge on the cap's degenerate form); when those
    bounds or the sector caps cannot hold, the capped problem says what it needs."""
    kappa = trade.turnover_penalty if current_weights is not None else 0.0
    capped = trade.max_turnover is not None and current_weights is not None
    if kappa == 0 and not capped and not trade.sector_limits:
        return None, lower
    terms = linear_terms(trade, symbols, columns, upper,
                         current_weights if (kappa > 0 or capped) else None)
    if (terms.has_turnover and terms.uninvested > 0
            and terms.max_turnover <= terms.uninvested + NEGLIGIBLE_TURNOVER):
        raised = np.maximum(lower, terms.anchor)
        if _holds(raised, upper, terms):
            terms = replace(terms, max_turnover=np.inf)
            if kappa == 0 and not trade.sector_limits:
                return None, raised
            return TradingCosts(terms=terms, kappa=kappa), raised
    return TradingCosts(terms=terms, kappa=kappa), lower


def _holds(lower: np.ndarray, upper: np.ndarray, terms: LinearTerms) -> bool:
    """A fully invested w ≥ ``lower`` within ``upper`` and the sector caps exists (Σupper
    ≥ 1 was checked with the bounds)."""
    if bool(np.any(lower > upper)) or float(lower.sum()) > 1.0 + 1e-12:
        return False
    return sector_caps_problem(terms.sector_of, terms.sector_caps, lower, upper) is None


def solve_with_costs(cov: np.ndarray, lin: np.ndarray, penalty: float, lower: np.ndarray,
                     upper: np.ndarray, terms: LinearTerms,
                     chol: np.ndarray | None = None) -> np.ndarray:
    """``costed_qp.solve_costed_qp``'s weights (the strategies' one call site)."""
    return solve_costed_qp(cov, lin, penalty, lower, upper, terms, chol=chol).weights


@dataclass(frozen=True, slots=True)
class ReturnModelStrategy(RiskModelStrategy):
    """Shared parameters of the optimizers that also need μ — RiskModelStrategy's, plus:

    Args:
        expected_returns: "mean" (× 252), "geometric" (CAGR), "ewma" or "equilibrium"
            (π = δΣw_mkt); annual simple returns.
        returns_span_days: EWMA span in trading days for expected_returns = "ewma".
        market_weights: ``{SYMBOL = weight}`` for "equilibrium" (omitted: equal weights).
        equilibrium_risk_aversion: δ in π = δΣw_mkt.
    """

    uses_expected_returns: ClassVar[bool] = True

    expected_returns: str = "mean"
    returns_span_days: float = 60.0
    market_weights: Mapping[str, float] | None = None
    equilibrium_risk_aversion: float = 2.5

    def _settings(self) -> EstimatorSettings:
        return EstimatorSettings(
            lookback_days=self.lookback_days, covariance=self.covariance,
            cov_half_life_days=self.cov_half_life_days, expected_returns=self.expected_returns,
            returns_span_days=self.returns_span_days, market_weights=self.market_weights,
            equilibrium_risk_aversion=self.equilibrium_risk_aversion)

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return {**RiskModelStrategy.symbols_referenced(self),
                **mapping_symbols("market_weights", self.market_weights)}


@register("min_variance")
@dataclass(frozen=True, slots=True)
class MinVariance(RiskModelStrategy):
    """Global minimum variance: argmin wᵀΣw s.t. Σw = 1, bounds."""

    name: ClassVar[str] = "min_variance"

    def optimize(self, est: Estimate, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        return solve_qp(est.cov, np.zeros(len(est.mu)), lower, upper, chol=est.chol).weights

    def optimize_with_costs(self, est: Estimate, lower: np.ndarray, upper: np.ndarray,
                            costs: TradingCosts) -> np.ndarray:
        # min wᵀΣw + κ‖w − a‖₁  ⇔  min ½wᵀΣw + (κ/2)‖w − a‖₁
        return solve_with_costs(est.cov, np.zeros(len(est.mu)), 0.5 * costs.kappa, lower,
                                upper, costs.terms, est.chol)


@register("mean_variance")
@dataclass(frozen=True, slots=True)
class MeanVariance(ReturnModelStrategy):
    """Markowitz utility: argmax wᵀμ − (δ/2)wᵀΣw with δ = ``risk_aversion``, Σw = 1, bounds."""

    name: ClassVar[str] = "mean_variance"
    risk_aversion: float = 2.5

    def __post_init__(self) -> None:
        RiskModelStrategy.__post_init__(self)
        check_float(self.risk_aversion, "risk_aversion", 0.0, math.inf, lo_open=True)

    def optimize(self, est: Estimate, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        return solve_qp(est.cov, est.mu / self.risk_aversion, lower, upper,
                        chol=est.chol).weights

    def optimize_with_costs(self, est: Estimate, lower: np.ndarray, upper: np.ndarray,
                            costs: TradingCosts) -> np.ndarray:
        # max μᵀw − κ‖w − a‖₁ − (δ/2)wᵀΣw  ⇔  min ½wᵀΣw − (μ/δ)ᵀw + (κ/δ)‖w − a‖₁
        return solve_with_costs(est.cov, est.mu / self.risk_aversion,
                                costs.kappa / self.risk_aversion, lower, upper, costs.terms,
                                est.chol)


@register("max_sharpe")
@dataclass(frozen=True, slots=True)
class MaxSharpe(ReturnModelStrategy):
    """Tangency portfolio: argmax (wᵀμ − r_f)/√(wᵀΣw), r_f = ``risk_free_rate`` (annual
    fraction in RISK_FREE_RATE_RANGE, the backtest's range).

    When no feasible portfolio beats r_f the ratio is meaningless: falls back to
    min_variance and logs ``max_sharpe_fallen_back``.
    """

    name: ClassVar[str] = "max_sharpe"
    risk_free_rate: float = 0.0

    def __post_init__(self) -> None:
        RiskModelStrategy.__post_init__(self)
        check_float(self.risk_free_rate, "risk_free_rate", *RISK_FREE_RATE_RANGE,
                    meaning=ANNUAL_RATE)

    def optimize(self, est: Estimate, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        return self._max_sharpe(est, lower, upper, None)

    def optimize_with_costs(self, est: Estimate, lower: np.ndarray, upper: np.ndarray,
                            costs: TradingCosts) -> np.ndarray:
        return self._max_sharpe(est, lower, upper, costs)

    def _max_sharpe(self, est: Estimate, lower: np.ndarray, upper: np.ndarray,
                    costs: TradingCosts | None) -> np.ndarray:
        w = max_sharpe_weights(est.mu, est.cov, lower, upper, self.risk_free_rate, est.chol,
                               costs)
        if w is None:
            log.warning("max_sharpe_fallen_back", fallback="min_variance",
                        reason="no feasible portfolio's expected return exceeds risk_free_rate",
                        risk_free_rate=self.risk_free_rate,
                        best_expected_return=float(np.max(est.mu)))
            if costs is not None:
                return solve_with_costs(est.cov, np.zeros(len(est.mu)), 0.5 * costs.kappa,
                                        lower, upper, costs.terms, est.chol)
            return solve_qp(est.cov, np.zeros(len(est.mu)), lower, upper,
                            chol=est.chol).weights
        return w


@register("efficient_risk")
@dataclass(frozen=True, slots=True)
class EfficientRisk(ReturnModelStrategy):
    """Highest expected return with annual volatility ≤ ``target_volatility`` (a fraction in
    (0, MAX_ANNUAL_VOLATILITY]: 0.10 = 10 %; Σw = 1, bounds); a target below the minimum
    achievable volatility is a StrategyError."""

    name: ClassVar[str] = "efficient_risk"
    target_volatility: float = 0.10

    def __post_init__(self) -> None:
        RiskModelStrategy.__post_init__(self)
        check_float(self.target_volatility, "target_volatility", 0.0, MAX_ANNUAL_VOLATILITY,
                    lo_open=True, meaning=ANNUAL_VOLATILITY)

    def optimize(self, est: Estimate, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        return efficient_risk_weights(est.mu, est.cov, lower, upper, self.target_volatility,
                                      est.chol)

    def optimize_with_costs(self, est: Estimate, lower: np.ndarray, upper: np.ndarray,
                            costs: TradingCosts) -> np.ndarray:
        return efficient_risk_weights(est.mu, est.cov, lower, upper, self.target_volatility,
                                      est.chol, costs)
