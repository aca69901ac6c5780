"""A state file whose meta values were hand-edited into something the bot cannot read:
the cycle fails with a StateError naming the file, the key and the fix (no traceback, no
order), ``allocbot status`` exits 2 saying the same, and the fix it names works."""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

import strategies
from bot.core.guards import GuardLimits
from bot.core.signal import SignalSchedule
from bot.engine import cycle
from bot.engine.memory_journal import MemoryJournal
from bot.engine.statuses import CycleStatus, summary_problem
from strategies.errors import StateError
from tests.conftest import capture_logs, random_walk_prices, run_cli_in_process
from tests.test_cycle import SYMBOLS, make_ctx, wake_and_run


def _set_meta(db: Path, key: str, text: str) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE meta SET value = ? WHERE key = ?", (text, key)).rowcount == 1


def _run_sql(db: Path, statement: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(statement)


def _advised_sql(error: str, db: Path) -> str:
    """The SQL statement the error tells the operator to run on ``db``."""
    command = f"sqlite3 {db} "
    assert command in error
    return error.split(command, 1)[1].strip('"')


CORRUPTIONS = [
    ("signal", '{"asof": "2020', "is not JSON"),
    ("signal", '{"asof": "2020-01-02", "strategy": "x"}', "is not a signal memo"),
    ("signal", '{"asof": "yesterday", "strategy": "x", "weights": {}}', "is not a signal memo"),
    ("peak_equity", "nope", "is not JSON"),
    ("peak_equity", "NaN", "is not an equity peak"),
    ("peak_equity", "-5.0", "is not an equity peak"),
    ("peak_equity", '"100000"', "is not an equity peak"),
]


@pytest.mark.parametrize(("key", "text", "problem"), CORRUPTIONS)
def test_unreadable_meta_fails_the_cycle_by_name_and_the_advised_delete_recovers(
        tmp_path: Path, key: str, text: str, problem: str):
    ctx = make_ctx(tmp_path)
    assert wake_and_run(ctx).status is CycleStatus.FINISHED
    db = tmp_path / "state.sqlite"
    intents = len(ctx.journal.intents())
    _set_meta(db, key, text)
    with capture_logs() as logs:
        result = wake_and_run(ctx)
    assert result.status is CycleStatus.FAILED
    assert result.error is not None and result.error.startswith("StateError: ")
    assert f"state file {db}: meta key {key!r} {problem}" in result.error
    assert "cycle_crashed" not in [e["event"] for e in logs]  # no traceback: not a bug
    assert len(ctx.journal.intents()) == intents  # nothing sent

    _run_sql(db, _advised_sql(result.error, db))
    assert wake_and_run(ctx).status is CycleStatus.FINISHED


def test_advised_command_quotes_a_state_path_with_spaces(tmp_path: Path):
    """The error's sqlite3 command splits, as a shell splits it, into the state file's own
    path and the statement, and that statement lets the next cycle finish."""
    home = tmp_path / "my state dir"
    home.mkdir()
    ctx = make_ctx(home)
    assert wake_and_run(ctx).status is CycleStatus.FINISHED
    db = home / "state.sqlite"
    _set_meta(db, "peak_equity", "{")
    error = wake_and_run(ctx).error
    assert error is not None
    words = shlex.split(error.split("afresh: ", 1)[1])
    assert words == ["sqlite3", str(db), "DELETE FROM meta WHERE key = 'peak_equity'"]
    _run_sql(db, words[2])
    assert wake_and_run(ctx).status is CycleStatus.FINISHED


def test_memo_weight_that_is_not_a_number_fails_on_a_held_day(tmp_path: Path):
    ctx = make_ctx(tmp_path)
    ctx.settings = replace(ctx.settings, signal=SignalSchedule("quarterly"))
    assert wake_and_run(ctx).status is CycleStatus.FINISHED
    memo = ctx.journal.meta("signal") or ""
    assert '"AAA": 0.5' in memo
    _set_meta(tmp_path / "state.sqlite", "signal", memo.replace('"AAA": 0.5', '"AAA": "half"'))
    result = wake_and_run(ctx)  # the next session: the memo's weights are held
    assert result.status is CycleStatus.FAILED
    assert "meta key 'signal' is not a signal memo" in (result.error or "")


def test_memo_weight_nan_is_refused_by_the_risk_step_not_filled(tmp_path: Path):
    """A NaN in the held weights is never read as 0 (nor traded)."""
    ctx = make_ctx(tmp_path)
    ctx.settings = replace(ctx.settings, signal=SignalSchedule("quarterly"))
    assert wake_and_run(ctx).status is CycleStatus.FINISHED
    memo = ctx.journal.meta("signal") or ""
    _set_meta(tmp_path / "state.sqlite", "signal", memo.replace('"AAA": 0.5', '"AAA": NaN'))
    intents = len(ctx.journal.intents())
    result = wake_and_run(ctx)
    assert result.status is CycleStatus.FAILED
    assert "'AAA' is NaN" in (result.error or "")
    assert len(ctx.journal.intents()) == intents


def test_memory_journal_names_the_key_of_text_that_is_not_json():
    journal = MemoryJournal()
    journal.set_meta("signal", "{")
    with pytest.raises(StateError, match=r"state file :memory:: meta key 'signal' is not JSON"):
        journal.meta_json("signal")


def test_status_exits_2_naming_an_unreadable_peak(write_config, tmp_path: Path):
    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    db = next((tmp_path / "state").glob("*.sqlite"))
    _set_meta(db, "peak_equity", "{")
    outcome = run_cli_in_process("status", "--config", str(config))
    assert outcome.returncode == 2
    assert "meta key 'peak_equity' is not JSON" in outcome.stderr + outcome.stdout
    assert "Traceback" not in outcome.stderr + outcome.stdout


def test_every_kind_of_cycle_writes_a_summary_the_check_reads_whole(tmp_path: Path):
    """The figures of skipped (market closed, guard blocked), finished, halted, held and
    failed cycles pass ``summary_problem`` as journaled: the check never hides a real
    cycle's figures."""
    prices = random_walk_prices(SYMBOLS, 400)
    prices.iloc[302:] = prices.iloc[302:] * 0.5  # a crash on the third replayed day
    ctx = make_ctx(tmp_path, prices=prices, max_drawdown=0.2)
    statuses = [cycle.run(ctx).status]  # before the first wake: market closed
    # the crash day's bar fails the data guard (skipped), the next one halts
    statuses += [wake_and_run(ctx).status for _ in range(4)]
    _set_meta(tmp_path / "state.sqlite", "peak_equity", "-1")
    ctx.journal.delete_meta(cycle.HALT_KEY)
    statuses.append(wake_and_run(ctx).status)
    _run_sql(tmp_path / "state.sqlite", "DELETE FROM meta WHERE key = 'peak_equity'")
    ctx.settings = replace(ctx.settings, guards=GuardLimits(max_order_fraction=1e-6))
    ctx.strategy = strategies.create("fixed", weights={SYMBOLS[0]: 0.1})
    statuses.append(wake_and_run(ctx).status)
    ctx.strategy = strategies.create("fixed", weights={"ZZZ": 0.5})  # unpriced: held
    statuses.append(wake_and_run(ctx).status)
    assert statuses == [CycleStatus.SKIPPED, CycleStatus.FINISHED, CycleStatus.FINISHED,
                        CycleStatus.SKIPPED, CycleStatus.HALTED, CycleStatus.FAILED,
                        CycleStatus.SKIPPED, CycleStatus.HELD]
    with sqlite3.connect(tmp_path / "state.sqlite") as conn:
        texts = [r[0] for r in conn.execute("SELECT summary FROM cycles ORDER BY seq")]
    summaries = [json.loads(text) for text in texts]
    assert [summary_problem(s) for s in summaries] == [None] * len(statuses)
    assert {"equity_after", "targets", "drifted", "orders_planned"} <= set(summaries[1])
    assert {"guards", "held"} <= set(summaries[6]) | set(summaries[7])
    assert [c["summary"] for c in ctx.journal.recent_cycles()] == summaries[::-1]


SUMMARY_EDITS = [  # (the summary as hand-edited, the problem status names)
    ('{"equity', "not a JSON object"),
    ('[1, 2]', "not a JSON object"),
    ('{"equity_after": "lots"}', "'equity_after' is text, not a number"),
    ('{"var": [0.01]}', "'var' is a list, not a number"),
    ('{"orders_planned": "3"}', "'orders_planned' is text, not a whole number"),
    ('{"orders_filled": 2.5}', "'orders_filled' is a number, not a whole number"),
    ('{"reason": 7}', "'reason' is a number, not text"),
    ('{"targets": ["SPY"]}', "'targets' is a list, not an object {symbol: weight}"),
    ('{"targets": {"SPY": "0.6"}}', "the target weight of 'SPY' is not a number"),
]


@pytest.mark.parametrize(("text", "problem"), SUMMARY_EDITS)
def test_unreadable_cycle_summary_is_noted_by_status_with_its_fix(write_config, tmp_path: Path,
                                                                  text: str, problem: str):
    """A past cycle's figures are history: ``status`` still runs, notes which cycle's are
    unreadable, why, and how to clear them, and shows the other cycles' figures."""
    config = write_config()
    for _ in range(2):
        assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    db = next((tmp_path / "state").glob("*.sqlite"))
    with sqlite3.connect(db) as conn:
        first, second = [r[0] for r in conn.execute("SELECT cycle_id FROM cycles ORDER BY seq")]
        conn.execute("UPDATE cycles SET summary = ? WHERE cycle_id = ?", (text, first))
    outcome = run_cli_in_process("status", "--config", str(config))
    assert outcome.returncode == 0, outcome.stderr
    row = next(line for line in outcome.stdout.splitlines() if first in line)
    assert f"figures unreadable ({problem})" in row and "UPDATE cycles SET summary = NULL" in row
    assert "Traceback" not in outcome.stderr + outcome.stdout
    other = next(line for line in outcome.stdout.splitlines() if second in line)
    assert re.search(r"finished\s+0\s+0\s+\d{2,3},\d{3}\.\d{2}$", other), other  # its equity
    as_json = run_cli_in_process("status", "--config", str(config), "--json")
    assert as_json.returncode == 0, as_json.stderr
    _run_sql(db, row.split(f"sqlite3 {db} ", 1)[1].strip().strip('"'))
    cleared = run_cli_in_process("status", "--config", str(config))
    assert cleared.returncode == 0 and "figures unreadable" not in cleared.stdout
