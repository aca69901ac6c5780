"""One glitched equity figure from the venue must neither trip the drawdown kill switch nor
lift its peak: real ``allocbot once`` cycles against FakeAlpaca, whose /v2/account answers
an equity that disagrees with its own cash and positions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, alpaca_config
from test_cash_transfers import fake  # noqa: F401 - the fixture: a 100,000 cash account


@pytest.fixture
def config(write_config: Any, fake: FakeAlpaca) -> Path:  # noqa: F811
    path = alpaca_config(write_config, fake)
    path.write_text(path.read_text().replace("[risk]\nmax_var = 0.05", "[risk]\nmax_drawdown = 0.25"))
    assert "max_drawdown = 0.25" in path.read_text()
    return path


def once(config: Path) -> list[dict[str, Any]]:
    proc = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return json_lines(proc.stdout)


def status(config: Path) -> dict[str, Any]:
    proc = run_cli_in_process("status", "--config", str(config), "--json", env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("glitched_equity", [5_000.0, 1_000_000.0], ids=["down", "up"])
def test_a_glitched_equity_fails_the_cycle_and_leaves_the_kill_switch_as_it_was(
        fake: FakeAlpaca, config: Path, glitched_equity: float) -> None:  # noqa: F811
    assert [e["status"] for e in once(config) if e["event"] == "cycle_finished"] == ["finished"]
    peak = status(config)["account"]["peak_equity"]
    glitch = {**fake._account_json(), "equity": str(glitched_equity),
              "portfolio_value": str(glitched_equity)}
    fake.answer_next("/v2/account", glitch, count=4)  # the start-up read and the cycle's
    events = once(config)
    fake.clear_faults()
    [failed] = [e for e in events if e["event"] == "cycle_failed"]
    assert "disagrees with its cash" in failed["error"]
    assert not [e for e in events if e["event"] == "trading_halted"]
    assert status(config)["account"]["peak_equity"] == peak
    after = once(config)
    assert [e["status"] for e in after if e["event"] == "cycle_finished"] == ["finished"]
    assert not [e for e in after if e["event"] == "trading_halted"]
