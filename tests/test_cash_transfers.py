"""Deposits and withdrawals against FakeAlpaca: real ``allocbot once`` cycles (in-process)
through alpaca-py over HTTP. A withdrawal is not a loss (the kill switch does not trip on
it, yet still trips on a real loss afterwards), a deposit is not a gain (status's P&L),
each transfer is applied once, and only on the cycle whose cash shows it: a listing ahead
of its cash, or behind it, never trips the switch."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, UNIVERSE, alpaca_config, recent_bars

from bot.core.risk import below_drawdown_limit, peak_after_transfers


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(bars=recent_bars(), cash=100_000.0, api_key=KEYS_ENV["APCA_API_KEY_ID"],
                    secret_key=KEYS_ENV["APCA_API_SECRET_KEY"], bars_page_size=500) as server:
        yield server
    assert server.errors == []


@pytest.fixture
def config(write_config: Any, fake: FakeAlpaca, tmp_path: Path) -> Path:
    """Half the account stays cash (so a withdrawal of 40 % leaves no negative cash), a
    20 % kill switch, no VaR limit; no data guard (a 50 % fall must reach the kill switch)."""
    path = alpaca_config(write_config, fake)
    text = path.read_text().replace("[risk]\nmax_var = 0.05", "[risk]\nmax_drawdown = 0.2")
    text = text.replace("[rebalance]\n", "[rebalance]\ncash_buffer = 0.5\n")
    text += "\n[guards]\nenabled = false\n"
    assert "max_drawdown = 0.2" in text and "cash_buffer = 0.5" in text
    path.write_text(text)
    return path


def once(config: Path) -> list[dict[str, Any]]:
    proc = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return json_lines(proc.stdout)


def finished(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "cycle_finished")


def applied(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "cash_transfers_applied"]


def status(config: Path) -> dict[str, Any]:
    proc = run_cli_in_process("status", "--config", str(config), "--json", env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_a_withdrawal_does_not_trip_the_kill_switch_but_a_later_loss_does(
        fake: FakeAlpaca, config: Path) -> None:
    first = once(config)
    assert finished(first)["status"] == "finished" and not applied(first)
    assert fake.orders_created(), "the first cycle invests half the account"
    equity = float(fake._account_json()["equity"])
    fake.transfer(-0.4 * equity)  # 40 % out: beyond the 20 % kill switch, were it a loss

    second = once(config)
    assert finished(second)["status"] == "finished"
    assert not [e for e in second if e["event"] == "trading_halted"]
    [event] = applied(second)
    assert event["net_cash"] == pytest.approx(-0.4 * equity, abs=0.01)
    assert event["peak_equity_after"] == pytest.approx(0.6 * event["peak_equity_before"], rel=1e-6)
    assert [t["kind"] for t in event["transfers"]] == ["CSW"]
    assert status(config)["account"]["drawdown"] == pytest.approx(0.0, abs=1e-6)

    third = once(config)  # the same transfer is not applied again
    assert finished(third)["status"] == "finished" and not applied(third)

    for sym in UNIVERSE:  # a real 50 % fall of the invested half: a 25 % loss
        fake.bars.loc[fake.bars.index[-1], sym] *= 0.5
    fourth = once(config)
    assert finished(fourth)["status"] == "halted", [e for e in fourth if e.get("level") != "debug"]
    [halt] = [e for e in fourth if e["event"] == "trading_halted"]
    assert "exceeds max_drawdown 20.00%" in halt["reason"]


def test_a_deposit_is_not_profit_and_a_transfer_before_the_first_cycle_is_not_applied(
        fake: FakeAlpaca, config: Path) -> None:
    fake.transfer(5_000.0)  # already in the account when the bot first looks
    first = once(config)
    assert finished(first)["status"] == "finished" and not applied(first)
    inception = status(config)["account"]["inception_equity"]
    assert inception == pytest.approx(105_000.0)

    fake.transfer(50_000.0)
    second = once(config)
    [event] = applied(second)
    assert event["net_cash"] == 50_000.0 and event["transfers"][0]["kind"] == "CSD"
    account = status(config)["account"]
    assert account["equity"] == pytest.approx(155_000.0, abs=1.0)
    assert account["pnl_since_inception"] == pytest.approx(0.0, abs=1.0)  # not +50,000
    assert account["pnl_mtd"] == pytest.approx(0.0, abs=1.0)
    assert account["net_transfers"] == pytest.approx(50_000.0)


def test_a_garbled_transfer_fails_the_cycle_naming_the_field_and_sends_nothing(
        fake: FakeAlpaca, config: Path) -> None:
    once(config)
    sent = len(fake.order_posts())
    fake.activities.append({"id": "20260101::x", "activity_type": "CSD", "date": "2026-12-01",
                            "net_amount": "NaN"})
    fake.positions["SPY"] = (fake.positions["SPY"][0] * 2, fake.positions["SPY"][1])  # drift
    events = once(config)
    [failed] = [e for e in events if e["event"] == "cycle_failed"]
    assert "net_amount" in failed["error"] and "20260101::x" in failed["error"]
    assert len(fake.order_posts()) == sent


def test_a_deposit_listed_before_its_cash_waits_for_the_cash(fake: FakeAlpaca,
                                                               config: Path) -> None:
    once(config)
    fake.transfer(50_000.0, move_cash=False)  # listed; the cash is not in the account yet
    listed = once(config)
    assert finished(listed)["status"] == "finished" and not applied(listed)
    assert status(config)["account"]["drawdown"] == pytest.approx(0.0, abs=1e-6)
    fake.cash += 50_000  # the money lands
    landed = once(config)
    [event] = applied(landed)
    assert event["net_cash"] == 50_000.0
    assert finished(landed)["status"] == "finished"
    account = status(config)["account"]
    assert account["drawdown"] == pytest.approx(0.0, abs=1e-4)
    assert account["pnl_since_inception"] == pytest.approx(0.0, abs=1.0)
    assert not applied(once(config))


def test_a_withdrawal_listed_before_its_cash_leaves_never_trips(fake: FakeAlpaca,
                                                                config: Path) -> None:
    once(config)
    equity = float(fake._account_json()["equity"])
    fake.transfer(-0.45 * equity, move_cash=False)
    assert finished(once(config))["status"] == "finished"
    fake.cash -= fake.cash.__class__(str(round(0.45 * equity, 2)))  # the money leaves
    left = once(config)
    assert finished(left)["status"] == "finished", [e["event"] for e in left]
    assert [e["net_cash"] for e in applied(left)] == [pytest.approx(-0.45 * equity, abs=0.01)]
    assert finished(once(config))["status"] == "finished"


def test_cash_that_lands_before_its_listing_is_not_counted_twice(fake: FakeAlpaca,
                                                                 config: Path) -> None:
    """The cash first (a gain to the drawdown, as before the bot read transfers), the
    listing a cycle later: not applied then (the cash did not move in that interval), so
    the peak is not raised twice and nothing trips."""
    once(config)
    fake.cash += 50_000
    assert finished(once(config))["status"] == "finished"
    fake.transfer(50_000.0, move_cash=False)
    later = once(config)
    assert finished(later)["status"] == "finished" and not applied(later)
    assert status(config)["account"]["drawdown"] == pytest.approx(0.0, abs=1e-4)


def test_a_cycle_that_applies_a_deposit_and_then_values_nothing_leaves_status_right(
        fake: FakeAlpaca, config: Path) -> None:
    """A cycle that applied a deposit and then stopped before valuing the account (here
    a data guard blocks a bad print) recorded no equity: status's equity is the cycle's
    before, so the deposit is neither netted out of its P&L nor a drawdown against the
    rescaled peak."""
    config.write_text(config.read_text().replace("enabled = false", "enabled = true"))
    once(config)
    fake.transfer(50_000.0)
    last, spy = fake.bars.index[-1], fake.bars.loc[fake.bars.index[-1], "SPY"]
    fake.bars.loc[last, "SPY"] = spy * 3  # a bad print: the guards block the cycle
    events = once(config)
    assert applied(events) and finished(events)["reason"] == "guard_blocked"
    account = status(config)["account"]
    assert account["pnl_since_inception"] == pytest.approx(0.0, abs=1.0)
    assert account["drawdown"] == pytest.approx(0.0, abs=1e-4)
    fake.bars.loc[last, "SPY"] = spy
    assert finished(once(config))["status"] == "finished"
    assert status(config)["account"]["pnl_since_inception"] == pytest.approx(0.0, abs=1.0)


def test_a_withdrawal_booked_while_the_bot_was_down_for_weeks_is_applied(
        fake: FakeAlpaca, config: Path) -> None:
    import sqlite3
    from datetime import date, timedelta

    once(config)
    db = next(config.parent.glob("state/*.sqlite"))
    down_since = (date.today() - timedelta(days=25)).isoformat()
    with sqlite3.connect(db) as conn:  # the last read was 25 days ago
        conn.execute("UPDATE meta SET value = json_set(value, '$.checked_through', ?) "
                     "WHERE key = 'cash_transfers'", (down_since,))
    equity = float(fake._account_json()["equity"])
    fake.transfer(-0.4 * equity, on=date.today() - timedelta(days=20))
    events = once(config)
    assert finished(events)["status"] == "finished"
    assert [e["net_cash"] for e in applied(events)] == [pytest.approx(-0.4 * equity, abs=0.01)]


def test_a_deposit_the_venue_reverses_is_taken_back_when_its_cash_goes(
        fake: FakeAlpaca, config: Path) -> None:
    once(config)
    activity = fake.transfer(60_000.0)
    assert [e["net_cash"] for e in applied(once(config))] == [60_000.0]
    [row] = [a for a in fake.activities if a["id"] == activity]
    row["status"] = "canceled"
    fake.cash -= 60_000  # the deposit bounced
    events = once(config)
    assert finished(events)["status"] == "finished"
    assert [e["net_cash"] for e in applied(events)] == [-60_000.0]
    assert status(config)["account"]["pnl_since_inception"] == pytest.approx(0.0, abs=1.0)


@pytest.mark.parametrize("move", [1.0, 1.025, 0.97], ids=["flat", "up-2.5%", "down-3%"])
def test_selling_shares_and_withdrawing_the_proceeds_between_two_cycles_never_trips(
        fake: FakeAlpaca, config: Path, move: float) -> None:
    """The usual way to take money out of an invested account: sell at the venue (not a
    bot order, so no fill is journaled), then withdraw. The cash barely moves, yet the
    shares that left say where the money went, though not at what price: the prices
    move before the bot's next read."""
    from decimal import Decimal

    once(config)
    proceeds = Decimal(0)
    for sym, (qty, avg) in list(fake.positions.items()):
        sold = (qty * Decimal("0.9")).quantize(Decimal("0.000000001"))
        proceeds += sold * Decimal(str(fake.last_close(sym)))
        fake.positions[sym] = (qty - sold, avg)
    fake.cash += proceeds
    fake.transfer(-float(proceeds))
    fake.bars.iloc[-1] *= move
    events = once(config)
    assert finished(events)["status"] == "finished", [e["event"] for e in events]
    assert [e["net_cash"] for e in applied(events)] == [pytest.approx(-float(proceeds), abs=0.01)]


