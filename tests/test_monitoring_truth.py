"""Monitoring tells the truth: a bot that trades nothing is not "healthy", a failed alert is
not silenced for the rate-limit window, and a halt is not shown as armed on a skipped wake.

The figures come from real cycles (in-process ``allocbot run``), the journal they wrote, the
events they logged fed through the real tap/metrics, and alerts posted over HTTP to a local
receiver that refuses the first POST."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.config import load_config
from bot.engine.journal import Journal
from bot.engine.statuses import CycleStatus
from bot.monitoring.alerts import AlertKind, AlertRules, RateLimiter
from bot.monitoring.health import assess_health
from bot.monitoring.metrics import CycleMetrics
from bot.monitoring.observed import ObservedState
from bot.monitoring.page import render_page
from bot.monitoring.sender import AlertSender
from bot.monitoring.service import Monitor
from bot.monitoring.status_report import build_status_report
from bot.monitoring.tap import MonitoringTap
from brokers.base import Order, OrderSide, OrderStatus
from tests.conftest import json_lines, run_cli_in_process
from tests.monitoring_support import flaky_receiver

GUARD_BLOCKS_EVERY_PLAN = {"guards": {"max_orders_per_cycle": 2}}  # the first plan has 5 orders


def _tap() -> tuple[MonitoringTap, ObservedState, CycleMetrics]:
    state, metrics = ObservedState(), CycleMetrics(var_limit=0.05)
    return MonitoringTap(state, metrics, AlertRules(3), None), state, metrics


def _feed(tap: MonitoringTap, events: list[dict[str, Any]]) -> None:
    for event in events:
        tap(None, "info", dict(event))


def _wait(condition: Callable[[], bool], timeout_secs: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- A1: only a finished cycle, or a skip because the market was closed, is a success -----

def test_bot_whose_every_plan_a_guard_blocks_is_unhealthy_everywhere(write_config):
    config = write_config(GUARD_BLOCKS_EVERY_PLAN)
    proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", "3")
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stdout)
    ended = [e for e in events if e["event"] == "cycle_finished"]
    assert [(e["status"], e["reason"]) for e in ended] == [("skipped", "guard_blocked")] * 3
    cfg = load_config(config, check_strategy=False)

    health = run_cli_in_process("health", "--config", str(config))  # the Docker HEALTHCHECK
    assert health.returncode == 1
    assert health.stderr.startswith("no successful cycle yet; last 3 cycles skipped "
                                    "(guard_blocked)"), health.stderr
    assert build_status_report(cfg).last_success_at is None  # `status` and the page

    tap, state, metrics = _tap()  # the daemon's tap, fed what these cycles logged
    _feed(tap, events)
    assert state.last_success_at is None
    assert metrics.last_success._value.get() == 0  # never set: "no recent success" fires

    first = datetime.fromisoformat(next(e for e in events if e["event"] == "cycle_started")
                                   ["timestamp"].replace("Z", "+00:00"))
    monitor = Monitor(cfg, ObservedState(), CycleMetrics(var_limit=0.05), None,
                      started_at=first - timedelta(seconds=1))
    monitor.seed_from_journal()  # a restart reads the same rule from the journal
    assert monitor.state.last_success_at is None
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert [a.kind for a in monitor.periodic_alerts(later)] == [AlertKind.NO_RECENT_SUCCESS]


def test_each_skip_reason_judged_by_one_rule_in_health_status_metrics_and_seed(
        write_config, tmp_path):
    """A journaled skip, as ``cycle.run`` records it: market closed counts as a success;
    an order still open or a guard block does not, in every view."""
    verdicts = {}
    for reason in ("market_closed", "orders_still_open", "guard_blocked"):
        state_dir = tmp_path / reason
        state_dir.mkdir()
        cfg = load_config(write_config({"bot": {"state_dir": str(state_dir)},
                                        "schedule": {"interval_secs": 600}},
                                       name=f"{reason}.toml"), check_strategy=False)
        journal = Journal(cfg.state_db)
        cycle_id = journal.start_cycle(None)
        journal.finish_cycle(cycle_id, CycleStatus.SKIPPED, {"reason": reason,
                                                             "duration_ms": 3.0})
        journal.close()
        monitor = Monitor(cfg, ObservedState(), CycleMetrics(var_limit=0.05), None)
        monitor.seed_from_journal()
        tap, state, metrics = _tap()
        _feed(tap, [{"event": "cycle_started", "cycle_id": cycle_id},
                    {"event": "cycle_finished", "cycle_id": cycle_id, "status": "skipped",
                     "reason": reason, "duration_ms": 3.0}])
        assert monitor.metrics is not None
        verdicts[reason] = (assess_health(cfg).healthy,
                            build_status_report(cfg).last_success_at is not None,
                            monitor.state.last_success_at is not None,
                            monitor.metrics.last_success._value.get() > 0,
                            state.last_success_at is not None,
                            metrics.last_success._value.get() > 0)
    assert verdicts == {"market_closed": (True,) * 6, "orders_still_open": (False,) * 6,
                        "guard_blocked": (False,) * 6}


def test_a_success_behind_hundreds_of_halted_wakes_is_still_found_by_every_view(
        write_config, tmp_path):
    """A halt (or a failing venue) outlasting the views' windows: 600 halted wakes after
    the last finished cycle. `health` said "no successful cycle yet" (it scanned 500 rows)
    and a restart seeded the last-success gauge with 0 and cash/VaR/drift with NaN (it
    read 200): every view now finds the last success, and the last valuation, however
    far back; the status page's equity history stays one point a day."""
    cfg = load_config(write_config({"schedule": {"interval_secs": 600}}), check_strategy=False)
    journal = Journal(cfg.state_db)
    first = journal.start_cycle(date(2026, 3, 2))
    journal.finish_cycle(first, CycleStatus.FINISHED, {
        "equity_before": 100_000.0, "equity_after": 100_500.0, "cash_after": 1_234.5,
        "var": 0.012, "max_drift": 0.01, "orders_planned": 3, "duration_ms": 5.0})
    for _ in range(600):
        halted = journal.start_cycle(date(2026, 3, 3))
        journal.finish_cycle(halted, CycleStatus.HALTED, {"equity": 99_000.0,
                                                          "drawdown": 0.015})
    journal.close()
    verdict = assess_health(cfg)
    assert "no successful cycle yet" not in verdict.reason
    assert "last success at " in verdict.reason
    report = build_status_report(cfg)
    assert report.last_success_at is not None
    assert [(p.asof, p.equity) for p in report.equity_curve] == [
        ("2026-03-02", 100_500.0), ("2026-03-03", 99_000.0)]
    assert report.account is not None and report.account.equity == 99_000.0
    assert report.var == 0.012
    monitor = Monitor(cfg, ObservedState(), CycleMetrics(var_limit=0.05), None)
    monitor.seed_from_journal()
    assert monitor.metrics is not None
    assert monitor.metrics.last_success._value.get() == pytest.approx(
        datetime.fromisoformat(report.last_success_at).timestamp())
    assert (monitor.state.equity, monitor.state.cash, monitor.state.var) == (
        99_000.0, 1_234.5, 0.012)


