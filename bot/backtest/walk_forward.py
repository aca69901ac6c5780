"""Walk-forward evaluation: refit on each training window, trade the following test window.

``TRAIN:TEST`` (trading days, e.g. ``756:63``): the backtest is cut into consecutive test
windows of TEST days; at the start of each, the strategy is refitted on the TRAIN days
ending that day (and on nothing else: it is handed only those rows), and its targets are
held for the window. The stitched test windows form one continuous account, whose
metrics are therefore all out of sample.

The strategy's lookback and TRAIN: a strategy with a ``lookback_days`` parameter (the
learning ones: ``ml_regression``, the optimizers) that the config leaves unset gets it set
to TRAIN, so the fit uses the whole training window; a ``lookback_days`` the config (or a
sweep trial) sets is kept, and the strategy estimates on its own last ``lookback_days``
returns of each training window. Either way the training window must hold the strategy's
whole lookback (TRAIN ≥ its ``lookback_days``/``warmup_days``, the rows a backtest's
first day needs before it): a shorter TRAIN is refused (ConfigError, exit 2) rather than run as a
different, shorter-lookback strategy on the rows there are.
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
    """The configured strategy for walk-forward: its ``lookback_days`` set to TRAIN when
    the config leaves it unset (the fit then uses the whole training window), kept when
    set; refused when TRAIN is shorter than its lookback (``check_training_window``)."""
    merged = dict(params)
    if "lookback_days" in strategies.parameters(name) and "lookback_days" not in merged:
        merged["lookback_days"] = wf.train_days
    learner = strategies.create(name, **merged)
    check_training_window(learner, wf)
    return learner


def check_training_window(inner: Strategy, wf: WalkForward) -> None:
    """Refuse a TRAIN shorter than the strategy's lookback: each fit is handed only the
    TRAIN days before its test window, and a strategy handed fewer rows than it needs
    would silently estimate on what there is (a 126-day momentum ranked on 10 days)."""
    needed = max(inner.lookback_days, inner.warmup_days)
    if wf.train_days < needed:
        raise ConfigError(
            f"--walk-forward {wf.train_days}:{wf.test_days}: TRAIN {wf.train_days} days is "
            f"shorter than the {needed}-day lookback of strategy {inner.name!r} (each fit "
            f"sees only the TRAIN days before its test window): use TRAIN >= {needed}, or "
            "a shorter lookback")


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
    # Not in the repr: the cycle keys its held signal by a hash of repr(strategy)
    # (bot.engine.targets._strategy_key), which must name the strategy (inner and
    # TRAIN:TEST), stay the same as fits accumulate within a backtest and cost the same
    # on every cycle; a repr of every fitted Series made the backtest quadratic in folds.
    starts: pd.DatetimeIndex = field(repr=False, compare=False)
    name: str = ""
    fits: dict[pd.Timestamp, pd.Series] = field(default_factory=dict, repr=False,
                                                compare=False)

    def __post_init__(self) -> None:
        check_training_window(self.inner, self.wf)
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
