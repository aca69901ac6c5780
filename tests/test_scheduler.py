"""Scheduler triggers: cron in exchange time with day names; a real misfire grace."""

from __future__ import annotations

import contextlib
import socket
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.config import ScheduleSection
from bot.engine.scheduler import Daemon, build_trigger

NY = ZoneInfo("America/New_York")


def test_scheduler_cron_mon_fri_fires_on_weekdays_in_new_york_time():
    trigger = build_trigger(ScheduleSection(cron="45 15 * * mon-fri"))
    now = datetime(2024, 3, 8, 16, 0, tzinfo=NY)  # a Friday, after the fire time
    fires = []
    for _ in range(5):
        now = trigger.get_next_fire_time(None, now)
        fires.append(now)
        now = now.replace(second=1)
    assert [f.strftime("%a") for f in fires] == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert all((f.hour, f.minute) == (15, 45) for f in fires)
    # 2024-03-11 is the Monday after the DST change: still 15:45 New York time.
    assert fires[0].utcoffset().total_seconds() == -4 * 3600


def test_scheduler_job_has_real_misfire_grace_and_single_instance():
    daemon = Daemon(ScheduleSection(interval_secs=60, misfire_grace_secs=600), lambda: None)
    defaults = daemon._scheduler._job_defaults
    assert defaults["misfire_grace_time"] == 600
    assert defaults["max_instances"] == 1
    assert defaults["coalesce"] is True


def test_scheduler_failing_wake_is_logged_and_the_daemon_lives_on():
    from tests.conftest import capture_logs

    calls = []

    def wake() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker exploded")

    daemon = Daemon(ScheduleSection(interval_secs=0.05), wake, max_cycles=3)
    with capture_logs() as logs:
        daemon.run()
    assert len(calls) == 3
    failures = [e for e in logs if e["event"] == "cycle_job_failed"]
    assert len(failures) == 1 and "broker exploded" in failures[0]["error"]


def test_daemon_watchdog_ping_after_stop_sends_nothing_past_stopping(tmp_path, monkeypatch) -> None:
    """A watchdog ping that runs once stop() announced STOPPING=1 must not send WATCHDOG=1
    (systemd would read the daemon as alive again while it shuts down)."""
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.5)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    daemon = Daemon(ScheduleSection(interval_secs=3600), wake=lambda: None)
    daemon.stop(wait=False)  # the scheduler never started: STOPPING only
    daemon._ping_watchdog()  # the racing ping, as the watchdog executor would run it
    messages = [sock.recv(4096).decode()]
    sock.settimeout(0.05)
    with contextlib.suppress(TimeoutError):
        messages.append(sock.recv(4096).decode())
    sock.close()
    assert messages == ["STOPPING=1"]
