"""Everything a config refers to, checked before the first cycle (``check-config``, ``run``,
``once``): the universe against the price file where the data is local, the simulator's
price file, replay start and (a state dir's replay under way) replay day against the
history the strategy and risk step need, a ``fixed`` target against the order guard, every
symbol the strategy, its fallback and the risk step name against the universe and its
exclusions, the strategy's and its fallback's parameters against the size of the universe
they see (``Strategy.universe_problems``: too few symbols to estimate from, bounds no fully
invested portfolio satisfies, a momentum ``k`` above the symbols there are), and
``[backtest].benchmark`` against the universe.

All problems are reported at once, each naming its key path (1-based where users count:
``[strategy.params].views[1].assets``), so one edit-and-retry fixes them all.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from contextlib import suppress
from datetime import date
from typing import TYPE_CHECKING

from bot.config import STRATEGY_INPUT_ERRORS, Config
from bot.engine.targets import history_rows_needed, risk_limits
from bot.errors import AllocbotError, ConfigError
from brokers.prices import load_price_csv
from strategies import Strategy

if TYPE_CHECKING:
    import pandas as pd

    from brokers.sim.ledger import LedgerState


class PreflightError(ConfigError):
    """The config names symbols its universe or price data lack, or asks what they cannot
    give: fix the listed keys."""

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


def universe_fit_problems(strategy: Strategy, key: str, params_prefix: str,
                          universe: tuple[str, ...], excluded: tuple[str, ...] = ()
                          ) -> list[str]:
    """One line per reason ``strategy`` can never compute over the universe it sees
    (``universe`` less ``excluded``), so every cycle would hold: ``Strategy.
    universe_problems``' key paths under ``params_prefix`` (its parameters' key), a
    problem of the strategy itself (too few symbols) under ``key`` (where it is chosen)."""
    dropped = set(excluded)
    seen = tuple(symbol for symbol in universe if symbol not in dropped)
    return [f"{params_prefix}{path}: {problem}" if path else f"{key}: {problem}"
            for path, problem in strategy.universe_problems(seen).items()]


def config_fit_problems(cfg: Config, universe: tuple[str, ...],
                        strategy: Strategy | None = None, from_cash: bool = False) -> list[str]:
    """``strategy_problems`` and ``universe_fit_problems`` of the config's strategy and its
    fallback over ``universe`` (less ``[universe].exclude``): the one fit check of every
    command that computes (a backtest ran every cycle held on a ``fixed`` preset naming an
    excluded symbol, which ``check-config`` and ``once`` refused). ``from_cash``: the
    command trades from an all-cash account (a backtest, a sweep's or a comparison's):
    also ``order_guard_problems`` (an invested account's rebalancing orders are small:
    ``run``/``once`` refused a config that traded fine)."""
    strategy = cfg.build_strategy() if strategy is None else strategy
    excluded, fallback = cfg.universe.exclude, cfg.build_fallback()
    chosen = [(strategy, "[strategy].name", "[strategy.params].")] + (
        [] if fallback is None else
        [(fallback, "[strategy].fallback", "[strategy].fallback.params.")])
    problems = [line for s, _, prefix in chosen
                for line in strategy_problems(s, prefix, universe, excluded)]
    problems += [line for s, key, prefix in chosen
                 for line in universe_fit_problems(s, key, prefix, universe, excluded)]
    return problems + (order_guard_problems(cfg, strategy) if from_cash else [])


def order_guard_problems(cfg: Config, strategy: Strategy) -> list[str]:
    """A static strategy's (``fixed``) target above ``[guards].max_order_fraction``: the
    first buy from cash would breach the guard, so every cycle would be ``guard_blocked``.
    Targets as bought: capped by ``[risk].max_weight``, scaled by ``[rebalance].cash_buffer``."""
    limit, targets = cfg.guards.max_order_fraction, getattr(strategy, "targets", None)
    if not (cfg.guards.enabled and strategy.targets_are_static and isinstance(targets, Mapping)):
        return []
    import numpy as np

    from bot.core.drift import buffered_targets
    from bot.core.risk import capped_weights

    cap, safe = cfg.risk.max_weight, cfg.risk.safe_asset
    symbols = [str(s) for s in targets] + ([safe] if safe and safe not in targets else [])
    w = np.array([float(targets.get(s, 0.0)) for s in symbols])
    capped = w if cap is None else capped_weights(w, cap, symbols.index(safe) if safe else None)[0]
    bought = buffered_targets(capped, cfg.rebalance.cash_buffer)  # the risk step's, then the
    over = sorted(((float(b), s) for b, s in zip(bought, symbols, strict=True)  # planner's
                   if b > limit), reverse=True)
    if not over:
        return []
    plural = "s" if len(over) > 1 else ""
    named = " and ".join(f"{s} ({w:g})" for w, s in over)
    after = [key for key, applied in (("[risk].max_weight", not np.array_equal(capped, w)), (
        "[rebalance].cash_buffer", not np.array_equal(bought, capped))) if applied]
    if after:
        named += f" after {' and '.join(after)}"
    return [f"[guards].max_order_fraction {limit:g} is below the target weight{plural} of "
            f"{named}: the first buy from cash could never pass (every cycle would be "
            f"guard_blocked); raise it to at least {over[0][0]:g} or lower the target{plural}"]


def check_universe_fit(cfg: Config, universe: tuple[str, ...], from_cash: bool = False
                       ) -> None:
    """Raise ``PreflightError`` when the config's strategy (or fallback) can never compute
    over ``universe``, the one a backtest or ``weights`` runs on (``--prices`` may differ);
    ``from_cash``: see ``config_fit_problems``."""
    problems = config_fit_problems(cfg, universe, from_cash=from_cash)
    if problems:
        raise PreflightError(problems)


def replay_warmup_rows(cfg: Config) -> int:
    """Rows of price history the simulator's first replayed day needs before it."""
    return history_rows_needed(cfg.build_strategy(), risk_limits(cfg)) - 1


