"""The search space of a sweep: a TOML file of parameter ranges and the objective.

Shape (keys mirror the config file under ``[space]``; see README "Research")::

    [objective]
    metric = "sharpe"                 # a numeric key of metrics.json's strategy block
    direction = "maximize"            # or "minimize"
    constraints = ["max_drawdown <= 0.25", "turnover <= 2"]

    [space.strategy.params]
    k = {int = [1, 4]}
    lookback = {int = [63, 252], step = 21}
    [space.rebalance]
    drift_abs = {float = [0.01, 0.10], log = true}
    [space.backtest]
    calendar = {choice = ["monthly", "quarterly"]}

``space.strategy = {choice = [{name = "momentum", params = {k = 2}}, "risk_parity"]}``
sweeps whole strategies instead of one strategy's params: each choice gives the name and
params, and the config's other ``[strategy]`` keys (``signal``, ``every_sessions``,
``fallback``) stay unless the choice sets them (``strategy_table``).
"""

from __future__ import annotations

import copy
import json
import math
import operator
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Config, parse_config
from bot.errors import ConfigError

SWEEPABLE_SECTIONS = ("rebalance", "risk")
NUMERIC_METRICS = ("sharpe", "sortino", "cagr", "volatility", "max_drawdown", "calmar",
                   "total_return", "final_equity", "turnover", "costs", "commission",
                   "slippage", "rebalances", "trades", "var_breaches")
_SPEC_KEYS = {"int", "float", "choice", "log", "step"}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*(-?[0-9.eE+-]+)\s*$")


@dataclass(frozen=True, slots=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False

    def probe_values(self) -> tuple[Any, ...]:
        return (self.low, self.high)


@dataclass(frozen=True, slots=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def probe_values(self) -> tuple[Any, ...]:
        return (self.low, self.high)


@dataclass(frozen=True, slots=True)
class Choice:
    """Values of any TOML type; Optuna sees ``labels`` (the value itself when it is a
    string/number/bool, else its compact JSON)."""

    values: tuple[Any, ...]

    @property
    def labels(self) -> tuple[Any, ...]:
        return tuple(choice_label(v) for v in self.values)

    def value_of(self, label: Any) -> Any:
        return self.values[self.labels.index(label)]

    def probe_values(self) -> tuple[Any, ...]:
        return self.values


Domain = IntRange | FloatRange | Choice


@dataclass(frozen=True, slots=True)
class Param:
    path: str  # dotted config path, e.g. "strategy.params.k"
    domain: Domain


@dataclass(frozen=True, slots=True)
class Constraint:
    metric: str
    op: str
    bound: float

    def holds(self, metrics: dict[str, Any]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and math.isfinite(value) and _OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True, slots=True)
class Objective:
    metric: str = "sharpe"
    direction: str = "maximize"
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True, slots=True)
class SweepSpace:
    params: tuple[Param, ...]
    objective: Objective
    text: str  # the space file as read (stored with the study to refuse a changed resume)


def choice_label(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _domain(path: str, spec: dict[str, Any]) -> Domain:
    key = f"[space].{path}"
    unknown = set(spec) - _SPEC_KEYS
    kinds = [k for k in ("int", "float", "choice") if k in spec]
    if unknown or len(kinds) != 1:
        raise ConfigError(f"{key}: give exactly one of int = [low, high], float = [low, high] "
                          f"or choice = [...] (optional log, step); got keys {sorted(spec)}")
    kind = kinds[0]
    if kind == "choice":
        values = spec["choice"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{key}: choice must be a non-empty list")
        if len({json.dumps(choice_label(v)) for v in values}) != len(values):
            raise ConfigError(f"{key}: choice has duplicate values")
        return Choice(tuple(values))
    bounds = spec[kind]
    number = int if kind == "int" else (int, float)
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, number) and not isinstance(b, bool) for b in bounds)):
        raise ConfigError(f"{key}: {kind} must be [low, high] of {kind} numbers")
    low, high = bounds
    log, step = bool(spec.get("log", False)), spec.get("step")
    if low > high:
        raise ConfigError(f"{key}: empty range {kind} = [{low}, {high}] (low > high)")
    if log and low <= 0:
        raise ConfigError(f"{key}: log = true needs low > 0, got {low}")
    if step is not None and (not isinstance(step, number) or step <= 0):
        raise ConfigError(f"{key}: step must be a positive {kind}, got {step!r}")
    if log and step is not None and step != 1:
        raise ConfigError(f"{key}: log = true cannot take a step")
    if step is not None and abs((high - low) / step - round((high - low) / step)) > 1e-9:
        raise ConfigError(f"{key}: high - low = {high - low} is not a multiple of step {step}")
    if kind == "int":
        return IntRange(low, high, int(step or 1), log)
    return FloatRange(float(low), float(high), None if step is None else float(step), log)


