"""The bot's configuration: TOML file → pydantic schema → cross-field checks → frozen Config.

Every error names the key path (``[sim].starting_cash``) and never echoes a secret.
Relative paths are resolved against the config file's directory. ``ALLOCBOT_STATE_DIR``
in the environment replaces ``[bot].state_dir`` (deploy recipes set it: ``/data`` in the
container, ``$STATE_DIRECTORY`` under systemd).
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import strategies
from bot.errors import ConfigError, InputDataError
from bot.logs import ALERT_URLS_ENV, REDACTED, SECRET_NAME_PATTERN, alert_urls_in_force
from bot.sample_market import SAMPLE_PRICES_PATH

if TYPE_CHECKING:
    from bot.core.guards import GuardLimits
    from brokers.faults import FaultPlan

SAMPLE_PRICES = SAMPLE_PRICES_PATH
STATE_DIR_ENV = "ALLOCBOT_STATE_DIR"
# What building a configured strategy raises on purpose for a bad config or a file it names
# (a parameter, a missing macro or score file): reported as the config's error naming its
# table (exit 2). Anything else is a bug and stays a traceback.
STRATEGY_INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, InputDataError)
_DAY_NAMES = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

# One rule for every number of the config (README "Configuration"):
# * no float is NaN or +-inf, in any section (``allow_inf_nan=False`` on every section);
# * every duration (``*_secs``) has a ceiling. Spans of the schedule (the wake interval,
#   the misfire grace, the alert rate window) at most a week: the daemon checks the drift
#   bands on every wake, so a rarer wake is a misconfiguration (a slower cadence is
#   ``cron``/``at`` with ``[strategy] signal``), and APScheduler, the systemd watchdog and
#   the health check do datetime arithmetic with them (``now - grace``), which overflows
#   for huge values. Waits inside one cycle (an order, HTTP, retries, polling, a drill's
#   pause) at most an hour: a cycle that waits longer is stuck anyway (the watchdog gives
#   up on a cycle after ``CYCLE_STALL_SECS`` = 15 min);
# * money amounts (account currency) at most 1e12: a float still holds them to the cent
#   (2**53 cents is about 9e13 units), and larger ones overflow the order sizing;
# * day counts at most 10,000 (40 years of sessions, more than any price history).
# Thresholds whose large finite value just switches a check off (drift_rel, the guards'
# move and deviation limits) need no ceiling.
MAX_SCHEDULE_SECS = 7 * 24 * 3600
MAX_WAIT_SECS = 3600
MAX_MONEY = 1e12
MAX_DAYS = 10_000
_LIMIT_NAMES = {MAX_SCHEDULE_SECS: "1 week", MAX_WAIT_SECS: "1 hour"}


class _Section(BaseModel):
    # strict: a TOML number where a number is due, a boolean where a switch is (lax
    # validation took `max_var = true` as 1.0, a VaR limit switched off, and "0.02" as a
    # number); paths and dates are also accepted as text, tuples as TOML arrays
    # (``Field(strict=False)``)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class BotSection(_Section):
    mode: Literal["paper", "dry_run", "live"] = "paper"
    state_dir: Path = Field(Path("state"), strict=False)
    log_format: Literal["json", "console", "auto"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    order_prefix: str = Field("ab", pattern=r"^[a-z]{1,4}$")


SESSION_OFFSET_PATTERN = re.compile(r"^(open|close)(?:([+-])(\d{1,3})(min|h))?$")


class ScheduleSection(_Section):
    """Exactly one of ``cron`` (5 fields, day-of-week by name), ``interval_secs`` or ``at``
    (an offset from each exchange session's open or close: ``close-15min``, ``open+30min``)."""

    cron: str | None = None
    interval_secs: float | None = Field(None, gt=0, le=MAX_SCHEDULE_SECS)
    at: str | None = None
    timezone: str = "America/New_York"
    misfire_grace_secs: int = Field(300, ge=1, le=MAX_SCHEDULE_SECS)
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

    @field_validator("at")
    @classmethod
    def _at_shape(cls, value: str | None) -> str | None:
        if value is not None and not SESSION_OFFSET_PATTERN.match(value.strip()):
            raise ValueError(f"at {value!r}: expected open or close with an optional offset "
                             "in minutes or hours, e.g. 'close-15min', 'open+30min', 'open+1h'")
        return None if value is None else value.strip()

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleSection:
        chosen = [v for v in (self.cron, self.interval_secs, self.at) if v is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of cron, interval_secs or at")
        return self


class BrokerSection(_Section):
    kind: Literal["sim", "alpaca"] = "sim"
    order_wait_secs: float = Field(30.0, gt=0, le=MAX_WAIT_SECS)


class SimSection(_Section):
    prices: Path = Field(SAMPLE_PRICES, strict=False)
    starting_cash: float = Field(100_000.0, gt=0, le=MAX_MONEY)
    commission_bps: float = Field(0.0, ge=0, le=1000)
    commission_min: float = Field(0.0, ge=0, le=MAX_MONEY)
    slippage_bps: float = Field(0.0, ge=0, le=1000)
    fractional: bool = True
    replay_start: date | None = Field(None, strict=False)


class AlpacaSection(_Section):
    #: The Alpaca account the keys belong to. None: by ``[bot].mode`` (``live`` → live,
    #: else paper); "live" with ``mode = "dry_run"`` rehearses on the live account.
    account: Literal["paper", "live"] | None = None
    feed: Literal["iex", "sip"] = "iex"
    data_lookback_days: int = Field(400, ge=30, le=MAX_DAYS)
    base_url: str | None = None
    data_url: str | None = None
    http_timeout_secs: float = Field(10.0, gt=0, le=120)
    retry_budget_secs: float = Field(60.0, gt=0, le=MAX_WAIT_SECS)
    retry_backoff_secs: float = Field(0.25, gt=0, le=MAX_WAIT_SECS)
    retry_backoff_max_secs: float = Field(8.0, gt=0, le=MAX_WAIT_SECS)
    poll_interval_secs: float = Field(1.0, gt=0, le=MAX_WAIT_SECS)


class UniverseSection(_Section):
    """``symbols`` traded (default: every price column); ``exclude``: symbols never held
    (the strategy does not see them; a held one is sold)."""

    symbols: tuple[str, ...] | None = Field(None, strict=False)  # (a TOML array: a list)
    exclude: tuple[str, ...] = Field((), strict=False)

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
    """The strategy, its parameters, and when it recomputes its targets: ``signal``
    (daily | weekly | monthly | quarterly) or ``every_sessions`` (at most one; default: the
    strategy's own, monthly for price-driven strategies)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    signal: Literal["daily", "weekly", "monthly", "quarterly"] | None = None
    every_sessions: int | None = Field(None, ge=1, le=2520)
    # used when the strategy cannot compute (StrategyError): a name or {name=..., params=...};
    # None: hold (no orders) until it can
    fallback: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> StrategySection:
        if self.signal is not None and self.every_sessions is not None:
            raise ValueError("set at most one of signal or every_sessions")
        return self


class GuardsSection(_Section):
    """Pre-trade guards (``bot/core/guards.py``), on by default; a breach blocks the whole
    cycle's orders (a partial rebalance would be a surprise). Fractions are of equity."""

    enabled: bool = True
    max_order_fraction: float = Field(1.0, gt=0, le=1)
    max_turnover_per_cycle: float = Field(2.05, gt=0, le=4)
    max_turnover_per_day: float = Field(3.0, gt=0, le=10)
    max_orders_per_cycle: int | None = Field(None, ge=1)  # None: one per universe symbol
    max_stale_sessions: int = Field(1, ge=0, le=30)
    max_daily_move: float = Field(0.30, gt=0)
    max_move_sigmas: float = Field(20.0, gt=0)
    move_lookback_days: int = Field(63, ge=10, le=1000)
    max_trade_price_deviation: float = Field(0.10, gt=0)

    def limits(self) -> GuardLimits:
        """This section as the pure guards take it."""
        from bot.core.guards import GuardLimits

        return GuardLimits(**self.model_dump())


class RebalanceSection(_Section):
    drift_abs: float = Field(0.05, ge=0, le=1)
    drift_rel: float = Field(0.25, ge=0)
    mode: Literal["drifted_only", "all_when_any"] = "all_when_any"
    min_order_notional: float = Field(1.0, ge=0, le=MAX_MONEY)
    cash_buffer: float = Field(0.0, ge=0, lt=1)


class RiskSection(_Section):
    max_var: float | None = Field(None, gt=0, le=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    method: Literal["historical", "parametric"] = "historical"
    horizon_days: int = Field(1, ge=1, le=252)
    lookback_days: int = Field(252, ge=20, le=MAX_DAYS)
    max_weight: float | None = Field(None, gt=0, le=1)
    safe_asset: str | None = None
    max_drawdown: float | None = Field(None, gt=0, lt=1)


class BacktestSection(_Section):
    """``allocbot backtest`` settings: rebalance calendar, risk-free rate, window, benchmark."""

    calendar: Literal["daily_drift", "daily", "weekly", "monthly", "quarterly"] = "daily_drift"
    risk_free_rate: float = Field(0.0, ge=-0.05, le=0.5)  # annual, for Sharpe/Sortino
    start: date | None = Field(None, strict=False)
    end: date | None = Field(None, strict=False)
    # strategy name or fixed preset; "none": no benchmark run; None: sixty_forty or 1/N
    benchmark: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    # report.html + report.png (~0.5 s of charts a run); off: the CSVs, metrics.json and the
    # summary only (scripted runs, compare's and a sweep's per-run outputs)
    tearsheet: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> BacktestSection:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class MonitoringSection(_Section):
    """Prometheus ``/metrics`` and the read-only status page; both off unless a port is set
    (0 picks a free port, logged in ``monitoring_started``). Loopback unless a host says."""

    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    http_port: int | None = Field(None, ge=0, le=65535)  # page + /metrics + /health
    http_host: str = "127.0.0.1"


class AlertsSection(_Section):
    """Alerts through apprise. URLs hold tokens: prefer ``ALLOCBOT_ALERT_URLS``."""

    urls: tuple[str, ...] = Field((), strict=False)
    failure_streak: int = Field(3, ge=1)  # alert after this many failed cycles in a row
    # at most one alert of a kind per window
    rate_limit_secs: float = Field(3600.0, ge=0, le=MAX_SCHEDULE_SECS)
    send_timeout_secs: float = Field(10.0, gt=0, le=120)
    watchdog: bool = True  # alert when no cycle succeeded within the schedule
    daily_summary_at: str | None = Field(None, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


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
    pause_after_submit_secs: float = Field(0.0, ge=0, le=MAX_WAIT_SECS)
    kill_at: str | None = None

    @field_validator("kill_at")
    @classmethod
    def _known_kill_point(cls, value: str | None) -> str | None:
        if value is not None:
            from brokers.faults import parse_kill_at  # numpy, pandas: only for a drill

            parse_kill_at(value)
        return value

    @model_validator(mode="after")
    def _valid_plan(self) -> FaultsSection:
        if self.enabled or self.kill_at is not None:
            self.to_plan()  # the plan's own checks (rate sum, kill_at), as ValueErrors
        return self

    def to_plan(self) -> FaultPlan:
        from brokers.faults import FaultPlan

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
    guards: GuardsSection = Field(default_factory=GuardsSection)
    backtest: BacktestSection = Field(default_factory=BacktestSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    faults: FaultsSection = Field(default_factory=FaultsSection)
    source: Path | None = Field(None, exclude=True)
    # the config file's text as read (sha256, 16 hex digits): a daemon records it with its
    # lock, and ``status`` tells when the file has changed since the daemon read it
    source_digest: str | None = Field(None, exclude=True)

    @property
    def state_db(self) -> Path:
        return self.bot.state_dir / "allocbot.sqlite"

    @property
    def live_account(self) -> bool:
        """Whether the bot reaches Alpaca's live account (its URL, its keys): in ``live``
        mode, or a ``dry_run`` with ``[alpaca].account = "live"`` (which sends nothing)."""
        return self.bot.mode == "live" or self.alpaca.account == "live"

    def build_strategy(self) -> strategies.Strategy:
        return strategies.create(self.strategy.name, **self.strategy.params)

    def build_fallback(self) -> strategies.Strategy | None:
        """The ``[strategy].fallback`` strategy, or None to hold when the strategy fails."""
        spec = self.strategy.fallback
        if spec is None:
            return None
        from strategies.base import create_nested  # numpy, pandas: not for status/health

        return create_nested(spec, "fallback")


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
        elif err["type"] == "finite_number":
            msg += " (nan and inf are not accepted)"
        elif err["type"] == "int_type":  # strict: 252.0 is not 252
            msg += " (a whole number without a decimal point: 252, not 252.0)"
        elif err["type"] in ("float_type", "bool_type"):  # strict: no text, no 0/1 switch
            msg += (" (a TOML number, unquoted)" if err["type"] == "float_type"
                    else " (true or false, unquoted)")
        elif err["type"] == "less_than_equal" and str(err["loc"][-1]).endswith("_secs"):
            limit = (err.get("ctx") or {}).get("le")
            msg += f" seconds ({_LIMIT_NAMES[limit]})" if limit in _LIMIT_NAMES else " seconds"
        lines.append(f"{_key_path(tuple(err['loc']))}: {msg}")
    return "; ".join(lines)


def parse_config(raw: dict[str, Any], base_dir: Path, source: Path | None = None,
                 state_dir: Path | None = None, check_strategy: bool = True) -> Config:
    """Validate a parsed TOML document; raise ConfigError with every problem's key path.

    ``state_dir`` replaces ``[bot].state_dir`` (from ``ALLOCBOT_STATE_DIR``);
    ``check_strategy=False`` skips building the strategy (read-only commands, which never
    run it, stay free of numpy/pandas/scikit-learn imports).
    """
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
    cfg = _resolve_paths(cfg, base_dir, source, state_dir)
    _cross_check(cfg, check_strategy)
    return cfg


def _resolve_paths(cfg: Config, base_dir: Path, source: Path | None,
                   state_dir: Path | None) -> Config:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base_dir / p).resolve()

    state = state_dir.resolve() if state_dir is not None else resolve(cfg.bot.state_dir)
    return cfg.model_copy(
        update={
            "bot": cfg.bot.model_copy(update={"state_dir": state}),
            "sim": cfg.sim.model_copy(update={"prices": resolve(cfg.sim.prices)}),
            "source": source,
        }
    )


def _cross_check(cfg: Config, check_strategy: bool = True) -> None:
    if check_strategy:
        try:
            cfg.build_strategy()
        except STRATEGY_INPUT_ERRORS as exc:
            # the name is to blame only when it is the one unknown (a nested spec's typo,
            # `base = "equal_weights"`, is a parameter's)
            named = str(exc).startswith(f"unknown strategy {cfg.strategy.name!r}")
            key = "[strategy].name" if named else "[strategy.params]"
            raise ConfigError(f"{key}: {exc}") from None
        try:
            cfg.build_fallback()
        except STRATEGY_INPUT_ERRORS as exc:
            message = str(exc) if str(exc).startswith("fallback") else f"fallback: {exc}"
            raise ConfigError(f"[strategy].{message}") from None
    if cfg.bot.mode == "live" and cfg.broker.kind != "alpaca":
        raise ConfigError('[bot].mode: "live" needs [broker].kind = "alpaca" (the simulator '
                          "cannot trade real money)")
    account = cfg.alpaca.account
    if account == "live" and cfg.bot.mode == "paper":
        raise ConfigError('[alpaca].account: "live" needs [bot].mode = "dry_run" (a rehearsal '
                          'on the live account: nothing is sent) or "live" (real money); '
                          '"paper" mode trades, and only on a paper account')
    if account == "paper" and cfg.bot.mode == "live":
        raise ConfigError('[alpaca].account: "paper" contradicts [bot].mode = "live"; drop '
                          'the key (live mode uses the live account) or set mode = "paper"')
    if account is not None and cfg.broker.kind != "alpaca":
        raise ConfigError('[alpaca].account: applies to [broker].kind = "alpaca" only (the '
                          "simulator has no live account); drop the key")
    if cfg.live_account and cfg.faults.enabled:
        raise ConfigError('[faults].enabled: fault injection is a drill tool and is refused '
                          'on the live account ([bot].mode = "live" or [alpaca].account = '
                          '"live"); set enabled = false')
    symbols = cfg.universe.symbols
    if symbols is not None:
        for i, sym in enumerate(cfg.universe.exclude, start=1):
            if sym not in symbols:
                raise ConfigError(f"[universe].exclude[{i}]: {sym!r} is not in [universe].symbols")
        if set(symbols) <= set(cfg.universe.exclude):
            raise ConfigError("[universe].exclude: every symbol of the universe is excluded")
    if cfg.risk.safe_asset is not None and symbols is not None and cfg.risk.safe_asset not in symbols:
        raise ConfigError(f"[risk].safe_asset: {cfg.risk.safe_asset!r} is not in [universe].symbols")
    if cfg.broker.kind == "sim" and not cfg.sim.prices.is_file():
        raise ConfigError(f"[sim].prices: file not found: {cfg.sim.prices}")


def load_config(path: Path, check_strategy: bool = True) -> Config:
    """Read and validate the TOML config at ``path`` (``ALLOCBOT_STATE_DIR`` overrides
    ``[bot].state_dir``; a relative value is taken from the current directory)."""
    text = _read_config_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    env_state_dir = os.environ.get(STATE_DIR_ENV, "").strip()
    cfg = parse_config(raw, path.resolve().parent, source=path.resolve(),
                       state_dir=Path(env_state_dir) if env_state_dir else None,
                       check_strategy=check_strategy)
    return cfg.model_copy(update={"source_digest": config_digest(text)})


def _read_config_text(path: Path) -> str:
    """The config file's text, or a ConfigError naming the file and what to do: it is missing,
    cannot be read (permissions, a directory) or is not UTF-8 (TOML files are; a Latin-1
    editor's byte in a comment would otherwise stop every command with a traceback). A UTF-8
    byte-order mark (Windows Notepad writes one) is dropped: TOML parsers reject it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column "
            f"{column} (byte offset {exc.start}) is not valid UTF-8 (a file saved as Latin-1 or "
            f"another legacy encoding?); save it as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def config_digest(text: str) -> str:
    """A config file's text, digested (sha256, first 16 hex digits)."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_as_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data (for ``allocbot check-config``)."""
    data = cfg.model_dump(mode="json")
    # the URLs in force, each hidden (they hold webhook tokens): the environment's win
    in_force = alert_urls_in_force(cfg.alerts.urls)
    data["alerts"]["urls"] = [REDACTED for _ in in_force]
    data["alerts"]["urls_from"] = (None if not in_force else "[alerts].urls"
                                   if in_force is cfg.alerts.urls else ALERT_URLS_ENV)
    data["strategy"]["resolved_params"] = strategies.parameters(cfg.strategy.name) | dict(
        cfg.strategy.params
    )
    return data
