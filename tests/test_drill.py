"""The crash drill: SIGKILL a real ``python -m bot`` at each named point of the cycle, then
restart it, against the simulator and over HTTP against the fake Alpaca.

The fault plan's ``kill_at`` makes the process SIGKILL itself at the point, so each run
dies exactly there (returncode -9, and the journal/venue show the point: intents but no
orders, N orders, sells but no buys, an order whose outcome transaction was rolled back).
After a restart without faults (in-process: the killed run is the real process, the
restart reads what it left on disk): no client_order_id at the venue twice, SQLite
``integrity_check`` ok, and the account back within the bands within 2 cycles.
By default seed 0 runs on the simulator at every point and on Alpaca at one; the rest
(20 seeds x 4 points x 2 venues in all) is ``slow``: ``pytest -m slow tests/test_drill.py``.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, alpaca_config, recent_bars

POINTS = ("after_intents", "after_submit", "between_sells_and_buys", "inside_journal_write")
SEEDS = [0, *(pytest.param(s, marks=pytest.mark.slow) for s in range(1, 20))]


def _bot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          timeout=180, cwd=REPO,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _kill_at(point: str, seed: int, orders_per_cycle: int) -> str:
    return f"after_submit:{1 + seed % orders_per_cycle}" if point == "after_submit" else point


def _assert_killed_at(proc: subprocess.CompletedProcess[str], kill_at: str) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["event"] == "fault_kill" and last["point"] == kill_at


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _intents_of_last_cycle(db: Path) -> list[tuple[str, str, str]]:
    """(client_order_id, side, status) of the newest cycle that journaled intents."""
    return [(c, s, st) for c, s, st in _rows(db, (
        "SELECT client_order_id, side, status FROM intents WHERE cycle_id = (SELECT cycle_id "
        "FROM intents ORDER BY created_at DESC LIMIT 1) ORDER BY position"))]


def _assert_point_shown(kill_at: str, intents: list[tuple[str, str, str]],
                        venue_cids: list[str], fills_of: dict[str, int]) -> None:
    """The state the kill left proves where it happened."""
    at_venue = set(venue_cids)
    if kill_at == "after_intents":
        assert intents and all(st == "intent" and c not in at_venue for c, _, st in intents)
    elif kill_at.startswith("after_submit:"):
        n = int(kill_at.split(":")[1])
        assert len(venue_cids) == n
        unanswered = [c for c, _, st in intents if c in at_venue and st == "intent"]
        assert unanswered == [venue_cids[-1]], "the Nth order's answer was never journaled"
    elif kill_at == "between_sells_and_buys":
        sells = [c for c, side, _ in intents if side == "sell"]
        buys = [c for c, side, _ in intents if side == "buy"]
        assert sells and buys
        assert all(c in at_venue for c in sells) and not any(c in at_venue for c in buys)
    else:  # inside_journal_write: the outcome transaction was rolled back
        first = venue_cids[0]
        status = next(st for c, _, st in intents if c == first)
        assert status in ("intent", "new", "accepted") and fills_of.get(first, 0) == 0


def _assert_converged(restart_stdouts: list[str]) -> None:
    events = [e for out in restart_stdouts for e in json_lines(out)]
    assert any(e["event"] == "cycles_interrupted" for e in events)
    assert not [e for e in events if e["event"] in ("cycle_failed", "cycle_crashed")]
    finished = [e for e in events if e["event"] == "cycle_finished"]
    assert finished and finished[-1]["orders_planned"] == 0, "back within the bands"


def _integrity_ok(db: Path) -> None:
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]


# ------------------------------------------------------------------------- simulator

def _sim_configs(write_config, seed: int, kill_at: str) -> tuple[Path, Path]:
    replay = f"2006-{1 + seed % 12:02d}-{3 + seed % 20:02d}"
    common = {"schedule": {"interval_secs": 0.05, "run_at_start": True}}
    sim = {"replay_start": replay}
    killer = write_config({**common, "sim": sim,
                           "rebalance": {"drift_abs": 0.0, "drift_rel": 0.0},
                           "faults": {"enabled": True, "seed": seed, "kill_at": kill_at}},
                          name="kill.toml")
    clean = write_config({**common, "sim": sim}, name="clean.toml")
    return killer, clean


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("point", POINTS)
def test_drill_sim_sigkill_at_point_restart_no_duplicate_intact_converges(
        tmp_path, write_config, point, seed):
    # zero bands: every cycle trades, and the second one sells and buys
    kill_at = _kill_at(point, seed, orders_per_cycle=8)
    killer, clean = _sim_configs(write_config, seed, kill_at)
    proc = _bot("run", "--config", str(killer), "--max-cycles", "6")
    _assert_killed_at(proc, kill_at)
    db = tmp_path / "state" / "allocbot.sqlite"
    venue = [c for (c,) in _rows(db, "SELECT client_order_id FROM sim_orders ORDER BY seq")]
    fills = dict(_rows(db, "SELECT client_order_id, COUNT(*) FROM fills GROUP BY 1"))
    _assert_point_shown(kill_at, _intents_of_last_cycle(db), venue, fills)

    restart = run_cli_in_process("run", "--config", str(clean), "--max-cycles", "2")
    assert restart.returncode == 0, restart.stderr[-2000:]
    _assert_converged([restart.stdout])
    venue_after = [c for (c,) in _rows(db, "SELECT client_order_id FROM sim_orders ORDER BY seq")]
    assert len(venue_after) == len(set(venue_after))
    assert venue_after[:len(venue)] == venue, "nothing the killed run sent was resent"
    assert not _rows(db, "SELECT client_order_id FROM intents WHERE status = 'intent'")
    _integrity_ok(db)


# ------------------------------------------------------------------------- fake Alpaca

@pytest.fixture
def drill_fake():
    bars = recent_bars()
    spy_qty = float(int(80_000 / bars["SPY"].iloc[-1]))  # 80 % in SPY: sells, then buys
    from test_alpaca_cycle import API_KEY, SECRET_KEY

    with FakeAlpaca(bars=bars, cash=20_000.0, positions={"SPY": (spy_qty, 90.0)},
                    api_key=API_KEY, secret_key=SECRET_KEY, bars_page_size=500,
                    fill_polls=1) as server:
        yield server
    assert server.errors == []


ALPACA_CASES = [
    pytest.param(point, seed, marks=() if (seed, point) == (0, "after_submit")
                 else (pytest.mark.slow,))
    for point in POINTS for seed in range(20)
]


@pytest.mark.parametrize(("point", "seed"), ALPACA_CASES)
def test_drill_alpaca_sigkill_at_point_restart_no_duplicate_intact_converges(
        tmp_path, write_config, drill_fake, point, seed):
    kill_at = _kill_at(point, seed, orders_per_cycle=5)  # 1 sell + 4 buys
    killer = alpaca_config(write_config, drill_fake, faults={
        "enabled": True, "seed": seed, "kill_at": kill_at})
    proc = _bot("once", "--config", str(killer), env=KEYS_ENV)
    _assert_killed_at(proc, kill_at)
    db = tmp_path / "state" / "allocbot.sqlite"
    venue = [o.client_order_id for o in drill_fake.orders_created()]
    fills = dict(_rows(db, "SELECT client_order_id, COUNT(*) FROM fills GROUP BY 1"))
    _assert_point_shown(kill_at, _intents_of_last_cycle(db), venue, fills)

    clean = alpaca_config(write_config, drill_fake)
    outs = []
    for _ in range(2):
        restart = run_cli_in_process("once", "--config", str(clean), env=KEYS_ENV)
        assert restart.returncode == 0, restart.stderr[-2000:]
        outs.append(restart.stdout)
    _assert_converged(outs)
    created = collections.Counter(o.client_order_id for o in drill_fake.orders_created())
    assert created and max(created.values()) == 1, "no client_order_id twice at the venue"
    posted = collections.Counter(r.body["client_order_id"] for r in drill_fake.order_posts())
    assert all(n == 1 for n in posted.values()), "never even asked twice"
    _integrity_ok(db)


# ------------------------------------------------------------------------- one instance

def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(proc: subprocess.Popen[str], event: str) -> None:
    assert proc.stdout is not None
    for _ in range(10_000):  # bounded: a daemon logs a few dozen lines per cycle
        line = proc.stdout.readline()
        if not line:
            break
        if json.loads(line).get("event") == event:
            return
    proc.kill()
    raise AssertionError(f"daemon never logged {event}: {proc.stderr.read() if proc.stderr else ''}")


def _digests(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(state.iterdir())
            if p.is_file() and not p.name.endswith("-shm")}


def test_two_daemons_second_exits_3_naming_first_status_beside_changes_no_byte(
        tmp_path, write_config):
    # one cycle at start, then an hour's sleep: the first daemon holds the state, idle
    config = write_config({"schedule": {"interval_secs": 3600, "run_at_start": True}})
    first = _start(config)
    try:
        _wait_for(first, "cycle_finished")
        second = _bot("run", "--config", str(config), "--max-cycles", "1")
        assert second.returncode == 3, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        error = [json.loads(ln)["error"] for ln in lines]  # no terminal: startup_failed
        assert len(error) == 1 and f"pid {first.pid} (run, started " in error[0]
        assert "Traceback" not in second.stderr

        state = tmp_path / "state"
        before = _digests(state)
        status = run_cli_in_process("status", "--config", str(config))
        assert status.returncode == 0, status.stderr
        assert "holdings vs targets" in status.stdout
        assert _digests(state) == before, "status wrote to the state beside the daemon"
        assert first.poll() is None, "the daemon is unaffected"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0
