"""Config and run-time checks for the mean-variance family's trading costs and caps:
``turnover_penalty``, ``max_turnover``, ``sectors`` and ``sector_limits`` (issue 13), and
their translation into ``costed_qp.LinearTerms`` for the usable symbols of one run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from strategies.base import StrategyConfigError, StrategyError, check_float
from strategies.costed_qp import LinearTerms


@dataclass(frozen=True, slots=True)
class TradeSettings:
    """The validated parameters (see ``RiskModelStrategy``'s docstring for their meaning)."""

    turnover_penalty: float = 0.0
    max_turnover: float | None = None
    sectors: Mapping[str, str] | None = None
    sector_limits: Mapping[str, float] | None = None

    @property
    def plain(self) -> bool:
        """True when nothing here changes the optimization (the exact pre-cost path)."""
        return (self.turnover_penalty == 0 and self.max_turnover is None
                and not self.sector_limits)


def validate_trade_settings(turnover_penalty: Any, max_turnover: Any, sectors: Any,
                            sector_limits: Any) -> TradeSettings:
    """Config checks; every error names its key (``sector_limits.tech``, ``sectors.SPY``)."""
    kappa = check_float(turnover_penalty, "turnover_penalty", 0.0, math.inf,
                        meaning="a proportional cost per unit traded (0.001 = 10 bp)")
    tau = None if max_turnover is None else check_float(
        max_turnover, "max_turnover", 0.0, math.inf,
        meaning="a cap on Σ|w − w_now| (0.2 = buys plus sells of 20 % of equity)")
    sector_map = _sector_map(sectors)
    limits = _sector_limits(sector_limits, sector_map)
    return TradeSettings(kappa, tau, sector_map, limits)


def _sector_map(sectors: Any) -> dict[str, str] | None:
    if sectors is None:
        return None
    if not isinstance(sectors, Mapping):
        raise StrategyConfigError('sectors must be a table SYMBOL = "sector", e.g. '
                                  '{SPY = "equity", TLT = "bonds"}')
    for symbol, sector in sectors.items():
        if not isinstance(sector, str) or not sector:
            raise StrategyConfigError(f"sectors.{symbol} must be a sector name, got {sector!r}")
    return {str(k): v for k, v in sectors.items()}


def _sector_limits(sector_limits: Any, sector_map: dict[str, str] | None
                   ) -> dict[str, float] | None:
    if sector_limits is None:
        return None
    if not isinstance(sector_limits, Mapping):
        raise StrategyConfigError("sector_limits must be a table sector = max weight, e.g. "
                                  "{equity = 0.6}")
    if sector_map is None:
        raise StrategyConfigError("sector_limits needs sectors (SYMBOL = \"sector\") to know "
                                  "which symbols each limit covers")
    known = set(sector_map.values())
    limits = {}
    for sector, cap in sector_limits.items():
        if sector not in known:
            raise StrategyConfigError(f"sector_limits.{sector}: no symbol is in sector "
                                      f"{sector!r}; sectors name {sorted(known)}")
        limits[str(sector)] = check_float(cap, f"sector_limits.{sector}", 0.0, 1.0)
    return limits


def linear_terms(settings: TradeSettings, symbols: pd.Index, columns: pd.Index,
                 upper: np.ndarray, current_weights: pd.Series | None) -> LinearTerms:
    """LinearTerms over the usable ``symbols`` (``columns`` are all priced symbols).

    w_now = ``current_weights`` (symbols missing from it hold 0; None: no penalty and no
    turnover cap apply), fractions of the account's equity: 1 − Σw_now over the usable
    symbols is what they do not hold now, cash (a deposit, what the risk step or the cash
    buffer kept, whole-share remainders) and held symbols this strategy cannot hold
    (excluded by [universe].exclude, or without usable history), which must be sold.
    Investing that is outside max_turnover, which caps the trading the strategy chooses:
    Σ|w − w_now| over the usable symbols ≤ τ + |1 − Σw_now|, the least turnover being that
    remainder. Counted against τ, cash or a forced sale larger than τ held the account
    as it was on every cycle, until the operator raised τ or sold by hand. Raises
    StrategyConfigError for a ``sectors`` symbol not priced, StrategyError when the
    sector caps cannot hold a fully invested portfolio.
    """
    anchor = _anchor(current_weights, symbols)
    uninvested = 1.0 - float(anchor.sum())
    tau = np.inf
    if settings.max_turnover is not None and current_weights is not None:
        tau = settings.max_turnover + abs(uninvested)
    sector_of, caps = _sector_index(settings, symbols, columns)
    problem = sector_caps_problem(sector_of, caps, np.zeros(len(symbols)), upper,
                                  list(settings.sector_limits or {}))
    if problem:
        raise StrategyError(f"sector_limits infeasible: {problem}")
    return LinearTerms(anchor=anchor, sector_of=sector_of, sector_caps=caps, max_turnover=tau,
                       uninvested=uninvested if current_weights is not None else 0.0)


def sector_limit_problems(settings: TradeSettings, symbols: tuple[str, ...],
                          lower: np.ndarray, upper: np.ndarray) -> dict[str, str]:
    """``{"sector_limits": reason}`` when the sector caps and the bounds of ``symbols``
    (the universe the strategy sees) cannot hold a fully invested portfolio
    (``sector_caps_problem``): the check every run makes, before the first cycle (a
    config that failed every cycle passed ``check-config``). A ``sectors`` symbol outside
    them is reported elsewhere (``symbols_referenced``)."""
    index = pd.Index(symbols, dtype=object)
    try:
        sector_of, caps = _sector_index(settings, index, index)
    except StrategyConfigError:
        return {}
    problem = sector_caps_problem(sector_of, caps, lower, upper,
                                  list(settings.sector_limits or {}))
    return {"sector_limits": problem} if problem else {}


def sector_caps_problem(sector_of: np.ndarray, caps: np.ndarray, lower: np.ndarray,
                        upper: np.ndarray, names: Sequence[str] = ()) -> str | None:
    """Why no fully invested ``lower`` ≤ w ≤ ``upper`` keeps each sector (``sector_of``,
    −1: none) within its cap, or None when one does: the caps with the upper bounds reach
    less than 1, or a sector's lower bounds add up to more than its cap. (Σlower ≤ 1 ≤
    Σupper is ``check_bounds``' part.) ``names``: the sectors', for the text."""
    if not caps.size:
        return None
    capped = sector_of >= 0
    tops = np.bincount(sector_of[capped], weights=upper[capped], minlength=len(caps))
    reach = float(np.minimum(caps, tops).sum()) + float(upper[~capped].sum())
    names = list(names) or [f"sector {k + 1}" for k in range(len(caps))]
    if reach < 1.0 - 1e-12:
        capped_text = ", ".join(f"{n} ≤ {c:g}" for n, c in zip(names, caps, strict=True))
        return (f"the capped sectors ({capped_text}) plus the uncapped symbols can hold at "
                f"most {reach:.6g} of equity, below the full investment 1; raise a cap or "
                f"add symbols outside the capped sectors")
    floors = np.bincount(sector_of[capped], weights=lower[capped], minlength=len(caps))
    over = np.flatnonzero(floors > caps + 1e-12)
    if over.size:
        k = int(over[0])
        return (f"{names[k]} ≤ {caps[k]:g}, but the lower bounds of its symbols add up to "
                f"{floors[k]:.6g}: lower the bounds or raise the cap")
    return None


def _anchor(current_weights: pd.Series | None, symbols: pd.Index) -> np.ndarray:
    if current_weights is None:
        return np.zeros(len(symbols))
    current = current_weights.astype(float)
    if not np.isfinite(current.to_numpy()).all():
        bad = current.index[~np.isfinite(current.to_numpy())].tolist()
        raise StrategyError(f"current_weights are not finite for {bad}")
    return current.reindex(symbols, fill_value=0.0).to_numpy(dtype=float)


def _sector_index(settings: TradeSettings, symbols: pd.Index, columns: pd.Index
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each symbol's capped sector (−1: none) and the caps, in ``sector_limits``' order;
    StrategyConfigError for a ``sectors`` symbol not among ``columns``."""
    sector_of = np.full(len(symbols), -1)
    if not settings.sector_limits or settings.sectors is None:
        return sector_of, np.zeros(0)
    unknown = [s for s in settings.sectors if s not in columns]
    if unknown:
        raise StrategyConfigError(f"sectors.{unknown[0]}: symbol not among the priced "
                                  f"symbols {list(columns)}")
    names = list(settings.sector_limits)
    position = {name: k for k, name in enumerate(names)}
    for i, symbol in enumerate(symbols):
        sector = settings.sectors.get(str(symbol))
        if sector in position:
            sector_of[i] = position[sector]
    return sector_of, np.array([settings.sector_limits[name] for name in names])
