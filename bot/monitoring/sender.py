"""The alert sender: a background thread that delivers alerts through apprise with a
timeout, and runs the schedule watchdog and the daily summary between them.

The cycle's thread only ever does ``queue.put_nowait`` (a full queue drops the alert and
counts it). A failed or slow send is logged here, never raised, never waited for by a cycle.
URLs are never logged: they hold webhook tokens (FIELD-NOTES: apprise).

Only a delivered alert uses up its kind's rate-limit window: a failed send (or a drop)
gives the window back, so the next alert of the kind goes out, and the failed alert itself
is retried after ``RETRY_DELAYS_SECS`` (at most one retry pending per kind: a newer failure
of the kind replaces it; a retry whose kind was delivered meanwhile is not sent). Retries
still pending at exit are given up (their ``failed`` record and ``alert_failed`` line stay).
A delivered alert's window outlives the process (``alert_windows``).

The periodic checks (the schedule watchdog, the daily summary) run every ``period_secs``
and at no other time: delivering their alert must not run them again (with
``rate_limit_secs = 0`` that sent the watchdog's alert in a tight loop).

URLs apprise cannot parse are refused when the sender is built (the daemon's start): a
``ConfigError`` naming the key and the positions, as ``allocbot check-config`` says it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from bot.monitoring.alerts import Alert, RateLimiter
from bot.monitoring.settings import invalid_alert_urls_error

log = structlog.get_logger("allocbot.monitoring")
QUEUE_SIZE = 100
RECENT_ALERTS = 20
RETRY_DELAYS_SECS = (30.0, 300.0)  # a failed alert is sent again after these (then given up)
_UNKEPT = ("failed", "dropped")  # outcomes the recent list keeps over the others when full


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as the status page lists it."""

    at: datetime
    kind: str
    title: str
    outcome: str  # sent | failed | rate_limited | dropped | no_urls
    count: int = 1  # rate_limited: alerts of the kind refused in a row (one row for them)


@dataclass(frozen=True, slots=True)
class _Queued:
    """An alert on its way, with the rate-limit window it took (``taken_at``) and how many
    times it was sent before (0: first attempt)."""

    alert: Alert
    taken_at: datetime
    attempt: int = 0


