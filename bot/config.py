"""The bot's configuration: TOML file → pydantic schema → cross-field checks → frozen Config.

Every error names the key path (``[sim].starting_cash``) and never echoes a secret.
Relative paths are resolved against the config file's directory.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import strategies
from bot.errors import ConfigError
from bot.logs import SECRET_NAME_PATTERN
from bot.sample_market import SAMPLE_PRICES_PATH
from brokers.faults import FaultPlan, parse_kill_at

SAMPLE_PRICES = SAMPLE_PRICES_PATH
_DAY_NAMES = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSection(_Section):
    mode: Literal["paper", "dry_run", "live"] = "paper"
    state_dir: Path = Path("state")
    log_format: Literal["json", "console", "auto"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    order_prefix: str = Field("ab", pattern=r"^[a-z]{1,4}$")


class ScheduleSection(_Section):
    """Exactly one of ``cron`` (5 fields, day-of-week by name) or ``interval_secs``."""

    cron: str | None = None
    interval_secs: float | None = Field(None, gt=0)
    timezone: str = "America/New_York"
    misfire_grace_secs: int = Field(300, ge=1)
    run_at_start: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(
                f"cron {value!r} must have 5 fields: minute hour day month day_of_week"
            )
        dow = fields[4]
        if dow != "*" and any(ch.isdigit() for ch in dow):
            raise ValueError(
                f"cron day_of_week {dow!r}: use day names like 'mon-fri' (numbers are "
                "ambiguous: in APScheduler 0 is Monday, in crontab 0 is Sunday)"
            )
        for token in re.split(r"[,\-/]", dow):
            if token not in ("*", "") and token.lower() not in _DAY_NAMES:
                raise ValueError(f"cron day_of_week: unknown day {token!r}")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleSection:
        if (self.cron is None) == (self.interval_secs is None):
            raise ValueError("set exactly one of cron or interval_secs")
        return self


class BrokerSection(_Section):
    kind: Literal["sim", "alpaca"] = "sim"
    order_wait_secs: float = Field(30.0, gt=0)


class SimSection(_Section):
    prices: Path = SAMPLE_PRICES
    starting_cash: float = Field(100_000.0, gt=0)
    commission_bps: float = Field(0.0, ge=0, le=1000)
    commission_min: float = Field(0.0, ge=0)
    slippage_bps: float = Field(0.0, ge=0, le=1000)
    fractional: bool = True
    replay_start: date | None = None


class AlpacaSection(_Section):
    feed: Literal["iex", "sip"] = "iex"
    data_lookback_days: int = Field(400, ge=30)
    base_url: str | None = None
    data_url: str | None = None
    http_timeout_secs: float = Field(10.0, gt=0, le=120)
    retry_budget_secs: float = Field(60.0, gt=0)
    retry_backoff_secs: float = Field(0.25, gt=0)
    retry_backoff_max_secs: float = Field(8.0, gt=0)
    poll_interval_secs: float = Field(1.0, gt=0)


class UniverseSection(_Section):
    symbols: tuple[str, ...] | None = None

    @field_validator("symbols")
    @classmethod
    def _clean(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("symbols is empty; omit it to use every column of the price data")
        dup = sorted({s for s in value if value.count(s) > 1})
        if dup:
            raise ValueError(f"duplicate symbol(s) {dup}")
        for symbol in value:
            if not re.fullmatch(r"[A-Z][A-Z0-9.\-/]{0,11}", symbol):
                raise ValueError(f"symbol {symbol!r} is not an upper-case ticker")
        return value


class StrategySection(_Section):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class RebalanceSection(_Section):
    drift_abs: float = Field(0.05, ge=0, le=1)
    drift_rel: float = Field(0.25, ge=0)
    mode: Literal["drifted_only", "all_when_any"] = "all_when_any"
    min_order_notional: float = Field(1.0, ge=0)
    cash_buffer: float = Field(0.0, ge=0, lt=1)


class RiskSection(_Section):
    max_var: float | None = Field(None, gt=0, le=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    method: Literal["historical", "parametric"] = "historical"
    horizon_days: int = Field(1, ge=1, le=252)
    lookback_days: int = Field(252, ge=20)
    max_weight: float | None = Field(None, gt=0, le=1)
    safe_asset: str | None = None
    max_drawdown: float | None = Field(None, gt=0, lt=1)


class BacktestSection(_Section):
    """``allocbot backtest`` settings: rebalance calendar, risk-free rate, window, benchmark."""

    calendar: Literal["daily_drift", "daily", "weekly", "monthly", "quarterly"] = "daily_drift"
    risk_free_rate: float = Field(0.0, ge=-0.05, le=0.5)  # annual, for Sharpe/Sortino
    start: date | None = None
    end: date | None = None
    benchmark: str | None = None  # strategy name or fixed preset; None: sixty_forty or 1/N
    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    @model_validator(mode="after")
    def _ordered(self) -> BacktestSection:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class FaultsSection(_Section):
    """Drill and soak tool: inject venue faults (``brokers/faults.py``). Off by default;
    refused in live mode."""

    enabled: bool = False
    seed: int = 0
    transient_rate: float = Field(0.0, ge=0, le=1)
    rate_limit_rate: float = Field(0.0, ge=0, le=1)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    reject_rate: float = Field(0.0, ge=0, le=1)
    partial_fill_rate: float = Field(0.0, ge=0, le=1)
    stale_bars_rate: float = Field(0.0, ge=0, le=1)
    missing_bars_rate: float = Field(0.0, ge=0, le=1)
    pause_after_submit_secs: float = Field(0.0, ge=0, le=3600)
    kill_at: str | None = None

    @field_validator("kill_at")
    @classmethod
    def _known_kill_point(cls, value: str | None) -> str | None:
        parse_kill_at(value)
        return value

    @model_validator(mode="after")
    def _valid_plan(self) -> FaultsSection:
        self.to_plan()  # the plan's own checks (rate sum, kill_at), as ValueErrors
        return self

    def to_plan(self) -> FaultPlan:
        return FaultPlan(**self.model_dump(exclude={"enabled"}))


class Config(_Section):
    bot: BotSection = Field(default_factory=BotSection)
    schedule: ScheduleSection = Field(default_factory=lambda: ScheduleSection(interval_secs=60))
    broker: BrokerSection = Field(default_factory=BrokerSection)
    sim: SimSection = Field(default_factory=SimSection)
    alpaca: AlpacaSection = Field(default_factory=AlpacaSection)
    universe: UniverseSection = Field(default_factory=UniverseSection)
    strategy: StrategySection
    rebalance: RebalanceSection = Field(default_factory=RebalanceSection)
    risk: RiskSection = Field(default_factory=RiskSection)
    backtest: BacktestSection = Field(default_factory=BacktestSection)
    faults: FaultsSection = Field(default_factory=FaultsSection)
    source: Path | None = Field(None, exclude=True)

    @property
    def state_db(self) -> Path:
        return self.bot.state_dir / "allocbot.sqlite"

    def build_strategy(self) -> strategies.Strategy:
        return strategies.create(self.strategy.name, **self.strategy.params)


def _find_secret_keys(node: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if SECRET_NAME_PATTERN.search(str(key)) and not isinstance(value, dict):
                found.append(here)
            found.extend(_find_secret_keys(value, here))
    return found


def _key_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if not parts:
        return "(top level)"
    head = f"[{parts[0]}]" if len(parts) > 1 else parts[0]
    return head + "".join(f".{p}" if not p.isdigit() else f"[{p}]" for p in parts[1:])


def _format_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the key; input values are left out (may be secrets)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see config.toml for the accepted keys)"
        lines.append(f"{_key_path(tuple(err['loc']))}: {msg}")
    return "; ".join(lines)


def parse_config(raw: dict[str, Any], base_dir: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError with every problem's key path."""
    secret_keys = _find_secret_keys(raw)
    if secret_keys:
        raise ConfigError(
            f"{', '.join(secret_keys)}: API keys are never read from the config file; set "
            "APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment and remove the key"
        )
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    cfg = _resolve_paths(cfg, base_dir, source)
    _cross_check(cfg)
    return cfg


