"""The real `allocbot` process: scheduled cycles, persistence, graceful stop, crash safety."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, json_lines, run_cli, run_cli_in_process
from tests.monitoring_support import read_events_until


def _events(lines: list[dict], name: str) -> list[dict]:
    return [e for e in lines if e.get("event") == name]


def test_daemon_runs_max_cycles_then_exits_0_with_json_lines(tmp_path, write_config):
    config = write_config()
    # the real entry point (a process): its exit code, and stdout holding nothing but JSON
    proc = run_cli("run", "--config", str(config), "--max-cycles", "5")
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stdout)  # every line is one JSON object
    finished = _events(lines, "cycle_finished")
    assert len(finished) == 5
    assert len(_events(lines, "order_filled")) >= 1
    assert all(e["timestamp"].endswith("Z") for e in lines)
    cycle_lines = [e for e in lines if e.get("logger", "").startswith("allocbot.cycle")]
    assert all("cycle_id" in e for e in cycle_lines)

    again = run_cli_in_process("run", "--config", str(config), "--max-cycles", "2")
    assert again.returncode == 0, again.stderr
    lines2 = json_lines(again.stdout)
    assert _events(lines2, "sim_account_resumed"), "the paper account must persist"
    first_asofs = [e["asof"] for e in finished]
    second_asofs = [e["asof"] for e in _events(lines2, "cycle_finished")]
    assert min(second_asofs) > max(first_asofs), "the replay continues where it stopped"
    equity_end = finished[-1]["equity_after"]
    assert _events(lines2, "cycle_finished")[0]["equity_before"] != 100_000.0
    assert abs(_events(lines2, "cycle_finished")[0]["equity_before"] / equity_end - 1) < 0.1


def test_python_dash_m_bot_is_the_same_cli():
    proc = subprocess.run([sys.executable, "-m", "bot", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0
    for command in ("run", "once", "check-config", "status", "weights"):
        assert command in proc.stdout


def _start_daemon(config: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **(extra_env or {})})


def test_daemon_sigterm_lets_running_cycle_finish_and_exits_0(tmp_path, write_config):
    config = write_config({"faults": {"enabled": True, "pause_after_submit_secs": 0.08}})
    proc = _start_daemon(config)
    before = read_events_until(proc, "order_submitted", timeout_secs=60)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    lines = before + json_lines(out)
    assert proc.returncode == 0, err
    started = _events(lines, "cycle_started")
    finished = _events(lines, "cycle_finished")
    assert len(started) == len(finished) >= 1, "the interrupted cycle must run to completion"
    names = [e.get("event") for e in lines]
    asked = names.index("shutdown_requested")  # the signal landed inside the last cycle
    assert names[:asked].count("cycle_started") == names[:asked].count("cycle_finished") + 1
    assert finished[-1]["orders_filled"] == finished[-1]["orders_planned"]
    assert _events(lines, "daemon_stopped")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_while_the_start_retries_an_unreachable_venue_exits_0(write_config, stop):
    """A venue outage holds the start in retries (up to the retry budget): a stop then
    ends it cleanly, as a stop of the running daemon does. It used to die of the signal
    (exit 143; a hangup, the terminal closing: 129) without a line."""
    config = write_config({
        "broker": {"kind": "alpaca"},
        "alpaca": {"base_url": "http://127.0.0.1:9", "data_url": "http://127.0.0.1:9",
                   "retry_budget_secs": 60, "retry_backoff_secs": 0.05},
    })
    proc = _start_daemon(config, {"APCA_API_KEY_ID": "PKTESTKEY1234567890",
                                  "APCA_API_SECRET_KEY": "secretsecretsecretsecret"})
    before = read_events_until(proc, "request_retried", timeout_secs=60)
    assert not _events(before, "daemon_started")  # still starting
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=60)
    lines = before + json_lines(out)
    assert proc.returncode == 0, err
    [asked] = _events(lines, "shutdown_requested")
    assert asked["signal"] == stop.name and "during startup" in asked["note"]
    assert _events(lines, "daemon_stopped")[0]["cycles"] == 0
    assert not _events(lines, "startup_failed")


def test_daemon_sigkill_mid_cycle_restart_sends_no_order_twice_and_converges(tmp_path,
                                                                          write_config):
    # the pause is the window the kill must land in (the test reads the first order's
    # event, then kills): long enough for a loaded host to react
    paused = write_config({"schedule": {"interval_secs": 0.2},
                           "faults": {"enabled": True, "pause_after_submit_secs": 0.5}},
                          name="paused.toml")
    config = write_config()
    proc = _start_daemon(paused)
    first = read_events_until(proc, "order_submitted", timeout_secs=60)
    proc.send_signal(signal.SIGKILL)  # after intents are journaled, before all are sent
    proc.wait(timeout=30)
    intended = {e["client_order_id"] for e in _events(first, "order_intended")}
    sent_before = [e["client_order_id"] for e in _events(first, "order_submitted")]
    assert len(sent_before) == 1 < len(intended)

    restart = run_cli_in_process("run", "--config", str(config), "--max-cycles", "3")
    assert restart.returncode == 0, restart.stderr
    lines = json_lines(restart.stdout)
    assert _events(lines, "cycles_interrupted")
    sent = sent_before + [e["client_order_id"] for e in _events(lines, "order_submitted")]
    dupes = [c for c, n in collections.Counter(sent).items() if n > 1]
    assert not dupes, f"client_order_id sent twice: {dupes}"

    db = tmp_path / "state" / "allocbot.sqlite"
    with sqlite3.connect(db) as conn:
        venue_ids = [r[0] for r in conn.execute("SELECT client_order_id FROM sim_orders")]
        statuses = dict(conn.execute("SELECT client_order_id, status FROM intents"))
    assert len(venue_ids) == len(set(venue_ids))
    # the pause is inside submit: the kill may land after the venue took the next order
    # and before its answer was journaled; reconciliation must learn it, never resend it
    unacknowledged = set(venue_ids) - set(sent)
    assert unacknowledged <= intended and len(unacknowledged) <= 1
    assert all(statuses[c] == "filled" for c in unacknowledged)
    assert set(sent) <= set(venue_ids)
    # or it lands after the next submit was marked as going out but before the venue took
    # it: that one may still arrive, so it stays open and no cycle trades
    pending = {e["client_order_id"] for e in _events(lines, "order_answer_pending")}
    assert len(pending) <= 1 and not pending & unacknowledged
    assert all(statuses[c] == "intent" for c in pending)
    unsent = intended - set(sent_before) - unacknowledged - pending
    assert unsent and all(statuses[c] == "unsent" for c in unsent)
    if pending:  # past the recheck window it counts as never sent, and trading resumes
        assert not _events(lines, "order_submitted")
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE intents SET updated_at = '2000-01-01T00:00:00+00:00' "
                         "WHERE status = 'intent'")
        again = run_cli_in_process("run", "--config", str(config), "--max-cycles", "3")
        assert again.returncode == 0, again.stderr
        lines = json_lines(again.stdout)
        sent += [e["client_order_id"] for e in _events(lines, "order_submitted")]
        assert len(sent) == len(set(sent))
    last = _events(lines, "cycle_finished")[-1]
    assert last["orders_planned"] == 0, "after the restart the account is back at target"
    status = run_cli_in_process("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    holdings = status.stdout.split("holdings vs targets")[1].split("last cycles")[0]
    assert "SPY" in holdings and "yes" not in holdings, "back at target: nothing drifted"


def test_weights_command_prints_json_after_risk_step(write_config):
    proc = run_cli_in_process("weights", "--config", str(write_config()), "--asof", "2010-06-30")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["asof"] == "2010-06-30"
    assert report["strategy"] == "fixed"
    assert report["weights"]["SPY"] == pytest.approx(0.3)
    assert report["cash"] == pytest.approx(0.0, abs=1e-9)


def test_weights_command_asof_before_data_exits_2(write_config):
    proc = run_cli_in_process("weights", "--config", str(write_config()), "--asof", "1990-01-02")
    assert proc.returncode == 2
    assert "1990-01-02" in proc.stderr


def test_live_mode_without_confirmation_refuses(tmp_path, write_config):
    config = write_config()
    proc = run_cli_in_process("once", "--config", str(config), "--live")
    assert proc.returncode == 2
    assert "mode is" in proc.stderr and "paper" in proc.stderr
    proc = run_cli_in_process("once", "--config", str(config), env={"ALLOCBOT_CONFIRM_LIVE": "yes"})
    assert proc.returncode == 2
    assert not (tmp_path / "state" / "allocbot.sqlite").exists()
