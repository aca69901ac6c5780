"""State that refuses to be misread: versions, migrations, corrupt/foreign/unwritable files.

Each case runs the real ``allocbot once`` command (in-process; the two permission cases in a
child process that drops root's override) and checks the outcome README's "State" table
documents: exit 2, one line naming the file and the fix, no traceback, nothing sent.
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.engine.journal import Journal
from bot.errors import StateError
from tests.conftest import REPO, CliOutcome, base_config, run_cli_in_process, to_toml

# The schema allocbot wrote before schema versions existed (version 1), copied verbatim
# as a fixture: a file in this shape must keep working after an upgrade.
V1_JOURNAL_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cycle_id TEXT UNIQUE NOT NULL,
    asof TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS intents (
    client_order_id TEXT PRIMARY KEY,
    cycle_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty REAL NOT NULL,
    price_est REAL NOT NULL,
    status TEXT NOT NULL,
    broker_order_id TEXT,
    filled_qty REAL NOT NULL DEFAULT 0,
    filled_avg_price REAL,
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS intents_status ON intents(status);
CREATE TABLE IF NOT EXISTS fills (
    client_order_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    commission REAL NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (client_order_id, position)
);
INSERT INTO meta VALUES ('instance_id', 'beef');
INSERT INTO cycles (cycle_id, asof, started_at, finished_at, status, summary) VALUES
    ('beef000001', '2006-01-03', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:01+00:00',
     'finished', '{"orders_filled": 0}');
"""
V1_SIM_DDL = """
CREATE TABLE IF NOT EXISTS sim_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cash REAL NOT NULL,
    starting_cash REAL NOT NULL,
    cursor_date TEXT,
    ended INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sim_positions (
    symbol TEXT PRIMARY KEY,
    qty REAL NOT NULL,
    avg_entry_price REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sim_orders (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL UNIQUE,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    status TEXT NOT NULL,
    qty REAL,
    notional REAL,
    filled_qty REAL NOT NULL,
    filled_avg_price REAL,
    submitted_at TEXT NOT NULL,
    reject_reason TEXT
);
CREATE TABLE IF NOT EXISTS sim_fills (
    order_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    commission REAL NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sim_fills_client_order_id ON sim_fills (client_order_id);
INSERT INTO sim_account VALUES (1, 100000.0, 100000.0, '2006-01-03', 0, '2026-01-01T00:00:00');
"""