def history_problems(cfg: Config, prices: pd.DataFrame, strategy: Strategy | None = None
                     ) -> list[str]:
    """The simulator's price file ``prices`` long enough for the history a cycle needs
    (``history_rows_needed``, the rule ``once`` and ``run`` enforce on every cycle), under
    the key that asks for it: the strategy's parameters, or ``[risk].lookback_days`` when
    the risk step's window is the longer. Whatever the replay start, a shorter file fails
    every cycle. ``strategy``: the configured one, when the caller has built it."""
    strategy = cfg.build_strategy() if strategy is None else strategy
    limits = risk_limits(cfg)
    needed = history_rows_needed(strategy, limits)
    if len(prices) >= needed:
        return []
    key = ("[strategy.params]" if strategy.warmup_days >= limits.lookback_days
           else "[risk].lookback_days")
    span = f" ({prices.index[0].date()} to {prices.index[-1].date()})" if len(prices) else ""
    return [f"{key}: the price file {cfg.sim.prices} ([sim].prices) has {len(prices)} rows"
            f"{span}; strategy {strategy.name!r} (warm-up {strategy.warmup_days} rows) and the "
            f"risk step ([risk].lookback_days = {limits.lookback_days}) need {needed}, so every "
            "cycle would fail: shorten the lookback, or use a price file with more history"]


def replay_problems(cfg: Config, prices: pd.DataFrame, strategy: Strategy | None = None
                    ) -> list[str]:
    """``[sim].replay_start`` inside the simulator's price file ``prices``, with the history
    the strategy and the risk step need before it (else every cycle would fail on too few
    rows); a file too short whatever the start is ``history_problems``'."""
    strategy = cfg.build_strategy() if strategy is None else strategy
    short = history_problems(cfg, prices, strategy)
    start = cfg.sim.replay_start
    if start is None:
        return short
    dates = [d.date() for d in prices.index]
    row = bisect_left(dates, start)
    needed = history_rows_needed(strategy, risk_limits(cfg)) - 1  # replay_warmup_rows
    if row >= len(dates):
        return [*short, f"[sim].replay_start: {start} is after the last date in "
                        f"{cfg.sim.prices} ({dates[-1]})"]
    if short:  # no start in this file leaves enough rows: the lookback is the fix
        return short
    if row < needed:  # the file is long enough (``short`` is empty): dates[needed] exists
        return [f"[sim].replay_start: {start} leaves {row} rows of history before it in "
                f"{cfg.sim.prices}; the strategy and [risk].lookback_days need {needed} "
                f"(start on {dates[needed]} or later)"]
    return []


def stored_sim_account(cfg: Config) -> LedgerState | None:
    """The state dir's simulated account, read-only (SQLite ``mode=ro``). None for a fresh
    state dir and a file that cannot be read: the writer's open reports that one."""
    if not cfg.state_db.is_file():
        return None
    import sqlite3

    from brokers.sim.ledger import SimLedger

    try:
        ledger = SimLedger(cfg.state_db, read_only=True)
    except AllocbotError:
        return None
    try:
        return ledger.load_or_create(0.0)
    except (AllocbotError, sqlite3.Error):
        return None
    finally:
        ledger.close()


def replay_day(state: LedgerState | None) -> date | None:
    """The replay day a stored simulated account last opened (None: no account, or one
    not yet woken)."""
    if state is None or state.cursor_date is None:
        return None
    try:
        return date.fromisoformat(state.cursor_date)
    except ValueError:
        return None


