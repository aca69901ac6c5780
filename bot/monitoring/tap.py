"""The structlog processor through which monitoring observes the cycle.

It sits in the logging chain after redaction and before rendering, sees every event dict,
updates the metrics and the observed state in O(1), and hands alerts to the sender's queue.
It never blocks or raises into the cycle: its own failures are logged (once re-entrant
logging is ruled out) and the event passes through unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog

from bot.monitoring.alerts import AlertRules
from bot.monitoring.metrics import CycleMetrics
from bot.monitoring.observed import ObservedState
from bot.monitoring.outcomes import halt_after, is_success
from bot.monitoring.sender import AlertSender

log = structlog.get_logger("allocbot.monitoring")
_MAX_OPEN_CYCLES = 64  # cycle start times kept for failed-cycle durations


class MonitoringTap:
    """Processor: ``(logger, method, event_dict) -> event_dict`` (unchanged)."""

    def __init__(self, state: ObservedState, metrics: CycleMetrics | None,
                 rules: AlertRules | None, sender: AlertSender | None) -> None:
        self._state = state
        self._metrics = metrics
        self._rules = rules
        self._sender = sender
        self._started: dict[str, float] = {}
        self._local = threading.local()

    def __call__(self, logger: Any, method: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if getattr(self._local, "busy", False):
            return event_dict  # our own failure report: never observed, never recursive
        self._local.busy = True
        try:
            self._observe(event_dict)
        except Exception as exc:  # noqa: BLE001 (monitoring must not take a cycle down)
            log.error("monitoring_tap_failed", observed_event=str(event_dict.get("event")),
                      error=repr(exc))
        finally:
            self._local.busy = False
        return event_dict

    def _observe(self, event: MutableMapping[str, Any]) -> None:
        name = event.get("event")
        with self._state.lock:
            duration_secs = self._track_duration(name, event.get("cycle_id"))
            self._update_state(name, event)
            if self._metrics is not None:
                self._metrics.observe(event, duration_secs)
            alert = self._rules.evaluate(event) if self._rules is not None else None
        if alert is not None and self._sender is not None:
            self._sender.offer(alert)

    def _track_duration(self, name: Any, cycle_id: Any) -> float | None:
        if name == "cycle_started" and isinstance(cycle_id, str):
            if len(self._started) >= _MAX_OPEN_CYCLES:
                self._started.clear()
            self._started[cycle_id] = time.perf_counter()
        elif name in ("cycle_finished", "cycle_failed") and isinstance(cycle_id, str):
            started = self._started.pop(cycle_id, None)
            return None if started is None else time.perf_counter() - started
        return None

    def _update_state(self, name: Any, event: MutableMapping[str, Any]) -> None:
        state = self._state
        if name == "cycle_finished":
            status, reason = str(event.get("status")), event.get("reason")
            state.last_status = status
            halted = halt_after(status, reason)
            if halted is not None:
                state.halted = halted
            state.failure_streak = 0
            state.absorb(event)
            if is_success(status, reason):
                state.last_success_at = datetime.now(UTC)
                if self._metrics is not None:
                    self._metrics.last_success.set(state.last_success_at.timestamp())
        elif name == "cycle_failed":
            state.last_status = "failed"
            state.failure_streak += 1
        elif name == "trading_halted":
            state.halted = True
        elif name == "cash_transfers_applied" and isinstance(event.get("net_cash"), int | float):
            state.transfers_not_valued += float(event["net_cash"])  # until the cycle values
        elif name == "trading_rearmed":  # `allocbot rearm` cleared the journal's halt
            state.halted = False
