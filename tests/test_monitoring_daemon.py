"""Monitoring on the real daemon: a Prometheus scrape, alerts to a local webhook, the token.

Each test of a running daemon runs ``python -m bot run`` with ``[monitoring]`` port 0 and
reads the chosen port from the ``monitoring_started`` event; the ``--max-cycles`` runs whose
output is read after they end run the same command in-process.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest

from tests.conftest import json_lines, run_cli, run_cli_in_process
from tests.monitoring_support import (
    AlertReceiver,
    get,
    late_listing_prices,
    read_events_until,
    samples,
    start_daemon,
    stop,
)

ONE_CYCLE_THEN_IDLE = {"interval_secs": 3600, "run_at_start": True}


def _last_cycle(db) -> tuple[dict, str]:
    with sqlite3.connect(db) as con:
        summary, finished_at = con.execute(
            "SELECT summary, finished_at FROM cycles ORDER BY seq DESC LIMIT 1").fetchone()
        return json.loads(summary), finished_at


def _port(events: list[dict], role: str) -> int:
    started = next(e for e in events if e["event"] == "monitoring_started")
    assert started[f"{role}_host"] == "127.0.0.1"  # loopback unless configured otherwise
    return int(started[f"{role}_port"])


def test_metrics_scrape_running_daemon_shows_the_journal_figures(tmp_path, write_config):
    config = write_config({"schedule": ONE_CYCLE_THEN_IDLE, "monitoring": {"metrics_port": 0}})
    proc = start_daemon(config)
    try:
        events = read_events_until(proc, "cycle_finished")
        status, text = get(f"http://127.0.0.1:{_port(events, 'metrics')}/metrics")
    finally:
        stop(proc)
    assert status == 200
    got = samples(text)
    summary, finished_at = _last_cycle(tmp_path / "state" / "allocbot.sqlite")
    assert got["allocbot_equity"] == pytest.approx(summary["equity_after"])
    assert got["allocbot_cash"] == pytest.approx(summary["cash_after"])
    assert got["allocbot_var"] == pytest.approx(summary["var"])
    assert got["allocbot_drawdown"] == pytest.approx(summary["drawdown"])
    assert got["allocbot_max_drift"] == pytest.approx(summary["max_drift"])
    assert got["allocbot_var_limit"] == pytest.approx(0.05)  # [risk].max_var
    assert got["allocbot_halted"] == 0
    assert got['allocbot_cycles_total{status="finished"}'] == 1
    assert got["allocbot_cycle_duration_seconds_count"] == 1
    assert got['allocbot_orders_total{status="filled"}'] == summary["orders_filled"] > 0
    last_success = datetime.fromisoformat(finished_at).timestamp()
    assert abs(got["allocbot_last_success_timestamp_seconds"] - last_success) < 2
    assert not any(key.endswith("_created") for key in got)


def test_metrics_after_restart_are_seeded_from_the_journal_not_zero(tmp_path, write_config):
    first = write_config()
    assert run_cli_in_process("run", "--config", str(first), "--max-cycles", "3").returncode == 0
    summary, _ = _last_cycle(tmp_path / "state" / "allocbot.sqlite")
    idle = write_config({"schedule": {"interval_secs": 3600, "run_at_start": False},
                         "monitoring": {"metrics_port": 0}}, name="idle.toml")
    proc = start_daemon(idle)
    try:
        events = read_events_until(proc, "daemon_started")
        _, text = get(f"http://127.0.0.1:{_port(events, 'metrics')}/metrics")
    finally:
        stop(proc)
    got = samples(text)
    assert summary["equity_after"] > 0
    assert got["allocbot_equity"] == pytest.approx(summary["equity_after"])
    assert got["allocbot_cash"] == pytest.approx(summary["cash_after"])
    assert got["allocbot_last_success_timestamp_seconds"] > 0
    assert 'allocbot_cycles_total{status="finished"}' not in got  # no cycle in this process


def _failing_config(tmp_path, write_config, window_secs: float):
    prices = late_listing_prices(tmp_path / "late.csv")
    return write_config({
        "sim": {"prices": str(prices), "replay_start": "2006-01-03"},  # TLT lists in 2006-08
        "universe": {"symbols": ["SPY", "TLT"]},
        "strategy": {"name": "inverse_volatility", "params": {}},
        "alerts": {"failure_streak": 2, "rate_limit_secs": window_secs, "send_timeout_secs": 5},
    })


@pytest.mark.parametrize(("window_secs", "expected_alerts"), [(3600, 1), (0, 2)])
def test_alerts_failure_streak_reaches_receiver_once_per_rate_limit_window(
        tmp_path, write_config, window_secs, expected_alerts):
    config = _failing_config(tmp_path, write_config, window_secs)
    with AlertReceiver() as receiver:
        proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", "4",
                                  env={"ALLOCBOT_ALERT_URLS": receiver.url})
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stdout)
    # the strategy cannot compute: the cycles hold (no orders) and count as failures
    failed = [e for e in events if e["event"] == "cycle_failed"
              or (e["event"] == "cycle_finished" and e.get("status") == "held")]
    assert len(failed) == 4  # streaks of 2 at 2 and 4
    assert len(receiver.bodies) == expected_alerts
    first = receiver.bodies[0]
    assert first["title"] == "allocbot: 2 cycles failed in a row"
    assert "fewer than 2 assets" in first["message"]
    assert first["type"] == "failure"
    assert sum(e["event"] == "alert_sent" for e in events) == expected_alerts
    assert receiver.url not in proc.stdout + proc.stderr  # alert URLs are secrets


def test_alerts_startup_failure_twice_sends_one_alert_per_window_across_restarts(
        tmp_path, write_config):
    """A start that fails (here: --live without [bot] mode = "live") alerts before the
    process exits 2. In a crash loop (Docker restarts a failing daemon about once a minute
    for ever) the second start within the rate-limit window sends nothing, because the
    window is kept in the state dir, not in the process. With the window set to zero the
    third start alerts (a start after a kept window does reach the sender)."""
    titles = []
    with AlertReceiver() as receiver:
        for window_secs in (3600, 3600, 0):
            config = write_config({"alerts": {"rate_limit_secs": window_secs}})
            proc = run_cli("run", "--config", str(config), "--live",
                           env={"ALLOCBOT_ALERT_URLS": receiver.url})
            assert proc.returncode == 2
            titles.append([b["title"] for b in receiver.bodies])
    failed = "allocbot: daemon failed to start"
    assert titles == [[failed], [failed], [failed, failed]]  # (out before each process exits)
    assert "--live was given" in receiver.bodies[0]["message"]
    kept = json.loads((tmp_path / "state" / "alert_windows.json").read_text())
    assert list(kept) == ["startup_failed"]
    assert datetime.fromisoformat(kept["startup_failed"]).tzinfo is not None


def test_status_page_token_required_when_set_401_then_200(tmp_path, write_config):
    token = "page-token-0123456789"
    config = write_config({"schedule": ONE_CYCLE_THEN_IDLE, "monitoring": {"http_port": 0}})
    proc = start_daemon(config, env={"ALLOCBOT_STATUS_TOKEN": token})
    try:
        events = read_events_until(proc, "cycle_finished")
        base = f"http://127.0.0.1:{_port(events, 'http')}"
        answers = {
            "none": get(base + "/")[0], "wrong": get(base + "/", "x" * len(token))[0],
            "metrics_none": get(base + "/metrics")[0],
            "right": get(base + "/", token), "metrics_right": get(base + "/metrics", token)[0],
            "health": get(base + "/health", token),
            "status_json": get(base + "/status.json", token),
        }
    finally:
        out, err = stop(proc)
    assert answers["none"] == answers["wrong"] == answers["metrics_none"] == 401
    status, page = answers["right"]
    assert status == 200 and "<h1>allocbot</h1>" in page
    assert answers["metrics_right"] == 200
    status, health = answers["health"]
    assert status == 200 and json.loads(health)["ok"] is True  # `allocbot health`'s verdict
    assert json.loads(health)["reason"].startswith("ok: last success at ")
    status, report = answers["status_json"]
    assert status == 200 and json.loads(report)["last_cycle"]["status"] == "finished"
    assert token not in out + err
