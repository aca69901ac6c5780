"""A venue failure at the daemon's wake (its clock, asked before the cycle to see a replay's
end) is a failed cycle like any other: ``cycle_failed`` naming the error, journaled,
alerted, ``--max-cycles`` exiting 1 when no cycle got through; never APScheduler's
traceback and ``cycle_job_failed`` (a bug outside the cycle). Real parts only: the fault
drill (``[faults]``) on the simulator, and the fake Alpaca server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import API_KEY, KEYS_ENV, SECRET_KEY, alpaca_config, recent_bars

from tests.conftest import json_lines, run_cli_in_process
from tests.monitoring_support import AlertReceiver

OUTAGE = {"faults": {"enabled": True, "transient_rate": 1.0}}  # every broker call fails
CLOCK_FAULT = "BrokerTransientError: injected fault in clock: connection reset by peer"


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    """Alpaca with cash only: a cycle that gets through buys the targets."""
    with FakeAlpaca(bars=recent_bars(), cash=100_000.0, api_key=API_KEY,
                    secret_key=SECRET_KEY, bars_page_size=500, fill_polls=2) as server:
        yield server
    assert server.errors == []


def _named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def _assert_no_job_failure(stdout: str, stderr: str) -> None:
    """What the bug path looks like: APScheduler's traceback and ``cycle_job_failed``."""
    text = stdout + stderr
    assert "Traceback" not in text and "raised an exception" not in text, text[-3000:]
    assert not _named(json_lines(stdout), "cycle_job_failed")
    assert stderr == ""


def test_run_clock_outage_at_every_wake_fails_each_cycle_alerts_and_exits_1(write_config):
    config = write_config({**OUTAGE, "alerts": {"failure_streak": 3, "send_timeout_secs": 5}})
    with AlertReceiver() as receiver:
        proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", "3",
                                  env={"ALLOCBOT_ALERT_URLS": receiver.url})
    assert proc.returncode == 1, proc.stdout[-3000:]
    _assert_no_job_failure(proc.stdout, proc.stderr)
    events = json_lines(proc.stdout)
    # the fault hit the wake's own clock call (outside any cycle: no cycle_id) each time
    wake_faults = [e for e in _named(events, "fault_injected") if "cycle_id" not in e]
    assert [(e["fault"], e["call"]) for e in wake_faults] == [("transient", "clock")] * 3
    failed = _named(events, "cycle_failed")
    assert [e["error"] for e in failed] == [CLOCK_FAULT] * 3
    assert len({e["cycle_id"] for e in failed}) == 3
    assert not _named(events, "cycle_finished")
    # the daemon lived on: three wakes, three cycles, then its own stop
    assert _named(events, "daemon_stopping")[0]["reason"] == "max_cycles"
    assert _named(events, "no_cycle_got_through")[0]["cycles"] == 3  # why the exit is 1
    assert [b["title"] for b in receiver.bodies] == ["allocbot: 3 cycles failed in a row"]
    assert "injected fault in clock" in receiver.bodies[0]["message"]

    status = run_cli_in_process("status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    cycles = json.loads(status.stdout)["cycles"]
    assert [(c["status"], c["error"]) for c in cycles[:3]] == [("failed", CLOCK_FAULT)] * 3
    health = run_cli_in_process("health", "--config", str(config))
    assert health.returncode == 1
    assert "last 3 cycles failed (latest: BrokerTransientError" in health.stdout + health.stderr


def test_once_clock_outage_is_a_failed_cycle_exit_1(write_config):
    """``once`` asks the clock only inside the cycle: the same failed cycle, exit 1."""
    config = write_config(OUTAGE)
    proc = run_cli_in_process("once", "--config", str(config))
    assert proc.returncode == 1, proc.stdout[-3000:]
    _assert_no_job_failure(proc.stdout, proc.stderr)
    events = json_lines(proc.stdout)
    assert [e["error"] for e in _named(events, "cycle_failed")] == [CLOCK_FAULT]
    status = json.loads(run_cli_in_process("status", "--config", str(config), "--json").stdout)
    assert (status["cycles"][0]["status"], status["cycles"][0]["error"]) == ("failed", CLOCK_FAULT)


@pytest.mark.parametrize(("failing_clock_requests", "statuses", "exit_code"), [
    (2, ["failed", "finished"], 0),  # the first wake's two asks fail; the next wake trades
    (4, ["failed", "failed"], 1),    # down for both wakes: no cycle got through
], ids=["recovers-next-wake", "down-every-wake"])
def test_run_alpaca_clock_503_is_a_failed_cycle_retried_next_wake(
        fake: FakeAlpaca, write_config: Any, failing_clock_requests: int,
        statuses: list[str], exit_code: int) -> None:
    # a budget below the first backoff: each clock call is one request, then gives up
    config = alpaca_config(write_config, fake, retry_budget_secs=0.01)
    fake.fail_next(failing_clock_requests, 503, path_prefix="/v2/clock", method="GET")
    proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", "2",
                              env=KEYS_ENV)
    assert proc.returncode == exit_code, proc.stdout[-3000:]
    _assert_no_job_failure(proc.stdout, proc.stderr)
    events = json_lines(proc.stdout)
    clock_answers = [r.status for r in fake.logged("GET", "/v2/clock")]
    assert clock_answers[:failing_clock_requests] == [503] * failing_clock_requests
    assert all(s == 200 for s in clock_answers[failing_clock_requests:])
    failed = _named(events, "cycle_failed")
    assert len(failed) == statuses.count("failed")
    for event in failed:
        assert event["error"].startswith("BrokerTransientError: GET /v2/clock: Alpaca still "
                                         "failing"), event["error"]
        assert "503" in event["error"]
    finished = [e["status"] for e in _named(events, "cycle_finished")]
    assert finished == [s for s in statuses if s != "failed"]
    status = json.loads(run_cli_in_process("status", "--config", str(config), "--json").stdout)
    assert [c["status"] for c in status["cycles"]][::-1] == statuses
    if exit_code:
        assert fake.order_posts() == []


def test_run_wakes_during_a_slow_cycle_are_said_as_cycle_overlapped_not_apschedulers_sentence(
        write_config):
    """A cycle outlasting the interval (each order pauses 0.2 s here): the wakes that came
    meanwhile were logged as APScheduler's own warning, a sentence with a local time that
    the events table does not list. They are now ``cycle_overlapped``; the counts of the
    stop lines agree."""
    config = write_config({"schedule": {"interval_secs": 0.05, "misfire_grace_secs": 60},
                           "faults": {"enabled": True, "pause_after_submit_secs": 0.2}})
    proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", "2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    events = json_lines(proc.stdout)
    assert _named(events, "orders_planned")  # the first cycle sent orders (and paused)
    overlapped = _named(events, "cycle_overlapped")
    assert overlapped and all(e["level"] == "warning" for e in overlapped)
    assert overlapped[0]["running_secs"] > 0
    assert "maximum number of running instances" not in proc.stdout + proc.stderr
    [stopping], [stopped] = _named(events, "daemon_stopping"), _named(events, "daemon_stopped")
    assert stopping["cycles"] == stopped["cycles"] == 2