# -- A3: the halt stands until something ends it --------------------------------------

def _skip_before_kill_switch(cycle_id: str, reason: str) -> list[dict[str, Any]]:
    """What ``cycle.run`` logs for a wake skipped before the drawdown check."""
    first = ({"event": "market_closed", "cycle_id": cycle_id, "now": "2026-03-07T15:00:00Z",
              "next_open": "2026-03-09T14:30:00Z"} if reason == "market_closed" else
             {"event": "orders_still_open", "cycle_id": cycle_id, "client_order_ids": ["x1"]})
    return [{"event": "cycle_started", "cycle_id": cycle_id}, first,
            {"event": "cycle_finished", "cycle_id": cycle_id, "status": "skipped",
             "asof": "2026-03-07", "reason": reason, "duration_ms": 2.0}]


def test_halted_gauge_and_flag_stay_on_through_skips_until_a_cycle_runs_unhalted(write_config):
    # 25 cycles, short waits: the sim replays a day a cycle however long the wake interval
    config = write_config({"sim": {"replay_start": "2011-08-01"},
                           "risk": {"max_drawdown": 0.01},
                           "schedule": {"interval_secs": 0.01}})
    proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", "25")
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stdout)
    assert any(e["event"] == "trading_halted" for e in events)
    cut = max(i for i, e in enumerate(events)  # up to the last halted cycle's end
              if e["event"] == "cycle_finished" and e["status"] == "halted")
    tap, state, metrics = _tap()
    _feed(tap, events[: cut + 1])
    assert (metrics.halted._value.get(), state.halted) == (1, True)

    _feed(tap, _skip_before_kill_switch("night", "market_closed"))
    _feed(tap, _skip_before_kill_switch("stuck", "orders_still_open"))
    assert (metrics.halted._value.get(), state.halted) == (1, True)  # still halted
    # the journal agrees: `health` and `status` still say halted
    cfg = load_config(config, check_strategy=False)
    assert build_status_report(cfg).halted_reason is not None
    assert not assess_health(cfg).healthy

    # what ends it: a cycle that got past the kill switch (after `allocbot rearm`)
    _feed(tap, [{"event": "cycle_started", "cycle_id": "armed"},
                {"event": "cycle_finished", "cycle_id": "armed", "status": "finished",
                 "equity_after": 99_000.0, "duration_ms": 5.0}])
    assert (metrics.halted._value.get(), state.halted) == (0, False)
    _feed(tap, [{"event": "trading_halted", "reason": "drawdown", "rearm": "allocbot rearm"},
                {"event": "trading_rearmed", "previous_halt": "drawdown"}])
    assert (metrics.halted._value.get(), state.halted) == (0, False)