def test_a_start_after_a_cycle_that_applied_a_deposit_and_valued_nothing_warns_nothing(
        fake: FakeAlpaca, config: Path) -> None:
    config.write_text(config.read_text().replace("enabled = false", "enabled = true"))
    once(config)
    fake.transfer(60_000.0)
    last, spy = fake.bars.index[-1], fake.bars.loc[fake.bars.index[-1], "SPY"]
    fake.bars.loc[last, "SPY"] = spy * 3  # a bad print: the guards block that cycle
    assert applied(once(config))
    fake.bars.loc[last, "SPY"] = spy
    events = once(config)
    assert not [e for e in events if e["event"] == "drawdown_beyond_limit_at_start"]
    assert finished(events)["status"] == "finished"


def test_outside_cash_nets_out_the_bots_fills_and_the_owners_trades() -> None:
    from bot.engine.cash_transfers import outside_cash
    from bot.engine.statuses import TransferRecord

    then = TransferRecord("2026-11-02", cash=1_000.0, positions={"SPY": [100.0, 500.0]},
                          fills_cash=-20_000.0, fills_qty={"SPY": 40.0}, transfers=())
    # since: the bot bought 10 SPY at 510 (fills journaled: -5,100 cash, +10 shares), the
    # owner sold 50 SPY at 512 (+25,600, no fill), 30,000 were withdrawn, a 12.5 dividend
    cash = 1_000.0 - 5_100.0 + 25_600.0 - 30_000.0 + 12.5
    outside, owner = outside_cash(then, cash, {"SPY": [60.0, 512.0]}, -25_100.0, {"SPY": 50.0})
    assert outside == pytest.approx(-30_000.0 + 12.5) and owner == pytest.approx(50 * 512.0)
    # the owner sold all 110 shares at 512: with none left, they are valued at the
    # checkpoint's price (500), so the figure is off by their move since (110 × 12)
    sold_out, _ = outside_cash(then, cash + 60 * 512.0, {}, -25_100.0, {"SPY": 50.0})
    assert sold_out == pytest.approx(-30_000.0 + 12.5 + 110 * (512.0 - 500.0))