def _is_spec(node: Any) -> bool:
    return isinstance(node, dict) and bool(set(node) & {"int", "float", "choice"})


def _walk(node: dict[str, Any], prefix: str) -> list[Param]:
    params: list[Param] = []
    for name, value in node.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        if _is_spec(value):
            params.append(Param(path, _domain(path, value)))
        elif isinstance(value, dict):
            params.extend(_walk(value, path))
        else:
            raise ConfigError(f"[space].{path}: expected {{int = [..]}}, {{float = [..]}} or "
                              f"{{choice = [..]}}, got {value!r}")
    return params


def _check_path(path: str) -> None:
    head, _, rest = path.partition(".")
    ok = (path == "strategy" or path == "backtest.calendar"
          or (head == "strategy" and rest.startswith("params.") and rest.count(".") == 1)
          or (head in SWEEPABLE_SECTIONS and rest and "." not in rest))
    if not ok:
        raise ConfigError(f"[space].{path}: not a sweepable key (sweep [strategy.params].*, "
                          "[rebalance].*, [risk].*, [backtest].calendar, or whole strategy "
                          "specs as space.strategy = {choice = [...]})")


def _objective(doc: dict[str, Any]) -> Objective:
    unknown = set(doc) - {"metric", "direction", "constraints"}
    if unknown:
        raise ConfigError(f"[objective]: unknown key(s) {sorted(unknown)}")
    metric = doc.get("metric", "sharpe")
    if metric not in NUMERIC_METRICS:
        raise ConfigError(f"[objective].metric: unknown metric {metric!r}; one of "
                          f"{', '.join(NUMERIC_METRICS)}")
    direction = doc.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"[objective].direction: {direction!r} is not maximize or minimize")
    constraints = []
    for text in doc.get("constraints", []):
        match = _CONSTRAINT.match(str(text))
        if match is None or match.group(1) not in NUMERIC_METRICS:
            raise ConfigError(f"[objective].constraints: {text!r} is not 'metric <= number' "
                              f"with a metric among {', '.join(NUMERIC_METRICS)}")
        try:
            bound = float(match.group(3))
        except ValueError:
            bound = math.nan
        if not math.isfinite(bound):
            raise ConfigError(f"[objective].constraints: {text!r}: {match.group(3)!r} is not a "
                              "number (write e.g. 'max_drawdown <= 0.25')")
        constraints.append(Constraint(match.group(1), match.group(2), bound))
    return Objective(metric, direction, tuple(constraints))


def parse_space(text: str, source: str = "space") -> SweepSpace:
    """Parse the space file's text (structure only; ``check_space`` validates values)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"space", "objective"}
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; use [space...] "
                          "and [objective]")
    params = _walk(doc.get("space", {}), "")
    if not params:
        raise ConfigError(f"{source}: [space] defines no parameter to sweep")
    for param in params:
        _check_path(param.path)
    return SweepSpace(tuple(params), _objective(doc.get("objective", {})), text)


def load_space(path: Path) -> SweepSpace:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"space file not found: {path}") from None
    return parse_space(text, str(path))


def strategy_table(base: dict[str, Any] | None, value: str | dict[str, Any]) -> dict[str, Any]:
    """The ``[strategy]`` table of a trial whose whole strategy is swept: the choice's
    ``name`` and ``params`` (none given: the strategy's defaults; the base config's params
    belong to another strategy and are never inherited), over the base config's other
    ``[strategy]`` keys (``signal``, ``every_sessions``, ``fallback``), which the choice
    overrides key by key. A choice that sets a schedule (``signal`` or ``every_sessions``)
    replaces the base's schedule as a whole (the two exclude each other)."""
    if not isinstance(value, str | dict):
        raise ConfigError("[space].strategy: each choice is a strategy name or a table "
                          f"{{name = ..., params = {{...}}}}, got {value!r}")
    spec: dict[str, Any] = {"name": value} if isinstance(value, str) else copy.deepcopy(value)
    table = {k: copy.deepcopy(v) for k, v in (base or {}).items() if k not in ("name", "params")}
    if "signal" in spec or "every_sessions" in spec:
        table.pop("signal", None)
        table.pop("every_sessions", None)
    merged = table | spec | {"params": dict(spec.get("params", {}))}
    return dict(sorted(merged.items(), key=lambda kv: kv[0] != "name"))  # name first