# -- A2: a failed delivery does not use up the rate-limit window --------------------------



def _guard_alert() -> Any:
    alert = AlertRules(3).evaluate({"event": "guard_blocked", "guard": "max_orders_per_cycle",
                                    "limit": 2, "value": 5, "subject": "plan",
                                    "cycle_id": "c1"})
    assert alert is not None and alert.kind is AlertKind.GUARD_BLOCKED
    return alert


def _outcomes(sender: AlertSender) -> list[str]:
    return [r.outcome for r in sender.recent]


def test_next_alert_of_a_kind_is_delivered_after_a_failed_send_within_the_window():
    with flaky_receiver() as (url, accepted):
        sender = AlertSender([url], RateLimiter(3600), timeout_secs=5)  # a 1 h window
        sender.start()
        try:
            sender.offer(_guard_alert())
            _wait(lambda: "failed" in _outcomes(sender))
            sender.offer(_guard_alert())  # the next block, a cycle later
            _wait(lambda: len(accepted) == 1)
        finally:
            sender.close()
    assert _outcomes(sender) == ["failed", "sent"]
    assert accepted[0]["title"] == "allocbot: orders blocked by a guard"


def test_failed_alert_is_retried_after_the_delay_without_another_occurrence():
    with flaky_receiver() as (url, accepted):
        sender = AlertSender([url], RateLimiter(3600), timeout_secs=5,
                             retry_delays_secs=(0.05,))
        sender.start()
        try:
            sender.offer(_guard_alert())  # e.g. the one `trading_halted` of a daily cron
            _wait(lambda: len(accepted) == 1)
        finally:
            sender.close()
    assert _outcomes(sender) == ["failed", "sent"]


def test_failure_stays_on_the_page_after_a_burst_of_rate_limited_alerts(write_config):
    with flaky_receiver() as (url, accepted):
        sender = AlertSender([url], RateLimiter(3600), timeout_secs=5)
        sender.start()
        try:
            sender.offer(_guard_alert())
            _wait(lambda: "failed" in _outcomes(sender))
            sender.offer(_guard_alert())
            # the sender's own record of the delivery (the receiver can hold the POST a
            # moment before the sender books it "sent": the next offers raced it)
            _wait(lambda: len(accepted) == 1 and "sent" in _outcomes(sender))
            for _ in range(30):  # 30 more blocked cycles inside the hour
                sender.offer(_guard_alert())
        finally:
            sender.close()
    assert _outcomes(sender) == ["failed", "sent", "rate_limited"]
    assert sender.recent[-1].count == 30
    report = build_status_report(load_config(write_config(), check_strategy=False))
    page = render_page(report, list(sender.recent))
    alerts = page.split('id="alerts"')[1]
    assert "failed" in alerts and "rate_limited ×30" in alerts



# -- A4: a venue that refuses every order is not "ok" -------------------------------------

REFUSING_VENUE = {"faults": {"enabled": True, "reject_rate": 1.0}}  # every submit rejected


def test_health_says_orders_refused_once_failure_streak_cycles_had_every_order_rejected(
        write_config, tmp_path):
    """Real cycles on a venue rejecting every order: each one finishes, so health said "ok"
    while the bot traded nothing for as long as the account stayed restricted. After
    ``[alerts].failure_streak`` (3) such cycles it is not ok, naming the count and the
    venue's reason (exit 1); the first cycle whose orders fill makes it ok again."""
    schedule = {"schedule": {"interval_secs": 600}}
    refusing = write_config({**schedule, **REFUSING_VENUE}, name="refusing.toml")
    plain = write_config(schedule, name="plain.toml")
    cfg = load_config(refusing, check_strategy=False)
    verdicts = []
    for _ in range(3):
        once = run_cli_in_process("once", "--config", str(refusing))
        assert once.returncode == 0, once.stderr
        finished = next(e for e in json_lines(once.stdout) if e["event"] == "cycle_finished")
        assert finished["status"] == "finished"
        assert finished["orders_submitted"] == finished["orders_rejected"] > 0
        verdicts.append(assess_health(cfg))

    assert [v.healthy for v in verdicts] == [True, True, False]  # fewer than 3: still ok
    assert verdicts[1].reason.startswith("ok: last success at ")
    assert "; every order of the last 2 trading cycles was rejected" in verdicts[1].reason
    refused = ("orders refused: every order of the last 3 trading cycles was rejected "
               "(latest: ")
    assert verdicts[2].reason.startswith(refused), verdicts[2].reason
    assert "buy: injected fault: rejected by the venue)" in verdicts[2].reason
    assert "\n" not in verdicts[2].reason
    health = run_cli_in_process("health", "--config", str(refusing))  # the HEALTHCHECK
    assert health.returncode == 1 and health.stderr.startswith(refused), health.stderr

    once = run_cli_in_process("once", "--config", str(plain))  # the venue accepts again
    assert once.returncode == 0, once.stderr
    assert next(e for e in json_lines(once.stdout)
                if e["event"] == "cycle_finished")["orders_filled"] > 0
    health = run_cli_in_process("health", "--config", str(plain))
    assert health.returncode == 0, health.stderr
    assert health.stdout.startswith("ok: last success at") and "rejected" not in health.stdout


