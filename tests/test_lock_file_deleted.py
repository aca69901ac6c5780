"""An operator deletes (or replaces, or empties) state/allocbot.lock while the daemon runs,
taking it for a stale lock: no second writer may trade beside the daemon, and within seconds
``status`` names the daemon again. Real processes for the daemon (``allocbot run``) and the
second writer (``allocbot once``), whose lock is between two processes; ``status`` and the
last ``once`` in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.engine.instance_lock import InstanceLock, LockHolder, read_lock_holder
from bot.errors import EXIT_INSTANCE_LOCKED, InstanceLockedError
from tests.conftest import REPO, json_lines, run_cli, run_cli_in_process


def _replace(path: Path) -> None:
    path.unlink()
    path.touch(mode=0o600)  # a fresh file at the name: another inode, unlocked, no record


DAMAGE: dict[str, Callable[[Path], None]] = {
    "deleted": Path.unlink,
    "replaced": _replace,
    "emptied": lambda path: path.write_bytes(b""),
}


def wait_for_holder(state: Path, pid: int, secs: float) -> LockHolder | None:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        holder = read_lock_holder(state)
        if holder is not None and holder.alive and holder.pid == pid:
            return holder
        time.sleep(0.05)
    return None


@pytest.fixture
def daemon(write_config: Any, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    config = write_config({"schedule": {"interval_secs": 1.0}})
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_holder(tmp_path / "state", proc.pid, 60) is not None, log.read_text()
        yield proc, config, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_lock_file_gone_keeps_a_second_writer_out_and_status_names_the_daemon(
    damage: str, daemon: tuple[subprocess.Popen[str], Path, Path], tmp_path: Path
) -> None:
    proc, config, log = daemon
    state = tmp_path / "state"
    DAMAGE[damage](state / "allocbot.lock")
    # at once, before the daemon's watch (each second) can put the file back: only the
    # state directory's own lock can refuse this writer
    with pytest.raises(InstanceLockedError):
        InstanceLock.acquire(state, "test")

    second = run_cli("once", "--config", str(config), timeout=60)

    assert second.returncode == EXIT_INSTANCE_LOCKED, (second.stdout[-2000:], second.stderr)
    error = json.loads(second.stderr.strip().splitlines()[-1])["error"]
    assert f"is in use by pid {proc.pid} (run, started " in error
    assert not [e for e in json_lines(second.stdout) if e.get("event") == "cycle_started"]

    # the daemon puts its record back: status and health see it running again
    assert wait_for_holder(state, proc.pid, 10) is not None, (state / "allocbot.lock").read_bytes()
    status = run_cli_in_process("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert f"daemon      running (pid {proc.pid}," in status.stdout
    assert proc.poll() is None, "the daemon kept running"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    restored = [e for e in json_lines(log.read_text())
                if e.get("event") == "instance_lock_restored"]
    assert restored and restored[0]["level"] == "warning" and restored[0]["restored"] is True
    assert restored[0]["path"] == str(state / "allocbot.lock")
    # the daemon gone, nothing is left locked
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    assert os.stat(state / "allocbot.lock").st_mode & 0o077 == 0
