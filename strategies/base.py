"""The strategy interface and the registry that maps config names to strategies.

A strategy is a frozen object built from its parameters; ``target_weights(prices)`` is a
pure function of the close-price history up to and including the as-of date (the last
row): weights are fractions of equity, ≥ 0, summing to ≤ 1, the rest is cash.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd

from strategies.errors import AllocbotError, ConfigError, InputDataError, StrategyError

S = TypeVar("S")
WEIGHT_SUM_TOLERANCE = 1e-9
# Annual figures are fractions (0.10 = 10 %): these ceilings refuse a percentage typed as a
# whole number (target_volatility = 10 meaning 10 %) instead of letting it drive the weights.
MAX_ANNUAL_VOLATILITY = 2.0  # target_volatility: 200 % a year
MAX_ANNUAL_RETURN = 1.0  # |views[i].return|: 100 % a year
# risk_free_rate: the bounds of the backtest's ``[backtest] risk_free_rate`` (bot/config.py,
# ``Field(ge=-0.05, le=0.5)``), copied because strategies/ may not import bot/; keep in step.
RISK_FREE_RATE_RANGE = (-0.05, 0.5)
ANNUAL_VOLATILITY = "an annual volatility as a fraction (0.10 = 10 %)"
ANNUAL_RETURN = "an annual return as a fraction (0.08 = 8 %)"
ANNUAL_RATE = "an annual rate as a fraction (0.04 = 4 %)"
# Universe symbols a strategy needs when it estimates from the returns of several assets
# (``estimators.returns_window`` refuses fewer at run time; ``min_symbols`` before it).
ESTIMATION_MIN_SYMBOLS = 2
# How ``universe_problems`` messages name the symbols a strategy is checked against.
UNIVERSE_SEEN = "the universe it sees ([universe].symbols less [universe].exclude)"


class StrategyConfigError(ConfigError):
    """Unknown strategy name or bad parameter; the message names the key."""


class StrategyDataFileError(StrategyConfigError, InputDataError):
    """A data file a parameter names (``macro_file``, ``score_file``) is missing or malformed:
    the message names the key, the file and the reason. A config error (the CLI refuses the
    config naming the key) that is also input data (fix the file)."""


def check_int(value: object, key: str, minimum: int) -> int:
    """``value`` if it is an integer ≥ ``minimum`` (not a bool), else StrategyConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StrategyConfigError(f"{key}: expected an integer ≥ {minimum}, got {value!r}")
    return value


def check_float(value: object, key: str, lo: float, hi: float, *,
                lo_open: bool = False, meaning: str | None = None) -> float:
    """``float(value)`` if it is a finite int or float (not a bool, not a numeric string) in
    [lo, hi] (``lo_open``: (lo, hi]), else StrategyConfigError naming ``key``; ``meaning``
    says what the number is (e.g. ANNUAL_VOLATILITY) in place of "a number"."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise StrategyConfigError(f"{key}: expected {meaning or 'a number'} in "
                                  f"{bracket}{lo}, {hi}], got {value!r}")
    return float(value)  # type: ignore[arg-type]


def load_data_file(key: str, path: object, loader: Callable[[Path], S]) -> S:
    """``loader(path)`` for a data-file parameter (a loader's InputDataError messages start
    with the path); that error (missing file, bad row) becomes StrategyDataFileError
    "``key``: <path>: <reason>", so the config is refused naming the key, not a traceback."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise StrategyConfigError(f"{key}: expected a file path, got {path!r}")
    try:
        return loader(Path(path))
    except InputDataError as exc:
        where = ""
        if not Path(path).is_absolute() and not Path(path).exists():  # say where it looked
            where = f" (a relative path is read from the working directory: {Path.cwd()})"
        raise StrategyDataFileError(f"{key}: {exc}{where}") from exc


