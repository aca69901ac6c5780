"""Everything a config refers to, checked before the first cycle (``check-config``, ``run``,
``once``): the universe against the price file where the data is local, and every symbol
the strategy, its fallback and the risk step name against the universe.

All problems are reported at once, each naming its key path (1-based where users count:
``[strategy.params].views[1].assets``), so one edit-and-retry fixes them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.config import Config
from bot.errors import AllocbotError, ConfigError
from brokers.prices import load_price_csv
from strategies import Strategy


class PreflightError(ConfigError):
    """The config names symbols its universe or price data lack: fix the listed keys."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        super().__init__(f"{count} problem(s): " + "; ".join(self.problems))


def resolved_universe(cfg: Config) -> tuple[tuple[str, ...] | None, list[str]]:
    """The universe the bot will trade and the problems found resolving it (None when it
    cannot be known: the price file is unreadable, or Alpaca without symbols)."""
    symbols = cfg.universe.symbols
    if cfg.broker.kind != "sim":
        if not symbols:
            return None, ['[universe].symbols: required with [broker].kind = "alpaca"']
        return symbols, []
    try:
        columns = [str(c) for c in load_price_csv(cfg.sim.prices).columns]
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


def strategy_problems(strategy: Strategy, prefix: str, universe: tuple[str, ...]) -> list[str]:
    """One line per referenced symbol outside ``universe``, under ``prefix`` (its key)."""
    known = set(universe)
    return [
        f"{prefix}{path}: {symbol!r} is not in the universe"
        for path, symbols in strategy.symbols_referenced().items()
        for symbol in symbols if symbol not in known
    ]


def config_problems(cfg: Config) -> list[str]:
    """Every symbol-reference problem of ``cfg`` (empty when it is consistent)."""
    universe, problems = resolved_universe(cfg)
    if universe is None:
        return problems
    problems += strategy_problems(cfg.build_strategy(), "[strategy.params].", universe)
    fallback = cfg.build_fallback()
    if fallback is not None:
        problems += strategy_problems(fallback, "[strategy].fallback.params.", universe)
    safe = cfg.risk.safe_asset
    if safe is not None and safe not in universe:
        problems.append(f"[risk].safe_asset: {safe!r} is not in the universe")
    return problems


def check_config_references(cfg: Config) -> None:
    """Raise ``PreflightError`` listing every problem; nothing has been opened or sent."""
    problems = config_problems(cfg)
    if problems:
        raise PreflightError(problems)
