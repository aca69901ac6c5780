"""Monitoring counts every order's outcome once, whatever the log level and whichever path
books it: the cycle that sent it, or the next cycle's reconciliation after that cycle failed
on a flaky venue (a rejection found so is alerted too).

Real cycles in-process, composed as the daemon composes them (``start_monitoring`` before
``open_runtime``, ``broker.on_wake`` then ``cycle.run``), on the simulator behind the
``[faults]`` injector; the counters are read from the daemon's own registry and compared with
the journal the cycles wrote."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from bot.config import load_config
from bot.engine import cycle
from bot.engine.journal import Journal
from bot.engine.runtime import open_runtime
from bot.engine.statuses import IntentStatus
from bot.monitoring.service import start_monitoring
from tests.conftest import _process_state_restored, json_lines, run_cli_in_process
from tests.monitoring_support import AlertReceiver, late_listing_prices, samples

# the journal's states of an order the venue answered, and those it has no answer for yet
_NO_ANSWER = {IntentStatus.INTENT, IntentStatus.UNSENT, IntentStatus.DRY_RUN}
_OUTCOME_OF = {IntentStatus.FILLED: "filled", IntentStatus.REJECTED: "rejected"}
FLAKY_VENUE = {"enabled": True, "seed": 8, "transient_rate": 0.02, "rate_limit_rate": 0.01,
               "timeout_rate": 0.03, "reject_rate": 0.2, "partial_fill_rate": 0.05}


def _run_monitored(write_config: Any, receiver: AlertReceiver, cycles: int,
                   faults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``cycles`` daemon cycles at ``[bot] log_level = "warning"`` with metrics and alerts
    (every alert delivered: no rate limit) → the scrape, the written lines, the alerts
    received and the journal's intents."""
    config = write_config({
        "bot": {"log_level": "warning"},
        "rebalance": {"drift_abs": 0.01, "drift_rel": 0.05},  # orders on most cycles
        "monitoring": {"metrics_port": 0},
        "alerts": {"urls": [receiver.url], "rate_limit_secs": 0, "failure_streak": 1000,
                   "watchdog": False},
        **({"faults": faults} if faults else {}),
    })
    cfg = load_config(config)
    stream = io.StringIO()
    with _process_state_restored():
        monitor = start_monitoring(cfg, stream)
        assert monitor is not None and monitor.metrics is not None
        runtime = open_runtime(cfg)
        try:
            for _ in range(cycles):
                runtime.broker.on_wake()
                cycle.run(runtime.context)
        finally:
            runtime.close()
            monitor.close()  # delivers the queued alerts
    from prometheus_client import generate_latest

    scrape = samples(generate_latest(monitor.metrics.registry).decode())
    journal = Journal.open_read_only(cfg.state_db)
    try:
        intents = journal.intents()
    finally:
        journal.close()
    return {"scrape": scrape, "lines": json_lines(stream.getvalue()), "intents": intents,
            "alerts": list(receiver.bodies)}


def _orders(scrape: dict[str, float], status: str) -> float:
    return scrape.get(f'allocbot_orders_total{{status="{status}"}}', 0.0)


def test_orders_counted_at_log_level_warning_as_the_journal_books_them(write_config):
    """The quiet daemon writes no order_submitted/order_filled line, and its order counters
    still say what it traded."""
    with AlertReceiver() as receiver:
        seen = _run_monitored(write_config, receiver, cycles=3)
    intents = seen["intents"]
    filled = sum(i.status is IntentStatus.FILLED for i in intents)
    assert filled >= 5  # the first cycle buys the whole target
    assert _orders(seen["scrape"], "submitted") == len(intents)
    assert _orders(seen["scrape"], "filled") == filled
    written = {line["event"] for line in seen["lines"]}
    assert not written & {"order_submitted", "order_filled", "cycle_finished"}  # still quiet


