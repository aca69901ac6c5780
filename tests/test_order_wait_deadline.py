"""``[broker] order_wait_secs`` is each order's own wait from its submit, not a wait per order
in turn: orders sent together that stay working are canceled about ``order_wait_secs`` after
they went out, so a cycle (and a stop during it) lasts about one wait, not one per order.

Against FakeAlpaca on loopback; ``stuck_symbols`` orders never fill until canceled. The
bounds are generous fractions of the wait: waited in turn, the N-th stuck order worked
N × ``order_wait_secs`` before its cancel (four stuck orders and a 1.5 s wait: 6 s)."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, UNIVERSE, alpaca_config, recent_bars

from tests.monitoring_support import read_events_until, start_daemon

# each claim is a fraction of the wait, so its length is free: 1.5 s keeps in-turn waiting
# beyond every bound (the second stuck order at 2 waits > 1.5; a stop after 4 waits = 6 s >
# 2 waits + 2 s) with the cycle's own overhead (~0.05 s measured) far inside them
WAIT_SECS = 1.5
STUCK = {"TLT", "IEF", "GLD", "DBC"}  # four of the five buys never fill


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(bars=recent_bars(), cash=100_000.0, positions={}, api_key=KEYS_ENV[
            "APCA_API_KEY_ID"], secret_key=KEYS_ENV["APCA_API_SECRET_KEY"],
            bars_page_size=500, fill_polls=1) as server:
        server.stuck_symbols.update(STUCK)
        yield server
    assert server.errors == []


def _config(write_config: Any, fake: FakeAlpaca, **schedule: Any) -> Path:
    path = alpaca_config(write_config, fake, poll_interval_secs=0.02)  # waits out stuck orders
    text = path.read_text(encoding="utf-8").replace(
        "order_wait_secs = 3", f"order_wait_secs = {WAIT_SECS!r}")
    if schedule:  # a long interval: the daemon runs its first cycle, then only waits
        text = text.replace("interval_secs = 0.05", f"interval_secs = {schedule['interval_secs']}")
    path.write_text(text, encoding="utf-8")
    assert f"order_wait_secs = {WAIT_SECS!r}" in text
    return path


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def _waits(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds from each order's submit to its order_wait_timed_out, by symbol."""
    sent = {e["client_order_id"]: e for e in events if e["event"] == "order_submitted"}
    return {sent[e["client_order_id"]]["symbol"]:
            (_at(e) - _at(sent[e["client_order_id"]])).total_seconds()
            for e in events if e["event"] == "order_wait_timed_out"}


def _intent_statuses(state: Path) -> dict[str, str]:
    with sqlite3.connect(state) as db:
        return dict(db.execute("SELECT symbol, status FROM intents"))


def test_orders_sent_together_are_each_canceled_one_wait_after_their_submit(
        tmp_path: Path, write_config: Any, fake: FakeAlpaca) -> None:
    config = _config(write_config, fake)
    result = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    events = json_lines(result.stdout)
    waits = _waits(events)
    assert set(waits) == STUCK  # the filled SPY buy was never timed out
    # each stuck order worked its full wait, and not much more: waited in turn, the
    # second was canceled 2 waits after its submit, the fourth 4 waits after
    assert all(0.9 * WAIT_SECS <= secs <= 1.5 * WAIT_SECS for secs in waits.values()), waits
    first_sent = min(_at(e) for e in events if e["event"] == "order_submitted")
    last_timeout = max(_at(e) for e in events if e["event"] == "order_wait_timed_out")
    assert (last_timeout - first_sent).total_seconds() <= 1.5 * WAIT_SECS
    # the guarantees around the wait are unchanged: each stuck order is canceled and
    # journaled so, the filled one filled, the cycle finished
    assert _intent_statuses(tmp_path / "state" / "allocbot.sqlite") == {
        "SPY": "filled", **dict.fromkeys(STUCK, "canceled")}
    unfilled = {e["symbol"] for e in events if e["event"] == "order_unfilled"}
    assert unfilled == STUCK
    [finished] = [e for e in events if e["event"] == "cycle_finished"]
    assert finished["orders_filled"] == 1
    assert not [o.symbol for o in fake.orders_created() if o.status == "accepted"]


def test_a_stop_during_the_wait_ends_about_one_wait_later(
        tmp_path: Path, write_config: Any, fake: FakeAlpaca) -> None:
    """SIGTERM while four orders are stuck: the running cycle finishes (each order canceled
    at its own deadline), then the daemon exits 0, about one wait after the orders went
    out; waited in turn it took four waits (with the defaults, 30 s × up to 8 orders could
    outlast systemd's TimeoutStopSec=120 and end in SIGKILL mid-cycle)."""
    config = _config(write_config, fake, interval_secs=3600)
    proc = start_daemon(config, env=KEYS_ENV)
    try:
        before = read_events_until(proc, "order_submitted", count=len(UNIVERSE),
                                   timeout_secs=90)
        proc.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        out, err = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    events = before + json_lines(out)
    names = [e["event"] for e in events]
    assert "shutdown_requested" in names and names[-1] == "daemon_stopped"
    assert set(_waits(events)) == STUCK
    assert stopped_after <= 2 * WAIT_SECS + 2.0, stopped_after  # in turn: ≥ 4 waits (6 s)
    with sqlite3.connect(tmp_path / "state" / "allocbot.sqlite") as db:
        assert [s for (s,) in db.execute("SELECT status FROM cycles")] == ["finished"]
    assert _intent_statuses(tmp_path / "state" / "allocbot.sqlite") == {
        "SPY": "filled", **dict.fromkeys(STUCK, "canceled")}
