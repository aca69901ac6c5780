"""Which events become alerts, and how often (pure: event dicts and times in, alerts out).

The sender (``sender.py``) delivers them off the cycle's thread; nothing here does I/O.
Alert texts carry the event's fields as logged, i.e. already redacted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.monitoring.outcomes import is_success


class AlertKind(StrEnum):
    FAILURE_STREAK = "failure_streak"
    RECOVERED = "recovered"
    CYCLE_CRASHED = "cycle_crashed"
    TRADING_HALTED = "trading_halted"
    GUARD_BLOCKED = "guard_blocked"
    ORDER_REJECTED = "order_rejected"
    ORDER_FOUND_LATE = "order_found_late"
    ORDER_MISSING_AT_VENUE = "order_missing_at_venue"
    LIVE_TRADING_ENABLED = "live_trading_enabled"
    STARTUP_FAILED = "startup_failed"
    NO_RECENT_SUCCESS = "no_recent_success"
    DAILY_SUMMARY = "daily_summary"


class Severity(StrEnum):
    """apprise's notify types."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    severity: Severity
    title: str
    body: str


# event name → (kind, severity, title, fields shown in the body)
_DIRECT: dict[str, tuple[AlertKind, Severity, str, tuple[str, ...]]] = {
    "cycle_crashed": (AlertKind.CYCLE_CRASHED, Severity.FAILURE, "cycle crashed (a bug)",
                      ("cycle_id", "exception")),
    "trading_halted": (AlertKind.TRADING_HALTED, Severity.FAILURE, "trading halted",
                       ("reason", "rearm")),
    "guard_blocked": (AlertKind.GUARD_BLOCKED, Severity.WARNING, "orders blocked by a guard",
                      ("guard", "limit", "value", "subject", "blocked", "cycle_id")),
    "order_rejected": (AlertKind.ORDER_REJECTED, Severity.WARNING, "order rejected",
                       ("symbol", "side", "reason", "client_order_id")),
    "order_found_late": (AlertKind.ORDER_FOUND_LATE, Severity.FAILURE,
                         "an order the journal had as never sent reached the venue",
                         ("symbol", "side", "qty", "status", "filled_qty", "client_order_id")),
    "order_missing_at_venue": (AlertKind.ORDER_MISSING_AT_VENUE, Severity.WARNING,
                               "an order vanished at the venue: what it filled is unknown",
                               ("symbol", "side", "qty", "filled_qty", "previous_status",
                                "client_order_id")),
    "live_trading_enabled": (AlertKind.LIVE_TRADING_ENABLED, Severity.WARNING,
                             "live trading enabled", ("account", "equity")),
    "startup_failed": (AlertKind.STARTUP_FAILED, Severity.FAILURE, "daemon failed to start",
                       ("error",)),
}


def _body(event: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    parts = [f"{name}: {_short(event[name])}" for name in fields if event.get(name) is not None]
    return "\n".join(parts) or str(event.get("event"))


def _short(value: Any, limit: int = 600) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AlertRules:
    """Turns events into alerts; counts consecutive failed cycles (not thread-safe alone:
    the tap calls it under its lock)."""

    def __init__(self, failure_streak: int) -> None:
        self._streak_needed = failure_streak
        self.streak = 0
        # failed cycles in a row when the last failure_streak alert was raised (0: none
        # raised since the last success): the next successful cycle announces the recovery
        self.alerted_streak = 0
        self._strategy_error: object = None

    def seed(self, streak: int) -> None:
        """At daemon start: the failed (or held) cycles in a row the journal ends with, so a
        streak split by a restart still alerts. A seeded streak that already reached the
        threshold was alerted by the process before (at its multiple): its end is
        announced too."""
        self.streak = streak
        if streak >= self._streak_needed:
            self.alerted_streak = streak

    def evaluate(self, event: Mapping[str, Any]) -> Alert | None:
        name = str(event.get("event"))
        if name == "strategy_failed":
            self._strategy_error = event.get("reason")
        held = name == "cycle_finished" and event.get("status") == "held"
        if name == "cycle_failed" or held:  # held: the strategy could not compute targets
            self.streak += 1
            if self.streak % self._streak_needed == 0:
                self.alerted_streak = self.streak
                error = self._strategy_error if held else event.get("error")
                return Alert(AlertKind.FAILURE_STREAK, Severity.FAILURE,
                             f"{self.streak} cycles failed in a row",
                             f"last error: {_short(error)}")
            return None
        if name == "cycle_finished" and event.get("status") != "halted":
            failed, self.streak = self.streak, 0
            if self.alerted_streak and is_success(event.get("status"), event.get("reason")):
                self.alerted_streak = 0
                return _recovered(event, failed)
        if name in _DIRECT:
            kind, severity, title, fields = _DIRECT[name]
            return Alert(kind, severity, title, _body(event, fields))
        return None


def _recovered(event: Mapping[str, Any], failed: int) -> Alert:
    """A successful cycle after a failure_streak alert (``failed``: the cycles that failed
    in a row before it, 0 when a skip that is no success ended the streak first)."""
    reason = event.get("reason")
    lines = [f"cycle {event.get('status')}{f' ({reason})' if reason else ''}"
             + (f" after {failed} failed in a row" if failed else " after the failures")]
    if event.get("cycle_id") is not None:
        lines.append(f"cycle_id: {event['cycle_id']}")
    return Alert(AlertKind.RECOVERED, Severity.SUCCESS, "cycles succeed again", "\n".join(lines))


class RateLimiter:
    """At most one delivered alert per kind per ``window_secs`` (thread-safe, O(1)): the
    sender gives the window of an alert it could not deliver back (``release``)."""

    def __init__(self, window_secs: float,
                 taken: Mapping[str, datetime] | None = None) -> None:
        """``taken``: windows already taken (kind → when), e.g. by the last process
        (``alert_windows.AlertWindows``); unknown kinds are ignored."""
        self._window_secs = window_secs
        known = {kind.value: kind for kind in AlertKind}
        self._last_sent: dict[AlertKind, datetime] = {
            known[kind]: at for kind, at in (taken or {}).items() if kind in known}
        self._lock = threading.Lock()

    def allow(self, kind: AlertKind, now: datetime) -> bool:
        with self._lock:
            last = self._last_sent.get(kind)
            if last is not None and (now - last).total_seconds() < self._window_secs:
                return False
            self._last_sent[kind] = now
            return True

    def release(self, kind: AlertKind, taken_at: datetime) -> None:
        """Give back the window ``allow`` opened at ``taken_at``: that alert was never
        delivered (the send failed, or the queue was full), so the next one of its kind may
        go. A window taken since by another alert of the kind is left alone."""
        with self._lock:
            if self._last_sent.get(kind) == taken_at:
                del self._last_sent[kind]
