"""Strategic and naive allocations: fixed weights (with documented presets), equal weight,
inverse volatility.

Each strategy is a frozen dataclass whose constructor arguments are exactly its
``[strategy.params]`` config keys; output goes through ``finalize_weights`` and is indexed
by the price columns (0 for anything not held).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd
import structlog

from strategies.base import (
    ESTIMATION_MIN_SYMBOLS,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    finalize_weights,
    register,
)
from strategies.estimators import sample_covariance, simple_returns

log = structlog.get_logger("strategies")

PRESETS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    # Classic 60/40 balanced portfolio: 60% US equities, 40% US bonds. We use IEF
    # (7-10y Treasuries) for the bond leg: its duration (~7.5y) is close to the US
    # aggregate bond index's (~6y), whereas TLT (~17y) would make it a far riskier mix.
    "sixty_forty": MappingProxyType({"SPY": 0.60, "IEF": 0.40}),
    # Harry Browne, "Fail-Safe Investing" (1999): stocks, long Treasuries, gold and cash
    # (short Treasuries) at 25% each.
    "permanent_portfolio": MappingProxyType(
        {"SPY": 0.25, "TLT": 0.25, "GLD": 0.25, "SHY": 0.25}
    ),
    # Ray Dalio's retail "All Weather" portfolio as given in Tony Robbins, "MONEY: Master
    # the Game" (2014): 30% stocks, 40% long-term Treasuries, 15% intermediate Treasuries,
    # 7.5% gold, 7.5% commodities.
    "all_weather": MappingProxyType(
        {"SPY": 0.30, "TLT": 0.40, "IEF": 0.15, "GLD": 0.075, "DBC": 0.075}
    ),
    # David Swensen, "Unconventional Success" (2005) model portfolio: 30% domestic equity,
    # 15% foreign developed, 5% emerging markets, 20% REITs, 15% US Treasuries, 15% TIPS.
    # Liquid-ETF proxy over our universe: emerging markets -> EFA (no EM fund in the
    # default universe, so foreign equity is 20% EFA), TIPS -> IEF (intermediate
    # nominal Treasuries, similar duration), Treasuries -> TLT.
    "endowment": MappingProxyType(
        {"SPY": 0.30, "EFA": 0.20, "VNQ": 0.20, "IEF": 0.15, "TLT": 0.15}
    ),
})


def check_fixed_weights(weights: Mapping[str, float], key: str) -> dict[str, float]:
    """Check a symbol → fraction mapping: each in [0, 1], total ≤ 1 (rest is cash)."""
    if not isinstance(weights, Mapping):
        raise StrategyConfigError(f"{key}: expected a mapping symbol -> fraction, got "
                                  f"{type(weights).__name__}")
    clean = {str(symbol): check_float(value, f"{key}.{symbol}", 0.0, 1.0,
                                      meaning="a fraction of equity")
             for symbol, value in weights.items()}
    total = sum(clean.values())
    if total > 1.0 + 1e-9:
        raise StrategyConfigError(f"{key}: weights sum to {total:.6f} > 1; "
                                  "scale them down (any remainder is held as cash)")
    return clean


def require_rows(prices: pd.DataFrame, name: str) -> None:
    """A StrategyError naming ``name`` unless the price frame has a row and a column."""
    if prices.shape[0] == 0 or prices.shape[1] == 0:
        raise StrategyError(f"strategy {name!r}: empty price history")


def asof_row(prices: pd.DataFrame, name: str) -> pd.Series:
    """The last (as-of) row of a non-empty price frame, or a StrategyError naming ``name``."""
    require_rows(prices, name)
    return prices.iloc[-1]


@lru_cache(maxsize=32)
def _column_positions(columns: tuple[str, ...]) -> dict[str, int]:
    return {c: j for j, c in enumerate(columns)}


@lru_cache(maxsize=32)
def _fixed_weights(targets: tuple[tuple[str, float], ...], columns: tuple[str, ...],
                   name: str) -> pd.Series:
    """Fixed targets over ``columns``, finalized once per universe (callers get a shallow
    copy: under pandas' copy-on-write an edit of theirs never reaches this one)."""
    col_of = {c: j for j, c in enumerate(columns)}
    out = np.zeros(len(columns))
    for symbol, w in targets:
        out[col_of[symbol]] = w
    return finalize_weights(pd.Series(out, index=pd.Index(columns, dtype=object)), name)


@register("fixed")
@dataclass(frozen=True, slots=True)
class Fixed(Strategy):
    """Constant target weights, from ``weights`` or a named ``preset`` (exactly one).

    Args:
        weights: symbol → fraction of equity, each in [0, 1], sum ≤ 1 (rest is cash).
        preset: one of ``PRESETS`` (sixty_forty, permanent_portfolio, all_weather,
            endowment); sources are cited beside each preset in this module.
    """

    weights: Mapping[str, float] | None = None
    preset: str | None = None
    name: ClassVar[str] = "fixed"
    # The same targets whatever the prices: the backtest may skip days with no drift.
    targets_are_static: ClassVar[bool] = True
    default_signal: ClassVar[str] = "daily"  # nothing to recompute

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.preset is None):
            raise StrategyConfigError(
                "fixed: give exactly one of 'weights' (symbol -> fraction) or 'preset' "
                f"({', '.join(sorted(PRESETS))})"
            )
        if self.preset is not None and self.preset not in PRESETS:
            raise StrategyConfigError(
                f"preset: unknown preset {self.preset!r}; choose one of "
                f"{', '.join(sorted(PRESETS))}"
            )
        if self.weights is not None:
            if isinstance(self.weights, Mapping) and not self.weights:
                raise StrategyConfigError(
                    "weights: the table is empty; give at least one symbol = fraction, e.g. "
                    "weights = {SPY = 0.6, IEF = 0.4} (an empty table would sell everything)")
            clean = check_fixed_weights(self.weights, "weights")
            object.__setattr__(self, "weights", MappingProxyType(clean))

    @property
    def lookback_days(self) -> int:
        return 1

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return {"preset" if self.preset is not None else "weights": tuple(self.targets)}

    @property
    def label(self) -> str:
        """A preset's name (``sixty_forty``), else the weights (``fixed SPY 60% / TLT
        40%``): reports named a benchmark of explicit weights just "fixed"."""
        if self.preset is not None:
            return self.preset
        return "fixed " + " / ".join(f"{s} {w:.4g}".rstrip() if w * 100 != round(w * 100)
                                     else f"{s} {w:.0%}" for s, w in self.targets.items())

    @property
    def targets(self) -> Mapping[str, float]:
        """The configured symbol → weight mapping (preset resolved)."""
        if self.preset is not None:
            return PRESETS[self.preset]
        assert self.weights is not None
        return self.weights

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        require_rows(prices, self.name)
        targets = self.targets
        columns = tuple(map(str, prices.columns.tolist()))  # (iterating an Index is slow)
        col_of = _column_positions(columns)
        missing = [s for s in targets if s not in col_of]
        if missing:
            raise StrategyError(
                f"strategy 'fixed': symbol(s) {', '.join(missing)} have a target weight "
                f"but no price column (not in the universe, excluded, or listed too recently "
                f"for the risk step's window: see asset_excluded); fixed weights are not "
                f"spread over the rest"
            )
        last = prices.to_numpy(dtype=float)[-1]
        unpriced = [s for s, w in targets.items() if w > 0 and np.isnan(last[col_of[s]])]
        if unpriced:
            raise StrategyError(
                f"strategy 'fixed': no price for {', '.join(unpriced)} on the as-of date "
                f"{prices.index[-1].date()}"
            )
        return _fixed_weights(tuple(targets.items()), columns, self.name).copy(deep=False)


