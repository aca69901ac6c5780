"""Monitoring's parts without the daemon: alert rules and rate limit, the schedule rule,
the logging tap, the page, the deploy files against the metric registry, secrets."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import structlog
import yaml
from prometheus_client import generate_latest

from bot.config import load_config
from bot.logs import configure_logging
from bot.monitoring.alerts import AlertKind, AlertRules, RateLimiter
from bot.monitoring.metrics import METRIC_NAMES, CycleMetrics
from bot.monitoring.observed import ObservedState
from bot.monitoring.page import drawdown_series, render_page
from bot.monitoring.service import Monitor
from bot.monitoring.status_report import build_status_report
from bot.monitoring.tap import MonitoringTap
from tests.conftest import REPO, run_cli_in_process

NY = "America/New_York"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_alert_rules_failure_streak_alerts_every_nth_failure_and_resets_on_success():
    rules = AlertRules(failure_streak=3)
    kinds = [rules.evaluate({"event": "cycle_failed", "error": "boom"}) for _ in range(6)]
    assert [k is not None for k in kinds] == [False, False, True, False, False, True]
    assert kinds[2] is not None and kinds[2].kind is AlertKind.FAILURE_STREAK
    rules.evaluate({"event": "cycle_finished", "status": "finished"})
    assert rules.evaluate({"event": "cycle_failed", "error": "x"}) is None


def test_alert_rules_direct_events_carry_their_fields():
    alert = AlertRules(3).evaluate({"event": "order_rejected", "symbol": "SPY", "side": "buy",
                                    "reason": "insufficient buying power"})
    assert alert is not None and alert.kind is AlertKind.ORDER_REJECTED
    assert "SPY" in alert.body and "insufficient buying power" in alert.body
    assert AlertRules(3).evaluate({"event": "cycle_finished", "status": "finished"}) is None


def test_an_order_found_late_is_alerted_as_a_failure_with_what_it_traded():
    """Money moved outside any plan (a submit that landed after the restart marked it never
    sent): the operator hears of it, not only the log."""
    alert = AlertRules(3).evaluate({
        "event": "order_found_late", "client_order_id": "ab-0f3e2a000216-IEF-s",
        "symbol": "IEF", "side": "sell", "qty": 861.67, "status": "filled",
        "filled_qty": 861.67})
    assert alert is not None and alert.kind is AlertKind.ORDER_FOUND_LATE
    assert alert.severity == "failure"
    for text in ("IEF", "sell", "861.67", "filled", "ab-0f3e2a000216-IEF-s"):
        assert text in alert.body


def test_an_order_the_venue_no_longer_knows_is_alerted_with_what_it_was():
    """The journal sent it, the venue answers 404 for it: what it filled is not known, so
    the operator hears of it (the log's warning alone reached nobody)."""
    alert = AlertRules(3).evaluate({
        "event": "order_missing_at_venue", "client_order_id": "ab-0f3e2a000216-TLT-b",
        "symbol": "TLT", "side": "buy", "qty": 12.5, "filled_qty": 0.0,
        "previous_status": "accepted", "broker_order_id": "o-1"})
    assert alert is not None and alert.kind is AlertKind.ORDER_MISSING_AT_VENUE
    for text in ("TLT", "buy", "12.5", "accepted", "ab-0f3e2a000216-TLT-b"):
        assert text in alert.body


def test_guard_alert_says_what_tripped_and_by_how_much():
    """The guard_blocked event's own fields (it has no symbol or reason): the operator reads
    the guard, its limit, the value and what breached it without opening the logs."""
    alert = AlertRules(3).evaluate({
        "event": "guard_blocked", "guard": "max_orders_per_cycle", "limit": 2, "value": 5,
        "subject": "plan", "blocked": ["buy SPY 3", "sell TLT 2"], "cycle_id": "a72d9e000001"})
    assert alert is not None and alert.kind is AlertKind.GUARD_BLOCKED
    for text in ("max_orders_per_cycle", "limit: 2", "value: 5", "subject: plan", "buy SPY 3"):
        assert text in alert.body, text


def test_rate_limiter_second_alert_of_a_kind_inside_window_refused_other_kind_allowed():
    limiter = RateLimiter(window_secs=600)
    assert limiter.allow(AlertKind.TRADING_HALTED, T0)
    assert not limiter.allow(AlertKind.TRADING_HALTED, T0 + timedelta(seconds=599))
    assert limiter.allow(AlertKind.ORDER_REJECTED, T0 + timedelta(seconds=1))
    assert limiter.allow(AlertKind.TRADING_HALTED, T0 + timedelta(seconds=600))


def test_alert_windows_kept_in_the_state_dir_seed_the_next_limiter(tmp_path):
    from bot.monitoring.alert_windows import AlertWindows

    AlertWindows(tmp_path).record(AlertKind.TRADING_HALTED, T0)
    assert (tmp_path / "alert_windows.json").stat().st_mode & 0o777 == 0o600  # as state files
    limiter = RateLimiter(600, AlertWindows(tmp_path).load(now=T0))  # the next start
    assert not limiter.allow(AlertKind.TRADING_HALTED, T0 + timedelta(seconds=599))
    assert limiter.allow(AlertKind.ORDER_REJECTED, T0 + timedelta(seconds=1))
    assert limiter.allow(AlertKind.TRADING_HALTED, T0 + timedelta(seconds=600))


def test_alert_windows_bad_file_or_clock_set_back_start_afresh_with_one_warning(tmp_path):
    from bot.monitoring.alert_windows import WINDOWS_FILE, AlertWindows
    from tests.conftest import capture_logs

    path = tmp_path / WINDOWS_FILE
    path.write_text("{not json")
    windows = AlertWindows(tmp_path)
    with capture_logs() as logs:
        assert windows.load(now=T0) == {}
        assert windows.load(now=T0) == {}
    assert [e["event"] for e in logs] == ["alert_windows_unreadable"]
    ahead = T0 + timedelta(hours=2)  # recorded by a clock since set back two hours
    path.write_text(json.dumps({"trading_halted": ahead.isoformat(), "guard_blocked": 3,
                                "order_rejected": T0.isoformat()}))
    assert AlertWindows(tmp_path).load(now=T0) == {"order_rejected": T0}


def test_alert_windows_unwritable_state_dir_warns_once_and_never_raises(tmp_path):
    from bot.monitoring.alert_windows import AlertWindows
    from tests.conftest import capture_logs

    blocker = tmp_path / "state"
    blocker.write_text("a file where the state dir should be")
    windows = AlertWindows(blocker)
    with capture_logs() as logs:
        windows.record(AlertKind.TRADING_HALTED, T0)
        windows.record(AlertKind.ORDER_REJECTED, T0)
    assert [e["event"] for e in logs] == ["alert_windows_not_saved"]
    assert blocker.read_text() == "a file where the state dir should be"


def test_watchdog_alerts_only_once_a_deadline_after_start_passes_without_success(
        write_config):
    cfg = load_config(write_config({"schedule": {"interval_secs": 600, "misfire_grace_secs": 60}}))
    monitor = Monitor(cfg, ObservedState(), None, None, started_at=T0 - timedelta(hours=1))
    monitor.state.last_success_at = T0 - timedelta(seconds=300)
    assert monitor.periodic_alerts(T0) == []
    monitor.state.last_success_at = T0 - timedelta(seconds=900)
    (alert,) = monitor.periodic_alerts(T0)
    assert alert.kind is AlertKind.NO_RECENT_SUCCESS and "was due since" in alert.body
    monitor.state.halted = True  # a halt has its own alert
    assert monitor.periodic_alerts(T0) == []
    fresh = Monitor(cfg, ObservedState(), None, None, started_at=T0 - timedelta(seconds=30))
    assert fresh.periodic_alerts(T0) == []  # the deadline predates this daemon


def test_daily_summary_sent_once_per_day_after_its_time(write_config):
    cfg = load_config(write_config({"alerts": {"daily_summary_at": "16:30", "watchdog": False}}))
    monitor = Monitor(cfg, ObservedState(equity=1000.0, drawdown=0.01, var=0.012,
                                         max_drift=0.03), None, None)
    before = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)  # 16:00 New York
    assert monitor.periodic_alerts(before) == []
    (summary,) = monitor.periodic_alerts(before + timedelta(minutes=45))
    assert summary.kind is AlertKind.DAILY_SUMMARY and "VaR: 1.20% vs limit 5.00%" in summary.body
    assert "HALTED" not in summary.body
    assert monitor.periodic_alerts(before + timedelta(minutes=50)) == []
    monitor.state.halted = True  # the halt's own alert went once: the summary reminds
    (halted,) = monitor.periodic_alerts(before + timedelta(days=1, minutes=45))
    assert "trading HALTED" in halted.body and "allocbot rearm" in halted.body


