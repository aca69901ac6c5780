"""SIGHUP (the terminal or SSH session ``allocbot run`` was started from closes) stops the
daemon as SIGTERM does: the running cycle finishes, then it exits 0. Its default action
killed the process mid-cycle (exit 129) with no line, the cycle left ``running`` in the
journal and an order working at the venue.

The real process (``python -m bot run``) against FakeAlpaca on loopback; the signal is sent
once the daemon has logged the cycle's submits, while it waits for an order that never
fills (``stuck_symbols``)."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import json_lines
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, UNIVERSE, alpaca_config, recent_bars

from tests.monitoring_support import read_events_until, start_daemon


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(bars=recent_bars(), cash=100_000.0, positions={}, api_key=KEYS_ENV[
            "APCA_API_KEY_ID"], secret_key=KEYS_ENV["APCA_API_SECRET_KEY"],
            bars_page_size=500, fill_polls=1) as server:
        server.stuck_symbols.add("TLT")  # its buy works until the bot cancels it
        yield server
    assert server.errors == []


def test_sighup_during_a_cycle_lets_it_finish_then_exits_0(
        tmp_path: Path, write_config: Any, fake: FakeAlpaca) -> None:
    config = alpaca_config(write_config, fake, poll_interval_secs=0.02)  # a stuck order
    # one cycle, then only waits (the stop must come from the signal, not a schedule end);
    # the stuck order's wait 1.5 s, not alpaca_config's 3: the signal lands well inside it
    # (sent ~0.1 s after the submits), and the rest of it is how long the test waits
    text = config.read_text(encoding="utf-8")
    text = text.replace("interval_secs = 0.05", "interval_secs = 3600").replace(
        "order_wait_secs = 3\n", "order_wait_secs = 1.5\n")
    assert "order_wait_secs = 1.5\n" in text
    config.write_text(text, encoding="utf-8")
    proc = start_daemon(config, env=KEYS_ENV)
    try:
        # every buy is out: the cycle now waits (order_wait_secs = 1.5) for the stuck one
        before = read_events_until(proc, "order_submitted", count=len(UNIVERSE),
                                   timeout_secs=90)
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    events = before + json_lines(out)
    names = [e["event"] for e in events]
    [asked] = [e for e in events if e["event"] == "shutdown_requested"]
    assert asked["signal"] == "SIGHUP"
    # it landed inside the cycle, which then ran to its end
    assert names.index("shutdown_requested") < names.index("cycle_finished")
    assert names.count("cycle_started") == names.count("cycle_finished") == 1
    assert names[-1] == "daemon_stopped"
    with sqlite3.connect(tmp_path / "state" / "allocbot.sqlite") as db:
        assert [s for (s,) in db.execute("SELECT status FROM cycles")] == ["finished"]
        tlt = db.execute("SELECT status FROM intents WHERE symbol = 'TLT'").fetchone()
    assert tlt == ("canceled",)  # canceled after its wait, as the cycle does: none left working
    assert [o.status for o in fake.orders_created() if o.symbol == "TLT"] == ["canceled"]
