"""What the quick commands load: ``--help``, ``check-config``, ``status``, ``health`` and
``weights`` (fixed strategy, the shipped config) never import the heavy libraries that
only other commands need, and the CLI's start-up garbage-collection deferral is undone."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO / "config.toml"
# only a backtest report, a strategy that needs them, research or the Alpaca broker load these
NEVER_AT_START = ("sklearn", "scipy.stats", "scipy.linalg", "matplotlib", "alpaca",
                  "exchange_calendars", "optuna", "distributed", "dask", "apscheduler")
PROBE = """
import json, runpy, sys
watched = json.loads(sys.argv[2])
sys.argv = ["allocbot", *json.loads(sys.argv[1])]
try:
    runpy.run_module("bot", run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in watched if m in sys.modules)), file=sys.stderr)
"""


def modules_loaded_by(args: list[str], state_dir: Path,
                      watched: tuple[str, ...] = NEVER_AT_START) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(watched)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "ALLOCBOT_STATE_DIR": str(state_dir)}, check=True)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def state_after_one_cycle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("state")
    subprocess.run([sys.executable, "-m", "bot", "once", "--config", str(SHIPPED_CONFIG)],
                   capture_output=True, cwd=REPO, timeout=120, check=True,
                   env={**os.environ, "ALLOCBOT_STATE_DIR": str(state)})
    assert (state / "allocbot.sqlite").is_file()
    return state


@pytest.mark.parametrize(("args", "loaded"), [
    (["--help"], []), (["status"], []), (["health"], []),  # SQLite alone: no numpy, no pandas
    (["check-config"], ["numpy", "pandas"]), (["weights"], ["numpy", "pandas"])])
def test_command_start_loads_none_of_the_heavy_libraries(args, loaded, state_after_one_cycle):
    """No command loads a heavy library at start. ``status`` and ``health`` answer from
    SQLite alone (≤ 0.4 s to start, issue 9): a module-level pandas import anywhere on
    their path is caught here. The probe can fail: it reports the pandas that
    ``check-config`` and ``weights`` do load."""
    if args != ["--help"]:
        args = [*args, "--config", str(SHIPPED_CONFIG)]
    watched = ("numpy", "pandas", *NEVER_AT_START)
    assert modules_loaded_by(args, state_after_one_cycle, watched=watched) == loaded


def test_cli_in_process_leaves_garbage_collection_as_it_found_it(tmp_path):
    assert gc.isenabled()
    result = CliRunner().invoke(main, ["check-config", "--config", str(SHIPPED_CONFIG)],
                                env={"ALLOCBOT_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert gc.isenabled() and gc.get_freeze_count() == 0
    result = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert gc.isenabled() and gc.get_freeze_count() == 0