@runtime_checkable
class Strategy(Protocol):
    """What the cycle asks of a strategy. Registered strategies subclass it explicitly to
    take the defaults of the optional members below.

    ``target_weights`` is a pure function of the close history up to the as-of date (the
    last row) and, for strategies that weigh trading costs, of the portfolio's current
    weights (fractions of equity by symbol; ``None`` when unknown, e.g. the first cycle).
    """

    @property
    def name(self) -> str:
        """The registry name (``min_variance``)."""
        ...

    #: True when no price can change the targets (``fixed``): the backtest may then skip
    #: the days on which no asset left its drift band.
    targets_are_static: ClassVar[bool] = False
    #: How often the cycle asks for new targets unless ``[strategy] signal`` says otherwise:
    #: price-driven strategies recompute monthly (drift bands still act daily).
    default_signal: ClassVar[str] = "monthly"
    #: Symbols the universe it sees must have for it to compute at all: 2 for a strategy
    #: that estimates from several assets' returns (ESTIMATION_MIN_SYMBOLS); the default
    #: ``universe_problems`` refuses a smaller universe.
    min_symbols: ClassVar[int] = 1

    @property
    def lookback_days(self) -> int:
        """Rows of price history the strategy needs (the cycle fetches at least this many)."""
        ...

    @property
    def warmup_days(self) -> int:
        """Rows of history a backtest needs before its first day (default: the lookback)."""
        return self.lookback_days

    @property
    def label(self) -> str:
        """How reports name this strategy (default: its registry name)."""
        return self.name

    def symbols_referenced(self) -> dict[str, tuple[str, ...]]:
        """Symbols the parameters name, by key path relative to ``[strategy.params]``
        (``views[1].assets``, 1-based where users count), so a config can be checked against
        its universe before the first cycle. Default: none."""
        return {}

    def universe_problems(self, symbols: tuple[str, ...]) -> dict[str, str]:
        """Why the parameters can never work over ``symbols`` (the universe the strategy
        sees: ``[universe].symbols`` less ``[universe].exclude``), so a config is refused
        before the first cycle instead of every cycle holding: problem text by key path
        relative to ``[strategy.params]``, the empty path for the strategy itself (too few
        symbols whatever its parameters). Pure (no I/O). Default: fewer symbols than
        ``min_symbols``."""
        return too_few_symbols(self, symbols)

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series: ...


_REGISTRY: dict[str, Callable[..., Strategy]] = {}
# Registry name → the module that registers it, imported on first use: building
# ``fixed`` must not load scikit-learn (0.6-1.1 s) or scipy.stats. A test checks that
# this table and the modules' ``@register`` decorators agree.
STRATEGY_MODULES: Mapping[str, str] = {
    "fixed": "strategies.static",
    "equal_weight": "strategies.static",
    "inverse_volatility": "strategies.static",
    "min_variance": "strategies.mean_variance",
    "mean_variance": "strategies.mean_variance",
    "max_sharpe": "strategies.mean_variance",
    "efficient_risk": "strategies.mean_variance",
    "black_litterman": "strategies.black_litterman",
    "risk_parity": "strategies.risk_parity",
    "hrp": "strategies.risk_parity",
    "momentum": "strategies.tactical",
    "trend_filter": "strategies.tactical",
    "mean_reversion": "strategies.tactical",
    "vol_target": "strategies.tactical",
    "core_satellite": "strategies.tactical",
    "ml_regression": "strategies.machine_learning",
    "regime_kmeans": "strategies.regime",
    "direct_reinforcement": "strategies.direct_reinforcement",
    "macro_regime": "strategies.macro_regime",
    "screen": "strategies.screen",
    "sector_cap": "strategies.sector_cap",
}


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make a strategy constructible by ``create(name, **params)``."""

    def decorate(cls: S) -> S:
        if name in _REGISTRY:
            raise RuntimeError(f"strategy {name!r} registered twice")
        _REGISTRY[name] = cls  # type: ignore[assignment]
        return cls

    return decorate


def available() -> list[str]:
    """Every registry name (nothing is imported)."""
    return sorted(STRATEGY_MODULES)


def parameters(name: str) -> dict[str, Any]:
    """Parameter names and defaults of a registered strategy (for docs and check-config)."""
    factory = _lookup(name)
    sig = inspect.signature(factory)
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _lookup(name: str) -> Callable[..., Strategy]:
    if name not in _REGISTRY and name in STRATEGY_MODULES:
        importlib.import_module(STRATEGY_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StrategyConfigError(
            f"unknown strategy {name!r}; available: {', '.join(available())}"
        ) from None


def create(name: str, **params: Any) -> Strategy:
    """Build a registered strategy; unknown or invalid parameters raise StrategyConfigError."""
    factory = _lookup(name)
    known = parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise StrategyConfigError(
            f"strategy {name!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(known)) or '(none)'}"
        )
    try:
        return factory(**params)
    except AllocbotError:  # already a family of its own (e.g. InputDataError for a data file)
        raise
    except (TypeError, ValueError) as exc:
        raise StrategyConfigError(f"strategy {name!r}: {exc}") from exc


def create_nested(spec: Mapping[str, Any] | str, key: str) -> Strategy:
    """Build a strategy nested in another's params: ``"name"`` or ``{name=..., params={...}}``."""
    if isinstance(spec, str):
        return create(spec)
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise StrategyConfigError(f"{key}: expected a strategy name or {{name=..., params=...}}")
    extra = set(spec) - {"name", "params"}
    if extra:
        raise StrategyConfigError(f"{key}: unknown key(s) {', '.join(sorted(extra))}")
    try:
        return create(str(spec["name"]), **dict(spec.get("params", {})))
    except StrategyConfigError as exc:
        raise StrategyConfigError(f"{key}: {exc}") from exc