def test_daily_summary_after_a_restart_is_not_sent_twice_and_keeps_its_pnl(write_config):
    """The daily summary's day and equity were the process's: a restart the same day sent
    it again with "P&L: n/a (first)". They are kept in the state dir beside the alert
    windows (the daemon's own wiring, ``start_monitoring``)."""
    from bot.monitoring.service import start_monitoring
    from tests.conftest import _process_state_restored

    cfg = load_config(write_config({"alerts": {"daily_summary_at": "16:30", "watchdog": False,
                                               "urls": ["json://127.0.0.1:9/unused"]}}))
    after = datetime(2026, 3, 2, 21, 45, tzinfo=UTC)  # 16:45 New York
    with _process_state_restored():
        seen = []
        for when, equity in ((after, 1000.0), (after + timedelta(minutes=5), 1010.0),
                             (after + timedelta(days=1), 1100.0)):
            monitor = start_monitoring(cfg, io.StringIO())  # a (re)start
            assert monitor is not None
            monitor.state.equity = equity
            seen.append([a.body.split("\n")[1] for a in monitor.periodic_alerts(when)])
            monitor.close()
    assert seen == [["P&L: n/a (first)"], [], ["P&L: +100.00 since the last summary"]]


def test_tap_updates_metrics_and_passes_event_through_unchanged():
    metrics, state = CycleMetrics(var_limit=0.02), ObservedState()
    tap = MonitoringTap(state, metrics, None, None)
    event = {"event": "cycle_finished", "status": "finished", "equity_after": 1234.5,
             "cash_after": 10.0, "var": 0.011, "drawdown": 0.02, "max_drift": 0.03,
             "duration_ms": 12.5}
    assert tap(None, "info", dict(event)) == event
    tap(None, "warning", {"event": "guard_blocked", "guard": "max_order_notional"})
    tap(None, "info", {"event": "cycle_finished", "status": "finished", "equity_after": "bad"})
    text = generate_latest(metrics.registry).decode()
    assert "allocbot_equity 1234.5" in text
    assert 'allocbot_guard_blocks_total{guard="max_order_notional"} 1.0' in text
    assert 'allocbot_cycles_total{status="finished"} 2.0' in text
    assert state.last_success_at is not None and state.equity == 1234.5


