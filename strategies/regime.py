"""``regime_kmeans``: cluster market conditions into regimes, allocate by the current one.

Market features at price row p use closes up to p only: the annualized volatility and the
trailing compound return of the equal-weight market (daily-rebalanced mean of the usable
assets' simple returns). K-means (Lloyd's algorithm, sklearn, fixed ``random_state``) is
fit on every feature row up to the as-of date — all of them are known then — so changing
prices after the as-of date changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import structlog
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from strategies.base import (
    ESTIMATION_MIN_SYMBOLS,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_int,
    finalize_weights,
    nested_symbols,
    nested_universe_problems,
    register,
    too_few_symbols,
)
from strategies.estimators import ANNUALIZATION_DAYS, simple_returns
from strategies.static import Fixed, asof_row
from strategies.tactical import StrategySpec, build_nested, nested_weights

log = structlog.get_logger("strategies")


@dataclass(frozen=True, slots=True)
class RegimeFit:
    """Regime label per feature date (0 = lowest-volatility regime), the as-of regime, and
    each regime's mean annualized market volatility (ascending)."""

    dates: pd.Index
    labels: np.ndarray
    current: int
    regime_vols: np.ndarray


def market_features(returns: pd.DataFrame, vol_window_days: int, trend_window_days: int
                    ) -> pd.DataFrame:
    """Per date: ``vol`` = √252 · sd(m over vol_window_days) (ddof 1) and ``trend`` =
    Π(1 + m over trend_window_days) − 1, m the equal-weight market's daily return."""
    m = returns.to_numpy().mean(axis=1)
    lm = np.r_[0.0, np.cumsum(np.log1p(m))]
    s1 = np.r_[0.0, np.cumsum(m)]
    s2 = np.r_[0.0, np.cumsum(m * m)]
    first = max(vol_window_days, trend_window_days)
    ends = np.arange(first, len(m) + 1)  # feature uses returns [end - window, end)
    d = vol_window_days
    total = s1[ends] - s1[ends - d]
    var = (s2[ends] - s2[ends - d] - total * total / d) / (d - 1)
    vol = np.sqrt(np.maximum(var, 0.0) * ANNUALIZATION_DAYS)
    trend = np.expm1(lm[ends] - lm[ends - trend_window_days])
    return pd.DataFrame({"vol": vol, "trend": trend}, index=returns.index[ends - 1])


def fit_regimes(features: pd.DataFrame, n_regimes: int, random_state: int) -> RegimeFit:
    """K-means on standardized features; regimes renumbered by mean volatility, low → high."""
    x = features.to_numpy()
    sd = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    # one OpenMP thread: on a busy 2-core host sklearn's spinning threads cost 10× the fit
    with threadpool_limits(limits=1, user_api="openmp"):
        raw = KMeans(n_clusters=n_regimes, n_init=10,
                     random_state=random_state).fit_predict(z)
    found = np.unique(raw)
    if len(found) < n_regimes:
        raise StrategyError(f"regime_kmeans: market features as of {features.index[-1].date()} form "
                            f"only {len(found)} distinct cluster(s), n_regimes={n_regimes}; "
                            f"lower n_regimes or lengthen lookback_days")
    vols = np.array([features["vol"].to_numpy()[raw == k].mean() for k in range(n_regimes)])
    order = np.argsort(vols, kind="stable")
    rank = np.empty(n_regimes, dtype=int)
    rank[order] = np.arange(n_regimes)
    labels = rank[raw]
    return RegimeFit(dates=features.index, labels=labels, current=int(labels[-1]),
                     regime_vols=vols[order])


def regime_prices(returns: pd.DataFrame, in_regime: np.ndarray) -> pd.DataFrame:
    """A price path spliced from the regime's daily returns only: P_0 = 1, then
    P_k = Π_{j≤k}(1 + r_j) over the regime's days, so estimators see only its returns."""
    sub = returns.loc[in_regime]
    path = np.vstack([np.ones((1, sub.shape[1])), np.cumprod(1.0 + sub.to_numpy(), axis=0)])
    first = returns.index.get_loc(sub.index[0])
    start = returns.index[first - 1] if first > 0 else sub.index[0] - pd.Timedelta(days=1)
    return pd.DataFrame(path, index=pd.Index([start]).append(sub.index), columns=sub.columns)


