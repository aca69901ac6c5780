"""The alert sender: a background thread that delivers alerts through apprise with a
timeout, and runs the schedule watchdog and the daily summary between them.

The cycle's thread only ever does ``queue.put_nowait`` (a full queue drops the alert and
counts it). A failed or slow send is logged here, never raised, never waited for by a cycle.
URLs are never logged: they hold webhook tokens (FIELD-NOTES: apprise).

Each URL is an apprise object of its own, sent to on its own (all at once, within the
timeout), so each has its own result: apprise's ``notify()`` over several URLs is False when
any one fails, and a dead URL then made the working ones get every alert and its retries.

Only a delivered alert uses up its kind's rate-limit window: a send that reached no URL (or
a drop) gives the window back, so the next alert of the kind goes out, and the failed alert
itself is retried after ``RETRY_DELAYS_SECS`` (at most one retry pending per kind: a newer
failure of the kind replaces it; a retry whose kind was delivered meanwhile is not sent).
An alert that reached some URLs keeps its window (the rate limit holds for every URL) and
is retried to the failed URLs only. Retries still pending at exit are given up (their
record and ``alert_failed`` line stay). A delivered alert's window outlives the process
(``alert_windows``).

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
from concurrent.futures import ThreadPoolExecutor
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


def _kept_first(outcome: str) -> bool:
    """The outcomes the recent list keeps over the others when full: failures (whole or at
    some URLs) and drops."""
    return outcome == "dropped" or "failed" in outcome


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as the status page lists it."""

    at: datetime
    kind: str
    title: str
    # sent | failed | rate_limited | dropped | no_urls; with several URLs, a send that
    # failed at some: "sent; failed at URL 2 of 3", and its retry "sent to URL 2 of 3"
    # (or "failed at URL 2 of 3")
    outcome: str
    count: int = 1  # rate_limited: alerts of the kind refused in a row (one row for them)


