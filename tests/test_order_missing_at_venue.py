"""An order the journal sent that the venue no longer knows (it answers 404 for its
client_order_id) is said as a warning, ``order_missing_at_venue``, when reconciliation books
it ``missing``. It used to go with an info ``order_reconciled`` line only (action
``mark_missing``), and ``status`` stops listing it, so nothing an operator watches showed it.

The way the trial met it: ``allocbot run`` (a real process) is killed while it waits for an
order that does not fill; the venue then drops that order; the next ``once`` reconciles.
FakeAlpaca on loopback."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, UNIVERSE, alpaca_config, recent_bars

from tests.monitoring_support import read_events_until


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(bars=recent_bars(), cash=100_000.0, positions={}, api_key=KEYS_ENV[
            "APCA_API_KEY_ID"], secret_key=KEYS_ENV["APCA_API_SECRET_KEY"],
            bars_page_size=500, fill_polls=1) as server:
        server.stuck_symbols.add("TLT")
        yield server
    assert server.errors == []


def test_an_order_the_venue_no_longer_knows_is_a_warning(
        tmp_path: Path, write_config: Any, fake: FakeAlpaca) -> None:
    config = alpaca_config(write_config, fake, poll_interval_secs=0.02)  # a stuck order
    config.write_text(config.read_text(encoding="utf-8").replace(  # the kill lands in the wait
        "order_wait_secs = 3", "order_wait_secs = 60"), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **KEYS_ENV})
    try:
        sent = read_events_until(proc, "order_submitted", count=len(UNIVERSE), timeout_secs=90)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    [tlt] = [e for e in sent if e["event"] == "order_submitted" and e["symbol"] == "TLT"]
    cid = tlt["client_order_id"]
    with fake._lock:  # the venue forgets the working order (the journal has it accepted)
        fake.orders = [o for o in fake.orders if o.client_order_id != cid]
    fake.stuck_symbols.clear()

    after = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert after.returncode == 0, after.stderr[-2000:]
    events = json_lines(after.stdout)
    [missing] = [e for e in events if e["event"] == "order_missing_at_venue"]
    assert missing["level"] == "warning"
    assert (missing["client_order_id"], missing["symbol"], missing["side"]) == (cid, "TLT", "buy")
    assert missing["previous_status"] == "accepted"
    assert missing["broker_order_id"] == tlt["broker_order_id"]
    # booked as before: missing, and the cycle is not held back by it
    with sqlite3.connect(tmp_path / "state" / "allocbot.sqlite") as db:
        assert db.execute("SELECT status FROM intents WHERE client_order_id = ?",
                          (cid,)).fetchone() == ("missing",)
    assert [e["client_order_id"] for e in events if e["event"] == "order_reconciled"
            and e["action"] == "mark_missing"] == [cid]
    assert [e for e in events if e["event"] == "cycle_finished"]  # it traded on
    # the README's order_unknown_seen is for venue orders with our prefix the journal
    # lacks; this is the reverse case
    assert not [e for e in events if e["event"] == "order_unknown_seen"]