def _resolve_paths(cfg: Config, base_dir: Path, source: Path | None) -> Config:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base_dir / p).resolve()

    return cfg.model_copy(
        update={
            "bot": cfg.bot.model_copy(update={"state_dir": resolve(cfg.bot.state_dir)}),
            "sim": cfg.sim.model_copy(update={"prices": resolve(cfg.sim.prices)}),
            "source": source,
        }
    )


def _cross_check(cfg: Config) -> None:
    try:
        cfg.build_strategy()
    except strategies.StrategyConfigError as exc:
        key = "[strategy].name" if "unknown strategy" in str(exc) else "[strategy.params]"
        raise ConfigError(f"{key}: {exc}") from None
    if cfg.bot.mode == "live" and cfg.broker.kind != "alpaca":
        raise ConfigError('[bot].mode: "live" needs [broker].kind = "alpaca" (the simulator '
                          "cannot trade real money)")
    if cfg.bot.mode == "live" and cfg.faults.enabled:
        raise ConfigError('[faults].enabled: fault injection is a drill tool and is refused '
                          'with [bot].mode = "live"; set enabled = false')
    symbols = cfg.universe.symbols
    if cfg.risk.safe_asset is not None and symbols is not None and cfg.risk.safe_asset not in symbols:
        raise ConfigError(f"[risk].safe_asset: {cfg.risk.safe_asset!r} is not in [universe].symbols")
    if cfg.broker.kind == "sim" and not cfg.sim.prices.is_file():
        raise ConfigError(f"[sim].prices: file not found: {cfg.sim.prices}")


def load_config(path: Path) -> Config:
    """Read and validate the TOML config at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, path.resolve().parent, source=path.resolve())


def config_as_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data (for ``allocbot check-config``)."""
    data = cfg.model_dump(mode="json")
    data["strategy"]["resolved_params"] = strategies.parameters(cfg.strategy.name) | dict(
        cfg.strategy.params
    )
    return data
