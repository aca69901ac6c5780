"""Everything a config refers to, checked before the first cycle (``check-config``, ``run``,
``once``): the universe against the price file where the data is local, the simulator's
replay start against the history the strategy and risk step need, and every symbol the
strategy, its fallback and the risk step name against the universe and its exclusions.

All problems are reported at once, each naming its key path (1-based where users count:
``[strategy.params].views[1].assets``), so one edit-and-retry fixes them all.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from contextlib import suppress
from typing import TYPE_CHECKING

from bot.config import Config
from bot.engine.targets import history_rows_needed, risk_limits
from bot.errors import AllocbotError, ConfigError
from brokers.prices import load_price_csv
from strategies import Strategy

if TYPE_CHECKING:
    import pandas as pd


class PreflightError(ConfigError):
    """The config names symbols its universe or price data lack: fix the listed keys."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        super().__init__(f"{count} problem(s): " + "; ".join(self.problems))


def resolved_universe(cfg: Config, prices: pd.DataFrame | None = None
                      ) -> tuple[tuple[str, ...] | None, list[str]]:
    """The universe the bot will trade and the problems found resolving it (None when it
    cannot be known: the price file is unreadable, or Alpaca without symbols). ``prices``:
    the simulator's price file, when the caller has read it already."""
    symbols = cfg.universe.symbols
    if cfg.broker.kind != "sim":
        if not symbols:
            return None, ['[universe].symbols: required with [broker].kind = "alpaca"']
        return symbols, []
    try:
        columns = [str(c) for c in (load_price_csv(cfg.sim.prices) if prices is None
                                    else prices).columns]
    except AllocbotError as exc:
        return symbols, [f"[sim].prices: {exc}"]
    if not symbols:
        return tuple(columns), []
    available = set(columns)
    problems = [
        f"[universe].symbols[{i}]: {symbol!r} is not in the price file {cfg.sim.prices} "
        f"(columns: {', '.join(columns)})"
        for i, symbol in enumerate(symbols, start=1) if symbol not in available
    ]
    return symbols, problems


def strategy_problems(strategy: Strategy, prefix: str, universe: tuple[str, ...],
                      excluded: tuple[str, ...] = ()) -> list[str]:
    """One line per referenced symbol outside ``universe`` or in ``[universe].exclude``
    (the strategy never sees an excluded symbol: one it names could never be weighted,
    and every cycle would hold), under ``prefix`` (its key)."""
    known, dropped = set(universe), set(excluded)
    return [
        f"{prefix}{path}: {symbol!r} is not in the universe" if symbol not in known else
        f"{prefix}{path}: {symbol!r} is in [universe].exclude (the strategy never sees it): "
        "drop it from one of the two"
        for path, symbols in strategy.symbols_referenced().items()
        for symbol in symbols if symbol not in known or symbol in dropped
    ]


def replay_warmup_rows(cfg: Config) -> int:
    """Rows of price history the simulator's first replayed day needs before it."""
    return history_rows_needed(cfg.build_strategy(), risk_limits(cfg)) - 1


def replay_problems(cfg: Config, prices: pd.DataFrame) -> list[str]:
    """``[sim].replay_start`` inside the simulator's price file ``prices``, with the history
    the strategy and the risk step need before it (else every cycle would fail on too few
    rows)."""
    start = cfg.sim.replay_start
    if start is None:
        return []
    dates = [d.date() for d in prices.index]
    row, needed = bisect_left(dates, start), replay_warmup_rows(cfg)
    if row >= len(dates):
        return [f"[sim].replay_start: {start} is after the last date in {cfg.sim.prices} "
                f"({dates[-1]})"]
    if row < needed:
        earliest = dates[needed] if needed < len(dates) else None
        return [f"[sim].replay_start: {start} leaves {row} rows of history before it in "
                f"{cfg.sim.prices}; the strategy and [risk].lookback_days need {needed} ("
                + (f"start on {earliest} or later)" if earliest else "the file is too short)")]
    return []


def config_problems(cfg: Config) -> list[str]:
    """Every symbol-reference problem of ``cfg`` (empty when it is consistent)."""
    prices = None
    if cfg.broker.kind == "sim":
        with suppress(AllocbotError):  # an unreadable file: resolved_universe reports it
            prices = load_price_csv(cfg.sim.prices)  # read once (~15 ms for the sample)
    universe, problems = resolved_universe(cfg, prices)
    if universe is None:
        return problems
    excluded = cfg.universe.exclude
    problems += strategy_problems(cfg.build_strategy(), "[strategy.params].", universe, excluded)
    fallback = cfg.build_fallback()
    if fallback is not None:
        problems += strategy_problems(fallback, "[strategy].fallback.params.", universe,
                                      excluded)
    safe = cfg.risk.safe_asset
    if safe is not None and safe not in universe:
        problems.append(f"[risk].safe_asset: {safe!r} is not in the universe")
    elif safe is not None and safe in excluded:
        problems.append(f"[risk].safe_asset: {safe!r} is in [universe].exclude")
    return problems + ([] if prices is None else replay_problems(cfg, prices))


def check_config_references(cfg: Config) -> None:
    """Raise ``PreflightError`` listing every problem; nothing has been opened or sent."""
    problems = config_problems(cfg)
    if problems:
        raise PreflightError(problems)