def test_the_transfers_whose_money_moved_are_picked_among_several_pending() -> None:
    from bot.engine.cash_transfers import _landed_now, landed
    from bot.engine.statuses import SeenTransfer

    def pending(id_: str, amount: float) -> SeenTransfer:
        return SeenTransfer(id_, "2026-11-02", amount, "CSW", "pending", "2026-11-02")

    three = [pending("a", -10_000.0), pending("b", -10_000.0), pending("c", -5_000.0)]
    assert {t.id for t in _landed_now(three, -20_030.0, 100_000.0)} == {"a", "b"}
    assert {t.id for t in _landed_now(three, -5_010.0, 100_000.0)} == {"c"}
    assert _landed_now(three, -1_000.0, 100_000.0) == []
    assert not landed(600.0, 1_000.0, 100_000.0)  # a dividend is not a pending deposit
    assert not landed(0.0, 1_000.0, 100_000.0)
    # the owner sold 45,000 of shares whose price moved 2.5 % before the read: their unknown
    # sale price widens the noise (1,125 off, 4 % of the shares' value)
    assert not landed(-45_000.0 + 1_125.0, -45_000.0, 55_000.0)
    assert landed(-45_000.0 + 1_125.0, -45_000.0, 55_000.0, owner_traded=45_000.0)


