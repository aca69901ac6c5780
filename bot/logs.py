"""structlog setup: JSON lines on stdout (console rendering on request), UTC ISO timestamps,
secrets redacted, and stdlib loggers (APScheduler, urllib3) routed through the same chain.

Tracebacks are rendered without frame locals: ``dict_tracebacks`` with locals once wrote
API keys into a log (see FIELD-NOTES).

Numbers are rounded for reading (the journal keeps them exact): money fields to cents,
share quantities to the broker's 9 decimals, every other float to 6 significant digits;
numpy scalars become plain Python numbers first (no ``np.float64(0.0)`` in a console line).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, TextIO

SECRET_ENV_VARS = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "ALLOCBOT_STATUS_TOKEN")
# alert URLs (apprise) carry webhook tokens: every URL in this variable is a secret
ALERT_URLS_ENV = "ALLOCBOT_ALERT_URLS"
REDACTED = "***"
# names of config keys and log fields that hold secrets (refused in config, masked in logs)
SECRET_NAME_PATTERN = re.compile(r"(secret|api_?key|key_?id|password|token|authorization)", re.I)


def split_alert_urls(text: str) -> tuple[str, ...]:
    """The URLs in ``ALLOCBOT_ALERT_URLS`` (separated by whitespace or commas)."""
    return tuple(u for u in re.split(r"[\s,]+", text) if u)


def alert_urls_in_force(configured: tuple[str, ...]) -> tuple[str, ...]:
    """``ALLOCBOT_ALERT_URLS`` when set (it wins), else the config's ``[alerts] urls``."""
    return split_alert_urls(os.environ.get(ALERT_URLS_ENV, "")) or configured


def secret_values(env: MutableMapping[str, str] | None = None) -> tuple[str, ...]:
    """The secret strings that must never be written (long enough to be meaningful)."""
    env = os.environ if env is None else env
    values = [v for name in SECRET_ENV_VARS if len(v := env.get(name, "")) >= 4]
    alert_urls = env.get(ALERT_URLS_ENV, "")
    values += [u for u in (alert_urls, *alert_url_secrets(split_alert_urls(alert_urls)))
               if len(u) >= 4]
    return tuple(values)


def alert_url_secrets(urls: Iterable[str]) -> tuple[str, ...]:
    """Each URL and its token-like parts: apprise may log a URL rewritten, or only a part
    of it (FIELD-NOTES), so path segments and credentials are masked on their own too."""
    parts: list[str] = []
    for url in urls:
        parts.append(url)
        parts += [p for p in re.split(r"[/?&=@]+", url.split("://", 1)[-1])
                  if len(p) >= 12 and "." not in p]
    return tuple(parts)


