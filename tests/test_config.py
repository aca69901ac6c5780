"""Config validation: every bad input names its key, exits 2, and sends nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import load_config
from bot.errors import ConfigError
from tests.conftest import REPO, run_cli_in_process


def test_config_shipped_file_is_valid_and_uses_sim_on_bundled_data():
    cfg = load_config(REPO / "config.toml")
    assert cfg.broker.kind == "sim"
    assert cfg.bot.mode == "paper"
    assert cfg.sim.prices.is_file()
    assert cfg.sim.prices.name == "sample_prices.csv"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"sim": {"startng_cash": 5.0}}, "[sim].startng_cash: unknown key"),
        ({"sim": {"starting_cash": "lots"}}, "[sim].starting_cash"),
        ({"sim": {"starting_cash": -100.0}}, "[sim].starting_cash: Input should be greater than 0"),
        ({"rebalance": {"drift_abs": -0.01}}, "[rebalance].drift_abs"),
        ({"rebalance": {"cash_buffer": 1.5}}, "[rebalance].cash_buffer"),
        ({"risk": {"max_weight": 1.2}}, "[risk].max_weight"),
        ({"strategy": {"name": "crystal_ball"}}, "[strategy].name: unknown strategy 'crystal_ball'"),
        ({"strategy": {"name": "fixed", "params": {"weights": {"SPY": 1.4}}}}, "[strategy.params]"),
        ({"strategy": {"name": "fixed", "params": {"colour": "red"}}}, "colour"),
        ({"schedule": {"cron": "45 15 * * 1-5", "interval_secs": None}}, "day names"),
        ({"schedule": {"cron": "45 15 * * mon-fri"}}, "exactly one of cron, interval_secs or at"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "[schedule].timezone"),
        ({"bot": {"mode": "yolo"}}, "[bot].mode"),
        ({"bot": {"mode": "live"}}, '"live" needs [broker].kind = "alpaca"'),
        ({"risk": {"safe_asset": "SHY"}}, "[risk].safe_asset"),
        ({"sim": {"prices": "/nonexistent/prices.csv"}}, "[sim].prices: file not found"),
        ({"universe": {"symbols": ["SPY", "SPY"]}}, "duplicate symbol"),
        ({"universe": {"exclude": ["QQQ"]}}, "[universe].exclude[1]: 'QQQ' is not in"),
        ({"universe": {"symbols": ["SPY"], "exclude": ["SPY"]}}, "every symbol"),
        ({"strategy": {"signal": "hourly"}}, "[strategy].signal"),
        ({"strategy": {"signal": "monthly", "every_sessions": 5}}, "at most one of signal"),
        ({"strategy": {"every_sessions": 0}}, "[strategy].every_sessions"),
    ],
)
def test_config_bad_value_raises_config_error_naming_key(write_config, overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(overrides))
    assert expected in str(info.value)


def test_config_api_key_in_file_is_refused_without_echoing_it(write_config):
    path = write_config({"alpaca": {"api_key": "PKSECRETVALUE123"}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "alpaca.api_key" in message and "APCA_API_KEY_ID" in message
    assert "PKSECRETVALUE123" not in message


def test_config_relative_paths_resolve_against_config_dir(tmp_path: Path, write_config):
    path = write_config({"bot": {"state_dir": "mystate"}})
    assert load_config(path).bot.state_dir == (tmp_path / "mystate").resolve()


def test_config_is_frozen(write_config):
    cfg = load_config(write_config())
    with pytest.raises(ValidationError, match="frozen"):
        cfg.sim.starting_cash = 1.0  # type: ignore[misc]


def test_cli_bad_config_exits_2_names_key_and_sends_nothing(tmp_path: Path, write_config):
    path = write_config({"rebalance": {"drift_rel": -1.0}})
    for command in ("once", "run", "check-config"):
        proc = run_cli_in_process(command, "--config", str(path))
        assert proc.returncode == 2, proc.stderr
        assert "[rebalance].drift_rel" in proc.stderr
    assert not (tmp_path / "state").exists(), "nothing may be created or sent on a bad config"


def test_cli_check_config_prints_resolved_defaults(write_config):
    proc = run_cli_in_process("check-config", "--config", str(write_config()))
    assert proc.returncode == 0, proc.stderr
    assert '"order_wait_secs": 5.0' in proc.stdout
    assert '"resolved_params"' in proc.stdout


def test_cli_missing_config_file_exits_2(tmp_path: Path):
    proc = run_cli_in_process("once", "--config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda lines: [*lines[:3], lines[3].replace(lines[3].split(",")[1], ""), *lines[4:]],
         "missing price"),
        (lambda lines: [*lines[:3], lines[3].replace(lines[3].split(",")[2], "0"), *lines[4:]],
         "must be"),
        (lambda lines: [*lines[:3], lines[2], *lines[3:]], "duplicate date"),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], "sorted"),
    ],
    ids=["nan", "zero", "duplicate-date", "unsorted"],
)
def test_cli_bad_price_data_exits_2_with_clear_error_and_no_order(tmp_path, write_config,
                                                                   mutate, expected):
    lines = (REPO / "bot" / "sample_market" / "sample_prices.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(mutate(lines[:400])) + "\n")
    path = write_config({"sim": {"prices": str(bad), "replay_start": None}})
    proc = run_cli_in_process("once", "--config", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr.lower() or expected in proc.stderr
    _assert_no_orders(tmp_path)


def test_cli_universe_symbol_missing_from_data_exits_2(tmp_path, write_config):
    path = write_config({"universe": {"symbols": ["SPY", "XYZ"]}})
    proc = run_cli_in_process("once", "--config", str(path))
    assert proc.returncode == 2
    assert "XYZ" in proc.stderr
    _assert_no_orders(tmp_path)


def _assert_no_orders(tmp_path: Path) -> None:
    db = tmp_path / "state" / "allocbot.sqlite"
    if not db.exists():
        return
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "sim_orders" in tables:
            assert conn.execute("SELECT COUNT(*) FROM sim_orders").fetchone()[0] == 0
