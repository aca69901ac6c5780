"""Start-up checks that read what a config meets, not only what it says: a state dir whose
simulated replay is under way is refused when its next day lacks the history the new
lookbacks need (it used to pass, then fail a cycle a replayed day for months); a
``max_drawdown`` the recorded peak is already beyond is warned about before the first cycle
halts; a ``fixed`` target above ``[guards].max_order_fraction`` (a first buy from cash that
could never pass) is refused. Commands run in-process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from bot.config import load_config
from bot.engine.preflight import config_fit_problems
from tests.conftest import one_line_error, run_cli_in_process

# base_config replays from 2006-01-03 (row 252 of the sample); three wakes leave the replay
# at 2006-01-05 (row 254), so the next cycle (2006-01-06) sees 256 rows
AT, NEXT, NEXT_ROWS = "2006-01-05", "2006-01-06", 256


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def advance(config: Path, wakes: int) -> None:
    for _ in range(wakes):
        outcome = run_cli_in_process("once", "--config", str(config))
        assert outcome.returncode == 0, outcome.stderr


def sim_state(tmp_path: Path) -> tuple[str, int]:
    """The replay's stored day and the number of journaled cycles."""
    with sqlite3.connect(tmp_path / "state" / "allocbot.sqlite") as db:
        cursor = db.execute("SELECT cursor_date FROM sim_account").fetchone()[0]
        return cursor, db.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]


# ---- 1. the replay's position, not only [sim].replay_start ----------------------------------

def test_an_advanced_replay_short_of_the_new_lookback_is_refused_by_every_start(
        write_config, tmp_path):
    """The operator's trial: ``[risk] lookback_days = 600`` on a replay already under way
    passed check-config and ``run``, then every cycle failed "history has N rows ... need
    601" for ~325 replayed days."""
    advance(write_config(), 3)
    before = sim_state(tmp_path)
    assert before == (AT, 3)
    config = write_config({"risk": {"lookback_days": 600}})
    for command in (["check-config"], ["once"], ["run", "--max-cycles", "1"]):
        line = one_line_error(run_cli_in_process(*command, "--config", str(config)))
        assert "1 problem(s): [risk].lookback_days: the replay in state dir " \
               f"{tmp_path / 'state'} is at {AT}, so its next cycle ({NEXT}) has {NEXT_ROWS} " \
               "rows of price history" in line, command
        assert "([risk].lookback_days = 600) need 601" in line
        assert f"its next {601 - NEXT_ROWS} cycles" in line
        assert "shorten the lookback, or point [bot].state_dir at a new directory" in line
        assert "[sim].replay_start:" not in line  # a resumed replay ignores the start
    assert sim_state(tmp_path) == before  # no wake, no cycle: nothing consumed a day


def test_the_boundary_is_the_next_cycles_rows_and_a_strategy_lookback_names_its_key(
        write_config, tmp_path):
    advance(write_config(), 3)
    fits = write_config({"risk": {"lookback_days": NEXT_ROWS - 1}})  # needs exactly 256
    assert run_cli_in_process("check-config", "--config", str(fits)).returncode == 0
    one_short = write_config({"risk": {"lookback_days": NEXT_ROWS}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(one_short)))
    assert f"need {NEXT_ROWS + 1}, so its next 1 cycle (to {NEXT}) would fail" in line
    assert "[sim].replay_start on 2006-01-09 or later" in line
    momentum = write_config({"strategy": {"name": "momentum",
                                          "params": {"lookback": 400, "k": 2}}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(momentum)))
    assert line.count("[strategy.params]: the replay in state dir ") == 1
    assert "strategy 'momentum'" in line and f"has {NEXT_ROWS} rows" in line


def test_a_fresh_state_dir_keeps_the_replay_start_check_until_the_replay_begins(
        write_config, tmp_path):
    """No state yet: the configured start decides, as before (the sample's default start
    leaves the warm-up; 2006-01-03 does not). Once the replay has begun, its day does."""
    short = write_config({"risk": {"lookback_days": 600}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(short)))
    assert "[sim].replay_start: 2006-01-03 leaves 252 rows" in line
    assert "the replay in state dir" not in line
    default_start = write_config({"sim": {"replay_start": None}, "risk": {"lookback_days": 600}})
    assert run_cli_in_process("check-config", "--config", str(default_start)).returncode == 0
    assert not (tmp_path / "state").exists()  # check-config created nothing
    advance(write_config(), 1)  # (each write_config rewrites the one config.toml)
    short = write_config({"risk": {"lookback_days": 600}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(short)))
    assert "the replay in state dir" in line and "is at 2006-01-03" in line
    assert "has 254 rows" in line and "[sim].replay_start:" not in line