def test_var_gauge_is_the_last_finished_cycles_not_one_that_failed_after_its_risk_step():
    """The README's "the target's VaR": a cycle that computed a VaR and then failed (or
    halted) traded no such target, so the gauge keeps the last finished cycle's figure."""
    metrics = CycleMetrics(var_limit=0.02)
    metrics.observe({"event": "cycle_finished", "status": "finished", "var": 0.011})
    metrics.observe({"event": "risk_checked", "var": 0.0467891234})
    metrics.observe({"event": "cycle_failed", "error": "BrokerTransientError: venue down"})
    assert "allocbot_var 0.011" in generate_latest(metrics.registry).decode()


def test_tap_in_logging_chain_sees_redacted_events(monkeypatch):
    monkeypatch.setenv("ALLOCBOT_ALERT_URLS", "json://127.0.0.1:9/hook/supersecrettoken123")
    seen: list[dict] = []
    stream = io.StringIO()
    configure_logging("json", "info", stream,
                      taps=[lambda _l, _m, e: seen.append(dict(e)) or e])
    try:
        configure_logging("json", "info", stream)  # a later re-configuration keeps the tap
        structlog.get_logger("t").info("alert_probe",
                                       url="json://127.0.0.1:9/hook/supersecrettoken123")
    finally:
        configure_logging("json", "info", io.StringIO(), taps=(), extra_secrets=())
    assert seen[-1]["event"] == "alert_probe"
    assert "supersecrettoken123" not in json.dumps(seen) + stream.getvalue()


