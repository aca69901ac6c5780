"""The state dir belongs to one broker account: the first writer open records it, every
later one refuses another account's state (exit 2, nothing sent, the history untouched), a
file written before accounts were recorded adopts the account that opens it next, and the
read-only commands write nothing. Real parts: the CLI in-process, the simulator, and two
FakeAlpaca servers with different account numbers for two accounts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import API_KEY, KEYS_ENV, SECRET_KEY, alpaca_config, recent_bars

PAPER_A = "PA3AAAA11111"  # masked: ********1111
PAPER_B = "PA3BBBB22222"  # masked: ********2222
LIVE_B = "3LV98765432"  # a live account (no "PA"); masked: *******5432
FIX = ("point [bot].state_dir at a new directory for this account (each account keeps its "
       "own journal and peak)")


def _fake(account_number: str, cash: float) -> FakeAlpaca:
    bars = recent_bars()
    spy_qty = float(np.floor(0.8 * cash / bars["SPY"].iloc[-1]))  # out of balance: it trades
    return FakeAlpaca(bars=bars, cash=cash - spy_qty * float(bars["SPY"].iloc[-1]),
                      positions={"SPY": (spy_qty, 90.0)}, account_number=account_number,
                      api_key=API_KEY, secret_key=SECRET_KEY, fill_polls=0)


@pytest.fixture
def fake_a() -> Iterator[FakeAlpaca]:
    with _fake(PAPER_A, 100_000.0) as server:  # the $100k paper account
        yield server
    assert server.errors == []


def _config(write_config: Any, fake: FakeAlpaca, name: str, mode: str = "paper") -> Path:
    """An Alpaca config on ``fake``; every config of a test shares the test's state dir."""
    path = alpaca_config(write_config, fake)
    text = path.read_text().replace('mode = "paper"', f'mode = "{mode}"')
    text = text.replace("[risk]\n", "[risk]\nmax_drawdown = 0.2\n")  # the report's setting
    target = path.with_name(name)
    target.write_text(text)
    return target


def _state_db(config: Path) -> Path:
    return config.parent / "state" / "allocbot.sqlite"