def test_a_fault_drill_on_alpaca_still_reads_transfers(fake: FakeAlpaca, write_config: Any,
                                                       config: Path) -> None:
    text = config.read_text() + "\n[faults]\nenabled = true\n"
    config.write_text(text)
    once(config)
    fake.transfer(-30_000.0)
    assert [e["net_cash"] for e in applied(once(config))] == [-30_000.0]


@pytest.mark.parametrize(("peak", "equity", "net", "expected"), [
    (100.0, 45.0, -45.0, 50.0),  # 10 % down, then half withdrawn: still 10 % down
    (100.0, 180.0, 90.0, 200.0),  # 10 % down, then the equity deposited: still 10 % down
    (0.0, 50.0, 50.0, 0.0),  # no peak recorded yet: nothing to rescale
    (100.0, 50.0, 50.0, 50.0),  # nothing was left before the deposit: a new start
    (100.0, -5.0, -100.0, 0.0),  # a margin account below zero: never a negative peak
])
def test_the_peak_keeps_the_drawdown_across_a_transfer(peak: float, equity: float, net: float,
                                                       expected: float) -> None:
    after = peak_after_transfers(peak, equity, net)
    assert after == pytest.approx(expected)
    if peak > 0 and equity - net > 0 and equity > 0:
        assert 1 - equity / after == pytest.approx(1 - (equity - net) / peak)
        assert not below_drawdown_limit(np.float64(equity), after, 0.2)