def _write_db(path: Path, script: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(script)
    db.commit()
    db.close()


def _error_line(proc: CliOutcome | subprocess.CompletedProcess[str]) -> str:
    """The one startup error line (stderr is no terminal here: the startup_failed event)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    event = json.loads(lines[0])
    assert event["event"] == "startup_failed"
    return str(event["error"])


def _assert_refused(proc: CliOutcome, state_db: Path, *phrases: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _error_line(proc)
    assert str(state_db) in line
    for phrase in phrases:
        assert phrase in line, line
    assert '"order_submitted"' not in proc.stdout


@pytest.fixture
def state_db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "allocbot.sqlite"


def test_once_old_unversioned_state_file_is_migrated_and_keeps_its_history(
        write_config, state_db):
    _write_db(state_db, V1_JOURNAL_DDL + V1_SIM_DDL)
    proc = run_cli_in_process("once", "--config", str(write_config()))
    assert proc.returncode == 0, proc.stderr
    db = sqlite3.connect(state_db)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT version FROM sim_schema").fetchone()[0] == 1
    ids = [r[0] for r in db.execute("SELECT cycle_id FROM cycles ORDER BY seq")]
    # the numbering goes on; the instance part is drawn anew at each writer open
    assert ids[0] == "beef000001" and len(ids) == 2 and ids[1].endswith("000002")
    assert len(ids[1]) == 12 and not ids[1].startswith("beef")
    # the account resumed (cursor moved one day on from the stored 2006-01-03)
    assert db.execute("SELECT cursor_date FROM sim_account").fetchone()[0] == "2006-01-04"
    db.close()


def test_once_newer_schema_version_exits_2_upgrade_or_restore(write_config, state_db):
    _write_db(state_db, V1_JOURNAL_DDL + "PRAGMA user_version = 7;")
    before = state_db.read_bytes()
    proc = run_cli_in_process("once", "--config", str(write_config()))
    _assert_refused(proc, state_db, "schema version 7 is newer", "upgrade allocbot")
    assert state_db.read_bytes() == before, "never rewritten"


def test_once_foreign_sqlite_file_exits_2_not_an_allocbot_file(write_config, state_db):
    _write_db(state_db, "CREATE TABLE users (id INTEGER, name TEXT); "
                        "INSERT INTO users VALUES (1, 'x');")
    before = state_db.read_bytes()
    proc = run_cli_in_process("once", "--config", str(write_config()))
    _assert_refused(proc, state_db, "not an allocbot state file", "users", "state_dir")
    assert state_db.read_bytes() == before


def test_once_same_table_names_other_columns_exits_2(write_config, state_db):
    _write_db(state_db, "CREATE TABLE cycles (x TEXT); CREATE TABLE meta (k TEXT);")
    proc = run_cli_in_process("once", "--config", str(write_config()))
    _assert_refused(proc, state_db, "do not match any known layout")


def test_once_half_truncated_journal_exits_2_restore_a_backup(write_config, state_db):
    config = write_config()
    for _ in range(3):
        assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    size = state_db.stat().st_size
    assert size > 8 * 4096, "enough pages for a cut in the middle"
    with state_db.open("r+b") as f:
        f.truncate(size // 2)
    proc = run_cli_in_process("once", "--config", str(config))
    _assert_refused(proc, state_db, "corrupt", "restore the file from a backup")
    assert state_db.stat().st_size == size // 2, "never reset"


def test_once_garbage_file_exits_2_corrupt(write_config, state_db):
    state_db.parent.mkdir(parents=True)
    state_db.write_bytes(b"this is not a database\n" * 500)
    proc = run_cli_in_process("once", "--config", str(write_config()))
    _assert_refused(proc, state_db, "corrupt or not an allocbot state file")


def test_status_on_corrupt_state_exits_2_naming_file(write_config, state_db):
    state_db.parent.mkdir(parents=True)
    state_db.write_bytes(b"\0" * 8192)
    proc = run_cli_in_process("status", "--config", str(write_config()))
    assert proc.returncode == 2 and str(state_db) in _error_line(proc)


def _without_permission_override() -> None:
    """Child-side: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so
    even a root test run is refused by permission bits after exec (as any user would be)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_once_read_only_state_dir_exits_2_naming_file_and_fix(tmp_path):
    base = tmp_path
    try:
        doc = base_config(base)
        config = base / "config.toml"
        config.write_text(to_toml(doc), encoding="utf-8")
        # a state dir holding a journal the (other) user can read but not write
        state = base / "state"
        Journal(state / "allocbot.sqlite").close()
        for p in state.iterdir():
            os.chmod(p, 0o644)
        os.chmod(state, 0o555)
        before = {p.name: p.read_bytes() for p in state.iterdir()}
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "once", "--config", str(config)], cwd=REPO,
            capture_output=True, text=True, timeout=120,
            preexec_fn=_without_permission_override)
        assert proc.returncode == 2, proc.stderr
        line = _error_line(proc)
        assert str(state) in line and "cannot open the lock file" in line
        assert "state_dir" in line
        assert {p.name: p.read_bytes() for p in state.iterdir()} == before
    finally:
        os.chmod(base / "state", stat.S_IRWXU)


def test_once_unreadable_state_file_exits_2_naming_file(tmp_path):
    doc = base_config(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(to_toml(doc), encoding="utf-8")
    state = tmp_path / "state"
    Journal(state / "allocbot.sqlite").close()
    (state / "allocbot.lock").touch(mode=0o600)
    os.chmod(state / "allocbot.sqlite", 0)
    try:
        proc = subprocess.run([sys.executable, "-m", "bot", "once", "--config", str(config)],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              preexec_fn=_without_permission_override)
    finally:
        os.chmod(state / "allocbot.sqlite", 0o600)
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert str(state / "allocbot.sqlite") in line and "cannot be opened or written" in line


def test_state_files_are_private(write_config, state_db):
    assert run_cli_in_process("once", "--config", str(write_config())).returncode == 0
    assert stat.S_IMODE(state_db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(state_db.stat().st_mode) == 0o600
    assert stat.S_IMODE((state_db.parent / "allocbot.lock").stat().st_mode) == 0o600


def test_state_backup_copies_a_consistent_file_and_refuses_overwrite(tmp_path, write_config,
                                                                       state_db):
    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    dest = tmp_path / "backups" / "copy.sqlite"
    proc = run_cli_in_process("state", "backup", "--config", str(config), str(dest))
    assert proc.returncode == 0, proc.stderr
    copy, live = sqlite3.connect(dest), sqlite3.connect(state_db)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for table in ("cycles", "intents", "fills", "sim_orders", "sim_fills"):
        query = f"SELECT * FROM {table} ORDER BY 1, 2"
        assert copy.execute(query).fetchall() == live.execute(query).fetchall()
    assert copy.execute("PRAGMA user_version").fetchone()[0] == 1
    copy.close()
    live.close()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    again = run_cli_in_process("state", "backup", "--config", str(config), str(dest))
    assert again.returncode == 2 and "already exists" in _error_line(again)


def test_journal_write_on_closed_file_raises_state_error_naming_it(tmp_path):
    path = tmp_path / "allocbot.sqlite"
    journal = Journal(path)
    os.chmod(path, 0o400)
    journal._db.execute("PRAGMA query_only = ON")  # what a read-only file turns writes into
    with pytest.raises(StateError, match=str(path)):
        journal.set_meta("k", "v")
    journal.close()
