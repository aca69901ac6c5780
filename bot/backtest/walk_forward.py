"""Walk-forward evaluation: refit on each training window, trade the following test window.

``TRAIN:TEST`` (trading days, e.g. ``756:63``): the backtest is cut into consecutive test
windows of TEST days; at the start of each, the strategy is refitted on the TRAIN days
ending that day (and on nothing else: it is handed only those rows), and its targets are
held for the window. The stitched test windows form one continuous account, whose
metrics are therefore all out of sample. Strategies with a ``lookback_days`` parameter
(the learning ones: ``ml_regression``, the optimizers) get it set to TRAIN so the fit uses
the whole training window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

import strategies
from strategies import Strategy
from strategies.errors import ConfigError, StrategyError


@dataclass(frozen=True, slots=True)
class WalkForward:
    """Training and test window lengths in trading days (rows of the price data)."""

    train_days: int
    test_days: int

    def __post_init__(self) -> None:
        if self.train_days < 2 or self.test_days < 1:
            raise ConfigError(f"walk-forward needs TRAIN ≥ 2 and TEST ≥ 1 days, got "
                             f"{self.train_days}:{self.test_days}")


def parse_walk_forward(text: str) -> WalkForward:
    """``"756:63"`` → WalkForward(756, 63); a clear ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--walk-forward {text!r}: expected TRAIN:TEST in trading days, "
                         "e.g. 756:63")
    return WalkForward(int(match.group(1)), int(match.group(2)))


def fold_starts(dates: pd.DatetimeIndex, first_row: int, test_days: int) -> pd.DatetimeIndex:
    """The first day of each test window: every ``test_days`` rows from ``first_row``."""
    return dates[first_row::test_days]


def build_learner(name: str, params: dict[str, Any], wf: WalkForward) -> Strategy:
    """The configured strategy with its ``lookback_days`` (training window) set to TRAIN."""
    merged = dict(params)
    if "lookback_days" in strategies.parameters(name):
        merged["lookback_days"] = wf.train_days
    return strategies.create(name, **merged)


@dataclass(slots=True)
class WalkForwardStrategy(Strategy):
    """A strategy refitted once per test window on that window's training rows only.

    ``target_weights(prices)`` finds the test window of the as-of date (the last row),
    fits ``inner`` on the ``train_days`` returns ending at the window's first day and
    returns those targets for every as-of date in the window. The memo holds one result
    per window; it is a cache of a pure function of data the as-of date already knows.
    """

    inner: Strategy
    wf: WalkForward
    starts: pd.DatetimeIndex
    name: str = ""
    fits: dict[pd.Timestamp, pd.Series] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = f"{self.inner.name}@wf{self.wf.train_days}:{self.wf.test_days}"

    @property
    def lookback_days(self) -> int:
        """Rows the cycle must fetch: the training window plus a test window's elapsed days."""
        return self.wf.train_days + self.wf.test_days + 1

    @property
    def warmup_days(self) -> int:
        """Rows needed before the first test day: the training window."""
        return self.wf.train_days

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        asof = prices.index[-1]
        k = int(self.starts.searchsorted(asof, side="right")) - 1
        if k < 0:
            raise StrategyError(f"walk-forward: {asof.date()} is before the first test window "
                             f"({self.starts[0].date()})")
        start = self.starts[k]
        if start not in self.fits:
            train = prices.loc[:start].iloc[-(self.wf.train_days + 1):]
            self.fits[start] = self.inner.target_weights(train, current_weights)
        return self.fits[start].reindex(prices.columns, fill_value=0.0)

    def folds(self, last_day: pd.Timestamp, dates: pd.DatetimeIndex) -> list[dict[str, str]]:
        """Training and test spans of each window (for metrics.json)."""
        out = []
        for i, start in enumerate(self.starts):
            row = int(dates.get_loc(start))
            end = self.starts[i + 1] if i + 1 < len(self.starts) else None
            test_end = dates[int(dates.get_loc(end)) - 1] if end is not None else last_day
            out.append({"train_start": str(dates[max(row - self.wf.train_days, 0)].date()),
                        "train_end": str(start.date()), "test_start": str(start.date()),
                        "test_end": str(test_end.date())})
        return out