def _registry_sample_names() -> set[str]:
    metrics = CycleMetrics(var_limit=None)
    metrics.cycles.labels(status="failed").inc()
    metrics.orders.labels(status="filled").inc()
    metrics.guard_blocks.labels(guard="g").inc()
    return {s.name for fam in metrics.registry.collect() for s in fam.samples}


@pytest.mark.parametrize("path", ["deploy/prometheus/alerts.yml", "deploy/grafana/allocbot.json"])
def test_deploy_files_use_only_metric_names_the_registry_exports(path):
    text = (REPO / path).read_text()
    used = set(re.findall(r"\ballocbot_[a-z_]+", text))
    assert used, path
    assert used <= _registry_sample_names(), sorted(used - _registry_sample_names())


def test_deploy_files_cover_the_metrics():
    alerts = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in alerts["groups"] for r in g["rules"])
    for key in ("allocbot_halted", "allocbot_last_success_timestamp_seconds",
                "allocbot_cycles_total", "allocbot_var", "allocbot_var_limit"):
        assert key in exprs
    dashboard = json.loads((REPO / "deploy/grafana/allocbot.json").read_text())
    panel_exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert all(name in panel_exprs for name in METRIC_NAMES)


def test_page_halted_shows_banner_with_reason_escaped_and_no_controls(write_config):
    report = build_status_report(load_config(write_config()))
    html = render_page(dataclasses.replace(report, halted_reason="drawdown 30% <b>exceeds</b> max"))
    assert "HALTED: drawdown 30% &lt;b&gt;exceeds&lt;/b&gt; max" in html
    assert "allocbot rearm" in html
    assert "<form" not in html and "<button" not in html and "<script" not in html
    assert '<link rel="icon" href="data:,">' in html


def test_drawdown_series_is_fraction_below_running_peak():
    assert drawdown_series([100, 110, 99, 121]) == pytest.approx([0, 0, 0.1, 0])


def test_check_config_masks_alert_urls_from_the_config_file(tmp_path, write_config):
    url = "json://127.0.0.1:9/hook/tokentokentoken"
    config = write_config({"alerts": {"urls": [url]}})
    proc = run_cli_in_process("check-config", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert url not in proc.stdout and "tokentokentoken" not in proc.stdout


def test_check_config_shows_the_environments_alert_urls_masked_as_the_ones_in_force(
        write_config):
    """``ALLOCBOT_ALERT_URLS`` wins over ``[alerts] urls``: check-config shows its URLs
    (masked) and where they come from, not the config's."""
    urls = "json://127.0.0.1:9/a?token=envtokenA, json://127.0.0.1:9/b?token=envtokenB"
    config = write_config({"alerts": {"urls": ["json://127.0.0.1:9/file/filetoken"]}})
    proc = run_cli_in_process("check-config", "--config", str(config),
                              env={"ALLOCBOT_ALERT_URLS": urls})
    assert proc.returncode == 0, proc.stderr
    alerts = json.loads(proc.stdout)["alerts"]
    assert alerts["urls"] == ["***", "***"] and alerts["urls_from"] == "ALLOCBOT_ALERT_URLS"
    assert "envtoken" not in proc.stdout and "filetoken" not in proc.stdout


def test_daemon_without_monitoring_config_imports_neither_library(write_config):
    code = ("import sys; from bot.cli import main\n"
            "try:\n    main(['run', '--config', sys.argv[1], '--max-cycles', '1'])\n"
            "except SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('prometheus_client', 'apprise') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(write_config())], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert "LOADED []" in out.stdout, out.stderr