@register("equal_weight")
@dataclass(frozen=True, slots=True)
class EqualWeight(Strategy):
    """1/N over the columns that have a price on the as-of (last) row."""

    name: ClassVar[str] = "equal_weight"

    @property
    def lookback_days(self) -> int:
        return 1

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        last = asof_row(prices, self.name)
        priced = last.notna().to_numpy()
        for symbol in prices.columns[~priced]:
            log.warning("asset_excluded", symbol=str(symbol), reason="no price on as-of date",
                        asof=str(prices.index[-1].date()), strategy=self.name)
        n = int(priced.sum())
        if n == 0:
            raise StrategyError(f"strategy 'equal_weight': no asset has a price on the as-of "
                                f"date {prices.index[-1].date()}")
        out = pd.Series(np.where(priced, 1.0 / n, 0.0), index=prices.columns, dtype=float)
        return finalize_weights(out, self.name)


def inverse_volatility_weights(prices: pd.DataFrame, lookback_days: int) -> pd.Series:
    """w_i = (1/σ_i) / Σ_j (1/σ_j), σ from the shared sample covariance of simple returns.

    Indexed by the usable assets only (those ``simple_returns`` keeps); zero-volatility
    assets and non-finite (infinite or NaN) volatilities, from returns too large to square,
    are an error (1/σ undefined).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, not as warnings
        returns = simple_returns(prices, lookback_days)
        vol = np.sqrt(np.diag(sample_covariance(returns).to_numpy()))
    window = f"{lookback_days}-day window ending {prices.index[-1].date()}"
    finite = np.isfinite(vol)
    if not finite.all():
        bad = returns.columns[~finite].tolist()
        raise StrategyError(f"inverse volatility undefined: non-finite volatility for {bad} in "
                            f"the {window} (a return too large or infinite: check those "
                            f"prices)")
    if not (vol > 0).all():
        flat = returns.columns[~(vol > 0)].tolist()
        raise StrategyError(f"inverse volatility undefined: zero volatility for {flat} in the "
                            f"{window}")
    inv = 1.0 / vol
    return pd.Series(inv / inv.sum(), index=returns.columns, dtype=float)


@register("inverse_volatility")
@dataclass(frozen=True, slots=True)
class InverseVolatility(Strategy):
    """w ∝ 1/σ (annualized sample volatility of daily simple returns over ``lookback_days``).

    Args:
        lookback_days: return observations in the estimation window (default 63 ≈ 3 months).
    """

    lookback_days: int = 63
    name: ClassVar[str] = "inverse_volatility"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS

    def __post_init__(self) -> None:
        if isinstance(self.lookback_days, bool) or not isinstance(self.lookback_days, int) \
                or self.lookback_days < 2:
            raise StrategyConfigError(
                f"lookback_days: expected an integer ≥ 2, got {self.lookback_days!r}")

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        w = inverse_volatility_weights(prices, self.lookback_days)
        out = w.reindex(prices.columns, fill_value=0.0)
        return finalize_weights(out, self.name)
