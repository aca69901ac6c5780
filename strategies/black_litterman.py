"""Black-Litterman: equilibrium prior + investor views → posterior → mean-variance.

Black & Litterman (1992); notation of He & Litterman (1999) and Idzorek (2005).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import structlog

from strategies.base import (
    ANNUAL_RETURN,
    ESTIMATION_MIN_SYMBOLS,
    MAX_ANNUAL_RETURN,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    finalize_array,
    mapping_symbols,
    register,
)
from strategies.covariance_repair import factor_covariance
from strategies.estimators import EstimatorSettings
from strategies.market_portfolio import (
    check_market_weights,
    equilibrium_returns,
    market_weight_vector,
)
from strategies.mean_variance import (
    DEFAULT_BOUNDS,
    bound_vectors,
    fit_problems,
    solve_with_costs,
    trading_costs,
    validate_bounds,
)
from strategies.qp import check_bounds, polish_weights, solve_qp
from strategies.trade_constraints import TradeSettings, validate_trade_settings

log = structlog.get_logger("strategies")
VIEW_KEYS = {"assets", "return", "confidence"}
# Up to this many views, Σ_BL's update is one rank-one BLAS pass per view (``_subtract_gram``).
RANK_ONE_UPDATES_MAX_VIEWS = 4


@dataclass(frozen=True, slots=True)
class View:
    """One view: Σ_j assets[j]·r_j = expected_return (annual), optional Idzorek confidence."""

    assets: tuple[tuple[str, float], ...]
    expected_return: float
    confidence: float | None = None


def parse_views(views: Sequence[Mapping[str, Any]]) -> tuple[View, ...]:
    """Config check for ``views`` (see BlackLitterman's docstring for the shape)."""
    if isinstance(views, (str, Mapping)) or not isinstance(views, Sequence):
        raise StrategyConfigError("views must be a list of tables "
                                  "{assets = {SYMBOL = weight, ...}, return = r}")
    parsed = []
    for k, view in enumerate(views, start=1):
        key = f"views[{k}]"
        if not isinstance(view, Mapping):
            raise StrategyConfigError(f"{key} must be a table, got {view!r}")
        unknown = set(view) - VIEW_KEYS
        missing = {"assets", "return"} - set(view)
        if unknown or missing:
            raise StrategyConfigError(
                f"{key}: unknown key(s) {sorted(unknown)} / missing key(s) {sorted(missing)}; "
                f"a view is {{assets = {{SYMBOL = weight}}, return = r, confidence = c}}")
        assets = view["assets"]
        if not isinstance(assets, Mapping) or not assets:
            raise StrategyConfigError(f"{key}.assets must be a non-empty table SYMBOL = weight")
        pairs = tuple((str(s), check_float(v, f"{key}.assets.{s}", -math.inf, math.inf))
                      for s, v in assets.items())
        zero = [s for s, v in pairs if v == 0]
        if zero:
            raise StrategyConfigError(f"{key}.assets.{zero[0]}: expected a non-zero weight, got 0")
        ret = check_float(view["return"], f"{key}.return", -MAX_ANNUAL_RETURN,
                          MAX_ANNUAL_RETURN, meaning=ANNUAL_RETURN)
        conf = view.get("confidence")
        confidence = None if conf is None else check_float(conf, f"{key}.confidence", 0.0,
                                                           1.0, lo_open=True)
        parsed.append(View(pairs, ret, confidence))
    return tuple(parsed)


def black_litterman_posterior(cov: np.ndarray, prior: np.ndarray, picks: np.ndarray,
                              view_returns: np.ndarray, omega_diag: np.ndarray,
                              tau: float, overwrite: bool = False
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of returns.

    μ_BL = [(τΣ)⁻¹ + PᵀΩ⁻¹P]⁻¹[(τΣ)⁻¹π + PᵀΩ⁻¹Q],  Σ_BL = Σ + [(τΣ)⁻¹ + PᵀΩ⁻¹P]⁻¹,
    computed in the equivalent (Woodbury) form of He & Litterman (1999), which needs only
    a K×K solve and allows Ω = 0 (100%-confident views):
    μ_BL = π + τΣPᵀ(PτΣPᵀ + Ω)⁻¹(Q − Pπ),  Σ_BL = (1+τ)Σ − τΣPᵀ(PτΣPᵀ + Ω)⁻¹PτΣ.
    ``overwrite``: ``cov`` is the caller's to turn into Σ_BL in place (no N×N copy).
    """
    if picks.shape[0] == 0:
        return prior.copy(), _scaled(cov, 1.0 + tau, overwrite)
    tsp = tau * (cov @ picks.T)  # τΣPᵀ, N×K
    middle = picks @ tsp + np.diag(omega_diag)
    try:
        gain = np.linalg.solve(middle, view_returns - picks @ prior)
    except np.linalg.LinAlgError as exc:
        raise StrategyError("black_litterman: views with confidence 1 are linearly "
                            "dependent (PτΣPᵀ + Ω is singular); drop or loosen one") from exc
    mu = prior + tsp @ gain
    post = _scaled(cov, 1.0 + tau, overwrite)
    try:  # τΣPᵀ(PτΣPᵀ + Ω)⁻¹PτΣ = UUᵀ with U = τΣPᵀC⁻ᵀ, CCᵀ = PτΣPᵀ + Ω
        chol = np.linalg.cholesky(middle)
        spread = np.linalg.solve(chol, tsp.T).T
        _subtract_gram(post, spread)
        return mu, post
    except np.linalg.LinAlgError:  # PτΣPᵀ + Ω singular to rounding, yet solvable
        post -= tsp @ np.linalg.solve(middle, tsp.T)
        return mu, 0.5 * (post + post.T)


def _scaled(matrix: np.ndarray, factor: float, in_place: bool) -> np.ndarray:
    """factor·matrix, in place when allowed (the same products either way)."""
    if in_place:
        matrix *= factor
        return matrix
    return factor * matrix


def _subtract_gram(post: np.ndarray, spread: np.ndarray) -> None:
    """post −= spread·spreadᵀ in place, exactly symmetric: a rank-one BLAS update per
    column for a few views (each one pass over post, where numpy's N×K product writes a
    full N×N temporary: 0.1 vs ~0.9 ms at N = 500), one syrk otherwise. A rank-one kernel
    may round an entry and its mirror differently (an FMA in its vector body, none in the
    tail: 1e-20 apart with OpenBLAS's Haswell kernel on AMD EPYC), so its lower triangle
    is then copied over the upper one (~0.2 ms at N = 500)."""
    if spread.shape[1] > RANK_ONE_UPDATES_MAX_VIEWS or not post.flags.c_contiguous:
        post -= spread @ spread.T  # a syrk: exactly symmetric, no symmetrizing pass
        return
    from scipy.linalg.blas import dger

    for column in np.asarray(spread.T, order="C"):
        dger(-1.0, column, column, a=post.T, overwrite_a=1)  # post.T: the same block, F order
    _mirror_lower(post)


_MIRROR_BLOCK = 128  # rows per block of ``_mirror_lower`` (fastest of 64, 128, 256 at N = 500)


@lru_cache(maxsize=8)
def _strict_upper(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(size, 1)


def _mirror_lower(matrix: np.ndarray) -> None:
    """Copy the strict lower triangle of a square matrix over its upper one, in place,
    block by block (a whole-matrix transposed copy goes through a temporary)."""
    n = len(matrix)
    for lo in range(0, n, _MIRROR_BLOCK):
        hi = min(lo + _MIRROR_BLOCK, n)
        diagonal = matrix[lo:hi, lo:hi]
        upper = _strict_upper(hi - lo)
        diagonal[upper] = diagonal.T[upper]
        if hi < n:
            matrix[lo:hi, hi:] = matrix[hi:, lo:hi].T


def view_uncertainty(cov: np.ndarray, picks: np.ndarray, tau: float,
                     confidences: Sequence[float | None]) -> np.ndarray:
    """diag(Ω): ω_k = p_kτΣp_kᵀ (He & Litterman 1999) for views without a confidence,
    ω_k = ((1 − c_k)/c_k)·p_kτΣp_kᵀ with Idzorek's (2005) confidence c_k ∈ (0, 1]
    (the closed form of Walters 2014, "The Black-Litterman model in detail", as in
    PyPortfolioOpt): c = 1 makes the view exact, c = ½ equals the default."""
    base = tau * np.sum((picks @ cov) * picks, axis=1)  # p_kΣp_kᵀ by one GEMM (not einsum)
    scale = np.array([1.0 if c is None else (1.0 - c) / c for c in confidences])
    return base * scale


def _position(symbols: pd.Index, symbol: str) -> int:
    """The integer position of ``symbol`` in the (unique) usable symbols."""
    found = symbols.get_loc(symbol)
    if not isinstance(found, int):
        raise StrategyError(f"symbol {symbol!r} appears more than once in the prices")
    return found


@register("black_litterman")
@dataclass(frozen=True, slots=True)
class BlackLitterman(Strategy):
    """Black-Litterman posterior returns, then long-only mean-variance with δ.

    Prior π = δΣw_mkt (``market_weights`` table SYMBOL = weight, normalized; equal when
    omitted), ``tau`` τ scales the prior's uncertainty. Views, in TOML::

        views = [
          {assets = {SPY = 1}, return = 0.08, confidence = 0.6},   # absolute: r_SPY = 8%
          {assets = {SPY = 1, TLT = -1}, return = 0.02},            # relative: SPY − TLT = 2%
        ]

    ``assets`` is the view's row of P (any non-zero weights), ``return`` its Q entry
    (annual fraction, |return| ≤ MAX_ANNUAL_RETURN: 0.08 = 8 %), ``confidence``
    (optional, (0, 1]) sets ω by Idzorek's method, otherwise ω = pτΣpᵀ. A view naming a
    symbol absent from the prices is an error; one naming a symbol excluded for short
    history is dropped with a ``view_dropped`` warning.
    Then maximize wᵀμ_BL − (δ/2)wᵀΣ_BLw with δ = ``risk_aversion``, Σw = 1, ``bounds``,
    and — as in mean_variance — ``turnover_penalty`` κ (subtract κΣ|w − w_now| from the
    return), ``max_turnover``, ``sectors`` and ``sector_limits`` (see RiskModelStrategy;
    without ``current_weights`` the penalty and turnover cap do not apply).
    """

    name: ClassVar[str] = "black_litterman"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS
    lookback_days: int = 252
    covariance: str = "sample"
    cov_half_life_days: float = 63.0
    bounds: Any = DEFAULT_BOUNDS
    views: Sequence[Mapping[str, Any]] = ()
    tau: float = 0.05
    risk_aversion: float = 2.5
    market_weights: Mapping[str, float] | None = None
    turnover_penalty: float = 0.0
    max_turnover: float | None = None
    sectors: Mapping[str, str] | None = None
    sector_limits: Mapping[str, float] | None = None
    settings: EstimatorSettings = field(init=False, repr=False, compare=False)
    parsed_views: tuple[View, ...] = field(init=False, repr=False, compare=False)
    trade: TradeSettings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", EstimatorSettings(
            lookback_days=self.lookback_days, covariance=self.covariance,
            cov_half_life_days=self.cov_half_life_days))
        object.__setattr__(self, "bounds", validate_bounds(self.bounds))
        object.__setattr__(self, "parsed_views", parse_views(self.views))
        check_float(self.tau, "tau", 0.0, math.inf, lo_open=True)
        check_float(self.risk_aversion, "risk_aversion", 0.0, math.inf, lo_open=True)
        check_market_weights(self.market_weights)
        object.__setattr__(self, "trade", validate_trade_settings(
            self.turnover_penalty, self.max_turnover, self.sectors, self.sector_limits))

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        views = {f"views[{k}].assets": tuple(s for s, _ in view.assets)
                 for k, view in enumerate(self.parsed_views, start=1)}
        bounds = self.bounds if isinstance(self.bounds, Mapping) else None
        return {**views, **mapping_symbols("bounds", bounds),
                **mapping_symbols("market_weights", self.market_weights),
                **mapping_symbols("sectors", self.sectors)}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        return fit_problems(self, symbols)

    def posterior(self, prices: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        """(usable symbols, μ_BL, Σ_BL) from the window ending at the last row. Σ is not
        checked or factored here: Σ_BL ⪰ Σ, so the one check and factorization of Σ_BL
        (``target_weights``) repairs it when Σ needed it (one Cholesky, not two)."""
        symbols, sample = self.settings.unchecked_covariance(prices)
        prior = equilibrium_returns(sample, market_weight_vector(self.market_weights,
                                                                 symbols),
                                    self.risk_aversion)
        picks, targets, confidences = self._view_matrix(prices.columns, symbols)
        omega = view_uncertainty(sample, picks, self.tau, confidences)
        mu, cov = black_litterman_posterior(sample, prior, picks, targets, omega, self.tau,
                                            overwrite=True)  # ``sample`` is ours
        return symbols, mu, cov

    def _view_matrix(self, columns: pd.Index, symbols: pd.Index
                     ) -> tuple[np.ndarray, np.ndarray, list[float | None]]:
        # Only the views' symbols are looked up (iterating a 500-symbol pandas Index to
        # build a dict cost ~0.4 ms a call).
        # (get_indexer on a str Index costs ~60 µs; get_loc ~0.3 µs a symbol.)
        named = list(dict.fromkeys(s for view in self.parsed_views for s, _ in view.assets))
        position = {s: _position(symbols, s) for s in named if s in symbols}
        rows, targets, confidences = [], [], []
        for k, view in enumerate(self.parsed_views, start=1):
            unknown = [s for s, _ in view.assets if s not in columns]
            if unknown:
                raise StrategyError(f"views[{k}] names {unknown}, not among the priced "
                                    f"symbols {list(columns)}")
            excluded = [s for s, _ in view.assets if s not in position]
            if excluded:
                log.warning("view_dropped", view=k, symbols=excluded,
                            reason="insufficient history in the lookback window")
                continue
            row = np.zeros(len(symbols))
            for s, weight in view.assets:
                row[position[s]] += weight
            rows.append(row)
            targets.append(view.expected_return)
            confidences.append(view.confidence)
        picks = np.array(rows).reshape(len(rows), len(symbols))
        return picks, np.array(targets, dtype=float), confidences

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        symbols, mu, cov = self.posterior(prices)
        lower, upper = bound_vectors(self.bounds, symbols)
        check_bounds(lower, upper, symbols)
        # Σ_BL is exactly symmetric (syrk-made Σ minus a syrk update): skip that scan. The
        # QPs only test an ill-conditioned factor (ill_factor False).
        cov, chol = factor_covariance(cov, symbols, gram=True, ill_factor=False)
        costs, lower = trading_costs(self.trade, symbols, prices.columns, lower, upper,
                                     current_weights)
        if costs is None:
            w = solve_qp(cov, mu / self.risk_aversion, lower, upper, chol=chol).weights
            w = polish_weights(w, lower, upper)
        else:
            w = solve_with_costs(cov, mu / self.risk_aversion, costs.kappa / self.risk_aversion,
                                 lower, upper, costs.terms, chol)
        return finalize_array(w, symbols, prices.columns, self.name)