def replay_position_problems(cfg: Config, prices: pd.DataFrame, day: date,
                             strategy: Strategy | None = None) -> list[str]:
    """The next cycle of a state dir whose replay is at ``day`` has the rows a cycle needs
    (``[sim].replay_start`` only places a new account's first day; each cycle short of
    history fails and uses up a replayed day); a file too short is ``history_problems``'."""
    strategy = cfg.build_strategy() if strategy is None else strategy
    short = history_problems(cfg, prices, strategy)
    limits = risk_limits(cfg)
    needed = history_rows_needed(strategy, limits)
    dates: list[date] = list(prices.index.date)
    row = bisect_left(dates, day)
    if short or row + 1 >= len(dates) or dates[row] != day:
        return short  # no day after it (yet); a day not in the file (the broker refuses it)
    rows = row + 2  # the next cycle's day and every row before it
    if rows >= needed:
        return []
    key = ("[strategy.params]" if strategy.warmup_days >= limits.lookback_days
           else "[risk].lookback_days")
    return [f"{key}: the replay in state dir {cfg.bot.state_dir} is at {day}, so its next "
            f"cycle ({dates[row + 1]}) has {rows} rows of price history; strategy "
            f"{strategy.name!r} (warm-up {strategy.warmup_days} rows) and the risk step "
            f"([risk].lookback_days = {limits.lookback_days}) need {needed}, so its next "
            f"{needed - rows} cycle{'s' if needed - rows > 1 else ''} (to {dates[needed - 2]}) "
            "would fail: shorten the lookback, or point [bot].state_dir at a new directory "
            f"with a [sim].replay_start on {dates[needed - 1]} or later"]


def config_problems(cfg: Config) -> list[str]:
    """Every problem of ``cfg`` a cycle would meet on every run (empty when it is
    consistent)."""
    prices = None
    if cfg.broker.kind == "sim":
        with suppress(AllocbotError):  # an unreadable file: resolved_universe reports it
            prices = load_price_csv(cfg.sim.prices)  # read once (~15 ms for the sample)
    universe, problems = resolved_universe(cfg, prices)
    if universe is None:
        return problems
    excluded, strategy = cfg.universe.exclude, cfg.build_strategy()
    problems += config_fit_problems(cfg, universe, strategy)
    safe = cfg.risk.safe_asset
    if safe is not None and safe not in universe:
        problems.append(f"[risk].safe_asset: {safe!r} is not in the universe")
    elif safe is not None and safe in excluded:
        problems.append(f"[risk].safe_asset: {safe!r} is in [universe].exclude")
    problems += benchmark_problems(cfg, universe)
    if prices is None:
        return problems
    account = stored_sim_account(cfg)
    if account is not None:  # the simulator refuses to open an account these prices lack
        from brokers.sim.broker import stored_account_problems

        refused = stored_account_problems(account, set(prices.index.date),
                                          {str(c) for c in prices.columns})
        if refused:
            return problems + [f"[sim].prices {cfg.sim.prices} and the state dir "
                               f"{cfg.bot.state_dir}: {p}" for p in refused]
    day = replay_day(account)  # a replay under way ignores [sim].replay_start
    return problems + (replay_problems(cfg, prices, strategy) if day is None
                       else replay_position_problems(cfg, prices, day, strategy))


BENCHMARK_KEY = "[backtest].benchmark"
NO_BENCHMARK = "none"  # the benchmark name that asks for no benchmark run at all


def build_benchmark(name: str, universe: tuple[str, ...], source: str = BENCHMARK_KEY
                    ) -> Strategy | None:
    """The backtest's benchmark ``name``: a ``fixed`` preset whose symbols are all in
    ``universe``, or a registry name that builds with its default parameters; None for
    ``"none"`` (no benchmark: the report has the strategy alone).

    Raises:
        ConfigError: naming ``source``, where the name came from (``[backtest].benchmark``,
            or ``--benchmark`` on the command line), and the missing symbols or the reason.
    """
    import strategies
    from strategies.static import PRESETS

    where = f"{source} {name}" if source.startswith("--") else f"{source} = {name!r}"
    if name == NO_BENCHMARK:
        return None
    if name in PRESETS:
        missing = [s for s in PRESETS[name] if s not in universe]
        if missing:
            raise ConfigError(f"{where}: symbol(s) {missing} are not in the universe "
                              f"{list(universe)}")
        return strategies.create("fixed", preset=name)
    try:
        return strategies.create(name)
    except STRATEGY_INPUT_ERRORS as exc:
        raise ConfigError(
            f"{where}: {exc} (give a strategy name that works with default parameters, a "
            f"fixed preset: {', '.join(sorted(PRESETS))}, or {NO_BENCHMARK!r} for no "
            "benchmark)") from None


def benchmark_problems(cfg: Config, universe: tuple[str, ...]) -> list[str]:
    """``[backtest].benchmark`` buildable over the universe (``allocbot backtest`` would
    refuse it; ``--prices`` may name another file, so this checks the configured one)."""
    name = cfg.backtest.benchmark
    if name is None:
        return []
    try:
        build_benchmark(name, universe)
    except ConfigError as exc:
        return [str(exc)]
    return []


def check_config_references(cfg: Config) -> None:
    """Raise ``PreflightError`` listing every problem; nothing has been opened or sent."""
    problems = config_problems(cfg)
    if problems:
        raise PreflightError(problems)
