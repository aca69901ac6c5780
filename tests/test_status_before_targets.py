"""``allocbot status`` after the very first cycle died before recording targets: the holdings'
target, drift and drifted are unknown ("-", null), said in a note, never a 0.00 % target and
"drifted yes" on every holding (which reads as "sell everything"). The first cycle is a real
``allocbot run`` SIGKILLed by the drill's ``[faults].kill_at`` after its third order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from tests.conftest import REPO, run_cli_in_process

NOTE = "no cycle has recorded targets yet"


def test_status_after_first_cycle_killed_shows_targets_unknown(write_config: Any) -> None:
    config = write_config({"faults": {"enabled": True, "kill_at": "after_submit:3"}})
    killed = subprocess.run([sys.executable, "-m", "bot", "run", "--max-cycles", "3",
                             "--config", str(config)], capture_output=True, text=True,
                            timeout=180, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    as_json = run_cli_in_process("status", "--json", "--config", str(config))
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    holdings = report["holdings"]
    assert len(holdings) == 3, holdings  # the three orders that filled before the kill
    for row in holdings:
        assert row["qty"] > 0 and 0 < row["weight"] < 1, row
        assert (row["target"], row["strategy_target"], row["drift"], row["drifted"]) == (
            None, None, None, None), row
    assert any(NOTE in n for n in report["notes"]), report["notes"]

    text = run_cli_in_process("status", "--config", str(config)).stdout
    table = text.split("holdings vs targets", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert len(table) == 3, text
    for line in table:
        cells = line.split()
        assert cells[-3:] == ["-", "-", "-"], line  # target, drift, drifted
        assert cells[-4].endswith("%") and cells[-4] != "0.00%", line  # the weight is known
    assert f"note: {NOTE}" in text
    assert "yes" not in "\n".join(table)

    health = run_cli_in_process("health", "--config", str(config))
    assert health.returncode == 1
    assert health.stderr.startswith("no successful cycle yet")

    # a cycle that records targets: they are shown again, the note is gone
    write_config()  # the same state dir, no faults
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    after = json.loads(run_cli_in_process("status", "--json", "--config", str(config)).stdout)
    assert all(isinstance(h["target"], float) and isinstance(h["drifted"], bool)
               for h in after["holdings"])
    assert sum(h["strategy_target"] for h in after["holdings"]) > 0.9
    assert not any(NOTE in n for n in after["notes"])
