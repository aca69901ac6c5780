"""``sector_cap``: a post-hoc per-sector maximum weight over any base strategy.

For the mean-variance family the caps belong inside the optimizer (linear constraints in
the QP); for every other strategy this wrapper caps the base's output after the fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from strategies.base import (
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    finalize_weights,
    mapping_symbols,
    nested_symbols,
    nested_universe_problems,
    register,
)
from strategies.static import asof_row
from strategies.tactical import StrategySpec, build_nested, nested_weights

# Water-filling stops when less than this fraction of equity is left to place.
EXCESS_TOLERANCE = 1e-12


def check_sector_map(sectors: object, limits: object) -> tuple[dict[str, str], dict[str, float]]:
    """Validate ``sectors`` (symbol → sector) and ``sector_limits`` (sector → max weight)."""
    if not isinstance(sectors, Mapping) or not sectors:
        raise StrategyConfigError("sectors: expected a non-empty mapping symbol -> sector, e.g. "
                                  "sectors = {SPY = \"equity\", TLT = \"bonds\"}")
    if not isinstance(limits, Mapping) or not limits:
        raise StrategyConfigError("sector_limits: expected a non-empty mapping sector -> max "
                                  "weight, e.g. sector_limits = {equity = 0.6}")
    for symbol, sector in sectors.items():
        if not isinstance(sector, str) or not sector:
            raise StrategyConfigError(f"sectors.{symbol}: expected a sector name, got {sector!r}")
    for sector, cap in limits.items():
        check_float(cap, f"sector_limits.{sector}", 0.0, 1.0)
    unknown = sorted(set(limits) - set(sectors.values()))
    if unknown:
        raise StrategyConfigError(f"sector_limits: sector(s) {unknown} have no symbol in "
                                  f"sectors; known sectors: {sorted(set(sectors.values()))}")
    return {str(k): str(v) for k, v in sectors.items()}, {str(k): float(v)
                                                          for k, v in limits.items()}


def cap_sectors(weights: pd.Series, sectors: Mapping[str, str],
                limits: Mapping[str, float]) -> pd.Series:
    """Scale each sector over its cap down to the cap (pro rata inside it) and hand the
    excess to the other sectors with room, pro rata to their weights; what finds no room
    is cash. Symbols without a sector are uncapped. Repeats until nothing is over a cap."""
    w = weights.astype(float).copy()
    group = pd.Series([sectors.get(s, f"\0{s}") for s in w.index], index=w.index)
    cap = group.map(lambda g: limits.get(g, np.inf)).to_numpy(dtype=float)
    for _ in range(len(set(group)) + 1):
        totals = w.groupby(group).transform("sum").to_numpy(dtype=float)
        over = totals > cap + EXCESS_TOLERANCE
        if not over.any():
            break
        scale = np.where(over, cap / np.where(totals > 0, totals, 1.0), 1.0)
        excess = float((w.to_numpy() * (1 - scale)).sum())
        w = w * scale
        room = (~over) & (totals < cap - EXCESS_TOLERANCE) & (w.to_numpy() > 0)
        if excess <= EXCESS_TOLERANCE or not room.any():
            break
        receivers = w[room]
        w[room] = receivers + excess * receivers / float(receivers.sum())
    return w


@register("sector_cap")
@dataclass(frozen=True, slots=True)
class SectorCap(Strategy):
    """Cap the weight of each sector of a base strategy's allocation.

    Args:
        base: the allocation to cap (a strategy spec, e.g. ``{name = "momentum"}``).
        sectors: symbol → sector name, e.g. ``{SPY = "equity", TLT = "bonds"}``. Every
            symbol named must be in the universe (a typo is an error, not a silent no-op);
            universe symbols not named belong to no sector and are never capped.
        sector_limits: sector → maximum total weight (fraction of equity, [0, 1]), e.g.
            ``{equity = 0.6}``; sectors without a limit are uncapped.

    Excess over a cap goes pro rata to the held symbols of sectors still under their cap
    (repeated until no cap is breached); when no sector has room it stays in cash.
    """

    base: StrategySpec = None  # type: ignore[assignment]
    sectors: Mapping[str, str] = field(default_factory=dict)
    sector_limits: Mapping[str, float] = field(default_factory=dict)
    _base: Strategy = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "sector_cap"

    def __post_init__(self) -> None:
        sectors, limits = check_sector_map(self.sectors, self.sector_limits)
        object.__setattr__(self, "sectors", sectors)
        object.__setattr__(self, "sector_limits", limits)
        object.__setattr__(self, "_base", build_nested(self.base, "base", self.name))

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        return {**nested_symbols("base", self._base), **mapping_symbols("sectors", self.sectors)}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        return nested_universe_problems("base", self._base, symbols)

    @property
    def lookback_days(self) -> int:
        return self._base.lookback_days

    @property
    def warmup_days(self) -> int:
        return self._base.warmup_days

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        stray = sorted(set(self.sectors) - set(prices.columns))
        if stray:
            raise StrategyError(f"strategy {self.name!r}: sectors names symbol(s) {stray} that "
                                f"are not in the universe; remove them or add them to "
                                f"[universe] symbols")
        w = nested_weights(self._base, prices, "base")
        return finalize_weights(cap_sectors(w, self.sectors, self.sector_limits), self.name)
