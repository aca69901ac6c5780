"""Gaps ``check-config`` used to pass (exit 0) while every ``once`` cycle or the backtest then
failed: a lookback longer than the simulator's price file, a strategy whose construction
raises one of our input errors (a missing data file), and a ``[backtest].benchmark`` preset
naming a symbol outside the universe. Each is now refused up front: exit 2, one line
naming the key, no traceback, nothing created. Commands run in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.errors import InputDataError
from tests.conftest import SAMPLE_PRICES, one_line_error, run_cli_in_process

SAMPLE_ROWS = 5033  # rows of bot/sample_market/sample_prices.csv (2005-01-03 to 2024-12-31)
NO_REPLAY_START = {"replay_start": None}  # the user trial's case: the simulator's own start




# ---- 1. a lookback the price file cannot cover -------------------------------------------

@pytest.mark.parametrize("name,params,needed", [
    ("momentum", {"lookback": 6000}, 6002),
    ("inverse_volatility", {"lookback_days": 100_000}, 100_001),
    ("min_variance", {"lookback_days": 20_000}, 20_001),
])
def test_check_config_refuses_a_lookback_longer_than_the_sim_price_file(write_config, name,
                                                                         params, needed):
    """Without ``[sim].replay_start`` the check used to be skipped: exit 0, then every
    ``once`` cycle failed (exit 1) on the history check."""
    config = write_config({"sim": NO_REPLAY_START, "strategy": {"name": name, "params": params}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(config)))
    assert "[strategy.params]" in line
    assert str(SAMPLE_PRICES) in line and "[sim].prices" in line
    assert f"has {SAMPLE_ROWS} rows" in line and f"need {needed}" in line
    assert repr(name) in line


def test_once_refuses_it_before_opening_anything(write_config, tmp_path):
    """``once`` runs the same preflight: exit 2 (not a failed cycle, exit 1), no state."""
    config = write_config({"sim": NO_REPLAY_START,
                           "strategy": {"name": "momentum", "params": {"lookback": 6000}}})
    line = one_line_error(run_cli_in_process("once", "--config", str(config)))
    assert "[strategy.params]" in line and "need 6002" in line
    assert not (tmp_path / "state" / "allocbot.sqlite").exists()


def test_a_risk_window_longer_than_the_file_names_the_risk_key(write_config):
    config = write_config({"sim": NO_REPLAY_START, "risk": {"lookback_days": 6000}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(config)))
    assert "[risk].lookback_days:" in line and "need 6001" in line
    assert "[strategy.params]" not in line


def test_with_a_replay_start_a_file_too_short_names_the_lookback_not_the_start(write_config):
    """No replay start can fix a file shorter than the warm-up: the key to change is the
    strategy's (it used to say ``[sim].replay_start``, "the file is too short")."""
    config = write_config({"strategy": {"name": "momentum", "params": {"lookback": 6000}}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(config)))
    assert "[strategy.params]" in line and "need 6002" in line
    assert "[sim].replay_start" not in line


# ---- 2. building the strategy raises one of our input errors -----------------------------

def test_a_missing_macro_file_is_a_config_error_not_a_traceback(write_config, tmp_path):
    missing = tmp_path / "no_such_macro.csv"
    config = write_config({"strategy": {"name": "macro_regime",
                                        "params": {"macro_file": str(missing)}}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(config)))
    assert "[strategy.params]" in line and str(missing) in line


def test_a_missing_relative_macro_file_names_the_directory_it_was_read_from(write_config,
                                                                            tmp_path):
    """A relative data-file path is read from the working directory, not the config's: the
    error says which directory that was (a config in another directory looked fine)."""
    config = write_config({"strategy": {"name": "macro_regime",
                                        "params": {"macro_file": "macro/no_such.csv"}}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(config)))
    assert "macro/no_such.csv" in line and f"working directory: {Path.cwd()}" in line


@pytest.mark.parametrize("method,fallback,key", [
    ("build_strategy", None, "[strategy.params]: "),
    ("build_fallback", "equal_weight", "[strategy].fallback: "),
])
def test_any_input_error_building_the_strategy_or_fallback_exits_2(write_config, monkeypatch,
                                                                    method, fallback, key):
    """The safety net whatever the strategy raises of our own input/config families (here
    an InputDataError, as ``screen``'s or ``macro_regime``'s file loaders raise)."""
    def broken(self: Config) -> Any:
        raise InputDataError("score file /nowhere/scores.csv: not found")

    monkeypatch.setattr(Config, method, broken)
    config = write_config({"strategy": {"fallback": fallback}})
    for command in ("check-config", "weights"):
        line = one_line_error(run_cli_in_process(command, "--config", str(config)))
        assert f"{key}score file /nowhere/scores.csv: not found" in line


# ---- 3. [backtest].benchmark --------------------------------------------------------------

NO_DBC = {"universe": {"symbols": ["SPY", "TLT", "IEF", "GLD"]},
          "strategy": {"name": "equal_weight", "params": None}}


@pytest.mark.parametrize("benchmark,named", [
    ("all_weather", "symbol(s) ['DBC']"),  # a preset holding a symbol outside the universe
    ("no_such_strategy", "unknown strategy 'no_such_strategy'"),
])
def test_check_config_refuses_a_benchmark_the_backtest_cannot_build(write_config, benchmark,
                                                                    named):
    config = write_config({**NO_DBC, "backtest": {"benchmark": benchmark}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(config)))
    assert f"[backtest].benchmark = {benchmark!r}" in line and named in line


def test_the_backtest_names_where_the_benchmark_came_from(write_config, tmp_path: Path):
    config = write_config({**NO_DBC, "backtest": {"benchmark": "all_weather",
                                                   "tearsheet": False}})
    out = str(tmp_path / "out")
    line = one_line_error(run_cli_in_process("backtest", "--config", str(config), "--out", out))
    assert "[backtest].benchmark = 'all_weather': symbol(s) ['DBC']" in line
    assert "--benchmark" not in line
    line = one_line_error(run_cli_in_process("backtest", "--config", str(config), "--out", out,
                                             "--benchmark", "permanent_portfolio"))
    assert "--benchmark permanent_portfolio: symbol(s)" in line
    assert "[backtest].benchmark" not in line
