"""Monitoring as the daemon runs it: build the metrics, the alert sender and the HTTP
server from the config, attach the logging tap, seed from the journal, and shut down.

``start_monitoring`` returns None, importing neither prometheus_client nor apprise, when
no ``[monitoring]`` port and no alert URL is configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import structlog

from bot.config import Config
from bot.errors import ConfigError
from bot.logs import alert_url_secrets, configure_logging
from bot.monitoring.alerts import Alert, AlertKind, AlertRules, RateLimiter, Severity
from bot.monitoring.journal_view import read_journal
from bot.monitoring.metrics import CycleMetrics
from bot.monitoring.observed import SUCCESS_STATUSES, ObservedState
from bot.monitoring.overdue import success_overdue
from bot.monitoring.sender import AlertSender
from bot.monitoring.server import STATUS_TOKEN_ENV, MonitoringServer, Routes, build_app
from bot.monitoring.settings import alert_urls, monitoring_configured
from bot.monitoring.tap import MonitoringTap

log = structlog.get_logger("allocbot.monitoring")
WATCHDOG_PERIOD_SECS = 30.0


@dataclass(slots=True)
class Monitor:
    cfg: Config
    state: ObservedState
    metrics: CycleMetrics | None
    sender: AlertSender | None
    servers: list[tuple[str, MonitoringServer]] = field(default_factory=list)  # (role, server)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _summary_state: dict[str, Any] = field(default_factory=dict)

    def seed_from_journal(self, db_path: Path | None = None) -> None:
        """Gauges from the journal's last cycles, so a restart does not show zeros."""
        view = read_journal(db_path or self.cfg.state_db, limit=200)
        if view is None:
            return
        last = view.last_with("equity_after") or view.last_with("equity")
        success = next((c for c in view.cycles if c.status in SUCCESS_STATUSES), None)
        with self.state.lock:
            self.state.halted = view.halt_reason is not None
            if success is not None and success.finished_at:
                self.state.last_success_at = datetime.fromisoformat(success.finished_at)
            if last is not None:
                s = last.summary
                self.state.equity = float(s.get("equity_after", s.get("equity", "nan")))
            if self.metrics is not None:
                if last is not None:
                    self.metrics.set_figures(last.summary)
                self.metrics.halted.set(1 if self.state.halted else 0)
                if self.state.last_success_at is not None:
                    self.metrics.last_success.set(self.state.last_success_at.timestamp())
        log.info("monitoring_seeded", cycles=len(view.cycles), halted=self.state.halted,
                 equity=None if last is None else last.summary.get("equity_after"))

    def health(self) -> tuple[bool, str]:
        """The watchdog rule, for ``/health`` (200 when recent enough, else 503)."""
        from bot.engine.scheduler import build_trigger

        with self.state.lock:
            halted, last_success = self.state.halted, self.state.last_success_at
        if halted:
            return False, "trading halted (allocbot rearm after review)"
        reason = success_overdue(build_trigger(self.cfg.schedule),
                                 self.cfg.schedule.misfire_grace_secs, datetime.now(UTC),
                                 self.started_at, last_success)
        return (reason is None), reason or "last successful cycle is recent enough"

    def periodic_alerts(self, now: datetime) -> list[Alert]:
        """Run by the sender thread: the schedule watchdog and the daily summary."""
        alerts = []
        if self.cfg.alerts.watchdog:
            ok, reason = self.health()
            if not ok and not self.state.halted:
                alerts.append(Alert(AlertKind.NO_RECENT_SUCCESS, Severity.FAILURE,
                                    "no successful cycle within the schedule", reason))
        summary = self._daily_summary(now)
        if summary is not None:
            alerts.append(summary)
        return alerts

    def _daily_summary(self, now: datetime) -> Alert | None:
        at = self.cfg.alerts.daily_summary_at
        if at is None:
            return None
        local = now.astimezone(ZoneInfo(self.cfg.schedule.timezone))
        if local.strftime("%H:%M") < at or self._summary_state.get("date") == local.date():
            return None
        with self.state.lock:
            s = self.state
            equity, drift, var, drawdown = s.equity, s.max_drift, s.var, s.drawdown
        previous = self._summary_state.get("equity")
        self._summary_state.update(date=local.date(), equity=equity)
        pnl = f"{equity - previous:+,.2f} since the last summary" if previous else "n/a (first)"
        limit = self.cfg.risk.max_var
        return Alert(AlertKind.DAILY_SUMMARY, Severity.INFO, f"daily summary {local.date()}",
                     f"equity: {equity:,.2f}\nP&L: {pnl}\ndrawdown: {drawdown:.2%}\n"
                     f"max drift: {drift:.2%}\nVaR: {var:.2%} vs limit "
                     f"{'none' if limit is None else f'{limit:.2%}'}")

    def close(self) -> None:
        for _, server in self.servers:
            server.close()
        if self.sender is not None:
            self.sender.close()


def start_monitoring(cfg: Config, log_stream: TextIO | None = None) -> Monitor | None:
    """Start what the config asks for and re-configure logging with the tap; None if off."""
    mon, urls = cfg.monitoring, alert_urls(cfg)
    if not monitoring_configured(cfg):
        return None
    state = ObservedState()
    metrics = (CycleMetrics(cfg.risk.max_var)
               if mon.metrics_port is not None or mon.http_port is not None else None)
    monitor = Monitor(cfg, state, metrics, None)
    sender = None
    if urls:
        sender = AlertSender(urls, RateLimiter(cfg.alerts.rate_limit_secs),
                             cfg.alerts.send_timeout_secs, monitor.periodic_alerts,
                             WATCHDOG_PERIOD_SECS)
        monitor.sender = sender
    rules = AlertRules(cfg.alerts.failure_streak) if sender is not None else None
    configure_logging(cfg.bot.log_format, cfg.bot.log_level, log_stream,
                      taps=[MonitoringTap(state, metrics, rules, sender)],
                      extra_secrets=alert_url_secrets(cfg.alerts.urls))
    _start_servers(monitor)
    if sender is not None:
        sender.start()
    log.info("monitoring_started", alert_urls=len(urls),
             **{f"{role}_port": server.port for role, server in monitor.servers},
             **{f"{role}_host": server.host for role, server in monitor.servers})
    return monitor


def _start_servers(monitor: Monitor) -> None:
    from prometheus_client import make_wsgi_app

    from bot.monitoring.page import render_page
    from bot.monitoring.page_data import gather_page_data

    if monitor.metrics is None:
        return
    mon, cfg = monitor.cfg.monitoring, monitor.cfg
    token = os.environ.get(STATUS_TOKEN_ENV) or None
    metrics_app = make_wsgi_app(monitor.metrics.registry)

    def page() -> str:
        recent = list(monitor.sender.recent) if monitor.sender is not None else []
        return render_page(gather_page_data(cfg, recent))

    wanted: list[tuple[str, str, int, Routes]] = []
    if mon.http_port is not None:
        wanted.append(("http", mon.http_host, mon.http_port,
                       Routes(metrics_app, monitor.health, page)))
    same_socket = (mon.metrics_port, mon.metrics_host) == (mon.http_port, mon.http_host)
    if mon.metrics_port is not None and not (same_socket and mon.metrics_port != 0):
        wanted.append(("metrics", mon.metrics_host, mon.metrics_port,
                       Routes(metrics_app, monitor.health, None)))
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
