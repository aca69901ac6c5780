"""The market portfolio behind equilibrium returns: its configured weights (checked, then
laid over a strategy's usable symbols) and the returns it implies (reverse optimization).
Used by ``mean_variance``'s ``equilibrium`` expected returns and by ``black_litterman``'s
prior."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from strategies.base import StrategyConfigError, StrategyError, check_float


def equilibrium_returns(cov: np.ndarray, market_weights: np.ndarray,
                        risk_aversion: float) -> np.ndarray:
    """Market-implied (reverse-optimized) returns π = δ Σ w_mkt (Black & Litterman 1992;
    Idzorek 2005 eq. 1), with Σ annual so π is annual."""
    return risk_aversion * (cov @ market_weights)


def check_market_weights(market_weights: Mapping[str, float] | None) -> None:
    """Config check: a mapping symbol → weight ≥ 0 with a positive total (or None)."""
    if market_weights is None:
        return
    if not isinstance(market_weights, Mapping) or not market_weights:
        raise StrategyConfigError("market_weights must be a non-empty table symbol = weight")
    total = sum(check_float(weight, f"market_weights.{symbol}", 0.0, math.inf)
                for symbol, weight in market_weights.items())
    if total <= 0:
        raise StrategyConfigError("market_weights must have a positive total")


def market_weight_vector(market_weights: Mapping[str, float] | None,
                         symbols: pd.Index) -> np.ndarray:
    """Market weights over ``symbols`` normalized to sum 1 (equal when None); a usable
    symbol missing from the table is an error naming it."""
    if market_weights is None:
        return np.full(len(symbols), 1.0 / len(symbols))
    missing = [str(s) for s in symbols if s not in market_weights]
    if missing:
        raise StrategyError(f"market_weights has no entry for {missing}; give every symbol "
                            f"a weight (or omit market_weights for equal weights)")
    w = np.array([float(market_weights[s]) for s in symbols])
    if w.sum() <= 0:
        raise StrategyError(f"market_weights sum to 0 over the usable symbols {list(symbols)}")
    return w / w.sum()
