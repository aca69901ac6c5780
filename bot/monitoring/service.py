"""Monitoring as the daemon runs it: build the metrics and the alert sender from the config,
attach the logging tap, seed the gauges from the journal, serve HTTP, shut down.

``start_monitoring`` runs before the runtime opens (a ``startup_failed`` there still
alerts); ``Monitor.serve`` binds the ports after it (the instance lock is held by then, so
a second daemon fails on the lock, not on a busy port).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import structlog

from bot.config import Config
from bot.engine.journal import Journal
from bot.engine.statuses import HALT_KEY, CycleStatus, recorded_transfers
from bot.errors import ConfigError
from bot.logs import alert_url_secrets, configure_logging
from bot.monitoring.alert_windows import AlertWindows
from bot.monitoring.alerts import Alert, AlertKind, AlertRules, RateLimiter, Severity
from bot.monitoring.health import assess_health, success_due_after
from bot.monitoring.metrics import CycleMetrics
from bot.monitoring.observed import ObservedState
from bot.monitoring.sender import AlertSender
from bot.monitoring.server import STATUS_TOKEN_ENV, MonitoringServer, Routes, build_app
from bot.monitoring.settings import alert_urls, monitoring_configured
from bot.monitoring.status_report import EQUITY_FIGURES, last_success_cycle
from bot.monitoring.tap import MonitoringTap

log = structlog.get_logger("allocbot.monitoring")
WATCHDOG_PERIOD_SECS = 30.0
SEED_CYCLES = 200


@dataclass(slots=True)
class Monitor:
    cfg: Config
    state: ObservedState
    metrics: CycleMetrics | None
    sender: AlertSender | None
    servers: list[tuple[str, MonitoringServer]] = field(default_factory=list)  # (role, server)
    rules: AlertRules | None = None  # the tap's alert rules (with alert URLs only)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _summary_state: dict[str, Any] = field(default_factory=dict)
    windows: AlertWindows | None = None  # kept in the state dir: the daily summary's state

    def seed_from_journal(self) -> None:
        """Gauges from the journal (read-only: the last success and the last valuation
        however far back, cash, VaR and drift from the last finished cycle), so a restart
        shows no zeros; the failure streak the journal ends with, so a streak split by a
        restart alerts."""
        if not self.cfg.state_db.exists():
            return
        journal = Journal.open_read_only(self.cfg.state_db)
        try:
            cycles = journal.recent_cycles(SEED_CYCLES)
            halted = journal.meta(HALT_KEY) is not None
            transfers = recorded_transfers(journal)
            success = last_success_cycle(journal)  # however far back (a long halt)
            finished = journal.latest_cycle(statuses=[CycleStatus.FINISHED])
            valued = max((c for c in (journal.latest_cycle(figure=f) for f in EQUITY_FIGURES)
                          if c is not None), key=lambda c: c["finished_at"], default=None)
        finally:
            journal.close()
        last = None if valued is None else valued["summary"]  # the account's last valuation
        if finished is not None and last is not None:  # cash, VaR, drift: the last finished
            equity_only = "equity" in last and "equity_after" not in last  # (a halted cycle)
            last = {**finished["summary"], **last}
            if equity_only:
                last.pop("equity_after", None)
        streak, failed = trailing_failures(cycles)
        with self.state.lock:
            self.state.halted = halted
            self.state.failure_streak = failed
            if self.rules is not None:
                self.rules.seed(streak)
            if success is not None:
                self.state.last_success_at = datetime.fromisoformat(success["finished_at"])
            if last is not None:
                self.state.absorb(last)
            if transfers is not None:  # in the last valuation's equity, and after it
                until = None if valued is None else valued["finished_at"]
                self.state.net_transfers = transfers.applied_between(None, until)
                self.state.transfers_not_valued = (transfers.applied_between(until, None)
                                                   if until is not None else 0.0)
            if self.metrics is not None:
                self.metrics.seed(last or {}, halted, self.state.last_success_at)
        log.info("monitoring_seeded", cycles=len(cycles), halted=halted, failure_streak=streak,
                 equity=None if last is None else last.get("equity_after", last.get("equity")))

    def keep_summaries_in(self, windows: AlertWindows) -> None:
        """Keep the daily summary's day and equity in ``windows`` (the state dir), and
        take the last ones kept there, from before a restart."""
        self.windows = windows
        kept = windows.summary()
        if kept is not None:
            self._summary_state.update(date=kept[0], equity=kept[1], net_transfers=kept[2])

    def periodic_alerts(self, now: datetime) -> list[Alert]:
        """Run by the sender thread: the schedule watchdog and the daily summary."""
        alerts = []
        overdue = self._overdue(now) if self.cfg.alerts.watchdog else None
        if overdue is not None:
            alerts.append(Alert(AlertKind.NO_RECENT_SUCCESS, Severity.FAILURE,
                                "no successful cycle within the schedule", overdue))
        summary = self._daily_summary(now)
        if summary is not None:
            alerts.append(summary)
        return alerts

    def _overdue(self, now: datetime) -> str | None:
        """``allocbot health``'s rule (``success_due_after``) on what this process saw; a
        deadline from before the daemon started does not count, nor does a halt (it has its
        own alert)."""
        due = success_due_after(self.cfg.schedule, now)
        with self.state.lock:
            last, halted = self.state.last_success_at, self.state.halted
        if halted or due <= self.started_at or (last is not None and last >= due):
            return None
        seen = "none since the daemon started" if last is None else f"last at {last:%Y-%m-%d %H:%M:%S} UTC"
        return f"a successful cycle was due since {due:%Y-%m-%d %H:%M:%S} UTC; {seen}"

    def _daily_summary(self, now: datetime) -> Alert | None:
        """Once a day at ``daily_summary_at``. A figure no cycle has given yet (equity before
        the first valuation, VaR or drift before the first finished cycle) reads "n/a",
        never "nan", and an unknown equity is kept as unknown (null), so the next day's P&L
        says why it has none instead of computing nan from it."""
        at = self.cfg.alerts.daily_summary_at
        if at is None:
            return None
        local = now.astimezone(ZoneInfo(self.cfg.schedule.timezone))
        if local.strftime("%H:%M") < at or self._summary_state.get("date") == local.date():
            return None
        with self.state.lock:
            s = self.state
            equity, drift, var, drawdown = (_known(v) for v in (s.equity, s.max_drift, s.var,
                                                                s.drawdown))
            halted, moved = s.halted, s.net_transfers
        first = "date" not in self._summary_state
        previous = _known(self._summary_state.get("equity"))
        moved_since = moved - self._summary_state.get("net_transfers", moved)
        self._summary_state.update(date=local.date(), equity=equity, net_transfers=moved)
        if self.windows is not None:
            self.windows.record_summary(local.date(), equity, moved)
        if equity is None:
            pnl = "n/a"
        elif previous is not None:
            pnl = f"{equity - previous - moved_since:+,.2f} since the last summary" + (
                f" (net of {moved_since:+,.2f} deposited or withdrawn)" if moved_since else "")
        else:
            pnl = "n/a (first)" if first else "n/a (the last summary had no equity)"
        limit = self.cfg.risk.max_var
        return Alert(AlertKind.DAILY_SUMMARY, Severity.INFO, f"daily summary {local.date()}",
                     f"equity: {_summary_money(equity)}\nP&L: {pnl}\n"
                     f"drawdown: {_summary_pct(drawdown)}\n"
                     f"max drift: {_summary_pct(drift)}\nVaR: {_summary_pct(var)} vs limit "
                     f"{'none' if limit is None else f'{limit:.2%}'}"
                     + ("\ntrading HALTED (the kill switch): review, then `allocbot rearm`"
                        if halted else ""))

    def serve(self) -> None:
        """Bind and start the HTTP server(s) the config asks for; log the ports."""
        if self.metrics is not None:
            _start_servers(self)
        log.info("monitoring_started", alert_urls=len(self.sender.urls) if self.sender else 0,
                 **{f"{role}_port": server.port for role, server in self.servers},
                 **{f"{role}_host": server.host for role, server in self.servers})

    def close(self) -> None:
        for _, server in self.servers:
            server.close()
        if self.sender is not None:
            self.sender.close()


def trailing_failures(cycles: list[dict[str, Any]]) -> tuple[int, int]:
    """The streaks the journal's last cycles (newest first) end with, as the tap counts
    them: (failed or held cycles in a row: ``AlertRules``; failed cycles in a row:
    ``ObservedState``). A halted cycle neither counts nor ends the alert streak, nor does a
    cycle the tap never saw end (interrupted by a kill, or still running)."""
    streak = failed = 0
    counting_failed = True
    for c in cycles:
        status = c["status"]
        if status in (CycleStatus.RUNNING, CycleStatus.INTERRUPTED):
            continue
        if status == CycleStatus.HALTED:
            counting_failed = False  # a finished event: it ends the observed streak
            continue
        if status not in (CycleStatus.FAILED, CycleStatus.HELD):
            break
        streak += 1
        counting_failed = counting_failed and status == CycleStatus.FAILED
        failed += counting_failed
    return streak, failed


def _known(value: object) -> float | None:
    """A figure the daily summary can show: a finite number, else None (unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _summary_money(value: float | None) -> str:
    return "n/a (no cycle has valued the account yet)" if value is None else f"{value:,.2f}"


def _summary_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def start_monitoring(cfg: Config, log_stream: TextIO | None = None) -> Monitor | None:
    """Metrics objects, the alert sender and the logging tap; None when nothing is configured."""
    if not monitoring_configured(cfg):
        return None
    mon, urls = cfg.monitoring, alert_urls(cfg)
    state = ObservedState()
    metrics = (CycleMetrics(cfg.risk.max_var)
               if mon.metrics_port is not None or mon.http_port is not None else None)
    monitor = Monitor(cfg, state, metrics, None)
    if urls:
        windows = AlertWindows(cfg.bot.state_dir)  # a restart keeps the rate limits
        monitor.sender = AlertSender(urls, RateLimiter(cfg.alerts.rate_limit_secs,
                                                       windows.load()),
                                     cfg.alerts.send_timeout_secs, monitor.periodic_alerts,
                                     WATCHDOG_PERIOD_SECS, delivered=windows.record)
        monitor.keep_summaries_in(windows)
    rules = AlertRules(cfg.alerts.failure_streak) if monitor.sender is not None else None
    monitor.rules = rules
    configure_logging(cfg.bot.log_format, cfg.bot.log_level, log_stream,
                      taps=[MonitoringTap(state, metrics, rules, monitor.sender)],
                      extra_secrets=alert_url_secrets(cfg.alerts.urls))
    if monitor.sender is not None:
        monitor.sender.start()
    return monitor


def _start_servers(monitor: Monitor) -> None:
    from prometheus_client import make_wsgi_app

    from bot.monitoring.page import render_page
    from bot.monitoring.status_report import build_status_report

    assert monitor.metrics is not None
    mon, cfg = monitor.cfg.monitoring, monitor.cfg
    token = os.environ.get(STATUS_TOKEN_ENV) or None
    metrics_app = make_wsgi_app(monitor.metrics.registry)

    def health() -> tuple[bool, str]:
        verdict = assess_health(cfg)  # the very rule of `allocbot health`
        return verdict.healthy, verdict.reason

    def page() -> str:
        recent = list(monitor.sender.recent) if monitor.sender is not None else []
        return render_page(build_status_report(cfg), recent)

    def status_json() -> str:
        return build_status_report(cfg).to_json()

    wanted: list[tuple[str, str, int, Routes]] = []
    if mon.http_port is not None:
        wanted.append(("http", mon.http_host, mon.http_port,
                       Routes(metrics_app, health, page, status_json)))
    same_socket = (mon.metrics_port, mon.metrics_host) == (mon.http_port, mon.http_host)
    if mon.metrics_port is not None and not (same_socket and mon.metrics_port != 0):
        wanted.append(("metrics", mon.metrics_host, mon.metrics_port,
                       Routes(metrics_app, health, None, None)))
    for role, host, port, routes in wanted:
        try:
            server = MonitoringServer(host, port, build_app(routes, token))
        except OSError as exc:
            monitor.close()
            raise ConfigError(f"[monitoring].{role}_port: cannot listen on {host}:{port}: "
                              f"{exc.strerror or exc}") from None
        monitor.servers.append((role, server))
    for _, server in monitor.servers:
        server.start()