@dataclass(frozen=True, slots=True)
class _Queued:
    """An alert on its way, with the rate-limit window it took (``taken_at``), how many
    times it was sent before (0: first attempt) and, for the retry of an alert some URLs
    got, the positions (0-based) of those still to get it (None: every URL)."""

    alert: Alert
    taken_at: datetime
    attempt: int = 0
    targets: tuple[int, ...] | None = None


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
        self._channels = build_channels(self._urls)
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
                oldest = next((r for r in recent if not _kept_first(r.outcome)), None)
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
        """Send again the failed alerts whose delay has passed. One that reached no URL goes
        unless an alert of the kind was delivered (or is on its way) meanwhile: the operator
        has heard of it then. One that reached some URLs goes to the others (its window is
        taken already; a newer alert of the kind sent to every URL would have replaced it)."""
        now = time.monotonic()
        for kind, (due, item) in list(self._retries.items()):
            if due > now:
                continue
            del self._retries[kind]
            if item.targets is not None:
                self._deliver(item)
                continue
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
        targets = tuple(range(len(self._urls))) if item.targets is None else item.targets
        failed = self._send(alert, targets)
        reached = len(failed) < len(targets)
        heard_before = item.targets is not None  # some URLs got this alert already
        self._record(AlertRecord(now, alert.kind, alert.title,
                                 self._outcome(targets, failed, heard_before)))
        if item.targets is None:  # sent to every URL: a pending retry of the kind is moot
            self._retries.pop(alert.kind, None)  # (a failure here schedules its own)
        if reached:
            log.info("alert_sent", kind=alert.kind, title=alert.title,
                     **({"positions": self._positions(t for t in targets if t not in failed)}
                        if len(targets) < len(self._urls) or failed else {}))
            if not heard_before and self._delivered is not None:
                self._delivered(alert.kind, item.taken_at)
        elif not heard_before:
            # reached no URL: the window is not used up (the next alert of the kind goes out)
            self._limiter.release(alert.kind, item.taken_at)
        if not failed:
            return
        retry_in = (self._retry_delays_secs[item.attempt]
                    if item.attempt < len(self._retry_delays_secs) else None)
        partial = reached or heard_before  # then only the failed URLs are sent to again
        if retry_in is not None:
            self._retries[alert.kind] = (
                time.monotonic() + retry_in,
                replace(item, attempt=item.attempt + 1, targets=failed if partial else None))
        log.warning("alert_failed", kind=alert.kind, title=alert.title, retry_in_secs=retry_in,
                    **({"failed_positions": self._positions(failed), "count": len(self._urls)}
                       if partial else {}),
                    note=("delivery failed or timed out at these URLs (by position); the "
                          "others got it and are not sent to again; the bot carries on"
                          if partial else "delivery failed or timed out; the bot carries on"))

    def _outcome(self, targets: tuple[int, ...], failed: tuple[int, ...],
                 heard_before: bool) -> str:
        """The page's word for one send (see ``AlertRecord.outcome``)."""
        of = f" of {len(self._urls)}"
        if failed and len(failed) < len(targets):
            return f"sent; failed at URL {_listed(self._positions(failed))}{of}"
        if not heard_before:
            return "failed" if failed else "sent"
        return (f"failed at URL {_listed(self._positions(failed))}{of}" if failed
                else f"sent to URL {_listed(self._positions(targets))}{of}")

    @staticmethod
    def _positions(indices: Iterator[int] | tuple[int, ...]) -> list[int]:
        return [i + 1 for i in indices]  # 1-based, as alert_url_invalid names them

    def _send(self, alert: Alert, targets: tuple[int, ...]) -> tuple[int, ...]:
        """Send ``alert`` to the URLs at ``targets``, each on its own apprise object and all
        at once (the whole send stays within the timeout); returns the positions that
        failed (refused, timed out, or the plugin raised)."""
        def one(index: int) -> bool:
            try:
                return bool(self._channels[index].notify(
                    body=alert.body, title=f"allocbot: {alert.title}",
                    notify_type=alert.severity.value, timeout=self._timeout_secs))
            except Exception as exc:  # noqa: BLE001 (a plugin raising must not stop the thread)
                log.error("alert_failed", kind=alert.kind, error=type(exc).__name__,
                          position=index + 1, count=len(self._urls))
                return False

        if len(targets) == 1:
            results = [one(targets[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(targets),
                                    thread_name_prefix="allocbot-alert-url") as pool:
                results = list(pool.map(one, targets))
        return tuple(t for t, ok in zip(targets, results, strict=True) if not ok)


def _listed(positions: list[int]) -> str:
    return ", ".join(map(str, positions))


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


def _parse(urls: Sequence[str]) -> tuple[list[Any], list[int]]:
    """One apprise object per URL apprise can parse, and the 1-based positions of those it
    cannot (imports apprise: ``ModuleNotFoundError`` without it)."""
    import apprise

    channels, bad = [], []
    with _apprise_quiet():
        for position, url in enumerate(urls, start=1):
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                bad.append(position)
                continue
            app = apprise.Apprise()
            app.add(plugin)
            channels.append(app)
    return channels, bad


def unparseable_positions(urls: Sequence[str]) -> list[int]:
    """The 1-based positions of the URLs apprise cannot parse (``allocbot check-config``)."""
    return _parse(urls)[1]


def build_channels(urls: Sequence[str]) -> list[Any]:
    """One apprise object per URL (so each URL's result is its own). A URL apprise cannot
    parse is logged by position only (``alert_url_invalid``) and refused: ``ConfigError``,
    as ``allocbot check-config`` refuses it, for the daemon not to start with an alert
    channel that would only fail at the first alert, maybe months later."""
    if not urls:
        return []
    try:
        channels, bad = _parse(urls)
    except ModuleNotFoundError:
        raise invalid_alert_urls_error([], len(urls)) from None
    for position in bad:
        log.error("alert_url_invalid", position=position, count=len(urls),
                  note="apprise cannot parse this alert URL (not shown: it holds a token); "
                       "the daemon does not start")
    if bad:
        raise invalid_alert_urls_error(bad, len(urls))
    return channels
