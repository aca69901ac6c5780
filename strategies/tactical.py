"""Tactical and dynamic strategies: momentum, trend filter, mean reversion, volatility
targeting, core-satellite.

Wrappers (``trend_filter``, ``vol_target``, ``core_satellite``, and optionally
``mean_reversion``) take nested strategy specs — ``"name"`` or ``{name=..., params={...}}``
— built with ``strategies.base.create_nested``; a built ``Strategy`` object is accepted
too, for the Python API. Every output is indexed by the price columns (0 = not held);
weight not invested is cash. They run the nested strategy without the portfolio's current
weights and change its weights, so a nested ``turnover_penalty`` / ``max_turnover`` is
refused when the wrapper is built (``refuse_turnover_settings``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import structlog

from strategies.base import (
    ANNUAL_VOLATILITY,
    ESTIMATION_MIN_SYMBOLS,
    MAX_ANNUAL_VOLATILITY,
    UNIVERSE_SEEN,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    check_int,
    create_nested,
    finalize_weights,
    nested_symbols,
    nested_universe_problems,
    register,
    too_few_symbols,
)
from strategies.estimators import EstimatorSettings, simple_returns
from strategies.static import asof_row, inverse_volatility_weights

log = structlog.get_logger("strategies")

StrategySpec = Mapping[str, Any] | str | Strategy


def build_nested(spec: StrategySpec, key: str, wrapper: str | None = None) -> Strategy:
    """A nested strategy from a config spec or an already built strategy object.

    ``wrapper``: the name of a wrapper that transforms (or may transform) the nested
    strategy's weights and so runs it without the portfolio's current weights; a nested
    strategy with turnover settings is then refused (``refuse_turnover_settings``). None:
    the wrapper passes ``current_weights`` on and keeps the nested weights as they are.
    """
    if spec is None:
        raise StrategyConfigError(f"{key}: a nested strategy is required, e.g. "
                                  f"{key} = {{name = \"equal_weight\"}}")
    if not isinstance(spec, (str, Mapping)) and isinstance(spec, Strategy):
        strategy = spec
    else:
        strategy = create_nested(spec, key)
    if wrapper is not None:
        refuse_turnover_settings(strategy, key, wrapper)
    return strategy


# Parameters that act on the trade from the portfolio's current weights (mean_variance's
# family: ``turnover_penalty`` κ, ``max_turnover`` τ), each with its "not set" value.
TURNOVER_SETTINGS: tuple[tuple[str, object], ...] = (("max_turnover", None),
                                                     ("turnover_penalty", 0.0))
# Where a wrapper keeps its built nested strategies: (config key, attribute).
NESTED_ATTRIBUTES = (("base", "_base"), ("core", "_core"), ("satellite", "_satellite"),
                     ("regime_strategy", "_strategy"))


def refuse_turnover_settings(strategy: Strategy, key: str, wrapper: str,
                             outermost: Strategy | None = None) -> None:
    """StrategyConfigError naming ``KEY.params.PARAM`` when the nested ``strategy`` sets a
    turnover parameter. A wrapper that scales, filters or mixes its nested strategy's
    weights runs it without ``current_weights``, so κ and τ would be silently ignored
    (the optimizer applies neither without them); passing the weights on would not help
    either, since the trade is the wrapper's output less the current weights, not what the
    nested strategy capped or penalized. Strategies nested deeper are checked too (through
    a pass-through such as regime_kmeans: ``outermost`` is the one nested in the wrapper)."""
    outermost = outermost or strategy
    for child_key, attr in NESTED_ATTRIBUTES:  # a nested pass-through's own (regime_kmeans)
        child = getattr(strategy, attr, None)
        if isinstance(child, Strategy):
            refuse_turnover_settings(child, f"{key}.params.{child_key}", wrapper, outermost)
    for param, unset in TURNOVER_SETTINGS:
        value = getattr(strategy, param, unset)
        if value is None or value == unset:
            continue
        raise StrategyConfigError(
            f"{key}.params.{param}: a strategy nested in {wrapper} is not given the "
            f"portfolio's weights (and {wrapper} changes the weights it returns), so its "
            f"turnover settings would be ignored; remove {param} here, and either "
            f"{_unwrapped_use(strategy, outermost, wrapper)} to cap or penalize turnover, or "
            f"set [guards] max_turnover_per_cycle to block a cycle that trades more")


# the places a strategy is run with the portfolio's weights (what its turnover settings need)
GIVEN_THE_WEIGHTS = ("[strategy], [strategy].fallback and a regime_kmeans regime_strategy are "
                     "each given the portfolio's weights")


def _unwrapped_use(strategy: Strategy, outermost: Strategy, wrapper: str) -> str:
    """How to keep ``strategy``'s turnover settings: put what is nested in the wrapper
    (``outermost``: ``strategy`` itself, or a pass-through holding it) where the wrapper
    is, whichever place that is (the main strategy, the fallback, a regime_strategy)."""
    if outermost is strategy:
        return f"use {strategy.name!r} in {wrapper}'s place ({GIVEN_THE_WEIGHTS})"
    return (f"use {outermost.name!r} in {wrapper}'s place ({GIVEN_THE_WEIGHTS}, and "
            f"{outermost.name} passes them on to {strategy.name!r})")


def nested_weights(strategy: Strategy, prices: pd.DataFrame, key: str,
                   current_weights: pd.Series | None = None) -> pd.Series:
    """Run a nested strategy and align its output to the price columns. ``current_weights``
    only for a wrapper that returns the nested weights as they are (``regime_kmeans``)."""
    w = strategy.target_weights(prices, current_weights)
    extra = [s for s in w.index if s not in prices.columns]
    if extra:
        raise StrategyError(f"{key}: nested strategy {strategy.name!r} returned weights for "
                            f"symbols without a price column: {extra}")
    return w.reindex(prices.columns, fill_value=0.0).astype(float)


def check_safe_asset(value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise StrategyConfigError(f"safe_asset: expected a symbol string, got {value!r}")


def move_to_safe(weights: pd.Series, freed: float, safe_asset: str | None,
                 prices: pd.DataFrame, strategy: str) -> pd.Series:
    """Add ``freed`` weight to ``safe_asset`` (or leave it as cash when None).

    A safe asset missing from the universe is an error on every call, not only on the day
    weight first moves to it, so a misconfiguration shows up at the first cycle.
    """
    if safe_asset is None:
        return weights
    if safe_asset not in prices.columns:
        raise StrategyError(f"strategy {strategy!r}: safe_asset {safe_asset!r} has no price "
                            f"column; add it to the universe or unset safe_asset")
    if freed <= 0:
        return weights
    if pd.isna(prices[safe_asset].iloc[-1]):
        raise StrategyError(f"strategy {strategy!r}: safe_asset {safe_asset!r} has no price "
                            f"on the as-of date {prices.index[-1].date()}")
    out = weights.copy()
    out[safe_asset] = out[safe_asset] + freed
    return out


def trailing_returns(prices: pd.DataFrame, lookback_days: int) -> pd.Series:
    """Compound return over the last ``lookback_days`` daily simple returns,
    Π(1 + r_t) − 1, for assets with a full window (others excluded, as in simple_returns)."""
    returns = simple_returns(prices, lookback_days)
    return np.exp(np.log1p(returns).sum()) - 1.0


@register("momentum")
@dataclass(frozen=True, slots=True)
class Momentum(Strategy):
    """Relative (cross-sectional) momentum with an optional absolute-momentum filter.

    Rank assets by trailing ``lookback``-day compound return (Jegadeesh & Titman 1993);
    hold the top ``k``, weighted equally or ∝ 1/σ (σ over ``vol_lookback_days``). With
    ``absolute_momentum`` (Antonacci's dual momentum, 2014), a selected asset whose
    trailing return is ≤ ``threshold`` gives its slot's weight to ``safe_asset`` (or cash).

    Args:
        k: number of assets held (fewer if fewer assets have a full window; logged); more
            than the universe's symbols is refused before the first cycle.
        lookback: trading days (return observations) in the ranking window (252 ≈ 12
            months); the key name follows issue 3.
        weighting: ``"equal"`` or ``"inverse_volatility"``.
        vol_lookback_days: return observations for σ in inverse-volatility weighting.
        absolute_momentum: apply the absolute filter.
        threshold: trailing return (fraction over the window, not annualized) at or
            below which a selected asset is dropped to safe/cash.
        safe_asset: symbol that receives dropped weight; None = cash.
    """

    k: int = 3
    lookback: int = 252
    weighting: str = "equal"
    vol_lookback_days: int = 63
    absolute_momentum: bool = False
    threshold: float = 0.0
    safe_asset: str | None = None
    name: ClassVar[str] = "momentum"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS

    def __post_init__(self) -> None:
        check_int(self.k, "k", 1)
        check_int(self.lookback, "lookback", 2)
        check_int(self.vol_lookback_days, "vol_lookback_days", 2)
        if self.weighting not in ("equal", "inverse_volatility"):
            raise StrategyConfigError(f"weighting: expected 'equal' or 'inverse_volatility', "
                                      f"got {self.weighting!r}")
        if not isinstance(self.absolute_momentum, bool):
            raise StrategyConfigError(f"absolute_momentum: expected true/false, "
                                      f"got {self.absolute_momentum!r}")
        check_float(self.threshold, "threshold", -1.0, math.inf)
        check_safe_asset(self.safe_asset)
        if self.safe_asset is not None and not self.absolute_momentum:
            raise StrategyConfigError("safe_asset: only used with absolute_momentum = true; "
                                      "set absolute_momentum or remove safe_asset")

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return {"safe_asset": (self.safe_asset,)} if self.safe_asset else {}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        """Too few symbols to rank, else ``k`` above the symbols there are to hold."""
        n, few = len(symbols), too_few_symbols(self, symbols)
        if few or self.k <= n:
            return few
        return {"k": (
            f"{self.k} assets to hold, but {UNIVERSE_SEEN} has {n}: it could never hold "
            f"{self.k} (every cycle would hold {n} and log momentum_k_reduced); set k to at "
            f"most {n}")}

    @property
    def lookback_days(self) -> int:
        vol_days = self.vol_lookback_days if self.weighting == "inverse_volatility" else 0
        return max(self.lookback, vol_days) + 1

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        ranked = trailing_returns(prices, self.lookback)
        order = np.argsort(-ranked.to_numpy(), kind="stable")
        k = min(self.k, len(ranked))
        if k < self.k:
            log.warning("momentum_k_reduced", k=self.k, usable_assets=len(ranked),
                        asof=str(prices.index[-1].date()))
        chosen = ranked.index[order[:k]]
        if self.weighting == "equal":
            sel = pd.Series(1.0 / k, index=chosen)
        else:
            inv = inverse_volatility_weights(prices[ranked.index], self.vol_lookback_days)
            sel = inv.reindex(chosen)
            if sel.isna().any():
                raise StrategyError(f"momentum: no volatility estimate for "
                                    f"{sel.index[sel.isna()].tolist()} as of {prices.index[-1].date()}")
            sel = sel / sel.sum()
        out = sel.reindex(prices.columns, fill_value=0.0).astype(float)
        if self.absolute_momentum:
            losers = [s for s in chosen if ranked[s] <= self.threshold]
            freed = float(out[losers].sum())
            out[losers] = 0.0
            out = move_to_safe(out, freed, self.safe_asset, prices, self.name)
        return finalize_weights(out, self.name)


@register("trend_filter")
@dataclass(frozen=True, slots=True)
class TrendFilter(Strategy):
    """Hold each asset's base weight while its close > its ``window``-day simple moving
    average (Faber 2007, "A Quantitative Approach to Tactical Asset Allocation"), else move
    that weight to ``safe_asset`` (or cash).

    The SMA is the mean of the last ``window`` closes, as-of close included. An asset with
    base weight but without ``window`` closes is treated as below trend (to cash/safe),
    with an ``asset_excluded`` warning.
    """

    base: StrategySpec = None  # type: ignore[assignment]
    window: int = 200
    safe_asset: str | None = None
    _base: Strategy = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "trend_filter"

    def __post_init__(self) -> None:
        check_int(self.window, "window", 2)
        check_safe_asset(self.safe_asset)
        object.__setattr__(self, "_base", build_nested(self.base, "base", self.name))

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        own = {"safe_asset": (self.safe_asset,)} if self.safe_asset else {}
        return {**nested_symbols("base", self._base), **own}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        return nested_universe_problems("base", self._base, symbols)

    @property
    def lookback_days(self) -> int:
        return max(self.window, self._base.lookback_days)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        w = nested_weights(self._base, prices, "base")
        window = prices.iloc[-self.window:]
        held = w.index[w > 0]
        full = window[held].notna().all() & (len(window) == self.window)
        for symbol in held[~full.to_numpy()]:
            log.warning("asset_excluded", symbol=str(symbol), strategy=self.name,
                        reason=f"fewer than {self.window} closes for the moving average",
                        asof=str(prices.index[-1].date()))
        sma = window[held].mean()
        above = full & (window[held].iloc[-1] > sma)
        below = held[~above.to_numpy()]
        freed = float(w[below].sum())
        out = w.copy()
        out[below] = 0.0
        return finalize_weights(move_to_safe(out, freed, self.safe_asset, prices, self.name),
                                self.name)


@register("mean_reversion")
@dataclass(frozen=True, slots=True)
class MeanReversion(Strategy):
    """Tilt a base allocation toward assets stretched below their rolling mean.

    z_i = (P_i − mean_i) / sd_i over the last ``window`` closes (as-of included, sd with
    ddof 1; sd = 0 gives z = 0). Tilt rule: multiplier m_i = 1 + ``tilt`` if
    z_i < −``entry_z``, 1 − ``tilt`` if z_i > +``entry_z``, else 1; then
    w_i = b_i·m_i · (Σ b_j) / (Σ b_j·m_j), so the invested fraction of the base b is kept
    and only its split changes. Assets without a full window get m = 1 (warned).

    Args:
        window: closes in the rolling mean/sd (default 20).
        entry_z: |z| beyond which the tilt applies (default 1.0).
        tilt: size of the tilt in [0, 1] (default 0.5; 1 drops over-extended assets).
        base: allocation to tilt (default ``equal_weight``).
    """

    window: int = 20
    entry_z: float = 1.0
    tilt: float = 0.5
    base: StrategySpec = "equal_weight"
    _base: Strategy = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "mean_reversion"

    def __post_init__(self) -> None:
        check_int(self.window, "window", 3)
        check_float(self.entry_z, "entry_z", 0.0, math.inf)
        check_float(self.tilt, "tilt", 0.0, 1.0)
        object.__setattr__(self, "_base", build_nested(self.base, "base", self.name))

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return nested_symbols("base", self._base)

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        return nested_universe_problems("base", self._base, symbols)

    @property
    def lookback_days(self) -> int:
        return max(self.window, self._base.lookback_days)

    def zscores(self, prices: pd.DataFrame) -> pd.Series:
        """z of the as-of close vs the rolling window; NaN where the window is incomplete."""
        window = prices.iloc[-self.window:]
        full = window.notna().all() & (len(window) == self.window)
        values = window.to_numpy(dtype=float)
        mean = values.mean(axis=0)
        sd = values.std(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, (values[-1] - mean) / sd, 0.0)
        return pd.Series(np.where(full.to_numpy(), z, np.nan), index=prices.columns)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        b = nested_weights(self._base, prices, "base")
        z = self.zscores(prices)
        for symbol in b.index[(b > 0).to_numpy() & z.isna().to_numpy()]:
            log.warning("asset_excluded", symbol=str(symbol), strategy=self.name,
                        reason=f"fewer than {self.window} closes for the z-score; not tilted",
                        asof=str(prices.index[-1].date()))
        m = np.ones(len(b))
        zv = z.to_numpy()
        m[zv < -self.entry_z] = 1.0 + self.tilt
        m[zv > self.entry_z] = 1.0 - self.tilt
        tilted = b.to_numpy() * m
        total_b, total_t = float(b.sum()), float(tilted.sum())
        out = tilted * (total_b / total_t) if total_t > 0 else b.to_numpy()
        return finalize_weights(pd.Series(out, index=prices.columns), self.name)


@register("vol_target")
@dataclass(frozen=True, slots=True)
class VolTarget(Strategy):
    """Scale a base allocation so its ex-ante volatility meets ``target_volatility``.

    s = min(1, σ* / √(wᵀΣw)), Σ the annualized (× 252) covariance of daily simple returns
    over ``vol_lookback_days`` from the shared estimator (``EstimatorSettings.covariance_of``,
    repaired to positive definite); the rest (1 − s) is cash. Never levers up. Every asset
    the base holds must have a full window (else StrategyError).

    Args:
        base: nested strategy spec.
        target_volatility: annualized volatility target σ*, fraction (0.10 = 10%/yr),
            at most MAX_ANNUAL_VOLATILITY.
        vol_lookback_days: return observations for Σ (default 63).
        covariance: ``sample`` | ``ledoit_wolf`` | ``ewma`` (see strategies.estimators).
        cov_half_life_days: half-life of the ``ewma`` covariance.
    """

    base: StrategySpec = None  # type: ignore[assignment]
    target_volatility: float = 0.10
    vol_lookback_days: int = 63
    covariance: str = "sample"
    cov_half_life_days: float = 63.0
    _base: Strategy = field(init=False, repr=False, compare=False)
    _estimator: EstimatorSettings = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "vol_target"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS  # Σ of the held assets

    def __post_init__(self) -> None:
        check_float(self.target_volatility, "target_volatility", 0.0, MAX_ANNUAL_VOLATILITY,
                    lo_open=True, meaning=ANNUAL_VOLATILITY)
        check_int(self.vol_lookback_days, "vol_lookback_days", 2)
        object.__setattr__(self, "_estimator", EstimatorSettings(
            lookback_days=self.vol_lookback_days, covariance=self.covariance,
            cov_half_life_days=self.cov_half_life_days))
        object.__setattr__(self, "_base", build_nested(self.base, "base", self.name))

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return nested_symbols("base", self._base)

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        return {**too_few_symbols(self, symbols),
                **nested_universe_problems("base", self._base, symbols)}

    @property
    def lookback_days(self) -> int:
        return max(self.vol_lookback_days + 1, self._base.lookback_days)

    def scale(self, weights: pd.Series, prices: pd.DataFrame) -> float:
        """The exposure multiplier s in (0, 1] for these base weights."""
        held = weights.index[weights > 0]
        if len(held) == 0:
            return 1.0
        returns = simple_returns(prices, self.vol_lookback_days)
        cov = pd.DataFrame(self._estimator.covariance_of(returns), index=returns.columns,
                           columns=returns.columns)
        missing = [s for s in held if s not in cov.index]
        if missing:
            raise StrategyError(f"vol_target: no covariance estimate for held asset(s) "
                                f"{missing} in the {self.vol_lookback_days}-day window ending "
                                f"{prices.index[-1].date()}")
        w = weights[held].to_numpy()
        var = float(w @ cov.loc[held, held].to_numpy() @ w)
        vol = math.sqrt(max(var, 0.0))
        return 1.0 if vol <= self.target_volatility else self.target_volatility / vol

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        w = nested_weights(self._base, prices, "base")
        return finalize_weights(w * self.scale(w, prices), self.name)


@register("core_satellite")
@dataclass(frozen=True, slots=True)
class CoreSatellite(Strategy):
    """w = core_weight · w_core + (1 − core_weight) · w_satellite.

    Args:
        core: nested strategy spec for the core sleeve (e.g. a ``fixed`` preset).
        satellite: nested strategy spec for the satellite sleeve (e.g. ``momentum``).
        core_weight: fraction of equity in the core sleeve, in [0, 1] (default 0.7).
    """

    core: StrategySpec = None  # type: ignore[assignment]
    satellite: StrategySpec = None  # type: ignore[assignment]
    core_weight: float = 0.7
    _core: Strategy = field(init=False, repr=False, compare=False)
    _satellite: Strategy = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "core_satellite"

    def __post_init__(self) -> None:
        check_float(self.core_weight, "core_weight", 0.0, 1.0)
        object.__setattr__(self, "_core", build_nested(self.core, "core", self.name))
        object.__setattr__(self, "_satellite", build_nested(self.satellite, "satellite", self.name))

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return {**nested_symbols("core", self._core),
                **nested_symbols("satellite", self._satellite)}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        return {**nested_universe_problems("core", self._core, symbols),
                **nested_universe_problems("satellite", self._satellite, symbols)}

    @property
    def lookback_days(self) -> int:
        return max(self._core.lookback_days, self._satellite.lookback_days)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        core = nested_weights(self._core, prices, "core")
        sat = nested_weights(self._satellite, prices, "satellite")
        return finalize_weights(self.core_weight * core + (1 - self.core_weight) * sat,
                                self.name)