def apply_params(base_raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw config with each dotted path set to its (config-typed) value; a
    whole-strategy value replaces ``[strategy]``'s name and params and keeps its other
    keys (``strategy_table``)."""
    raw = copy.deepcopy(base_raw)
    for path, value in values.items():
        if path == "strategy":
            raw["strategy"] = strategy_table(base_raw.get("strategy"), value)
            continue
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def check_space(space: SweepSpace, base_raw: dict[str, Any], base_dir: Path) -> None:
    """Every value at the edges of every range (and every choice) must pass the config
    validator on its own; the error names the space key and the validator's message."""
    if any(p.path == "strategy" for p in space.params) and any(
            p.path.startswith("strategy.params.") for p in space.params):
        raise ConfigError("[space].strategy: sweep either whole strategies or one "
                          "strategy's params, not both")
    for param in space.params:
        for value in param.domain.probe_values():
            try:
                parse_config(apply_params(base_raw, {param.path: value}), base_dir)
            except ConfigError as exc:
                raise ConfigError(f"[space].{param.path}: value {value!r} is rejected by the "
                                  f"config validator: {exc}") from None


def _swept_key(path: str, problem: str) -> bool:
    """Whether the space key ``path`` sets what ``problem`` (a ``config_fit_problems`` line)
    is about: a whole-strategy choice sets every strategy key, a parameter its own."""
    if path == "strategy":
        return True
    if not path.startswith("strategy.params."):
        return False
    key = f"[strategy.params].{path.removeprefix('strategy.params.')}"
    return problem.startswith(key) and problem[len(key):len(key) + 1] in (":", ".", "[")


def check_space_fit(space: SweepSpace, base_raw: dict[str, Any], base_dir: Path,
                    universe: tuple[str, ...], source: Path) -> None:
    """The config's unswept keys, then each edge value and choice, must fit ``universe``
    (``config_fit_problems``), or ``run`` refuses best.toml; a monotone ``k`` shows at an edge."""
    from bot.engine.preflight import config_fit_problems

    swept = [p.path for p in space.params]
    own = [line for line in config_fit_problems(parse_config(base_raw, base_dir), universe,
                                                from_cash=True)
           if not any(_swept_key(path, line) for path in swept)]
    if own:
        raise ConfigError(f"invalid config {source} (every trial keeps what the space does not "
                          f"sweep): {'; '.join(own)}")
    for param in space.params:
        others = [path for path in swept if path != param.path]
        for value in param.domain.probe_values():
            cfg = parse_config(apply_params(base_raw, {param.path: value}), base_dir)
            problems = [line for line in config_fit_problems(cfg, universe, from_cash=True)
                        if not any(_swept_key(path, line) for path in others)]
            if problems:
                raise ConfigError(f"[space].{param.path}: value {value!r} cannot work with the "
                                  f"universe: {'; '.join(problems)}")


def probe_configs(space: SweepSpace, base_raw: dict[str, Any], base_dir: Path) -> list[Config]:
    """Configs at the space's corners (each edge alone, and all highs together): used to
    find a first backtest day with enough history for every trial."""
    probes: list[dict[str, Any]] = [{}]
    probes += [{p.path: v} for p in space.params for v in p.domain.probe_values()]
    probes.append({p.path: p.domain.probe_values()[-1] for p in space.params})
    configs = []
    for values in probes:
        try:
            configs.append(parse_config(apply_params(base_raw, values), base_dir))
        except ConfigError:
            continue  # a combination may be invalid; single edges were checked already
    return configs
