"""The alert sender: a background thread that delivers alerts through apprise with a
timeout, and runs the schedule watchdog and the daily summary between them.

The cycle's thread only ever does ``queue.put_nowait`` (a full queue drops the alert and
counts it). A failed or slow send is logged here, never raised, never waited for by a cycle.
URLs are never logged: they hold webhook tokens (FIELD-NOTES: apprise).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from bot.monitoring.alerts import Alert, RateLimiter

log = structlog.get_logger("allocbot.monitoring")
QUEUE_SIZE = 100
RECENT_ALERTS = 20


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as the status page lists it."""

    at: datetime
    kind: str
    title: str
    outcome: str  # sent | failed | rate_limited | dropped | no_urls


class AlertSender:
    """Owns the apprise object; ``offer`` is safe from any thread and never blocks."""

    def __init__(self, urls: Sequence[str], limiter: RateLimiter, timeout_secs: float,
                 periodic: Callable[[datetime], list[Alert]] | None = None,
                 period_secs: float = 30.0) -> None:
        self._urls = tuple(urls)
        self._limiter = limiter
        self._timeout_secs = timeout_secs
        self._periodic = periodic
        self._period_secs = period_secs
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self.recent: deque[AlertRecord] = deque(maxlen=RECENT_ALERTS)
        self._thread = threading.Thread(target=self._loop, name="allocbot-alerts", daemon=True)
        self._apprise: Any = None

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    def start(self) -> None:
        self._thread.start()

    def offer(self, alert: Alert) -> None:
        """Queue ``alert`` unless its kind was sent within the rate-limit window."""
        now = datetime.now(UTC)
        if not self._limiter.allow(alert.kind, now):
            self.recent.append(AlertRecord(now, alert.kind, alert.title, "rate_limited"))
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.recent.append(AlertRecord(now, alert.kind, alert.title, "dropped"))

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
        while True:
            try:
                alert = self._queue.get(timeout=self._period_secs)
            except queue.Empty:
                self._run_periodic()
                continue
            if alert is None:
                return
            self._deliver(alert)
            self._run_periodic()

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

    def _deliver(self, alert: Alert) -> None:
        now = datetime.now(UTC)
        if not self._urls:
            self.recent.append(AlertRecord(now, alert.kind, alert.title, "no_urls"))
            return
        try:
            ok = self._send(alert)
        except Exception as exc:  # noqa: BLE001 (a plugin raising must not stop the thread)
            ok = False
            log.error("alert_failed", kind=alert.kind, error=type(exc).__name__)
        self.recent.append(AlertRecord(now, alert.kind, alert.title, "sent" if ok else "failed"))
        if ok:
            log.info("alert_sent", kind=alert.kind, title=alert.title)
        else:
            log.warning("alert_failed", kind=alert.kind, title=alert.title,
                        note="delivery failed or timed out; the bot carries on")

    def _send(self, alert: Alert) -> bool:
        if self._apprise is None:
            self._apprise = _build_apprise(self._urls)
        result = self._apprise.notify(body=alert.body, title=f"allocbot: {alert.title}",
                                      notify_type=alert.severity.value,
                                      timeout=self._timeout_secs)
        return bool(result)


def _build_apprise(urls: Sequence[str]) -> Any:
    """One apprise object for every URL; a URL it cannot parse is reported by position only."""
    import apprise

    app = apprise.Apprise()
    for index, url in enumerate(urls):
        if not app.add(url):
            log.error("alert_url_invalid", position=index + 1, count=len(urls),
                      note="apprise cannot parse this alert URL (not shown: it holds a token)")
    return app

