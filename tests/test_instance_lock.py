"""One writer per state dir; read-only commands never create or change state."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.engine.instance_lock import (
    InstanceLock,
    InstanceLockedError,
    read_lock_holder,
)
from bot.engine.journal import Journal
from bot.errors import EXIT_INSTANCE_LOCKED, StateError, exit_code_for
from tests.conftest import REPO, run_cli, run_cli_in_process


def _tree_digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}


def test_instance_lock_second_acquire_raises_naming_holder_pid(tmp_path):
    with InstanceLock.acquire(tmp_path, "run") as held:
        with pytest.raises(InstanceLockedError) as err:
            InstanceLock.acquire(tmp_path, "once")
        assert f"pid {os.getpid()}" in str(err.value)
        assert held.holder.started_at in str(err.value)
        assert exit_code_for(err.value) == EXIT_INSTANCE_LOCKED == 3
    InstanceLock.acquire(tmp_path, "once").release()  # free again after release


def test_read_lock_holder_reports_alive_only_while_held(tmp_path):
    assert read_lock_holder(tmp_path) is None
    lock = InstanceLock.acquire(tmp_path, "run")
    holder = read_lock_holder(tmp_path)
    assert holder is not None and holder.alive and holder.pid == os.getpid()
    assert holder.command == "run"
    lock.release()
    after = read_lock_holder(tmp_path)
    assert after is not None and not after.alive


def test_instance_lock_released_by_the_os_when_holder_is_sigkilled(tmp_path):
    code = ("import sys, time; from pathlib import Path; "
            "from bot.engine.instance_lock import InstanceLock; "
            f"InstanceLock.acquire(Path({str(tmp_path)!r}), 'run'); print('held', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    holder = read_lock_holder(tmp_path)
    assert holder is not None and holder.alive and holder.pid == proc.pid
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while read_lock_holder(tmp_path).alive and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.05)
    InstanceLock.acquire(tmp_path, "run").release()  # no stale lock


def test_once_while_state_dir_locked_exits_3_naming_holder(tmp_path, write_config):
    config = write_config()
    state_dir = tmp_path / "state"
    with InstanceLock.acquire(state_dir, "run") as held:
        proc = run_cli("once", "--config", str(config))
    assert proc.returncode == EXIT_INSTANCE_LOCKED, proc.stderr
    lines = proc.stderr.strip().splitlines()  # one line: startup_failed (stderr is no terminal)
    assert len(lines) == 1
    message = json.loads(lines[0])["error"]
    assert f"pid {os.getpid()}" in message and held.holder.started_at in message
    assert "Traceback" not in proc.stderr
    assert not (state_dir / "allocbot.sqlite").exists(), "the second writer opened nothing"


def test_rearm_while_state_dir_locked_exits_3(tmp_path, write_config):
    config = write_config()
    Journal(tmp_path / "state" / "allocbot.sqlite").close()  # the daemon's state file
    with InstanceLock.acquire(tmp_path / "state", "run"):  # held by this process; the
        # command opens the lock file anew, so flock refuses it as it would another process
        # (the real entry point's exit 3 runs in ..._once_while_state_dir_locked_...)
        proc = run_cli_in_process("rearm", "--config", str(config))
    assert proc.returncode == EXIT_INSTANCE_LOCKED
    assert f"pid {os.getpid()}" in proc.stderr


def test_journal_open_read_only_missing_file_raises_and_creates_nothing(tmp_path):
    with pytest.raises(StateError, match="does not exist"):
        Journal.open_read_only(tmp_path / "state" / "allocbot.sqlite")
    assert not (tmp_path / "state").exists()


def test_journal_open_read_only_reads_without_changing_a_byte(tmp_path):
    path = tmp_path / "allocbot.sqlite"
    journal = Journal(path)
    cycle_id = journal.start_cycle(None)  # left running, as a crashed daemon leaves it
    journal.close()
    before = _tree_digest(tmp_path)
    reader = Journal.open_read_only(path)
    assert reader.recent_cycles(1)[0]["cycle_id"] == cycle_id
    with pytest.raises(StateError, match="read-only"):
        reader.abandon_running_cycles()
    reader.close()
    assert _tree_digest(tmp_path) == before


def test_status_on_fresh_state_dir_says_not_run_yet_and_creates_nothing(tmp_path, write_config):
    config = write_config()
    proc = run_cli_in_process("status", "--config", str(config))
    assert proc.returncode == 0, proc.stderr  # a fresh `allocbot init` must show a status
    assert "no state yet" in proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / "state").exists()


def test_status_after_a_cycle_changes_no_byte_of_state(tmp_path, write_config):
    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    state = tmp_path / "state"
    before = _tree_digest(state)
    proc = run_cli_in_process("status", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "holdings vs targets" in proc.stdout
    assert _tree_digest(state) == before