@register("regime_kmeans")
@dataclass(frozen=True, slots=True)
class RegimeKMeans(Strategy):
    """Allocate by the market regime of the as-of date (k-means of market vol and trend).

    Exactly one of:
      * ``regime_weights``: list of ``n_regimes`` tables symbol → weight, ordered by regime
        volatility, low to high (e.g. ``[{SPY = 0.8, IEF = 0.2}, {IEF = 0.6, GLD = 0.4}]``);
      * ``regime_strategy``: a nested strategy spec run on a price path spliced from the
        current regime's days only (meant for estimator-based strategies such as
        ``inverse_volatility`` or ``min_variance``; path-dependent ones like trend filters
        see an artificial series). It is given the portfolio's current weights and its
        weights are returned as they are, so a nested ``turnover_penalty`` or
        ``max_turnover`` applies as it would to the strategy used directly.

    Args:
        n_regimes: number of clusters (default 2).
        lookback_days: daily return observations clustered (default 1260 ≈ 5 years).
        vol_window_days: window of the market volatility feature (default 21).
        trend_window_days: window of the market trend (trailing return) feature (default 126).
        random_state: k-means seed (fixed for reproducible weights).
    """

    n_regimes: int = 2
    lookback_days: int = 1260
    vol_window_days: int = 21
    trend_window_days: int = 126
    regime_weights: Sequence[Mapping[str, float]] | None = None
    regime_strategy: StrategySpec | None = None
    random_state: int = 0
    _fixed: tuple[Fixed, ...] = field(init=False, repr=False, compare=False)
    _strategy: Strategy | None = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "regime_kmeans"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS  # the market features' returns

    def __post_init__(self) -> None:
        check_int(self.n_regimes, "n_regimes", 2)
        check_int(self.lookback_days, "lookback_days", 2)
        check_int(self.vol_window_days, "vol_window_days", 2)
        check_int(self.trend_window_days, "trend_window_days", 1)
        check_int(self.random_state, "random_state", 0)
        if (self.regime_weights is None) == (self.regime_strategy is None):
            raise StrategyConfigError("regime_kmeans: give exactly one of 'regime_weights' "
                                      "(a list of symbol tables) or 'regime_strategy'")
        fixed: tuple[Fixed, ...] = ()
        if self.regime_weights is not None:
            fixed = self._build_fixed(self.regime_weights)
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "_strategy", None if self.regime_strategy is None
                           else build_nested(self.regime_strategy, "regime_strategy"))
        if self.min_rows_needed > self.lookback_days:
            raise StrategyConfigError(
                f"lookback_days: {self.lookback_days} leaves no room for the feature windows "
                f"(max(vol_window_days, trend_window_days) = "
                f"{max(self.vol_window_days, self.trend_window_days)}) and "
                f"{10 * self.n_regimes} clustered days")

    def _build_fixed(self, tables: Any) -> tuple[Fixed, ...]:
        if isinstance(tables, (str, Mapping)) or not isinstance(tables, Sequence) \
                or len(tables) != self.n_regimes:
            raise StrategyConfigError(f"regime_weights: expected a list of {self.n_regimes} "
                                      f"tables (one per regime, low to high volatility), got "
                                      f"{tables!r}")
        out = []
        for i, table in enumerate(tables):
            try:
                out.append(Fixed(weights=table))
            except StrategyConfigError as exc:
                raise StrategyConfigError(f"regime_weights[{i}]: {exc}") from exc
        return tuple(out)

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        tables = {f"regime_weights[{i}]": tuple(fixed.targets)
                  for i, fixed in enumerate(self._fixed, start=1)}
        nested = {} if self._strategy is None else nested_symbols("regime_strategy", self._strategy)
        return {**tables, **nested}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        """Too few symbols for the market features, and the nested regime strategy's (it
        sees the same symbols, on the regime's days)."""
        nested = ({} if self._strategy is None
                  else nested_universe_problems("regime_strategy", self._strategy, symbols))
        return {**too_few_symbols(self, symbols), **nested}

    @property
    def min_rows_needed(self) -> int:
        return max(self.vol_window_days, self.trend_window_days) + 10 * self.n_regimes

    def regimes(self, prices: pd.DataFrame) -> RegimeFit:
        """Fit the regimes on the window ending at the as-of (last) row."""
        return self._fit(simple_returns(prices, self.lookback_days), prices)

    def _fit(self, returns: pd.DataFrame, prices: pd.DataFrame) -> RegimeFit:
        if len(returns) < self.min_rows_needed:
            raise StrategyError(f"regime_kmeans: {len(returns)} return rows as of "
                                f"{prices.index[-1].date()}, need {self.min_rows_needed} "
                                f"(feature windows + {10 * self.n_regimes} clustered days)")
        feats = market_features(returns, self.vol_window_days, self.trend_window_days)
        return fit_regimes(feats, self.n_regimes, self.random_state)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        returns = simple_returns(prices, self.lookback_days)
        fit = self._fit(returns, prices)
        log.debug("regime_detected", strategy=self.name, regime=fit.current,
                  regime_vols=[round(float(v), 4) for v in fit.regime_vols],
                  asof=str(prices.index[-1].date()))
        if self._strategy is None:
            return finalize_weights(self._fixed[fit.current].target_weights(prices), self.name)
        in_regime = returns.index.isin(fit.dates[fit.labels == fit.current])
        path = regime_prices(returns, in_regime)
        w = nested_weights(self._strategy, path, "regime_strategy", current_weights)
        return finalize_weights(w.reindex(prices.columns, fill_value=0.0), self.name)