def _history(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the state file remembers but the writer open's per-open instance id."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        dump = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in tables}
    conn.close()
    dump["meta"] = [row for row in dump["meta"] if row[0] != "instance_id"]
    return dump


def _recorded_account(db: Path) -> dict[str, str] | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'account'").fetchone()
    conn.close()
    return None if row is None else json.loads(row[0])


def _delete_recorded_account(db: Path) -> None:
    """Make the file what allocbot wrote before it recorded accounts (no other difference)."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'account'")
    conn.close()


def _startup_error(stderr: str) -> str:
    failed = [e for e in json_lines(stderr) if e.get("event") == "startup_failed"]
    assert len(failed) == 1, stderr[-2000:]
    return str(failed[0]["error"])


def _events(stdout: str, name: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(stdout) if e["event"] == name]


def _traded_on_a(write_config: Any, fake_a: FakeAlpaca) -> tuple[Path, Path]:
    """Account A's config after one ``once`` on it, and the state file it wrote."""
    config_a = _config(write_config, fake_a, "a.toml")
    first = run_cli_in_process("once", "--config", str(config_a), env=KEYS_ENV)
    assert first.returncode == 0, first.stderr[-2000:]
    return config_a, _state_db(config_a)


@pytest.mark.parametrize(
    ("number_b", "mode_b", "flags", "shown_b"),
    [(LIVE_B, "live", ["--live"], "Alpaca live account *******5432"),
     (PAPER_B, "paper", [], "Alpaca paper account ********2222")],
    ids=["paper-then-live", "paper-then-other-paper"],
)
def test_once_on_account_b_with_account_a_state_exits_2_naming_both_sends_nothing(
    fake_a: FakeAlpaca, write_config: Any, number_b: str, mode_b: str, flags: list[str],
    shown_b: str,
) -> None:
    _, db = _traded_on_a(write_config, fake_a)
    assert fake_a.order_posts()  # account A traded: its history and peak are in the state
    before = _history(db)

    with _fake(number_b, 10_000.0) as fake_b:  # the $10k account, same state dir
        config_b = _config(write_config, fake_b, "b.toml", mode=mode_b)
        proc = run_cli_in_process("once", "--config", str(config_b), *flags, env=KEYS_ENV)
        requests_b = [(r.method, r.path) for r in fake_b.requests]
    assert fake_b.errors == []

    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _startup_error(proc.stderr) == (
        f"state file {db} belongs to Alpaca paper account ********1111, but this config "
        f"reaches {shown_b}: {FIX}")
    assert PAPER_A not in proc.stderr + proc.stdout and number_b not in proc.stderr + proc.stdout
    assert requests_b == [("GET", "/v2/account")]  # the account fetch it always made; no order
    assert not _events(proc.stdout, "cycle_started") and not _events(proc.stdout, "cycle_finished")
    assert _history(db) == before  # no cycle, intent, fill, peak or halt of B; A still recorded
    assert _recorded_account(db) == {"broker": "alpaca", "account_number": PAPER_A,
                                     "mode": "paper"}


def test_once_alpaca_after_simulator_state_refused_and_simulator_after_alpaca(
    fake_a: FakeAlpaca, write_config: Any
) -> None:
    sim_config = write_config({"risk": {"max_drawdown": 0.2}}, name="sim.toml")
    assert run_cli_in_process("once", "--config", str(sim_config)).returncode == 0
    db = _state_db(sim_config)
    before = _history(db)
    proc = run_cli_in_process("once", "--config", str(_config(write_config, fake_a, "a.toml")),
                              env=KEYS_ENV)
    assert proc.returncode == 2
    assert _startup_error(proc.stderr) == (
        f"state file {db} belongs to the simulator's account sim-paper, but this config reaches "
        f"Alpaca paper account ********1111: {FIX}")
    assert fake_a.order_posts() == [] and _history(db) == before


def test_once_simulator_on_alpaca_state_refused_before_its_account_is_created(
    fake_a: FakeAlpaca, write_config: Any
) -> None:
    _, db = _traded_on_a(write_config, fake_a)
    before = _history(db)
    proc = run_cli_in_process("once", "--config", str(write_config(name="sim.toml")))
    assert proc.returncode == 2
    assert _startup_error(proc.stderr) == (
        f"state file {db} belongs to Alpaca paper account ********1111, but this config "
        f"reaches the simulator's account sim-paper: {FIX}")
    assert _history(db) == before
    assert not [t for t in before if t.startswith("sim_")]  # no simulated account in A's file


def test_once_legacy_state_without_account_adopts_it_and_then_refuses_another(
    fake_a: FakeAlpaca, write_config: Any
) -> None:
    config_a, db = _traded_on_a(write_config, fake_a)
    _delete_recorded_account(db)  # as a state file written before this change
    cycles_before = _history(db)["cycles"]

    proc = run_cli_in_process("once", "--config", str(config_a), env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    adopted = _events(proc.stdout, "state_account_recorded")
    assert len(adopted) == 1 and adopted[0]["level"] == "warning"
    assert adopted[0]["adopted"] is True
    assert adopted[0]["account"] == "Alpaca paper account ********1111"
    assert FIX in adopted[0]["note"] and PAPER_A not in proc.stdout
    assert _recorded_account(db) == {"broker": "alpaca", "account_number": PAPER_A,
                                     "mode": "paper"}
    assert _history(db)["cycles"][: len(cycles_before)] == cycles_before  # history kept

    with _fake(PAPER_B, 10_000.0) as fake_b:
        refused = run_cli_in_process("once", "--config",
                                     str(_config(write_config, fake_b, "b.toml")), env=KEYS_ENV)
        assert refused.returncode == 2 and fake_b.order_posts() == []


def test_legacy_state_read_only_commands_record_nothing_next_once_adopts_simulator(
    write_config: Any, tmp_path: Path
) -> None:
    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    db = _state_db(config)
    _delete_recorded_account(db)  # as a state file written before this change
    before = {p.name: p.read_bytes() for p in sorted(db.parent.glob("allocbot.sqlite*"))}
    assert run_cli_in_process("status", "--config", str(config)).returncode == 0
    run_cli_in_process("health", "--config", str(config))  # healthy or not: it only reads
    backup = run_cli_in_process("state", "backup", "--config", str(config),
                                str(tmp_path / "copy.sqlite"))
    assert backup.returncode == 0, backup.stderr
    assert {p.name: p.read_bytes() for p in sorted(db.parent.glob("allocbot.sqlite*"))} == before

    proc = run_cli_in_process("once", "--config", str(config))  # the next writer open adopts
    assert proc.returncode == 0, proc.stderr[-2000:]
    adopted = _events(proc.stdout, "state_account_recorded")
    assert [(e["level"], e["adopted"], e["account"]) for e in adopted] == [
        ("warning", True, "the simulator's account sim-paper")]
    assert _recorded_account(db) == {"broker": "sim", "account_number": "sim-paper",
                                     "mode": "paper"}


def test_once_same_account_twice_runs_both_and_records_it_once(
    fake_a: FakeAlpaca, write_config: Any
) -> None:
    config_a = _config(write_config, fake_a, "a.toml")
    first = run_cli_in_process("once", "--config", str(config_a), env=KEYS_ENV)
    assert first.returncode == 0, first.stderr[-2000:]
    recorded = _events(first.stdout, "state_account_recorded")
    assert [(e["level"], e["adopted"]) for e in recorded] == [("info", False)]
    second = run_cli_in_process("once", "--config", str(config_a), env=KEYS_ENV)
    assert second.returncode == 0, second.stderr[-2000:]
    assert not _events(second.stdout, "state_account_recorded")
    assert [e["status"] for e in _events(second.stdout, "cycle_finished")] == ["finished"]
    db = _state_db(config_a)
    assert len(_history(db)["cycles"]) == 2
    assert _recorded_account(db) == {"broker": "alpaca", "account_number": PAPER_A,
                                     "mode": "paper"}
    assert sum(1 for r in fake_a.requests if r.path == "/v2/account") >= 2


def test_once_simulator_same_account_twice(write_config: Any) -> None:
    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    db = _state_db(config)
    assert len(_history(db)["cycles"]) == 2
    assert _recorded_account(db) == {"broker": "sim", "account_number": "sim-paper",
                                     "mode": "paper"}


def test_once_hand_edited_account_key_exits_2_naming_key_and_fix(write_config: Any) -> None:
    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    db = _state_db(config)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '\"sim-paper\"' WHERE key = 'account'")
    conn.close()
    before = _history(db)
    proc = run_cli_in_process("once", "--config", str(config))
    assert proc.returncode == 2
    error = _startup_error(proc.stderr)
    assert "meta key 'account' is not an account" in error
    assert "DELETE FROM meta WHERE key = 'account'" in error
    assert _history(db) == before