class AlertSender:
    """Owns the apprise object; ``offer`` is safe from any thread and never blocks."""

    def __init__(self, urls: Sequence[str], limiter: RateLimiter, timeout_secs: float,
                 periodic: Callable[[datetime], list[Alert]] | None = None,
                 period_secs: float = 30.0,
                 retry_delays_secs: Sequence[float] = RETRY_DELAYS_SECS,
                 delivered: Callable[[str, datetime], None] | None = None) -> None:
        """``delivered(kind, taken_at)`` is told of each delivered alert and the rate-limit
        window it took (``alert_windows.AlertWindows.record`` keeps it for the next start).

        Raises ``ConfigError`` when apprise cannot parse one of ``urls`` (each is logged as
        ``alert_url_invalid`` by position first), or is not installed."""
        self._urls = tuple(urls)
        self._apprise: Any = _build_apprise(self._urls)
        self._delivered = delivered
        self._limiter = limiter
        self._timeout_secs = timeout_secs
        self._periodic = periodic
        self._period_secs = period_secs
        self._retry_delays_secs = tuple(retry_delays_secs)
        self._queue: queue.Queue[_Queued | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self.recent: deque[AlertRecord] = deque(maxlen=RECENT_ALERTS)
        self._recent_lock = threading.Lock()
        # kind → (monotonic due time, the failed alert); the sender thread's alone
        self._retries: dict[str, tuple[float, _Queued]] = {}
        self._thread = threading.Thread(target=self._loop, name="allocbot-alerts", daemon=True)

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    def start(self) -> None:
        self._thread.start()

    def offer(self, alert: Alert) -> None:
        """Queue ``alert`` unless its kind was sent (or is on its way) within the rate-limit
        window."""
        now = datetime.now(UTC)
        if not self._limiter.allow(alert.kind, now):
            self._record(AlertRecord(now, alert.kind, alert.title, "rate_limited"))
            return
        try:
            self._queue.put_nowait(_Queued(alert, now))
        except queue.Full:
            self._limiter.release(alert.kind, now)  # never sent: the window stays open
            self._record(AlertRecord(now, alert.kind, alert.title, "dropped"))

    def _record(self, record: AlertRecord) -> None:
        """Add to the recent list: a refusal right after a refusal of its kind is counted in
        that row, and a full list drops its oldest row that is not a failure first (a burst
        of ``rate_limited`` rows must not push the failure that matters off the page)."""
        with self._recent_lock:
            recent = self.recent
            if record.outcome == "rate_limited":
                last = next((i for i in range(len(recent) - 1, -1, -1)
                             if recent[i].kind == record.kind), None)
                if last is not None and recent[last].outcome == "rate_limited":
                    record = replace(record, count=recent[last].count + 1)
                    del recent[last]
            if len(recent) >= RECENT_ALERTS:
                oldest = next((r for r in recent if r.outcome not in _UNKEPT), None)
                if oldest is not None:
                    recent.remove(oldest)
            recent.append(record)

    def close(self, timeout_secs: float | None = None) -> None:
        """Deliver what is queued (bounded by the send timeout), then stop the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            log.warning("alerts_not_flushed", queued=self._queue.qsize())
            return
        self._thread.join(timeout_secs if timeout_secs is not None
                          else self._timeout_secs * (1 + self._queue.qsize()) + 1)

    def _loop(self) -> None:
        next_periodic = time.monotonic() + self._period_secs
        while True:
            wake = min([next_periodic, *(due for due, _ in self._retries.values())])
            try:
                item = self._queue.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                item = None
            else:
                if item is None:
                    return
                self._deliver(item)
            self._send_due_retries()
            if time.monotonic() >= next_periodic:  # on its own period only (module doc)
                self._run_periodic()
                next_periodic = time.monotonic() + self._period_secs

    def _send_due_retries(self) -> None:
        """Send again the failed alerts whose delay has passed, unless an alert of the kind
        was delivered (or is on its way) meanwhile: the operator has heard of it then."""
        now = time.monotonic()
        for kind, (due, item) in list(self._retries.items()):
            if due > now:
                continue
            del self._retries[kind]
            at = datetime.now(UTC)
            if self._limiter.allow(item.alert.kind, at):
                self._deliver(replace(item, taken_at=at))

    def _run_periodic(self) -> None:
        """Watchdog and daily summary: they queue their alerts like any other."""
        if self._periodic is None:
            return
        try:
            alerts = self._periodic(datetime.now(UTC))
        except Exception as exc:  # noqa: BLE001 (a watchdog bug must not stop the alerts)
            log.error("alert_watchdog_failed", error=repr(exc))
            return
        for alert in alerts:
            self.offer(alert)

    def _deliver(self, item: _Queued) -> None:
        alert, now = item.alert, datetime.now(UTC)
        if not self._urls:
            self._record(AlertRecord(now, alert.kind, alert.title, "no_urls"))
            return
        try:
            ok = self._send(alert)
        except Exception as exc:  # noqa: BLE001 (a plugin raising must not stop the thread)
            ok = False
            log.error("alert_failed", kind=alert.kind, error=type(exc).__name__)
        self._record(AlertRecord(now, alert.kind, alert.title, "sent" if ok else "failed"))
        if ok:
            log.info("alert_sent", kind=alert.kind, title=alert.title)
            if self._delivered is not None:
                self._delivered(alert.kind, item.taken_at)
            return
        # not delivered: the window is not used up (the next alert of the kind goes out)
        self._limiter.release(alert.kind, item.taken_at)
        retry_in = (self._retry_delays_secs[item.attempt]
                    if item.attempt < len(self._retry_delays_secs) else None)
        if retry_in is not None:
            self._retries[alert.kind] = (time.monotonic() + retry_in,
                                         replace(item, attempt=item.attempt + 1))
        log.warning("alert_failed", kind=alert.kind, title=alert.title, retry_in_secs=retry_in,
                    note="delivery failed or timed out; the bot carries on")

    def _send(self, alert: Alert) -> bool:
        result = self._apprise.notify(body=alert.body, title=f"allocbot: {alert.title}",
                                      notify_type=alert.severity.value,
                                      timeout=self._timeout_secs)
        return bool(result)


@contextmanager
def _apprise_quiet() -> Iterator[None]:
    """apprise logs a URL it cannot parse at ERROR with its token (FIELD-NOTES), and the
    daemon builds the sender before the config's URLs are added to the redaction: silence
    its logger meanwhile (we name a bad URL by position)."""
    logger = logging.getLogger("apprise")
    before, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = before


def _parse(urls: Sequence[str]) -> tuple[Any, list[int]]:
    """One apprise object for every URL apprise can parse, and the 1-based positions of
    those it cannot (imports apprise: ``ModuleNotFoundError`` without it)."""
    import apprise

    app, bad = apprise.Apprise(), []
    with _apprise_quiet():
        for position, url in enumerate(urls, start=1):
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                bad.append(position)
            else:
                app.add(plugin)
    return app, bad


def unparseable_positions(urls: Sequence[str]) -> list[int]:
    """The 1-based positions of the URLs apprise cannot parse (``allocbot check-config``)."""
    return _parse(urls)[1]


def _build_apprise(urls: Sequence[str]) -> Any:
    """The apprise object for ``urls``. A URL apprise cannot parse is logged by position
    only (``alert_url_invalid``) and refused: ``ConfigError``, as ``allocbot check-config``
    refuses it, for the daemon not to start with an alert channel that would only fail at
    the first alert, maybe months later."""
    if not urls:
        return None
    try:
        app, bad = _parse(urls)
    except ModuleNotFoundError:
        raise invalid_alert_urls_error([], len(urls)) from None
    for position in bad:
        log.error("alert_url_invalid", position=position, count=len(urls),
                  note="apprise cannot parse this alert URL (not shown: it holds a token); "
                       "the daemon does not start")
    if bad:
        raise invalid_alert_urls_error(bad, len(urls))
    return app
