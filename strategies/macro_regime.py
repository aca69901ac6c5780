"""``macro_regime``: hold the weights of the current growth × inflation regime.

Each macro series is point in time: a value dated d (the reference period) is usable
only from d + its publication lag (calendar days). On the as-of date t, growth (resp.
inflation) is *rising* when its latest usable value is above the mean of the
``trend_window`` usable values before it, else *falling*. The four combinations are the
four economic environments ("seasons") of Bridgewater's All Weather approach — rising or
falling growth, rising or falling inflation relative to expectations — for which Dalio
("Engineering Targeted Returns and Risks", Bridgewater 2004; "The All Weather Story",
Bridgewater 2012) names the assets that do well: equities and commodities when growth
rises, nominal bonds when it falls, commodities/gold (and inflation-linked bonds) when
inflation rises, equities and nominal bonds when it falls. ``ALL_WEATHER_SEASONS`` turns
that table into holdings over our ETF universe; the figures are ours (illustrative), not
Bridgewater's. The macro file is read once, when the strategy is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd

from strategies.base import (
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    check_int,
    finalize_weights,
    load_data_file,
    nested_symbols,
    nested_universe_problems,
    register,
)
from strategies.errors import InputDataError
from strategies.static import asof_row, check_fixed_weights
from strategies.tactical import StrategySpec, build_nested, nested_weights

REGIMES = ("growth_up_inflation_up", "growth_up_inflation_down",
           "growth_down_inflation_up", "growth_down_inflation_down")
ALL_WEATHER_SEASONS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    # rising growth, rising inflation: equities + commodities + gold
    "growth_up_inflation_up": MappingProxyType({"SPY": 0.40, "DBC": 0.30, "GLD": 0.30}),
    # rising growth, falling inflation ("goldilocks"): equities + nominal bonds
    "growth_up_inflation_down": MappingProxyType({"SPY": 0.60, "IEF": 0.20, "TLT": 0.20}),
    # falling growth, rising inflation (stagflation): gold, commodities, and IEF as the
    # proxy for inflation-linked bonds (similar duration; as the ``endowment`` preset)
    "growth_down_inflation_up": MappingProxyType({"GLD": 0.50, "DBC": 0.25, "IEF": 0.25}),
    # falling growth, falling inflation (deflationary slump): nominal bonds + gold
    "growth_down_inflation_down": MappingProxyType({"TLT": 0.50, "IEF": 0.30, "GLD": 0.20}),
})
DEFAULT_LAGS_DAYS: Mapping[str, int] = MappingProxyType({"gdp_growth": 30, "cpi_inflation": 15})


def load_macro_csv(path: str | Path) -> pd.DataFrame:
    """``date`` (YYYY-MM-DD, the reference period) + one numeric column per series.

    An empty cell means "no observation that date" (series of different frequencies share
    a file); it is never filled. Raises InputDataError starting with the path and naming
    the column and row (the strategy adds the key: ``macro_file: <path>: ...``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: not found")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: cannot parse as CSV: {exc}") from exc
    if "date" not in raw.columns or len(raw.columns) < 2:
        raise InputDataError(f"{path}: expected a 'date' column and one column per "
                             f"series, got {list(raw.columns)}")
    dates = pd.to_datetime(raw["date"], format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise InputDataError(f"{path}: row {row + 2}: date {raw['date'].iloc[row]!r} "
                             f"is not YYYY-MM-DD")
    if not dates.is_monotonic_increasing or dates.duplicated().any():
        raise InputDataError(f"{path}: dates must be strictly increasing")
    frame = raw.drop(columns="date").set_index(pd.DatetimeIndex(dates, name="date"))
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any() or np.isinf(values.to_numpy(dtype=float)).any():
            day = values.index[np.flatnonzero(bad.to_numpy() | np.isinf(values.to_numpy()))[0]]
            raise InputDataError(f"{path}: series {column!r} on {day.date()}: "
                                 f"{frame[column].loc[day]!r} is not a finite number")
        frame[column] = values.astype(float)
    return frame


def usable_values(series: pd.Series, lag_days: int, asof: pd.Timestamp) -> pd.Series:
    """The observations published by ``asof``: dated ≤ asof − lag (point in time)."""
    known = series.dropna()  # empty cells are "not observed", not zeros
    return known[known.index + pd.Timedelta(days=lag_days) <= asof]


def series_trend(series: pd.Series, name: str, lag_days: int, asof: pd.Timestamp,
                 trend_window: int, max_staleness_days: int) -> bool:
    """True when the latest usable value is above the mean of the ``trend_window`` before it.

    Raises:
        StrategyError: too few published values, or the latest is staler than allowed —
            naming the series, the as-of date and the last value's date.
    """
    known = usable_values(series, lag_days, asof)
    if len(known) < trend_window + 1:
        raise StrategyError(f"macro series {name!r}: {len(known)} value(s) published by "
                            f"{asof.date()} (lag {lag_days} days); the trend needs "
                            f"{trend_window + 1}")
    last_day = known.index[-1]
    published = last_day + pd.Timedelta(days=lag_days)
    if (asof - published).days > max_staleness_days:
        raise StrategyError(f"macro series {name!r} is stale on {asof.date()}: its latest value "
                            f"is dated {last_day.date()} (published {published.date()}), more "
                            f"than max_staleness_days={max_staleness_days} ago; update the file")
    values = known.to_numpy()
    return bool(values[-1] > values[-trend_window - 1:-1].mean())


def regime_name(growth_rising: bool, inflation_rising: bool) -> str:
    return (f"growth_{'up' if growth_rising else 'down'}_"
            f"inflation_{'up' if inflation_rising else 'down'}")


@register("macro_regime")
@dataclass(frozen=True, slots=True)
class MacroRegime(Strategy):
    """Hold (or tilt a base strategy toward) the weights of the current macro regime.

    Args:
        macro_file: CSV path (required): ``date`` + one column per series. The bundled
            synthetic one is ``bot/sample_market/sample_macro.csv``.
        growth_series, inflation_series: the columns that define the regime.
        publication_lag_days: series → calendar days between a value's date and the day it
            is known; both regime series must be listed (defaults: GDP 30, CPI 15).
        trend_window: published values in the trailing average each value is compared with.
        max_staleness_days: calendar days a latest value may be old (after its publication)
            before the strategy refuses to compute; never forward-filled beyond that.
        regime_weights: regime → {symbol → weight}; default ``ALL_WEATHER_SEASONS``.
        base: optional strategy to tilt; tilt: w = (1 − tilt)·base + tilt·regime weights.
    """

    macro_file: str | None = None
    growth_series: str = "gdp_growth"
    inflation_series: str = "cpi_inflation"
    publication_lag_days: Mapping[str, int] = field(default_factory=lambda: DEFAULT_LAGS_DAYS)
    trend_window: int = 12
    max_staleness_days: int = 120
    regime_weights: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: ALL_WEATHER_SEASONS)
    base: StrategySpec | None = None
    tilt: float = 1.0
    _macro: pd.DataFrame = field(init=False, repr=False, compare=False)
    _base: Strategy | None = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "macro_regime"

    def __post_init__(self) -> None:
        if self.macro_file is None:
            raise StrategyConfigError("macro_file: required; e.g. the bundled synthetic series "
                                      "macro_file = \"bot/sample_market/sample_macro.csv\"")
        check_int(self.trend_window, "trend_window", 1)
        check_int(self.max_staleness_days, "max_staleness_days", 0)
        check_float(self.tilt, "tilt", 0.0, 1.0)
        self._check_regime_weights()
        macro = load_data_file("macro_file", self.macro_file, load_macro_csv)
        for series in (self.growth_series, self.inflation_series):
            if series not in macro.columns:
                raise StrategyConfigError(f"macro series {series!r} is not a column of "
                                          f"{self.macro_file}: {list(macro.columns)}")
            lag = self.publication_lag_days.get(series)
            if lag is None:
                raise StrategyConfigError(f"publication_lag_days: no lag for series {series!r}; "
                                          f"add {series} = <days>")
            check_int(lag, f"publication_lag_days.{series}", 0)
        object.__setattr__(self, "_macro", macro)
        object.__setattr__(self, "_base", None if self.base is None
                           else build_nested(self.base, "base", self.name))

    def _check_regime_weights(self) -> None:
        if not isinstance(self.regime_weights, Mapping):
            raise StrategyConfigError("regime_weights: expected a table regime -> {symbol = w}")
        missing = sorted(set(REGIMES) - set(self.regime_weights))
        unknown = sorted(set(self.regime_weights) - set(REGIMES))
        if missing or unknown:
            raise StrategyConfigError(f"regime_weights: need exactly the regimes {REGIMES}; "
                                      f"missing {missing}, unknown {unknown}")
        for regime, weights in self.regime_weights.items():
            check_fixed_weights(weights, f"regime_weights.{regime}")

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        """Each regime's weighted symbols (the defaults' too: a universe without them is
        refused at start, not on the first cycle) and the nested base's."""
        own = {f"regime_weights.{regime}": tuple(str(s) for s in weights)
               for regime, weights in self.regime_weights.items() if weights}
        return {**(nested_symbols("base", self._base) if self._base is not None else {}), **own}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        """The nested base's, when it is run (``tilt`` < 1)."""
        if self._base is None or self.tilt >= 1:
            return {}
        return nested_universe_problems("base", self._base, symbols)

    @property
    def lookback_days(self) -> int:
        return 1 if self._base is None else self._base.lookback_days

    def regime(self, asof: pd.Timestamp) -> str:
        """The regime known on ``asof`` (point in time)."""
        trends = [series_trend(self._macro[s], s, int(self.publication_lag_days[s]), asof,
                               self.trend_window, self.max_staleness_days)
                  for s in (self.growth_series, self.inflation_series)]
        return regime_name(*trends)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof_row(prices, self.name)
        held = self.regime_weights[self.regime(prices.index[-1])]
        stray = sorted(set().union(*(w.keys() for w in self.regime_weights.values()))
                       - set(prices.columns))
        if stray:
            raise StrategyError(f"strategy {self.name!r}: regime_weights name symbol(s) {stray} "
                                f"not in the universe; add them or set regime_weights")
        w = pd.Series(dict(held), dtype=float).reindex(prices.columns, fill_value=0.0)
        if self._base is not None and self.tilt < 1:
            w = (1 - self.tilt) * nested_weights(self._base, prices, "base") + self.tilt * w
        return finalize_weights(w, self.name)
