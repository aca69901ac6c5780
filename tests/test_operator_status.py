"""What an operator runs: `allocbot init`, `status`, `health`, outside and inside the repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from apscheduler.triggers.cron import CronTrigger

from bot.config import ScheduleSection, load_config
from bot.monitoring.health import assess_health, previous_fire_time, success_due_after
from bot.monitoring.status_report import build_status_report
from tests.conftest import REPO, json_lines, run_cli, run_cli_in_process

NEW_YORK = ZoneInfo("America/New_York")


def test_init_outside_repo_makes_status_and_health_work(tmp_path):
    outside = tmp_path / "ops"
    outside.mkdir()
    before = run_cli_in_process("status", cwd=outside)
    assert before.returncode == 2 and "config file not found" in before.stderr

    init = run_cli_in_process("init", cwd=outside)
    assert init.returncode == 0, init.stderr
    shipped = (REPO / "config.toml").read_text()
    assert (outside / "config.toml").read_text() == shipped

    status = run_cli_in_process("status", cwd=outside)
    assert status.returncode == 0, status.stderr
    assert "allocbot paper · strategy fixed · broker sim" in status.stdout
    assert "no state yet" in status.stdout
    assert not (outside / "state").exists(), "status is read-only: it creates no state"
    health = run_cli_in_process("health", cwd=outside)
    assert health.returncode == 1 and "no cycle yet" in health.stderr

    again = run_cli_in_process("init", cwd=outside)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_init_systemd_fills_in_this_install_paths(tmp_path):
    proc = run_cli_in_process("init", str(tmp_path / "etc"), "--deploy", "systemd")
    assert proc.returncode == 0, proc.stderr
    unit = (tmp_path / "etc" / "allocbot.service").read_text()
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    binary = Path(exec_start.split("=", 1)[1].split()[0])
    assert binary.name == "allocbot" and binary.exists()
    assert f"--config {tmp_path / 'etc' / 'config.toml'}" in exec_start
    assert "PrivateTmp" in proc.stderr, "a config under /tmp is hidden from the service: warn"


def test_starter_files_shipped_in_the_package_match_the_repository():
    assert (REPO / "bot" / "starter" / "config.toml").read_text() == (REPO / "config.toml").read_text()
    assert (REPO / "bot" / "starter" / "allocbot.service").read_text() == \
        (REPO / "deploy" / "allocbot.service").read_text()


def _run_daemon(config: Path, cycles: int) -> list[dict]:
    proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", str(cycles))
    assert proc.returncode == 0, proc.stderr
    return json_lines(proc.stdout)


def test_status_halted_account_shows_banner_rearm_and_equity(write_config):
    config = write_config({"sim": {"replay_start": date(2011, 8, 1)},
                           "schedule": {"interval_secs": 0.01},  # 25 cycles, short waits
                           "risk": {"max_drawdown": 0.01}})
    lines = _run_daemon(config, 25)
    assert any(e["event"] == "trading_halted" for e in lines)

    text = run_cli_in_process("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert "TRADING HALTED: drawdown" in text.stdout
    assert "allocbot rearm" in text.stdout
    report = json.loads(run_cli_in_process("status", "--config", str(config), "--json").stdout)
    halted = [c for c in report["cycles"] if c["status"] == "halted"]
    assert halted and all(c["equity"] is not None and c["equity"] > 0 for c in halted)
    assert f"{halted[0]['equity']:,.2f}" in text.stdout.split("last cycles")[1]
    account = report["account"]
    assert account["source"] == "sim_ledger" and account["drawdown"] > 0
    assert report["max_drawdown"] == 0.01 and report["halted_reason"].startswith("drawdown")

    health = run_cli_in_process("health", "--config", str(config))
    assert health.returncode == 1 and "trading halted" in health.stderr


def test_rearm_clears_a_halt_only_and_never_creates_a_state_file(write_config, tmp_path):
    """rearm once reset the equity peak when nothing was halted (loosening the kill
    switch) and, pointed at a wrong state dir, created a new state file and said
    "re-armed". Now: a halt is cleared with its peak; no halt changes nothing; no state
    file is exit 2 and creates nothing."""
    from bot.engine.journal import Journal
    from bot.engine.statuses import HALT_KEY, PEAK_KEY

    missing = write_config({"bot": {"state_dir": str(tmp_path / "nowhere")}}, name="x.toml")
    proc = run_cli_in_process("rearm", "--config", str(missing))
    assert proc.returncode == 2 and "does not exist: nothing to re-arm" in proc.stderr
    assert not (tmp_path / "nowhere").exists()

    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    db = tmp_path / "state" / "allocbot.sqlite"
    journal = Journal(db)
    peak = journal.meta(PEAK_KEY)
    journal.set_meta(HALT_KEY, "drawdown 30% from peak")
    journal.close()
    proc = run_cli_in_process("rearm", "--config", str(config))
    assert proc.returncode == 0 and "re-armed (was halted: drawdown 30%" in proc.stdout
    journal = Journal(db)
    assert journal.meta(HALT_KEY) is None and journal.meta(PEAK_KEY) is None
    journal.set_meta(PEAK_KEY, peak)
    journal.close()
    proc = run_cli_in_process("rearm", "--config", str(config))
    assert proc.returncode == 0 and "not halted: nothing changed" in proc.stdout
    assert "trading_rearmed" not in proc.stdout + proc.stderr
    journal = Journal(db)
    assert journal.meta(PEAK_KEY) == peak is not None
    journal.close()


def test_status_report_values_sim_holdings_like_the_daemon(write_config):
    config = write_config()
    lines = _run_daemon(config, 3)
    last = [e for e in lines if e["event"] == "cycle_finished"][-1]
    report = build_status_report(load_config(config, check_strategy=False))
    assert report.account is not None
    assert abs(report.account.equity - last["equity_after"]) < 0.01
    assert abs(sum(h.value for h in report.holdings) + (report.account.cash or 0)
               - report.account.equity) < 0.05
    assert {h.symbol for h in report.holdings} >= set(last["targets"])
    assert report.cycles[0].cycle_id and report.last_success_at is not None
    assert report.daemon.alive is False and report.next_wake is None


def test_health_after_cycles_stop_flips_to_1_naming_last_success(write_config):
    config = write_config({"schedule": {"interval_secs": 0.05, "misfire_grace_secs": 1}})
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        finished = 0
        for line in proc.stdout:  # bounded: the daemon writes a line per step
            finished += json.loads(line).get("event") == "cycle_finished"
            if finished >= 3:
                break
        while_running = run_cli_in_process("health", "--config", str(config))
        assert while_running.returncode == 0, while_running.stderr
        assert while_running.stdout.startswith("ok: last success at")
        live = json.loads(run_cli_in_process("status", "--json", "--config", str(config)).stdout)
        assert live["daemon"]["alive"] and live["daemon"]["pid"] == proc.pid
        assert live["next_wake"] is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    verdict = run_cli_in_process("health", "--config", str(config))
    while verdict.returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        verdict = run_cli_in_process("health", "--config", str(config))
    assert verdict.returncode == 1
    assert "last success at" in verdict.stderr and "no daemon running" in verdict.stderr


def test_health_interval_deadline_is_interval_plus_grace(write_config):
    cfg = load_config(write_config({"schedule": {"interval_secs": 60, "misfire_grace_secs": 30}}),
                      check_strategy=False)
    _run_daemon(cfg.source, 1)  # type: ignore[arg-type]
    finished = datetime.fromisoformat(build_status_report(cfg).last_success_at or "")
    assert assess_health(cfg, now=finished + timedelta(seconds=89)).healthy
    late = assess_health(cfg, now=finished + timedelta(seconds=91))
    assert not late.healthy and late.reason.startswith("last success at")


def test_health_cron_previous_fire_time_is_last_weekday_close():
    trigger = CronTrigger(minute="45", hour="15", day_of_week="mon-fri", timezone=NEW_YORK)
    monday_morning = datetime(2026, 11, 30, 10, 0, tzinfo=NEW_YORK)
    assert previous_fire_time(trigger, monday_morning) == datetime(2026, 11, 27, 15, 45,
                                                                   tzinfo=NEW_YORK)
    schedule = ScheduleSection(cron="45 15 * * mon-fri", misfire_grace_secs=300)
    at_close = datetime(2026, 11, 30, 15, 46, tzinfo=NEW_YORK)  # inside the grace: Friday's
    assert success_due_after(schedule, at_close) == datetime(2026, 11, 27, 15, 45, tzinfo=NEW_YORK)
    after_grace = datetime(2026, 11, 30, 15, 51, tzinfo=NEW_YORK).astimezone(UTC)
    assert success_due_after(schedule, after_grace) == datetime(2026, 11, 30, 15, 45,
                                                                tzinfo=NEW_YORK)


def test_state_dir_env_overrides_config(tmp_path, write_config, monkeypatch):
    monkeypatch.setenv("ALLOCBOT_STATE_DIR", str(tmp_path / "elsewhere"))
    cfg = load_config(write_config(), check_strategy=False)
    assert cfg.state_db == tmp_path / "elsewhere" / "allocbot.sqlite"
    env = {**os.environ, "ALLOCBOT_STATE_DIR": str(tmp_path / "elsewhere")}
    proc = run_cli_in_process("once", "--config", str(write_config()), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "elsewhere" / "allocbot.sqlite").exists()
    assert not (tmp_path / "state").exists()


def test_init_docker_writes_compose_mounting_the_written_config(tmp_path):
    proc = run_cli_in_process("init", str(tmp_path / "bot"), "--deploy", "docker")
    assert proc.returncode == 0, proc.stderr
    compose = (tmp_path / "bot" / "compose.yaml").read_text()
    mount = next(ln.strip()[2:] for ln in compose.splitlines() if ":/config/config.toml" in ln)
    source = mount.split(":")[0]
    assert (tmp_path / "bot" / source).resolve() == (tmp_path / "bot" / "config.toml")
    assert (tmp_path / "bot" / "config.toml").is_file() and "allocbot-state:/data" in compose


def _assert_the_planner_agrees(cfg, report, rows) -> None:
    """Nothing drifted, and each row's weight and target are the planner's own."""
    view, drifted = _planner_judges(cfg, report)
    assert drifted == set()
    for sym, (w, t) in view.items():
        assert abs(rows[sym].weight - w) < 1e-6 and abs(rows[sym].target - t) < 1e-6


def _planner_judges(cfg, report) -> tuple[dict[str, tuple[float, float]], set[str]]:
    """The planner's (weight, target) per symbol and its drifted set, at the report's prices:
    the universe holdings (qty, close) and the account's cash, the last cycle's targets."""
    import pandas as pd

    from bot.core.rebalance import plan_rebalance
    from bot.engine.runtime import rebalance_policy

    held = [h for h in report.holdings if h.qty > 0]
    plan = plan_rebalance(pd.Series({h.symbol: h.qty for h in held}, dtype=float),
                          report.account.cash,
                          pd.Series({h.symbol: h.strategy_target for h in report.holdings},
                                    dtype=float),
                          pd.Series({h.symbol: h.price for h in held}, dtype=float),
                          rebalance_policy(cfg))
    view = {s: (float(w), float(t))
            for s, w, t in zip(plan.symbols, plan.current, plan.target, strict=True)}
    return view, set(plan.drifted)


def _holdings_text(stdout: str) -> str:
    return stdout.split("holdings vs targets")[1].split("open and unsent orders")[0]


def test_status_judges_holdings_against_the_cash_buffered_targets(write_config):
    """A cash buffer of 30 %: right after the cycle invests 70 %, status shows the buffered
    targets the planner traded to and nothing drifted (it flagged every row by up to 12 %,
    measured against the raw targets)."""
    config = write_config({"rebalance": {"cash_buffer": 0.3}})
    once = run_cli_in_process("once", "--config", str(config))
    assert once.returncode == 0, once.stderr
    finished = next(e for e in json_lines(once.stdout) if e["event"] == "cycle_finished")
    assert finished["orders_filled"] > 0
    raw = finished["targets"]
    invested = min(1.0, 0.7 / sum(raw.values()))

    cfg = load_config(config, check_strategy=False)
    report = build_status_report(cfg)
    rows = {h.symbol: h for h in report.holdings}
    assert set(rows) == set(raw)
    assert [s for s, h in rows.items() if h.drifted] == []
    for sym, t in raw.items():
        assert abs(rows[sym].target - t * invested) < 1e-6
        assert abs(rows[sym].drift - (rows[sym].weight - rows[sym].target)) < 2e-6
        assert rows[sym].strategy_target == t
    assert abs(sum(h.target for h in report.holdings) - 0.7) < 1e-5
    assert report.cash_buffer == 0.3 and report.outside_universe == ()
    _assert_the_planner_agrees(cfg, report, rows)

    text = run_cli_in_process("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    table = _holdings_text(text.stdout)
    assert "after the 30.00% cash buffer" in table and "yes" not in table
    sym, t = next(iter(raw.items()))
    assert f"{t * invested:.2%}" in table
    as_json = json.loads(run_cli_in_process("status", "--json", "--config", str(config)).stdout)
    assert not any(h["drifted"] for h in as_json["holdings"])
    assert abs(sum(h["target"] for h in as_json["holdings"]) - 0.7) < 1e-5

    again = run_cli_in_process("once", "--config", str(config))
    assert again.returncode == 0, again.stderr
    planned = next(e for e in json_lines(again.stdout) if e["event"] == "orders_planned")
    assert planned["count"] == 0, "status said nothing drifted: the planner agrees"


def test_status_lists_a_holding_dropped_from_the_universe_apart_and_judges_the_rest_like_the_planner(
        write_config):
    """GLD bought, then dropped from the universe: the bot leaves it alone, so status lists
    it outside the universe (not drifted) and weighs the universe holdings over cash + the
    universe's holdings as the planner does (every row was flagged: weights over the whole
    account, GLD against a target of 0)."""
    fixed = {"name": "fixed", "params": {"weights": {"SPY": 0.5, "GLD": 0.5}}}
    config = write_config({"strategy": fixed, "risk": {"max_var": None}})
    first = run_cli_in_process("once", "--config", str(config))
    assert first.returncode == 0, first.stderr
    shrunk = write_config({"universe": {"symbols": ["SPY", "TLT", "IEF", "DBC"]},
                           "strategy": {"name": "fixed",
                                        "params": {"weights": {"SPY": 0.5, "TLT": 0.5}}},
                           "risk": {"max_var": None}})
    cfg = load_config(shrunk, check_strategy=False)

    before = build_status_report(cfg)  # targets still the last cycle's (SPY, GLD)
    assert [h.symbol for h in before.holdings] == ["SPY"]
    assert before.holdings[0].drifted and before.holdings[0].weight > 0.99  # all of the universe
    assert [(o.symbol, o.note) for o in before.outside_universe] == \
        [("GLD", "outside the universe, untouched")]
    assert any("GLD" in n and "outside the universe" in n for n in before.notes)
    assert before.account is not None and before.universe_equity is not None
    gld = before.outside_universe[0]
    assert abs(before.universe_equity + gld.value - before.account.equity) < 0.05
    assert abs(gld.weight - gld.value / before.account.equity) < 1e-6

    second = run_cli_in_process("once", "--config", str(shrunk))
    assert second.returncode == 0, second.stderr
    events = json_lines(second.stdout)
    planned = next(e for e in events if e["event"] == "orders_planned")
    assert "SPY" in planned["drifted"] and "GLD" not in {o["symbol"] for o in planned["orders"]}
    assert next(e for e in events if e["event"] == "foreign_position_seen")["symbols"] == ["GLD"]

    after = build_status_report(cfg)
    rows = {h.symbol: h for h in after.holdings}
    assert set(rows) == {"SPY", "TLT"} and "GLD" not in rows
    assert [s for s, h in rows.items() if h.drifted] == []
    assert [o.symbol for o in after.outside_universe] == ["GLD"]
    _assert_the_planner_agrees(cfg, after, rows)
    text = run_cli_in_process("status", "--config", str(shrunk))
    assert text.returncode == 0, text.stderr
    assert "yes" not in _holdings_text(text.stdout)
    outside = text.stdout.split("outside the universe (")[1].split("open and unsent orders")[0]
    assert "GLD" in outside and "outside the universe, untouched" in outside
    as_json = json.loads(run_cli_in_process("status", "--json", "--config", str(shrunk)).stdout)
    assert [o["symbol"] for o in as_json["outside_universe"]] == ["GLD"]
    assert {h["symbol"] for h in as_json["holdings"]} == {"SPY", "TLT"}

    third = run_cli_in_process("once", "--config", str(shrunk))
    assert third.returncode == 0, third.stderr
    assert next(e for e in json_lines(third.stdout)
                if e["event"] == "orders_planned")["count"] == 0


def test_status_says_a_cycle_marked_running_without_a_process_died_mid_cycle(write_config):
    """After a ``kill -9`` the journal's last cycle stays ``running`` until the next start;
    status showed it running beside "daemon not running", with nothing to reconcile the two."""
    from bot.engine.journal import Journal

    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    cfg = load_config(config, check_strategy=False)
    journal = Journal(cfg.state_db)
    died = journal.start_cycle(None)  # the process died inside this cycle
    journal.close()
    text = run_cli_in_process("status", "--config", str(config)).stdout
    assert "daemon      not running" in text
    assert f"note: cycle {died} is still marked running but no process runs it" in text




def test_status_pnl_since_inception_keeps_an_older_journals_baseline_after_an_upgrade(
        write_config):
    """A state file written before the inception key (a journal with finished cycles and
    no key): the first cycle after the upgrade must keep the baseline status used, the
    oldest cycle's equity_before, not record its own equity (P&L since inception, MTD and
    YTD all read 0 after the upgrade)."""
    import sqlite3

    config = write_config({"sim": {"commission_min": 25.0}})
    first = _finished_cycle(run_cli_in_process("once", "--config", str(config)).stdout)
    cfg = load_config(config, check_strategy=False)
    with sqlite3.connect(cfg.state_db) as db:  # as the state file was before the key
        assert db.execute("DELETE FROM meta WHERE key = 'inception_equity'").rowcount == 1
    later = _finished_cycle(run_cli_in_process("once", "--config", str(config)).stdout)
    assert later["equity_before"] != first["equity_before"]  # the upgrade's cycle differs
    report = json.loads(run_cli_in_process("status", "--config", str(config), "--json").stdout)
    assert report["account"]["inception_equity"] == first["equity_before"] == 100_000.0

def test_status_says_the_sim_holdings_may_be_mid_cycle_while_a_cycle_runs(write_config):
    """A running daemon's cycle is part-way through its orders: the simulator's holdings are
    read as they stand and judged against the previous cycle's targets, which showed two
    cycles mixed with nothing to say so."""
    from bot.engine.instance_lock import InstanceLock
    from bot.engine.journal import Journal

    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    cfg = load_config(config, check_strategy=False)
    journal = Journal(cfg.state_db)
    running = journal.start_cycle(None)
    journal.close()
    with InstanceLock.acquire(cfg.bot.state_dir, "run", config):  # the daemon is alive
        text = run_cli_in_process("status", "--config", str(config)).stdout
    assert "daemon      running" in text
    assert f"note: cycle {running} is running: the holdings may be part-way" in text
    assert "judged against the previous cycle's targets" in " ".join(text.split())
    assert "no process runs it" not in text


def test_status_lists_unsent_orders_of_the_cycles_shown_only(write_config):
    """Each whole-share buy dropped for cash left an `unsent` row, and status listed up to
    50 of them, weeks old, under "open and unsent orders", where they read as pending. The
    unsent rows of the cycles status shows are listed; older ones are history (and are not
    read back: ``Journal.open_and_unsent_intents``). An order still open is listed
    whichever cycle sent it."""
    from bot.engine.journal import Journal
    from bot.engine.statuses import CycleStatus, IntentStatus
    from brokers.base import OrderSide

    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    cfg = load_config(config, check_strategy=False)
    journal = Journal(cfg.state_db)
    for n in range(12):  # an old cycle's dropped buy and open sell, then eleven more cycles
        cycle_id = journal.start_cycle(None)
        if n in (0, 11):
            cid = f"ab-{cycle_id}-DBC-b"
            journal.record_intents(cycle_id, [(cid, "DBC", OrderSide.BUY, 1.0, 20.0)])
            journal.set_status(cid, IntentStatus.UNSENT, "not enough cash after sells")
        if n == 0:
            journal.record_intents(cycle_id, [(f"ab-{cycle_id}-SPY-s", "SPY", OrderSide.SELL,
                                               2.0, 150.0)], status=IntentStatus.NEW)
        journal.finish_cycle(cycle_id, CycleStatus.FINISHED, {})
    journal.close()
    report = build_status_report(load_config(config, check_strategy=False))
    shown = {c.cycle_id for c in report.cycles}
    listed = [o for o in report.open_orders if o.status == "unsent"]
    assert len(listed) == 1 and listed[0].cycle_id in shown
    assert [(o.symbol, o.status, o.cycle_id in shown) for o in report.open_orders] == [
        ("SPY", "new", False), ("DBC", "unsent", True)]  # oldest first


def test_status_says_a_dry_run_cycle_sent_nothing(write_config):
    """A dry-run cycle read "finished  5  0" in status with no note, like five orders that
    failed to fill; after switching back to paper the operator could not tell."""
    config = write_config({"bot": {"mode": "dry_run"}})
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    report = build_status_report(load_config(config, check_strategy=False))
    [cycle] = report.cycles
    assert cycle.orders_planned and not cycle.orders_filled
    assert cycle.shown_note == "dry run: orders planned, not sent"


def test_status_says_an_excluded_holding_is_sold_by_the_next_cycle(write_config):
    """A held symbol added to [universe].exclude: status showed it at its old target with
    nothing to say the next cycle sells it (~58 % of the account in the trial)."""
    config = write_config()
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    excluded = write_config({"universe": {"symbols": ["SPY", "TLT", "IEF", "GLD", "DBC"],
                                          "exclude": ["TLT"]}}, name="excluded.toml")
    report = build_status_report(load_config(excluded, check_strategy=False))
    assert any(h.symbol == "TLT" and h.qty for h in report.holdings)
    assert any(n.startswith("TLT held but excluded ([universe].exclude): the next cycle "
                            "sells it") for n in report.notes)

def test_status_says_whose_targets_it_shows_when_another_strategy_computed_them(write_config):
    """Status shows the last cycle's targets under the current config's strategy name: after
    a switch (or beside another config on the same state dir) they were another strategy's,
    with nothing to say so."""
    config = write_config()  # fixed all_weather
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    quiet = run_cli_in_process("status", "--config", str(config)).stdout
    assert "the targets shown are the last cycle's" not in quiet
    switched = write_config({"strategy": {"name": "equal_weight", "params": {}}},
                            name="switched.toml")
    text = run_cli_in_process("status", "--config", str(switched)).stdout
    assert "from strategy 'fixed', not this config's 'equal_weight'" in text


def test_status_says_when_the_running_daemon_read_another_version_of_the_config(write_config):
    """A daemon holds the state dir's lock with the config it read; the operator then edits
    max_var and max_drawdown in the file. status showed the file's limits as if in force;
    it now says the daemon runs with the settings it read until restarted (and says
    nothing while the file is the one the daemon read)."""
    from bot.engine.instance_lock import InstanceLock

    config = write_config({"risk": {"max_var": 0.02}})
    assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    started = load_config(config, check_strategy=False)
    with InstanceLock.acquire(started.bot.state_dir, "run", started.source,
                              started.source_digest) as lock:
        same = build_status_report(load_config(config, check_strategy=False))
        assert same.daemon.alive and same.daemon.config_note is None
        config.write_text(config.read_text().replace("max_var = 0.02",
                                                     "max_var = 0.005\nmax_drawdown = 0.05"))
        text = run_cli_in_process("status", "--config", str(config))
        assert text.returncode == 0, text.stderr
        assert (f"the running daemon (pid {lock.holder.pid}" in text.stdout
                and "an earlier version of" in text.stdout
                and "until restarted" in text.stdout), text.stdout
        lines = text.stdout.splitlines()  # said beside the daemon, above the limits
        note = next(i for i, line in enumerate(lines) if "NOTE: the running daemon" in line)
        assert note == 2 and "0.50%" in "".join(lines[note + 1:])
    stopped = build_status_report(load_config(config, check_strategy=False))
    assert stopped.daemon.config_note is None  # stopped: nothing runs with other settings


def test_status_pnl_since_inception_counts_the_costs_of_a_cycle_that_died_after_filling(
        write_config):
    """The first cycle dies after two of its orders filled (a drill's SIGKILL); the next
    start books those fills and finishes a cycle. P&L since inception is measured from the
    equity before any order (the starting cash), not from that finished cycle's: the
    commission the first cycle paid is a loss since inception."""
    drill = write_config({"faults": {"enabled": True, "kill_at": "after_submit:2"},
                          "sim": {"commission_min": 25.0}}, name="drill.toml")
    killed = run_cli("once", "--config", str(drill))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    plain = write_config({"sim": {"commission_min": 25.0}}, name="plain.toml")
    proc = run_cli_in_process("once", "--config", str(plain))
    finished = [e for e in json_lines(proc.stdout) if e["event"] == "cycle_finished"]
    assert finished and finished[0]["equity_before"] < 100_000.0 - 25.0  # costs were paid
    report = json.loads(run_cli_in_process("status", "--config", str(plain), "--json").stdout)
    account = report["account"]
    assert account["inception_equity"] == 100_000.0
    assert account["pnl_since_inception"] == round(account["equity"] - 100_000.0, 2)


def _finished_cycle(stdout: str) -> dict:
    """The ``cycle_finished`` event of one ``once`` run's output."""
    return next(e for e in json_lines(stdout) if e["event"] == "cycle_finished")


def test_check_config_refuses_prices_the_stored_sim_account_cannot_continue_on(
        write_config, tmp_path):
    """A price file cut before the replay's day, or without a held symbol's column:
    `check-config` said OK, and the next `once` exited 2 (the simulator refuses to open
    the account). check-config now names both problems."""
    from bot.sample_market import SAMPLE_PRICES_PATH

    config = write_config()
    for _ in range(3):
        assert run_cli_in_process("once", "--config", str(config)).returncode == 0
    sample = pd.read_csv(SAMPLE_PRICES_PATH, index_col="date", parse_dates=True)
    cut = tmp_path / "cut.csv"
    sample.loc[:"2006-01-03"].drop(columns=["GLD"]).to_csv(cut)
    edited = write_config({"sim": {"prices": str(cut)},
                           "universe": {"symbols": ["SPY", "TLT", "IEF", "DBC"]}},
                          name="cut.toml")
    proc = run_cli_in_process("check-config", "--config", str(edited))
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())
    assert "is not in the price data" in text and "holds GLD but the price data" in text
    assert run_cli_in_process("once", "--config", str(edited)).returncode == 2