def test_each_order_outcome_counted_once_whichever_path_books_it_and_rejections_alerted(
        write_config):
    """A flaky venue fails cycles after it answered (a transient error on the next call, a
    submit whose answer is lost): the next cycle's reconciliation books those orders. Every
    final outcome in the journal is counted exactly once, every order the venue answered is
    counted submitted once, and every rejection is an order_rejected line and alert."""
    with AlertReceiver() as receiver:
        seen = _run_monitored(write_config, receiver, cycles=40, faults=FLAKY_VENUE)
    intents, scrape, lines = seen["intents"], seen["scrape"], seen["lines"]
    open_now = {i.client_order_id for i in intents if i.status in (
        IntentStatus.INTENT, IntentStatus.NEW, IntentStatus.ACCEPTED,
        IntentStatus.PARTIALLY_FILLED)}
    final = Counter(_OUTCOME_OF.get(i.status, "partially_filled" if i.filled_qty > 0
                                    else "unfilled")
                    for i in intents if i.client_order_id not in open_now
                    and i.status not in _NO_ANSWER)
    assert final["filled"] > 10 and final["rejected"] >= 3  # the venue was flaky indeed
    assert Counter(e["event"] for e in lines)["cycle_failed"] >= 10

    # every rejection is one order_rejected line and one alert, also those the next cycle's
    # reconciliation booked (the cycle that sent them failed first)
    rejected_lines = [e for e in lines if e["event"] == "order_rejected"]
    assert len(rejected_lines) == final["rejected"]
    assert len({e["client_order_id"] for e in rejected_lines}) == final["rejected"]
    assert any(e["logger"] == "allocbot.reconcile" for e in rejected_lines)
    titles = Counter(str(body.get("title")) for body in seen["alerts"])
    assert titles["allocbot: order rejected"] == final["rejected"]

    # the counters: each final outcome once, each order the venue answered submitted once
    for status in ("filled", "rejected", "partially_filled", "unfilled"):
        assert _orders(scrape, status) == final[status], status
    answered = sum(i.status not in _NO_ANSWER for i in intents)
    assert _orders(scrape, "submitted") == answered


# -- A6: the end of a failure streak is announced, and a streak survives a restart ----------

def _late_listing_config(tmp_path: Any, write_config: Any, failure_streak: int) -> Any:
    """TLT lists in 2006-08: inverse volatility holds (cannot compute, a failure to the
    alerts) on the four sessions from 2006-10-24 and finishes from 2006-10-30 on."""
    prices = late_listing_prices(tmp_path / "late.csv")
    return write_config({
        "sim": {"prices": str(prices), "replay_start": "2006-10-24"},
        "universe": {"symbols": ["SPY", "TLT"]},
        "strategy": {"name": "inverse_volatility", "params": {"lookback_days": 60}},
        "risk": {"lookback_days": 60},
        "alerts": {"failure_streak": failure_streak, "rate_limit_secs": 0, "watchdog": False},
    })


def _run(config: Any, receiver: AlertReceiver, cycles: int) -> list[str]:
    """``allocbot run --max-cycles`` in-process → the cycles' statuses."""
    proc = run_cli_in_process("run", "--config", str(config), "--max-cycles", str(cycles),
                              env={"ALLOCBOT_ALERT_URLS": receiver.url})
    assert proc.returncode == 0, proc.stderr
    return [e["status"] for e in json_lines(proc.stdout) if e["event"] == "cycle_finished"]


def _titles(receiver: AlertReceiver) -> list[str]:
    return [str(body.get("title")).removeprefix("allocbot: ") for body in receiver.bodies]


def test_recovery_announced_once_when_a_cycle_succeeds_after_a_failure_streak_alert(
        tmp_path, write_config):
    config = _late_listing_config(tmp_path, write_config, failure_streak=2)
    with AlertReceiver() as receiver:
        statuses = _run(config, receiver, cycles=6)
    assert statuses == ["held"] * 4 + ["finished"] * 2
    assert _titles(receiver) == ["2 cycles failed in a row", "4 cycles failed in a row",
                                 "cycles succeed again"]
    recovered = receiver.bodies[-1]
    assert recovered["type"] == "success"
    assert "cycle finished after 4 failed in a row" in recovered["message"]


def test_failure_streak_split_by_restarts_alerts_and_its_end_is_announced(
        tmp_path, write_config):
    """2 held cycles, a restart, a third: the streak of 3 alerts (it started from zero in
    each process); a restart, a fourth held cycle and then a finished one: the recovery."""
    config = _late_listing_config(tmp_path, write_config, failure_streak=3)
    with AlertReceiver() as receiver:
        assert _run(config, receiver, cycles=2) == ["held", "held"]
        assert _titles(receiver) == []
        assert _run(config, receiver, cycles=1) == ["held"]
        assert _titles(receiver) == ["3 cycles failed in a row"]
        assert _run(config, receiver, cycles=2) == ["held", "finished"]
    assert _titles(receiver) == ["3 cycles failed in a row", "cycles succeed again"]