def test_the_daily_summary_nets_out_a_deposit_across_a_restart(write_config: Any) -> None:
    """A deposit between two daily summaries is not P&L, once a cycle has valued the
    account with it; the daemon that sends the next summary may be a new process, which
    takes the transfers applied so far from the journal and the previous summary's
    figures from the state dir."""
    from datetime import UTC, datetime, timedelta

    from bot.config import load_config
    from bot.engine.journal import Journal
    from bot.engine.statuses import TRANSFERS_KEY
    from bot.monitoring.service import start_monitoring
    from bot.monitoring.tap import MonitoringTap
    from tests.conftest import _process_state_restored

    cfg = load_config(write_config({"alerts": {"daily_summary_at": "16:30", "watchdog": False,
                                               "urls": ["json://127.0.0.1:9/unused"]}}))
    after = datetime(2026, 3, 2, 21, 45, tzinfo=UTC)  # 16:45 New York
    Journal(cfg.state_db).close()

    def transfer(id_: str, amount: float, day: str) -> dict[str, Any]:
        return {"id": id_, "on": day, "amount": amount, "kind": "CSD", "state": "applied",
                "seen_asof": day, "applied_at": f"{day}T15:00:00+00:00"}

    with _process_state_restored():
        monitor = start_monitoring(cfg, io.StringIO())
        assert monitor is not None
        monitor.seed_from_journal()
        tap = MonitoringTap(monitor.state, None, None, None)  # the cycles' events, as logged
        tap(None, "info", {"event": "cycle_finished", "status": "finished", "equity_after": 1000.0})
        [first] = monitor.periodic_alerts(after)
        tap(None, "info", {"event": "cash_transfers_applied", "net_cash": 500.0})
        tap(None, "info", {"event": "cycle_failed", "error": "BrokerTransientError: down"})
        [unvalued] = monitor.periodic_alerts(after + timedelta(days=1))  # equity still 1000
        tap(None, "info", {"event": "cycle_finished", "status": "finished", "equity_after": 1520.0})
        [second] = monitor.periodic_alerts(after + timedelta(days=2))
        monitor.close()
        journal = Journal(cfg.state_db)  # what those cycles journaled, then a restart
        journal.set_meta_json(TRANSFERS_KEY, {
            "checked_through": "2026-03-05", "cash": 0.0, "positions": {}, "fills_cash": 0.0,
            "fills_qty": {},
            "transfers": [transfer("a", 500.0, "2026-03-03"), transfer("b", -300.0, "2026-03-05")]})
        journal.close()
        restarted = start_monitoring(cfg, io.StringIO())
        assert restarted is not None
        restarted.seed_from_journal()
        restarted.state.equity = 1230.0
        [third] = restarted.periodic_alerts(after + timedelta(days=3))
        restarted.close()
    assert first.body.split("\n")[1] == "P&L: n/a (first)"
    assert unvalued.body.split("\n")[1] == "P&L: +0.00 since the last summary"
    assert second.body.split("\n")[1] == ("P&L: +20.00 since the last summary (net of +500.00 "
                                          "deposited or withdrawn)")
    assert third.body.split("\n")[1] == ("P&L: +10.00 since the last summary (net of -300.00 "
                                         "deposited or withdrawn)")


def test_a_hand_edited_transfer_record_fails_the_cycle_by_name_and_its_delete_recovers(
        fake: FakeAlpaca, config: Path) -> None:
    import sqlite3

    once(config)
    db = next(config.parent.glob("state/*.sqlite"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE meta SET value = ? WHERE key = 'cash_transfers'",
                            ('{"checked_through": "2026-12-01"}',)).rowcount == 1
    sent = len(fake.order_posts())
    [failed] = [e for e in once(config) if e["event"] == "cycle_failed"]
    assert "meta key 'cash_transfers' is not a record of cash transfers" in failed["error"]
    assert len(fake.order_posts()) == sent
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'cash_transfers'")
    assert finished(once(config))["status"] == "finished"


def test_a_summary_with_no_previous_equity_claims_no_netting(write_config: Any) -> None:
    """After a summary that had no equity, the next has no P&L figure: its line must not
    say the (absent) figure is net of the money moved since."""
    from datetime import UTC, datetime, timedelta

    from bot.config import load_config
    from bot.monitoring.observed import ObservedState
    from bot.monitoring.service import Monitor
    from bot.monitoring.tap import MonitoringTap

    cfg = load_config(write_config({"alerts": {"daily_summary_at": "16:30", "watchdog": False}}))
    monitor = Monitor(cfg, ObservedState(), None, None)
    after = datetime(2026, 3, 2, 21, 45, tzinfo=UTC)
    [first] = monitor.periodic_alerts(after)  # no cycle has valued the account
    tap = MonitoringTap(monitor.state, None, None, None)
    tap(None, "info", {"event": "cash_transfers_applied", "net_cash": 500.0})
    tap(None, "info", {"event": "cycle_finished", "status": "finished", "equity_after": 1500.0})
    [second] = monitor.periodic_alerts(after + timedelta(days=1))
    assert first.body.split("\n")[1] == "P&L: n/a"
    assert second.body.split("\n")[1] == "P&L: n/a (the last summary had no equity)"