# ---- 2. a drawdown limit the account is already beyond -----------------------------------

def test_a_max_drawdown_already_breached_is_warned_at_start(write_config, tmp_path):
    """A lowered (or new) max_drawdown the recorded peak and the last equity already break:
    the first cycle halts; the start says so first, once, and only then."""
    advance(write_config(), 2)
    db = tmp_path / "state" / "allocbot.sqlite"
    with sqlite3.connect(db) as conn:
        equity = json.loads(conn.execute("SELECT summary FROM cycles ORDER BY seq DESC LIMIT 1"
                                         ).fetchone()[0])["equity_after"]
        conn.execute("UPDATE meta SET value = ? WHERE key = 'peak_equity'", (repr(equity * 1.5),))
    loose = run_cli_in_process("once", "--config", str(write_config({"risk": {"max_drawdown": 0.5}})))
    assert loose.returncode == 0, loose.stderr
    assert not [e for e in events(loose.stdout) if e["event"] == "drawdown_beyond_limit_at_start"]

    strict = write_config({"risk": {"max_drawdown": 0.2}})
    outcome = run_cli_in_process("once", "--config", str(strict))
    assert outcome.returncode == 0, outcome.stderr
    names = [e["event"] for e in events(outcome.stdout)]
    warned = [e for e in events(outcome.stdout) if e["event"] == "drawdown_beyond_limit_at_start"]
    assert len(warned) == 1 and warned[0]["level"] == "warning"
    assert warned[0]["max_drawdown"] == 0.2 and 0.3 < warned[0]["drawdown"] < 0.34
    assert "allocbot rearm" in warned[0]["note"]
    assert names.index("drawdown_beyond_limit_at_start") < names.index("cycle_started")
    assert "trading_halted" in names
    again = run_cli_in_process("once", "--config", str(strict))  # halted: still_halted says it
    assert "drawdown_beyond_limit_at_start" not in [e["event"] for e in events(again.stdout)]


# ---- 3. a fixed target the order guard can never let through ------------------------------

def test_a_fixed_target_above_max_order_fraction_is_refused_where_trading_starts_in_cash(
        write_config, tmp_path):
    """all_weather's TLT is 40 %: with max_order_fraction 0.35 every cycle from cash was
    guard_blocked, forever. A backtest (it starts in cash) refuses it; check-config and
    once accept it (an invested account's rebalancing orders are small: refusing it there
    stopped a config that traded fine)."""
    config = write_config({"guards": {"max_order_fraction": 0.35}})

    def backtest_error(cfg: Path) -> str:
        return one_line_error(run_cli_in_process("backtest", "--config", str(cfg), "--out",
                                                 str(tmp_path / "bt")))

    line = backtest_error(config)
    assert "1 problem(s): [guards].max_order_fraction 0.35 is below the target weight of " \
           "TLT (0.4): the first buy from cash could never pass" in line
    assert "raise it to at least 0.4 or lower the target" in line
    assert not (tmp_path / "bt").exists()
    assert run_cli_in_process("check-config", "--config", str(config)).returncode == 0
    line = backtest_error(write_config({"guards": {"max_order_fraction": 0.25}}))
    assert "target weights of TLT (0.4) and SPY (0.3):" in line and "at least 0.4" in line
    line = backtest_error(write_config({"guards": {"max_order_fraction": 0.3},
                                        "rebalance": {"cash_buffer": 0.1}}))
    assert "of TLT (0.36) after [rebalance].cash_buffer:" in line
    for accepted in ({"guards": {"max_order_fraction": 0.4}},
                     {"guards": {"max_order_fraction": 0.35, "enabled": False}},
                     {"guards": {"max_order_fraction": 0.35}, "risk": {"max_weight": 0.35}},
                     {"guards": {"max_order_fraction": 0.35}, "rebalance": {"cash_buffer": 0.15}}):
        cfg = load_config(write_config(accepted))
        assert config_fit_problems(cfg, tuple(cfg.universe.symbols or ()), from_cash=True) == []
