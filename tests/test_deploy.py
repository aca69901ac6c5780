"""The deploy recipes as an operator runs them: systemd unit, non-root state, sd_notify,
Docker files (no engine here: their commands and paths are checked instead)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    SAMPLE_PRICES,
    base_config,
    json_lines,
    run_cli,
    run_cli_in_process,
    to_toml,
)

DEPLOY = REPO / "deploy"
ALLOCBOT = Path(sys.executable).parent / "allocbot"
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="switching to user nobody needs root and setpriv")


def _unit_for_this_host(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointed at this venv's allocbot (verify checks it)."""
    text = (DEPLOY / "allocbot.service").read_text()
    unit = tmp_path / "allocbot.service"
    unit.write_text(text.replace("/opt/allocbot/venv/bin/allocbot", str(ALLOCBOT)))
    return unit


@needs_systemd_analyze
def test_systemd_unit_verifies_without_unknown_keys(tmp_path):
    proc = subprocess.run(["systemd-analyze", "verify", str(_unit_for_this_host(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Unknown key" not in proc.stderr + proc.stdout


@needs_systemd_analyze
def test_systemd_unit_security_exposure_at_most_3(tmp_path):
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=30",
                           str(_unit_for_this_host(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:]
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout)[1])
    assert score <= 3.0


def test_systemd_unit_has_notify_watchdog_and_no_restart_on_bad_config():
    unit = (DEPLOY / "allocbot.service").read_text()
    for line in ("Type=notify", "RestartPreventExitStatus=2", "DynamicUser=yes",
                 "StateDirectory=allocbot", "Environment=ALLOCBOT_STATE_DIR=%S/allocbot"):
        assert line in unit.splitlines()
    assert re.search(r"^WatchdogSec=\d+$", unit, re.M)
    assert "~@resources" not in unit.replace("Never ~@resources", "")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory user nobody can read (pytest's tmp dirs are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="allocbot-nobody-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _config_for_nobody(shared: Path) -> Path:
    doc = base_config(shared)
    doc["sim"]["prices"] = str(SAMPLE_PRICES)
    config = shared / "config.toml"
    config.write_text(to_toml(doc))
    config.chmod(0o644)
    return config


def _as_nobody(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "ALLOCBOT_STATE_DIR": str(state_dir), "HOME": "/nonexistent"}
    user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run([*user, sys.executable, "-c", "import click, bot.cli"],
                           capture_output=True, text=True, env=env, cwd="/", timeout=60)
    if probe.returncode != 0:  # the checkout or the venv sits in a directory nobody can read
        pytest.skip(f"user nobody cannot import this checkout/venv ({REPO}, {sys.executable})")
    return subprocess.run([*user, sys.executable, "-m", "bot", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


@needs_root
def test_daemon_as_non_root_user_writes_state_in_its_own_state_dir(shared_dir):
    config = _config_for_nobody(shared_dir)
    state = shared_dir / "var-lib-allocbot"  # what StateDirectory= makes: owned by the user
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    proc = _as_nobody("run", "--config", str(config), "--max-cycles", "3", state_dir=state)
    assert proc.returncode == 0, proc.stderr
    assert [e["event"] for e in json_lines(proc.stdout)].count("cycle_finished") == 3
    db = state / "allocbot.sqlite"
    assert db.stat().st_uid == 65534
    assert not (shared_dir / "state").exists(), "ALLOCBOT_STATE_DIR wins over the config"


@needs_root
def test_daemon_unwritable_state_dir_exits_2_with_one_line(shared_dir):
    config = _config_for_nobody(shared_dir)
    state = shared_dir / "root-owned"
    state.mkdir(mode=0o755)  # root's: user nobody cannot write here
    proc = _as_nobody("run", "--config", str(config), "--max-cycles", "1", state_dir=state)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(state) in lines[0]


class NotifyListener:
    """A stand-in for systemd's notify socket: collects datagrams on a thread while the
    daemon runs (an unread socket fills up, as it would with a stalled systemd)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._done.is_set():
            try:
                self.messages.extend(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue

    def close(self) -> list[str]:
        self._done.set()
        self._thread.join(timeout=5)
        self.sock.close()
        return self.messages


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_daemon_notifies_systemd_ready_watchdog_stopping(tmp_path, write_config, abstract):
    name = f"allocbot-test-{os.getpid()}-{tmp_path.name}"
    address, env_value = (("\0" + name, "@" + name) if abstract
                          else (str(tmp_path / "notify.sock"),) * 2)
    listener = NotifyListener(address)
    proc = run_cli("run", "--config", str(write_config()), "--max-cycles", "8",
                   env={"NOTIFY_SOCKET": env_value, "WATCHDOG_USEC": "100000"})
    messages = listener.close()
    assert proc.returncode == 0, proc.stderr
    assert messages[0] == "READY=1"
    assert "WATCHDOG=1" in messages
    assert messages[-1] == "STOPPING=1"


def test_daemon_ignores_watchdog_meant_for_another_pid(tmp_path, write_config):
    listener = NotifyListener(str(tmp_path / "n.sock"))
    proc = run_cli("run", "--config", str(write_config()), "--max-cycles", "4",
                   env={"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "100000",
                        "WATCHDOG_PID": "1"})
    messages = listener.close()
    assert proc.returncode == 0, proc.stderr
    assert "READY=1" in messages and "WATCHDOG=1" not in messages


def test_daemon_replay_end_stops_once_with_exit_0(tmp_path, write_config):
    rows = SAMPLE_PRICES.read_text().splitlines()[:270]  # ~1 year of warm-up + a few days
    prices = tmp_path / "short.csv"
    prices.write_text("\n".join(rows) + "\n")
    last_day = rows[-1].split(",")[0]
    config = write_config({"sim": {"prices": str(prices), "replay_start": date(2006, 1, 3)},
                           "risk": {"max_var": None},
                           "schedule": {"interval_secs": 0.01, "run_at_start": True}})
    proc = run_cli("run", "--config", str(config))  # no --max-cycles: it must stop by itself
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stdout)
    names = [e["event"] for e in events]
    assert names.count("replay_ended") == 1
    assert next(e for e in events if e["event"] == "replay_ended")["last_date"] == last_day
    assert "market_closed" not in names
    stopping = next(e for e in events if e["event"] == "daemon_stopping")
    assert stopping["reason"] == "replay_ended" and "append rows" in stopping["note"]
    stopped = next(e for e in events if e["event"] == "daemon_stopped")
    assert stopping["cycles"] == stopped["cycles"]  # (the stopping line counted one short)
    # restarted after the end: stops at once (the command's outcome, read after it returns)
    again = run_cli_in_process("run", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert [e["event"] for e in json_lines(again.stdout)].count("cycle_started") == 0
    # `once` (a cron job) after the end: no cycle journaled as a closed-market success,
    # which kept `health` saying ok for ever
    state = tmp_path / "state" / "allocbot.sqlite"
    rows_before = sqlite3.connect(state).execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
    once = run_cli_in_process("once", "--config", str(config))
    assert once.returncode == 0, once.stderr
    over = [e for e in json_lines(once.stdout) if e["event"] == "replay_over"]
    assert over and "append rows" in over[0]["note"]
    assert "cycle_started" not in once.stdout
    rows_after = sqlite3.connect(state).execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
    assert rows_after == rows_before


def test_dockerfile_pins_base_uses_constraints_state_volume_and_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", text, re.M)
    assert "sh deploy/install.sh /src" in text
    assert "-c \"$src/deploy/constraints.txt\"" in (DEPLOY / "install.sh").read_text()
    assert re.search(r'^HEALTHCHECK .*CMD \["allocbot", "health"\]$', text, re.M)
    assert "ALLOCBOT_STATE_DIR=/data" in text and 'VOLUME ["/data"]' in text
    assert "USER allocbot" in text


def test_compose_mounts_a_config_that_exists_relative_to_deploy():
    text = (DEPLOY / "compose.yaml").read_text()
    mounts = re.findall(r"^\s*- (\S+):/config/config\.toml", text, re.M)
    assert mounts, "compose must mount a config"
    for source in mounts:
        assert (DEPLOY / source).resolve().is_file(), f"{source} does not exist next to deploy/"
    assert "allocbot-state:/data" in text


def test_constraints_pin_every_runtime_dependency():
    pinned = {re.split(r"[=<>]", line)[0].strip().lower().replace("_", "-")
              for line in (DEPLOY / "constraints.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[<>=!~\[ ;]", dep)[0].lower().replace("_", "-")
              for dep in project["dependencies"]}
    missing = sorted(wanted - pinned)
    assert not missing, f"not in deploy/constraints.txt: {missing}; run sh deploy/freeze-constraints.sh"


@pytest.mark.slow
def test_image_install_step_installs_with_constraints_in_a_fresh_venv(tmp_path):
    """What `docker build` runs, without Docker: the Dockerfile's COPYs, then install.sh."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "config.toml", "bot", "strategies", "brokers"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, src / name)
    (src / "deploy").mkdir()
    for name in ("constraints.txt", "install.sh"):
        shutil.copy(DEPLOY / name, src / "deploy" / name)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    env = {**os.environ, "PATH": f"{tmp_path / 'venv' / 'bin'}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(["sh", "deploy/install.sh", str(src)], cwd=src, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    freeze = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "freeze"],
                            capture_output=True, text=True, check=True).stdout
    pinned = (DEPLOY / "constraints.txt").read_text()
    for line in freeze.splitlines():
        if "==" in line and not line.lower().startswith("allocbot"):
            assert line in pinned, f"{line} resolved outside the constraints"
    assert json.loads(run_cli("status", "--json", "--config", str(src / "config.toml")).stdout)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_alert_rules_parse_and_their_unit_tests_pass():
    """`promtool test rules` on deploy/prometheus/alerts_test.yml: the drift rule stays
    quiet while every day's orders fill (the drift gauge is the drift before a cycle's
    orders, high right after a cycle that traded back) and fires when nothing fills."""
    checked = subprocess.run(["promtool", "check", "rules", "deploy/prometheus/alerts.yml"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "deploy/prometheus/alerts_test.yml"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