def _trading_cycle(journal: Journal, outcomes: list[tuple[str, OrderStatus, str | None]]
                   ) -> str:
    """A finished cycle that sent one buy per (symbol, venue status, reason), journaled as
    ``cycle.run`` and the execution journal them: intents, the venue's answers, the
    cycle's figures (an empty ``outcomes``: nothing drifted, no order)."""
    cycle_id = journal.start_cycle(None)
    cids = [f"ab-{cycle_id}-{symbol}-b" for symbol, _, _ in outcomes]
    journal.record_intents(cycle_id, [(cid, symbol, OrderSide.BUY, 10.0, 100.0)
                                      for cid, (symbol, _, _) in zip(cids, outcomes, strict=True)])
    for cid, (symbol, status, reason) in zip(cids, outcomes, strict=True):
        filled = {OrderStatus.FILLED: 10.0, OrderStatus.CANCELED: 4.0}.get(status, 0.0)
        journal.update_from_order(Order(f"v-{cid}", cid, symbol, OrderSide.BUY, status, 10.0,
                                        None, filled, 100.0 if filled else None, None, reason))
    statuses = [status for _, status, _ in outcomes]
    journal.finish_cycle(cycle_id, CycleStatus.FINISHED, {
        "orders_planned": len(outcomes), "orders_submitted": len(outcomes),
        "orders_filled": statuses.count(OrderStatus.FILLED),
        "orders_partially_filled": statuses.count(OrderStatus.CANCELED),
        "orders_rejected": statuses.count(OrderStatus.REJECTED),
        "orders_unfilled": 0, "duration_ms": 4.0})
    return cycle_id


def test_cycles_without_orders_between_refused_ones_do_not_reset_the_refusal_streak(
        write_config):
    """Refused, nothing to trade, a closed market, refused, nothing, refused: three trading
    cycles in a row had every order rejected (the quiet wakes between say nothing about the
    venue). A partial fill ends the streak; ``[alerts].failure_streak`` sets its length."""
    cfg = load_config(write_config({"schedule": {"interval_secs": 600}}), check_strategy=False)
    rejected = OrderStatus.REJECTED
    journal = Journal(cfg.state_db)
    _trading_cycle(journal, [("SPY", OrderStatus.FILLED, None)])
    _trading_cycle(journal, [("TLT", rejected, "account restricted"), ("SPY", rejected, None)])
    _trading_cycle(journal, [])
    closed = journal.start_cycle(None)
    journal.finish_cycle(closed, CycleStatus.SKIPPED, {"reason": "market_closed"})
    _trading_cycle(journal, [("GLD", rejected, "asset is not tradable")])
    _trading_cycle(journal, [])
    journal.close()
    two = assess_health(cfg)
    assert two.healthy, two.reason  # two refused trading cycles: fewer than 3
    assert "; every order of the last 2 trading cycles was rejected (latest: GLD buy: asset is "\
        "not tradable)" in two.reason

    journal = Journal(cfg.state_db)
    _trading_cycle(journal, [("IEF", rejected, "insufficient\nbuying power"),
                             ("SPY", rejected, None)])  # the last reason the journal holds
    _trading_cycle(journal, [])
    journal.close()
    three = assess_health(cfg)
    assert not three.healthy
    assert three.reason == ("orders refused: every order of the last 3 trading cycles was "
                            "rejected (latest: IEF buy: insufficient buying power) (no daemon "
                            "running)")
    stricter = load_config(write_config({"schedule": {"interval_secs": 600},
                                         "alerts": {"failure_streak": 4}}, name="four.toml"),
                           check_strategy=False)
    assert assess_health(stricter).healthy  # 3 of the 4 it takes

    journal = Journal(cfg.state_db)
    _trading_cycle(journal, [("SPY", OrderStatus.CANCELED, "partially filled, rest canceled"),
                             ("TLT", rejected, "account restricted")])
    journal.close()
    after = assess_health(cfg)
    assert after.healthy and after.reason.startswith("ok: last success at ")
    assert "rejected" not in after.reason, after.reason
