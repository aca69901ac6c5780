"""Prometheus metrics of the daemon, in a registry of its own (no duplicate-series errors
when several apps or tests build one; no process collectors mixed in).

Names are the contract with ``deploy/prometheus/alerts.yml`` and ``deploy/grafana/allocbot.json``
(a test checks both ways). Every update is O(1): a dict lookup and a gauge/counter call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.monitoring.outcomes import halt_after

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# a cycle waits for orders ([broker].order_wait_secs, 30 s by default): buckets reach beyond
# prometheus_client's 10 s default, where every slow cycle would land in +Inf only
CYCLE_DURATION_BUCKETS_SECS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
ORDER_EVENTS = {"order_submitted": "submitted", "order_filled": "filled",
                "order_partially_filled": "partially_filled", "order_rejected": "rejected",
                "order_unfilled": "unfilled"}
MAX_GUARD_LABELS = 32  # bounded label cardinality: further guard names count as "other"

METRIC_NAMES = (
    "allocbot_cycles_total", "allocbot_cycle_duration_seconds", "allocbot_orders_total",
    "allocbot_equity", "allocbot_cash", "allocbot_drawdown", "allocbot_var",
    "allocbot_var_limit", "allocbot_max_drift", "allocbot_halted",
    "allocbot_last_success_timestamp_seconds", "allocbot_guard_blocks_total",
)


class CycleMetrics:
    """The daemon's metrics; ``observe`` maps one structlog event dict onto them."""

    def __init__(self, var_limit: float | None, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        # ``<name>_created`` series double every counter/histogram and no rule or panel uses
        # them (FIELD-NOTES); the switch is process-wide, as in PROMETHEUS_DISABLE_CREATED_SERIES
        disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cycles = Counter("allocbot_cycles", "Cycles by outcome.", ["status"], registry=r)
        self.duration = Histogram("allocbot_cycle_duration_seconds", "Wall time of one cycle.",
                                  buckets=CYCLE_DURATION_BUCKETS_SECS, registry=r)
        self.orders = Counter("allocbot_orders", "Order events by outcome.", ["status"], registry=r)
        self.equity = Gauge("allocbot_equity", "Account equity after the last cycle.", registry=r)
        self.cash = Gauge("allocbot_cash", "Cash after the last cycle.", registry=r)
        self.drawdown = Gauge("allocbot_drawdown", "Fraction below the equity peak.", registry=r)
        self.var = Gauge("allocbot_var", "VaR of the target weights (fraction of equity).",
                         registry=r)
        self.var_limit = Gauge("allocbot_var_limit", "[risk].max_var (NaN when unset).",
                               registry=r)
        self.max_drift = Gauge("allocbot_max_drift", "Largest |weight - target| seen by the "
                               "last cycle before its orders.", registry=r)
        self.halted = Gauge("allocbot_halted", "1 while the drawdown kill switch is on.",
                            registry=r)
        self.last_success = Gauge("allocbot_last_success_timestamp_seconds",
                                  "Unix time of the last successful cycle (finished, or "
                                  "skipped because the market was closed).",
                                  registry=r)
        self.guard_blocks = Counter("allocbot_guard_blocks",
                                    "Pre-trade guard breaches (one per guard per blocked cycle).",
                                    ["guard"], registry=r)
        self._guards: set[str] = set()
        for gauge in (self.equity, self.cash, self.drawdown, self.var, self.max_drift):
            gauge.set(math.nan)  # unknown until a cycle (or the journal) says otherwise
        self.var_limit.set(math.nan if var_limit is None else var_limit)

    def observe(self, event: Mapping[str, Any], duration_secs: float | None = None) -> None:
        """Update from one event dict (fields as the cycle logs them)."""
        name = event.get("event")
        if name == "cycle_finished":
            self._cycle_finished(event)
        elif name == "cycle_failed":
            self.cycles.labels(status="failed").inc()
            if duration_secs is not None:
                self.duration.observe(duration_secs)
        elif name in ORDER_EVENTS:
            self.orders.labels(status=ORDER_EVENTS[name]).inc()
        elif name == "order_reconciled":
            if event.get("action") == "update" and event.get("previous_status") == "intent":
                # the venue took it, its answer never reached the journal (the submit call
                # failed after the venue processed it): submitted, found by reconciliation
                self.orders.labels(status="submitted").inc()
        elif name == "trading_halted":
            self.halted.set(1)
        elif name == "trading_rearmed":  # `allocbot rearm` cleared the journal's halt
            self.halted.set(0)
        elif name == "guard_blocked":
            self._guard_blocked(str(event.get("guard", "unknown")))

    def _cycle_finished(self, event: Mapping[str, Any]) -> None:
        status = str(event.get("status", "finished"))
        self.cycles.labels(status=status).inc()
        if isinstance(event.get("duration_ms"), int | float):
            self.duration.observe(event["duration_ms"] / 1e3)
        self.set_figures(event)
        halted = halt_after(status, event.get("reason"))
        if halted is not None:
            self.halted.set(1 if halted else 0)

    def set_figures(self, figures: Mapping[str, Any]) -> None:
        """Gauges from a cycle summary (the event, or a journal row at start)."""
        _set_if_number(self.equity, figures.get("equity_after", figures.get("equity")))
        _set_if_number(self.cash, figures.get("cash_after"))
        _set_if_number(self.drawdown, figures.get("drawdown"))
        _set_if_number(self.var, figures.get("var"))
        _set_if_number(self.max_drift, figures.get("max_drift"))

    def seed(self, figures: Mapping[str, Any], halted: bool,
             last_success_at: datetime | None) -> None:
        """At daemon start, from the journal: the last cycle's figures and the halt."""
        self.set_figures(figures)
        self.halted.set(1 if halted else 0)
        if last_success_at is not None:
            self.last_success.set(last_success_at.timestamp())

    def _guard_blocked(self, guard: str) -> None:
        if guard not in self._guards and len(self._guards) >= MAX_GUARD_LABELS:
            guard = "other"
        self._guards.add(guard)
        self.guard_blocks.labels(guard=guard).inc()


def _set_if_number(gauge: Any, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        gauge.set(float(value))
