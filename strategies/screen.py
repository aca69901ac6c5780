"""``screen``: drop the symbols of a base allocation whose score (ESG or any other) fails.

Scores come from a CSV read once when the strategy is built (``symbol,score`` for static
scores, or ``date,symbol,score`` for a point-in-time history: on as-of date t a symbol's
score is its latest row dated ≤ t) or from an inline ``scores`` mapping. Afterwards the
strategy is a pure function of prices and the as-of date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from strategies.base import (
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    finalize_weights,
    load_data_file,
    nested_symbols,
    nested_universe_problems,
    register,
)
from strategies.errors import InputDataError
from strategies.static import asof_row
from strategies.tactical import StrategySpec, build_nested, nested_weights

REDISTRIBUTE = ("pro_rata", "cash")
UNSCORED = ("error", "exclude")
_FAR_PAST = pd.Timestamp("1900-01-01")


def load_score_file(path: str | Path) -> pd.DataFrame:
    """Long table ``date, symbol, score`` sorted by date (static files get a far-past date).

    Raises:
        InputDataError: missing file, missing columns, non-numeric or non-finite scores,
            bad dates, a symbol scored twice on one date — starting with the path and
            naming the row (the strategy adds the key: ``score_file: <path>: ...``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: not found")
    try:
        raw = pd.read_csv(path, dtype={"symbol": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: cannot parse as CSV: {exc}") from exc
    missing = {"symbol", "score"} - set(raw.columns)
    if missing:
        raise InputDataError(f"{path}: missing column(s) {sorted(missing)}; expected "
                             f"symbol,score or date,symbol,score; got {list(raw.columns)}")
    scores = pd.to_numeric(raw["score"], errors="coerce")
    bad = raw.index[~np.isfinite(scores.to_numpy(dtype=float))]
    if len(bad):
        row = int(bad[0])
        raise InputDataError(f"{path}: row {row + 2} ({raw['symbol'].iloc[row]}): "
                             f"score {raw['score'].iloc[row]!r} is not a finite number")
    if "date" in raw.columns:
        dates = pd.to_datetime(raw["date"], format="%Y-%m-%d", errors="coerce")
        if dates.isna().any():
            row = int(np.flatnonzero(dates.isna().to_numpy())[0])
            raise InputDataError(f"{path}: row {row + 2}: date "
                                 f"{raw['date'].iloc[row]!r} is not YYYY-MM-DD")
    else:
        dates = pd.Series(_FAR_PAST, index=raw.index)
    table = pd.DataFrame({"date": dates, "symbol": raw["symbol"].str.strip(), "score": scores})
    dup = table.duplicated(["date", "symbol"])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputDataError(f"{path}: {table['symbol'].iloc[row]} is scored twice "
                             f"on {table['date'].iloc[row].date()} (row {row + 2})")
    return table.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)


def scores_asof(table: pd.DataFrame, asof: pd.Timestamp) -> pd.Series:
    """Each symbol's latest score dated ≤ ``asof`` (point in time: nothing later is seen)."""
    known = table[table["date"] <= asof]
    return known.groupby("symbol", sort=True)["score"].last()


def passing_symbols(scores: pd.Series, min_score: float | None,
                    top_fraction: float | None) -> set[str]:
    """Symbols with score ≥ ``min_score``, or the best ceil(top_fraction × n) (ties by name)."""
    if min_score is not None:
        return set(scores.index[scores.to_numpy() >= min_score])
    keep = math.ceil(float(top_fraction) * len(scores) - 1e-12)  # type: ignore[arg-type]
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return {symbol for symbol, _ in ranked[:keep]}


@register("screen")
@dataclass(frozen=True, slots=True)
class Screen(Strategy):
    """Zero the base strategy's weight on symbols whose score fails the screen.

    Args:
        base: the allocation to screen (a strategy spec).
        score_file: CSV path, ``symbol,score`` or ``date,symbol,score`` (point in time).
        scores: inline symbol → score instead of a file (exactly one of the two).
        min_score: keep symbols scoring ≥ this (exactly one of min_score/top_fraction).
        top_fraction: keep the best ceil(fraction × n) scored universe symbols, (0, 1].
        redistribute: ``"pro_rata"`` (screened-out weight goes to the kept symbols in
            proportion to their base weights; all cash if none is kept) or ``"cash"``.
        unscored: a universe symbol without a score (yet) on the as-of date: ``"error"``
            (StrategyError naming it and the date) or ``"exclude"`` (screened out).

    Symbols in the scores but not in the universe are ignored: one score file can serve
    several universes. The screen ranks only the universe's symbols.
    """

    base: StrategySpec = None  # type: ignore[assignment]
    score_file: str | None = None
    scores: Mapping[str, float] | None = None
    min_score: float | None = None
    top_fraction: float | None = None
    redistribute: str = "pro_rata"
    unscored: str = "error"
    _base: Strategy = field(init=False, repr=False, compare=False)
    _table: pd.DataFrame = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "screen"

    def __post_init__(self) -> None:
        if (self.min_score is None) == (self.top_fraction is None):
            raise StrategyConfigError("screen: set exactly one of min_score or top_fraction")
        if self.min_score is not None:
            check_float(self.min_score, "min_score", -math.inf, math.inf)
        if self.top_fraction is not None:
            check_float(self.top_fraction, "top_fraction", 0.0, 1.0, lo_open=True)
        if self.redistribute not in REDISTRIBUTE:
            raise StrategyConfigError(f"redistribute: expected one of {REDISTRIBUTE}, "
                                      f"got {self.redistribute!r}")
        if self.unscored not in UNSCORED:
            raise StrategyConfigError(f"unscored: expected one of {UNSCORED}, "
                                      f"got {self.unscored!r}")
        object.__setattr__(self, "_table", self._load_scores())
        object.__setattr__(self, "_base", build_nested(self.base, "base", self.name))

    def _load_scores(self) -> pd.DataFrame:
        if (self.score_file is None) == (self.scores is None):
            raise StrategyConfigError("screen: set exactly one of score_file or scores")
        if self.score_file is not None:
            return load_data_file("score_file", self.score_file, load_score_file)
        if not isinstance(self.scores, Mapping) or not self.scores:
            raise StrategyConfigError("scores: expected a non-empty mapping symbol -> score")
        for symbol, value in self.scores.items():
            check_float(value, f"scores.{symbol}", -math.inf, math.inf)
        return pd.DataFrame({"date": _FAR_PAST, "symbol": list(self.scores),
                             "score": [float(v) for v in self.scores.values()]})

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        """The nested base's (scores may name symbols outside the universe: ignored)."""
        return nested_symbols("base", self._base)

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        """The nested base's: it runs on the whole universe, the screen zeroes its weights
        afterwards."""
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
        asof = prices.index[-1]
        known = scores_asof(self._table, asof)
        universe = list(prices.columns)
        unscored = [s for s in universe if s not in known.index]
        if unscored and self.unscored == "error":
            raise StrategyError(f"strategy {self.name!r}: no score for {unscored} on or before "
                                f"{asof.date()}; add them to the scores or set "
                                f"unscored = \"exclude\"")
        scored = known.reindex([s for s in universe if s in known.index])
        keep = passing_symbols(scored, self.min_score, self.top_fraction)
        w = nested_weights(self._base, prices, "base")
        kept = w.index.isin(sorted(keep))
        out = w.where(kept, 0.0)
        if self.redistribute == "pro_rata" and float(out.sum()) > 0:
            out = out * (float(w.sum()) / float(out.sum()))
        return finalize_weights(out, self.name)