def nested_symbols(key: str, strategy: Strategy) -> dict[str, tuple[str, ...]]:
    """A nested strategy's referenced symbols under ``key.params.`` (its config spot)."""
    return {f"{key}.params.{path}": symbols
            for path, symbols in strategy.symbols_referenced().items()}


def too_few_symbols(strategy: Strategy, symbols: tuple[str, ...]) -> dict[str, str]:
    """``{"": problem}`` when ``symbols`` are fewer than ``strategy.min_symbols``, else
    nothing (``Strategy.universe_problems``' default, for overrides to extend)."""
    needed = strategy.min_symbols
    if len(symbols) >= needed:
        return {}
    held = ", ".join(symbols) or "none"
    return {"": f"strategy {strategy.name!r} needs at least {needed} symbols in {UNIVERSE_SEEN} "
                f"to estimate from their returns, and it has {len(symbols)} ({held}): "
                f"add symbols, or use a strategy that can hold one asset (fixed, "
                f"equal_weight)"}


def nested_universe_problems(key: str, strategy: Strategy, symbols: tuple[str, ...]
                             ) -> dict[str, str]:
    """A nested strategy's ``universe_problems`` over the same ``symbols``: under
    ``key.params.`` (its config spot), its own too-few-symbols problem under ``key``."""
    return {f"{key}.params.{path}" if path else key: problem
            for path, problem in strategy.universe_problems(symbols).items()}


def mapping_symbols(key: str, table: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """``{key: (symbols...)}`` for a ``SYMBOL = value`` table, nothing when it is absent."""
    return {key: tuple(str(s) for s in table)} if table else {}


def finalize_weights(weights: pd.Series, name: str) -> pd.Series:
    """Check and tidy a strategy's output: finite, ≥ 0, sum ≤ 1 (tiny negatives clipped)."""
    if weights.dtype == np.float64:
        tidy = _tidy_weights(weights.to_numpy(), weights.index, name)  # read-only view
        return weights if tidy is None else pd.Series(tidy, index=weights.index, copy=False)
    values = weights.to_numpy(dtype=float, na_value=np.nan)
    tidy = _tidy_weights(values, weights.index, name)
    return pd.Series(np.maximum(values, 0.0) if tidy is None else tidy, index=weights.index,
                     dtype=float, copy=False)


def finalize_array(weights: np.ndarray, symbols: pd.Index, columns: pd.Index,
                   name: str) -> pd.Series:
    """``finalize_weights`` of the weights of ``symbols`` (the usable ones among ``columns``;
    the others get 0), as a Series by ``columns``: the checks run on the array and one
    Series is built (~9 µs each: an optimizer's 50-asset call otherwise built one, read it
    back and might build a second)."""
    if len(symbols) == len(columns):  # every column usable, in order
        out = np.array(weights, dtype=float)
    else:
        out = np.zeros(len(columns))
        out[columns.get_indexer(symbols)] = weights
    tidy = _tidy_weights(out, columns, name)
    return pd.Series(out if tidy is None else tidy, index=columns, copy=False)


def _tidy_weights(values: np.ndarray, index: pd.Index, name: str) -> np.ndarray | None:
    """None when ``values`` (float) are already finite, ≥ 0 and sum ≤ 1; else the tidied
    copy (tiny negatives clipped to 0, a sum within WEIGHT_SUM_TOLERANCE above 1 scaled
    back to 1), or StrategyError naming the bad symbols. Counts rather than ``.all()``/
    ``.any()``: a reduction's method wrapper costs ~0.9 µs, ``np.count_nonzero`` ~0.2."""
    n = values.size
    finite = np.isfinite(values)
    if np.count_nonzero(finite) != n:
        bad = index[~finite].tolist()
        raise StrategyError(f"strategy {name!r} produced non-finite weights for {bad}")
    negative = values < -1e-9
    if np.count_nonzero(negative):
        found = dict(zip(index[negative].tolist(), values[negative].tolist(), strict=True))
        raise StrategyError(f"strategy {name!r} produced negative weights: {found}")
    # Tiny negatives (−1e-9 ≤ w < 0) are clipped to 0. Without any, max(w, 0) equals w but
    # for the sign of −0.0 (which only the sum's zero and a rescaled copy could show).
    clipped = bool(np.count_nonzero(values < 0.0))
    clean = np.maximum(values, 0.0) if clipped else values
    total = float(clean.sum())
    if total > 1 + WEIGHT_SUM_TOLERANCE:
        raise StrategyError(f"strategy {name!r} weights sum to {total:.12f} > 1")
    if total > 1:
        return (clean if clipped else np.maximum(values, 0.0)) / total
    return clean if clipped else None