class SecretRedactor:
    """Processor: masks fields named like secrets and any occurrence of a secret value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self._scrub(repr(value))
        return value

    def _field(self, key: Any, value: Any) -> Any:
        if isinstance(key, str) and SECRET_NAME_PATTERN.search(key) and value not in (None, ""):
            return REDACTED
        return self._scrub(value)

    def __call__(self, logger: Any, method: str,
                 event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        return {k: self._field(k, v) for k, v in event_dict.items()}


class RepeatedWarnings:
    """Processor for batch runs (a backtest's thousands of cycles): each warning event is
    written its first ``written`` times and only counted after that, so a covariance
    repaired at every rebalance writes three lines, not one per cycle. ``repeats()`` gives what
    was not written, for the run's closing ``warnings_repeated`` event."""

    def __init__(self, written: int = 3) -> None:
        from structlog import DropEvent  # (imported with the logging setup, not before)

        self.written = written
        self.counts: dict[str, int] = {}
        self._drop = DropEvent

    def __call__(self, logger: Any, method: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if method in ("warning", "warn"):
            event = str(event_dict.get("event"))
            seen = self.counts[event] = self.counts.get(event, 0) + 1
            if seen > self.written:
                raise self._drop
        return event_dict

    def repeats(self) -> dict[str, int]:
        """Event name → warnings counted but not written."""
        return {event: seen - self.written for event, seen in sorted(self.counts.items())
                if seen > self.written}


# The counts of the trial running in this thread (``counted_trial_events``), else None.
_trial_counts: ContextVar[dict[str, int] | None] = ContextVar("allocbot_trial_counts",
                                                               default=None)


class TrialEvents:
    """Processor for a sweep's processes: a warning or error a trial's backtest logs is
    counted (``counted_trial_events``) and not written; a sweep's hundreds of backtests
    would write a line per cycle each. Events outside a trial pass."""

    def __init__(self) -> None:
        from structlog import DropEvent  # (imported with the logging setup, not before)

        self._drop = DropEvent

    def __call__(self, logger: Any, method: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        counts = _trial_counts.get()
        if counts is not None and method in ("warning", "warn", "error", "exception",
                                             "critical"):
            event = str(event_dict.get("event"))
            counts[event] = counts.get(event, 0) + 1
            raise self._drop
        return event_dict


@contextmanager
def counted_trial_events() -> Iterator[dict[str, int]]:
    """The warning and error events logged in this block, by event name (``TrialEvents``
    counts them; without it in the chain the dict stays empty and events are written)."""
    counts: dict[str, int] = {}
    token = _trial_counts.set(counts)
    try:
        yield counts
    finally:
        _trial_counts.reset(token)


def backtest_repeats(level: str) -> RepeatedWarnings | None:
    """The repeat limit of a backtest logging at ``level``: on at "warning" (the default),
    off when the user asked for every event ("info", "debug")."""
    return RepeatedWarnings() if level.lower() == "warning" else None


def log_repeated_warnings(repeats: RepeatedWarnings | None) -> None:
    """A batch run's closing ``warnings_repeated`` event, when a warning was counted but not
    written."""
    if repeats is None or not (counts := repeats.repeats()):
        return
    import structlog

    structlog.get_logger("allocbot.backtest").warning(
        "warnings_repeated", not_written=counts, written_each=repeats.written,
        note='each was written the first times only; [backtest] log_level = "info" '
             'writes every event')


MONEY_FIELD_PATTERN = re.compile(
    r"(equity|cash|notional|commission|price|value|pnl|buying_power|needed)", re.I)
FRACTION_FIELD_PATTERN = re.compile(r"(weights?|fraction|ratio)$", re.I)  # cash_weight: no money
QTY_FIELD_PATTERN = re.compile(r"(^|_)qty$", re.I)
QTY_DECIMALS = 9  # the broker's quantity precision (brokers.base.QTY_DECIMALS)
SIGNIFICANT_DIGITS = 6


def _plain_number(value: Any) -> Any:
    """A numpy scalar or array as plain Python numbers (numpy itself is not imported)."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    return value


def round_for_reading(key: str, value: Any) -> Any:
    """Round a log field's float by what it is: money to cents, a quantity to 9 decimals,
    anything else (weights, VaR, ratios, seconds) to 6 significant digits. Recurses into
    dicts and lists; NaN and infinities are left as they are."""
    value = _plain_number(value)
    if isinstance(value, bool) or not isinstance(value, float):
        if isinstance(value, dict):
            return {k: round_for_reading(str(k) if isinstance(k, str) else key, v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(round_for_reading(key, v) for v in value)
        return value
    if not math.isfinite(value) or value == 0.0:
        return value
    if MONEY_FIELD_PATTERN.search(key) and not FRACTION_FIELD_PATTERN.search(key):
        return round(value, 2)
    if QTY_FIELD_PATTERN.search(key):
        return round(value, QTY_DECIMALS)
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def round_floats(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Processor: ``round_for_reading`` on every field."""
    return {k: round_for_reading(k, v) for k, v in event_dict.items()}


def _final_redactor(secrets: tuple[str, ...]) -> Any:
    """Last processor: scrub the rendered line itself (catches formatted tracebacks)."""

    def scrub_rendered(logger: Any, method: str, rendered: Any) -> Any:
        if isinstance(rendered, str):
            for secret in secrets:
                rendered = rendered.replace(secret, REDACTED)
        return rendered

    return scrub_rendered


_installed: dict[str, tuple[Any, ...]] = {"taps": (), "extra_secrets": ()}


def taps_installed() -> bool:
    """Whether a tap (monitoring) observes the events: it sees those below the configured
    level too, so code that builds an event only when it is written asks this as well."""
    return bool(_installed["taps"])


def configure_logging(
    log_format: Literal["json", "console", "auto"] = "json",
    level: str = "info",
    stream: TextIO | None = None,
    taps: Sequence[Any] | None = None,
    extra_secrets: Iterable[str] | None = None,
    drops: Sequence[Any] = (),
) -> None:
    """Configure structlog and stdlib logging once per process (done by the CLI).

    ``taps`` are structlog processors that observe each event dict after redaction and
    before rendering (monitoring uses one); each must return the dict unchanged and never
    raise. ``extra_secrets`` are more strings to mask (alert URLs from the config file).
    Left as None, both keep what an earlier call installed, so a later re-configuration
    (``fail`` moving logs to stderr) neither detaches monitoring nor unmasks a secret.
    ``drops`` are processors that may drop an event (``RepeatedWarnings``, ``TrialEvents``:
    batch runs only); they run first, so a dropped event costs nothing more.

    structlog is imported here, not at module level: the read-only commands (status,
    health) never configure logging and stay fast without it.
    """
    import structlog

    stream = stream or sys.stdout
    if taps is not None:
        _installed["taps"] = tuple(taps)
    if extra_secrets is not None:
        _installed["extra_secrets"] = tuple(v for v in extra_secrets if len(v) >= 4)
    taps = _installed["taps"]
    secrets = (*secret_values(), *_installed["extra_secrets"])
    use_console = log_format == "console" or (log_format == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        round_floats,
        SecretRedactor(secrets),
    ]
    exc_processor: Any = structlog.processors.format_exc_info
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer(default=str)
    )
    structlog.configure(
        processors=[
            *drops,
            *shared,
            *taps,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exc_processor,
            SecretRedactor(secrets),
            renderer,
            _final_redactor(secrets),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # its two warnings (a wake skipped while a cycle runs, a wake too late) are sentences
    # with local times; the scheduler says them as ``cycle_overlapped`` and ``cycle_missed``
    for repeated in ("apscheduler.scheduler", "apscheduler.executors"):
        logging.getLogger(repeated).setLevel(max(logging.ERROR, root.level))
    # apprise at DEBUG prints custom header values and payloads, and a malformed URL is
    # logged with its token at ERROR (FIELD-NOTES): keep it at WARNING at least
    logging.getLogger("apprise").setLevel(max(logging.WARNING, root.level))
