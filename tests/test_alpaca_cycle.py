"""``allocbot once`` end to end against FakeAlpaca: the real CLI (in-process; a subprocess
where it is SIGKILLed), config ``[broker] kind = "alpaca"`` pointing at the local server, keys
in the environment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca

API_KEY = "PKCYCLEKEY0123456789"
SECRET_KEY = "CycleSecretKey0123456789abcdefghijklmnop"
KEYS_ENV = {"APCA_API_KEY_ID": API_KEY, "APCA_API_SECRET_KEY": SECRET_KEY}
UNIVERSE = ["SPY", "TLT", "IEF", "GLD", "DBC"]


def recent_bars(days: int = 400, seed: int = 11) -> pd.DataFrame:
    """Random-walk closes on business days ending today (New York), as the cycle asks for
    history up to the clock's date."""
    today = datetime.now(ZoneInfo("America/New_York")).date()
    index = pd.bdate_range(end=pd.Timestamp(today), periods=days, name="date")
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.008, (days, len(UNIVERSE))), axis=0))
    return pd.DataFrame(closes.round(4), index=index, columns=UNIVERSE)


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    bars = recent_bars()
    spy_qty = float(np.floor(80_000 / bars["SPY"].iloc[-1]))  # 80% in SPY: must sell first
    with FakeAlpaca(
        bars=bars,
        cash=20_000.0,
        positions={"SPY": (spy_qty, 90.0)},
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        bars_page_size=500,
        fill_polls=2,
    ) as server:
        server.assets["DBC"] = (True, False)  # whole shares only
        yield server
    assert server.errors == []


def alpaca_config(write_config: Any, fake: FakeAlpaca, faults: dict[str, Any] | None = None,
                  **alpaca: Any) -> Path:
    return write_config(
        {
            **({"faults": faults} if faults else {}),
            "broker": {"kind": "alpaca", "order_wait_secs": 3},
            "alpaca": {
                "base_url": fake.url,
                "data_url": fake.url,
                "http_timeout_secs": 2.0,
                "retry_budget_secs": 10.0,
                # the same retries, shorter sleeps between them (0.25 s doubling by default)
                "retry_backoff_secs": 0.02,
                "retry_backoff_max_secs": 0.2,
                # the same polls of an order, 5 ms apart (FakeAlpaca fills on its Nth poll,
                # whatever the time between): a test that waits out a stuck order's
                # order_wait_secs passes a longer interval, for fewer polls
                "poll_interval_secs": 0.005,
                **alpaca,
            },
            "universe": {"symbols": UNIVERSE},
        }
    )


def posted_orders(fake: FakeAlpaca) -> list[dict[str, Any]]:
    return [r.body for r in fake.order_posts()]


def scan_for_keys(*texts: str | bytes) -> list[str]:
    found = []
    for text in texts:
        blob = text if isinstance(text, bytes) else text.encode()
        found += [k for k in (API_KEY, SECRET_KEY) if k.encode() in blob]
    return found


def test_once_alpaca_rebalances_with_sells_before_buys(fake: FakeAlpaca, write_config: Any) -> None:
    proc = run_cli_in_process("once", "--config", str(alpaca_config(write_config, fake)),
                              env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = json_lines(proc.stdout)
    finished = [e for e in events if e["event"] == "cycle_finished"]
    assert finished and finished[0]["status"] == "finished"
    posts = posted_orders(fake)
    sides = [p["side"] for p in posts]
    assert "sell" in sides and "buy" in sides
    assert sides == sorted(sides, key=lambda s: s != "sell")  # every sell before any buy
    cids = [p["client_order_id"] for p in posts]
    assert len(cids) == len(set(cids))
    dbc = [p for p in posts if p["symbol"] == "DBC"]
    assert dbc and float(dbc[0]["qty"]).is_integer()
    assert all(o.status == "filled" for o in fake.orders_created())
    weights = {s: float(q) * fake.last_close(s) for s, (q, _) in fake.positions.items()}
    total = sum(weights.values()) + float(fake.cash)
    assert weights["TLT"] / total == pytest.approx(0.40, abs=0.02)
    assert weights["SPY"] / total == pytest.approx(0.30, abs=0.02)


@pytest.mark.parametrize(
    ("mode", "account_number", "flag"),
    [("live", "PA3EXAMPLE01", ["--live"]), ("paper", "3AB123456", [])],
    ids=["live-config-on-paper-account", "paper-config-on-live-account"],
)
def test_once_alpaca_account_not_matching_mode_refuses_to_trade(
    fake: FakeAlpaca, write_config: Any, mode: str, account_number: str, flag: list[str]
) -> None:
    fake.account_number = account_number
    config = alpaca_config(write_config, fake)
    text = config.read_text().replace('mode = "paper"', f'mode = "{mode}"')
    config.write_text(text)
    proc = run_cli_in_process("once", "--config", str(config), *flag, env=KEYS_ENV)
    assert proc.returncode == 2
    assert "paper" in proc.stderr and account_number not in proc.stderr  # masked
    assert fake.order_posts() == []


def test_dry_run_rehearses_on_the_live_account_then_the_same_state_goes_live(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    """``mode = "dry_run"`` with ``[alpaca].account = "live"``: every step on the live
    account's holdings, the orders journaled as dry-run intents and none sent (no POST, no
    cancel); then ``mode = "live"`` with ``--live`` on the same state dir trades them."""
    fake.account_number = "3AB123456"  # a live account (paper ones start with PA)
    config = alpaca_config(write_config, fake, account="live")
    config.write_text(config.read_text().replace('mode = "paper"', 'mode = "dry_run"'))
    rehearsal = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert rehearsal.returncode == 0, rehearsal.stderr[-2000:]
    events = json_lines(rehearsal.stdout)
    started = [e for e in events if e["event"] == "dry_run_on_live_account"]
    assert started and "3AB123456" not in rehearsal.stdout  # the number masked
    planned = [e for e in events if e["event"] == "order_intended"]
    assert {e["symbol"] for e in planned} >= {"SPY", "TLT"}  # sell SPY, buy the rest
    assert [e["count"] for e in events if e["event"] == "orders_not_sent"] == [len(planned)]
    assert fake.order_posts() == [] and fake.logged("DELETE") == []
    db = sqlite3.connect(tmp_path / "state" / "allocbot.sqlite")
    statuses = {row[0] for row in db.execute("SELECT status FROM intents")}
    db.close()
    assert statuses == {"dry_run"}

    config.write_text(config.read_text().replace('mode = "dry_run"', 'mode = "live"')
                      .replace('account = "live"\n', ""))
    live = run_cli_in_process("once", "--config", str(config), "--live", env=KEYS_ENV)
    assert live.returncode == 0, live.stderr[-2000:]
    assert {p["symbol"] for p in posted_orders(fake)} >= {"SPY", "TLT"}


@pytest.mark.parametrize(("account_number", "key", "said"), [
    ("3AB123456", None, 'to rehearse on the live account set [alpaca].account = "live"'),
    ("PA3EXAMPLE01", "live", '[alpaca].account = "live" asks for the live account'),
    ("3AB123456", "paper", '[alpaca].account = "paper" asks for the paper account'),
], ids=["live-account-no-key", "key-live-paper-keys", "key-paper-live-keys"])
def test_dry_run_reaching_the_other_account_says_how_the_account_key_chooses(
    fake: FakeAlpaca, write_config: Any, account_number: str, key: str | None, said: str
) -> None:
    fake.account_number = account_number
    config = alpaca_config(write_config, fake, **({"account": key} if key else {}))
    config.write_text(config.read_text().replace('mode = "paper"', 'mode = "dry_run"'))
    proc = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert proc.returncode == 2
    error = " ".join(e["error"] for e in json_lines(proc.stderr) if "error" in e)
    assert said in error and account_number not in proc.stderr
    assert "change [bot] mode" not in error  # the mode is right; the key or keys are not
    assert fake.order_posts() == []


@pytest.mark.parametrize("fills_at_once", [False, True], ids=["lands-open", "lands-and-fills"])
def test_a_submit_landing_after_it_was_marked_unsent_is_booked_and_blocks_trading(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path, fills_at_once: bool
) -> None:
    """A process died with a sell's POST in flight; the next start found no such order and
    marked the intent unsent; then the POST arrived. The next cycle books that order
    (``order_found_late``): open, it blocks trading; filled between two cycles, it is
    found by id. It used to stay ``unsent`` while the venue traded it, and the bot bought
    the shares back."""
    from bot.engine.journal import Journal
    from brokers.base import OrderSide

    config = alpaca_config(write_config, fake)
    assert run_cli_in_process("once", "--config", str(config), env=KEYS_ENV).returncode == 0
    state = tmp_path / "state" / "allocbot.sqlite"
    journal = Journal(state)  # the dying process: its cycle journaled this intent, then died
    cid = f"ab-{journal.start_cycle(None)}-IEF-s"
    journal.record_intents(cid.split("-")[1], [(cid, "IEF", OrderSide.SELL, 5.0, 100.0)])
    journal.close()
    restart = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert restart.returncode == 0, restart.stderr[-2000:]
    assert [(e["client_order_id"], e["action"]) for e in json_lines(restart.stdout)
            if e["event"] == "order_reconciled"] == [(cid, "mark_unsent")]

    fake.stuck_symbols.add("IEF")
    fake.fill_polls = 0 if fills_at_once else fake.fill_polls
    landed, _ = fake.handle("POST", "/v2/orders", {}, {  # the POST in flight arrives
        "symbol": "IEF", "qty": "5", "side": "sell", "type": "market", "time_in_force": "day",
        "client_order_id": cid})
    assert landed == 200
    posts = len(fake.order_posts())
    after = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert after.returncode == 0, after.stderr[-2000:]
    events = json_lines(after.stdout)
    found = [e for e in events if e["event"] == "order_found_late"]
    assert [(e["client_order_id"], e["status"]) for e in found] == [
        (cid, "filled" if fills_at_once else "accepted")]
    db = sqlite3.connect(state)
    [(status, filled)] = db.execute("SELECT status, filled_qty FROM intents WHERE "
                                    "client_order_id = ?", (cid,)).fetchall()
    db.close()
    assert (status, filled) == (("filled", 5.0) if fills_at_once else ("accepted", 0.0))
    finished = [e for e in events if e["event"] == "cycle_finished"]
    if not fills_at_once:  # still working at the venue: nothing traded on top of it
        assert finished[0]["reason"] == "orders_still_open"
        assert len(fake.order_posts()) == posts


def test_once_alpaca_live_mode_without_confirmation_refuses_before_any_request(
    fake: FakeAlpaca, write_config: Any
) -> None:
    fake.account_number = "3AB123456"  # a live account
    config = alpaca_config(write_config, fake)
    config.write_text(config.read_text().replace('mode = "paper"', 'mode = "live"'))
    proc = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    assert proc.returncode == 2
    assert "--live" in proc.stderr
    assert fake.requests == []


def test_once_alpaca_market_closed_skips_without_orders(
    fake: FakeAlpaca, write_config: Any
) -> None:
    fake.is_open = False
    proc = run_cli_in_process("once", "--config", str(alpaca_config(write_config, fake)),
                              env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(e["event"] == "market_closed" for e in json_lines(proc.stdout))
    assert fake.order_posts() == []


def test_wakes_on_a_closed_market_are_one_journal_row_that_status_counts(
    fake: FakeAlpaca, write_config: Any
) -> None:
    """An interval schedule wakes all night: the journal keeps one row for the closed
    stretch (it used to keep one per wake: ~1,000 a day at 60 s), and status says how
    many wakes it stands for."""
    fake.is_open = False
    config = alpaca_config(write_config, fake)
    for _ in range(3):
        proc = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
        assert proc.returncode == 0, proc.stderr[-2000:]
    status = run_cli_in_process("status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    cycles = json.loads(status.stdout)["cycles"]
    assert [(c["status"], c["note"], c["wakes"]) for c in cycles] == [
        ("skipped", "market_closed", 3)]
    text = run_cli_in_process("status", "--config", str(config)).stdout
    assert "market_closed ×3 wakes" in text


@pytest.mark.parametrize(
    "seed", [3, pytest.param(6, marks=pytest.mark.slow), pytest.param(7, marks=pytest.mark.slow)]
)
def test_once_alpaca_flaky_server_rebalances_or_fails_cleanly_never_duplicates(
    fake: FakeAlpaca, write_config: Any, seed: int
) -> None:
    fake.fail_randomly(0.12, seed=seed)  # 500/429/502, half of them after the server acted
    config = alpaca_config(write_config, fake, retry_budget_secs=5.0, http_timeout_secs=1.0)
    proc = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    # a startup failure is its one line on stderr; the cycle's events are on stdout
    stderr_events = "\n".join(ln for ln in proc.stderr.splitlines() if ln.startswith("{"))
    events = [e["event"] for e in json_lines(proc.stdout) + json_lines(stderr_events)]
    if proc.returncode == 0:
        assert "cycle_finished" in events
    else:
        assert proc.returncode == 1 and ({"cycle_failed", "startup_failed"} & set(events))
    created = fake.orders_created()
    per_symbol_side = [(o.symbol, o.side) for o in created]
    assert len(per_symbol_side) == len(set(per_symbol_side))  # never a second order
    assert "Traceback" not in proc.stderr


def test_once_alpaca_data_outage_fails_cycle_cleanly_without_orders(
    fake: FakeAlpaca, write_config: Any
) -> None:
    fake.fail_next(1000, 503, path_prefix="/v2/stocks/bars")
    config = alpaca_config(write_config, fake, retry_budget_secs=0.3)
    proc = run_cli_in_process("once", "--config", str(config), env=KEYS_ENV)
    failed = [e for e in json_lines(proc.stdout) if e["event"] == "cycle_failed"]
    assert proc.returncode == 1
    assert failed and "BrokerTransientError" in failed[0]["error"]
    assert fake.order_posts() == []


def test_once_alpaca_second_run_sends_no_duplicate_order(
    fake: FakeAlpaca, write_config: Any
) -> None:
    config = str(alpaca_config(write_config, fake))
    assert run_cli_in_process("once", "--config", config, env=KEYS_ENV).returncode == 0
    first = len(fake.orders_created())
    proc = run_cli_in_process("once", "--config", config, env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cids = [p["client_order_id"] for p in posted_orders(fake)]
    assert len(cids) == len(set(cids))
    assert len(fake.orders_created()) == first  # rebalanced already: nothing more to do


def test_once_alpaca_after_restoring_a_backup_reuses_no_client_order_id(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    """The README's restore (stop, copy the backup over the state file, start): the
    restored journal's cycle numbers repeat those sent after the backup. Cycle ids once
    repeated with them, and Alpaca's older order under a reused id was booked as the new
    order's fill (a sale of 273 shares for one of 91): the account missed its targets.
    Every client_order_id is now new, and the account reaches the last targets."""
    def weights(spy: float, tlt: float, gld: float) -> Path:
        return write_config({
            "strategy": {"name": "fixed", "params": {"weights": {
                "SPY": spy, "TLT": tlt, "GLD": gld}}},
            "rebalance": {"drift_abs": 0.01},
            "broker": {"kind": "alpaca", "order_wait_secs": 3},
            "alpaca": {"base_url": fake.url, "data_url": fake.url, "http_timeout_secs": 2.0,
                       "retry_budget_secs": 10.0, "retry_backoff_secs": 0.02,
                       "retry_backoff_max_secs": 0.2, "poll_interval_secs": 0.005},
            "universe": {"symbols": UNIVERSE}})

    state = tmp_path / "state" / "allocbot.sqlite"
    backup = tmp_path / "backup.sqlite"
    first = run_cli_in_process("once", "--config", str(weights(0.5, 0.5, 0.0)), env=KEYS_ENV)
    assert first.returncode == 0, first.stderr[-2000:]
    made = run_cli_in_process("state", "backup", "--config", str(weights(0.5, 0.5, 0.0)),
                              str(backup))
    assert made.returncode == 0, made.stderr[-2000:]
    second = run_cli_in_process("once", "--config", str(weights(0.2, 0.8, 0.0)), env=KEYS_ENV)
    assert second.returncode == 0, second.stderr[-2000:]
    for suffix in ("", "-wal", "-shm"):  # stop, copy the backup over the state file
        state.with_name(state.name + suffix).unlink(missing_ok=True)
    shutil.copy(backup, state)
    third = run_cli_in_process("once", "--config", str(weights(0.1, 0.6, 0.3)), env=KEYS_ENV)
    assert third.returncode == 0, third.stderr[-2000:]
    cids = [p["client_order_id"] for p in posted_orders(fake)]
    assert len(cids) == len(set(cids)) > 4
    assert not [e for e in json_lines(third.stdout) if e["event"] == "order_duplicate_found"]
    db = sqlite3.connect(state)
    overfilled = db.execute("SELECT client_order_id FROM intents WHERE filled_qty > qty + 1e-9"
                            ).fetchall()
    db.close()
    assert overfilled == []
    held = {s: float(q) * fake.last_close(s) for s, (q, _) in fake.positions.items()}
    total = float(fake.cash) + sum(held.values())
    assert held["GLD"] / total == pytest.approx(0.3, abs=0.011)
    assert held["SPY"] / total == pytest.approx(0.1, abs=0.011)


def test_once_alpaca_our_working_order_unknown_to_the_journal_blocks_trading(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    """An order of ours still working at the venue but not in this journal (sent from a
    state file since replaced: a restored backup, a new state dir) was logged and then
    traded on top of: the same DBC buy twice, 17 % against 8.5 %. Now no cycle trades
    while it works (orders_still_open names it)."""
    from test_alpaca_adapter import make_broker

    from brokers.base import OrderRequest, OrderSide

    fake.stuck_symbols.add("DBC")  # it keeps working
    earlier = "ab-0123ab000001-DBC-b"
    venue = make_broker(fake, tmp_path / "venue-cache", api_key=API_KEY, secret_key=SECRET_KEY)
    venue.submit_order(OrderRequest("DBC", OrderSide.BUY, earlier, qty=10))
    proc = run_cli_in_process("once", "--config", str(alpaca_config(write_config, fake)),
                              env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = json_lines(proc.stdout)
    [skipped] = [e for e in events if e["event"] == "orders_still_open"]
    assert skipped["client_order_ids"] == [earlier]
    assert [p["client_order_id"] for p in posted_orders(fake)] == [earlier]  # nothing more
    fake.stuck_symbols.clear()
    for order in fake.orders_created():  # the venue executes it; then trading goes on
        fake._advance(order, force_all=True)
    again = run_cli_in_process("once", "--config", str(alpaca_config(write_config, fake)),
                               env=KEYS_ENV)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(posted_orders(fake)) > 1


def test_status_after_alpaca_cycle_shows_targets_and_no_made_up_holdings(
    fake: FakeAlpaca, write_config: Any
) -> None:
    """status makes no API call, so Alpaca holdings are unknown to it: it once showed
    qty 0 and a drift of −target for every symbol right after a correct rebalance."""
    config = str(alpaca_config(write_config, fake))
    assert run_cli_in_process("once", "--config", config, env=KEYS_ENV).returncode == 0
    report = json.loads(run_cli_in_process("status", "--config", config, "--json").stdout)
    rows = {h["symbol"]: h for h in report["holdings"]}
    assert rows and all(h["qty"] is None and h["drift"] is None and h["drifted"] is None
                        for h in rows.values())  # unknown, not "within its band"
    assert rows["SPY"]["target"] > 0
    text = run_cli_in_process("status", "--config", config).stdout
    spy = next(line for line in text.splitlines() if line.strip().startswith("SPY"))
    assert "0.0000" not in spy and "-" in spy


def _day_cap_config(write_config: Any, fake: FakeAlpaca, retry_budget_secs: float) -> str:
    """Alpaca at ``fake`` with quick retries and [guards] max_turnover_per_day = 1.5 (one
    full rebalance from cash and a half)."""
    return str(write_config({
        "broker": {"kind": "alpaca", "order_wait_secs": 3},
        "alpaca": {"base_url": fake.url, "data_url": fake.url, "http_timeout_secs": 2.0,
                   "retry_budget_secs": retry_budget_secs, "retry_backoff_secs": 0.02,
                   "retry_backoff_max_secs": 0.05, "poll_interval_secs": 0.005},
        "universe": {"symbols": UNIVERSE}, "guards": {"max_turnover_per_day": 1.5}}))


def _recovered_venue_trades_unblocked(fake: FakeAlpaca, config: str) -> None:
    """Once the venue answers again, the same day's next cycle trades, no guard blocking."""
    fake.clear_faults()
    proc = run_cli_in_process("once", "--config", config, env=KEYS_ENV)
    events = json_lines(proc.stdout)
    assert not [e for e in events if e["event"] == "guard_blocked"]
    [done] = [e for e in events if e["event"] == "cycle_finished"]
    assert done["status"] == "finished" and done["orders_filled"] > 0


def test_once_alpaca_refused_orders_spend_none_of_the_day_turnover_cap(
    fake: FakeAlpaca, write_config: Any
) -> None:
    """Orders the venue refused counted toward [guards] max_turnover_per_day: after a few
    cycles of refusals nothing had traded, yet the bot stayed blocked for the rest of the
    day once the venue recovered. The day's count is now what traded."""
    fake.fail_next(100, 403, path_prefix="/v2/orders", method="POST")  # every order refused
    config = _day_cap_config(write_config, fake, retry_budget_secs=10.0)
    for _ in range(2):
        proc = run_cli_in_process("once", "--config", config, env=KEYS_ENV)
        [done] = [e for e in json_lines(proc.stdout) if e["event"] == "cycle_finished"]
        assert done["status"] == "finished" and done["orders_rejected"] > 0
        assert done["turnover"] == 0.0  # nothing traded
    assert fake.orders_created() == []
    _recovered_venue_trades_unblocked(fake, config)


def test_once_alpaca_cycles_failed_while_sending_spend_none_of_the_day_turnover_cap(
    fake: FakeAlpaca, write_config: Any
) -> None:
    """A cycle that failed while sending (the venue answered 429 until the retry budget ran
    out: refused unprocessed) kept its whole plan counted toward [guards]
    max_turnover_per_day: after two such cycles the bot stayed blocked for the rest of the
    day once the venue recovered. The day's turnover is now read from the journal's
    intents, and the next start's reconciliation finds those orders never reached the
    venue (unsent): they count nothing. (A 5xx may have been carried out: such a submit
    waits for the venue, ``..._lost_answer_then_refusals_...`` below.)"""
    fake.fail_next(1000, 429, path_prefix="/v2/orders", method="POST")
    config = _day_cap_config(write_config, fake, retry_budget_secs=0.3)
    for _ in range(2):
        proc = run_cli_in_process("once", "--config", config, env=KEYS_ENV)
        events = json_lines(proc.stdout)
        assert [e["event"] for e in events if e["event"] == "cycle_failed"] == ["cycle_failed"]
        assert fake.order_posts()  # the failure hit the sending path
    assert fake.orders_created() == []
    _recovered_venue_trades_unblocked(fake, config)


def test_once_alpaca_keys_absent_from_output_and_state(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    fake.fail_next(3, 502, html=True)
    fake.fail_next(
        1, 403, path_prefix="/v2/orders", method="POST"
    )  # a rejection travels into the journal
    proc = run_cli_in_process("once", "--config", str(alpaca_config(write_config, fake)),
                              env=KEYS_ENV)
    state_files = [p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert state_files
    assert scan_for_keys(proc.stdout, proc.stderr, *state_files) == []


def _kill_once_after_its_first_order(fake: FakeAlpaca, paused: Path) -> None:
    """Run ``once`` as a process with ``paused`` (a config pausing after each submit) and
    SIGKILL it once its first order reached the venue."""
    proc = subprocess.Popen([sys.executable, "-m", "bot", "once", "--config", str(paused)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                            env={**os.environ, **KEYS_ENV})
    try:
        deadline = time.monotonic() + 60
        while not fake.order_posts() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert len(fake.order_posts()) == 1, "the first run should be paused after one order"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_once_alpaca_killed_after_first_order_restart_sends_no_order_twice(
    fake: FakeAlpaca, write_config: Any
) -> None:
    fake.fill_polls = 1  # the killed run's order fills when the restart looks it up
    paused = alpaca_config(write_config, fake, faults={"enabled": True,
                                                       "pause_after_submit_secs": 5.0})
    _kill_once_after_its_first_order(fake, paused)
    restart = run_cli_in_process("once", "--config", str(alpaca_config(write_config, fake)),
                                 env=KEYS_ENV)
    assert restart.returncode == 0, restart.stderr[-2000:]
    events = json_lines(restart.stdout)
    assert any(e["event"] == "cycles_interrupted" for e in events)
    created = [(o.symbol, o.side) for o in fake.orders_created()]
    assert len(created) == len(set(created)) > 1  # the killed run's order was not resent
    cids = [p["client_order_id"] for p in posted_orders(fake)]
    assert len(cids) == len(set(cids))


def test_data_fetch_writes_sample_shaped_csv_from_alpaca(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    out = tmp_path / "closes.csv"
    bars = fake.bars
    start, end = bars.index[-30].date(), bars.index[-10].date()
    proc = run_cli_in_process(
        "data",
        "fetch",
        "--config",
        str(alpaca_config(write_config, fake)),
        "--symbols",
        "SPY,TLT",
        "--start",
        str(start),
        "--end",
        str(end),
        "--out",
        str(out),
        env=KEYS_ENV,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = pd.read_csv(out, parse_dates=["date"], index_col="date")
    assert list(written.columns) == ["SPY", "TLT"]
    expected = bars.loc[str(start) : str(end), ["SPY", "TLT"]]
    assert written.to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-6)
    assert scan_for_keys(proc.stdout, proc.stderr) == []


def test_once_alpaca_submit_that_timed_out_blocks_trading_until_known_never_sent_twice(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    """A submit whose every attempt timed out may still reach the venue: the next cycle's
    single 404 lookup called it "never sent" and the cycle sold the same SPY again (a
    duplicate order once the first arrived). Now it stays open (order_answer_pending) and
    no cycle trades until the venue shows it or the recheck window passes; then trading
    resumes with one order per symbol and side."""
    fake.hang_next(50, 2.0, path_prefix="/v2/orders", method="POST")
    config = str(alpaca_config(write_config, fake, http_timeout_secs=0.3,
                               retry_budget_secs=0.5))
    first = json_lines(run_cli_in_process("once", "--config", config, env=KEYS_ENV).stdout)
    [failed] = [e for e in first if e["event"] == "cycle_failed"]
    assert "SubmitOutcomeUnknownError" in failed["error"]
    state = tmp_path / "state" / "allocbot.sqlite"
    with sqlite3.connect(state) as db:  # the one whose submit went out unanswered
        [(hung,)] = db.execute("SELECT client_order_id FROM intents WHERE status = 'intent' "
                               "AND reason IS NOT NULL").fetchall()
    fake.clear_faults()
    posts = len(fake.order_posts())

    second = json_lines(run_cli_in_process("once", "--config", config, env=KEYS_ENV).stdout)
    [pending] = [e for e in second if e["event"] == "order_answer_pending"]
    assert pending["client_order_id"] == hung
    [done] = [e for e in second if e["event"] == "cycle_finished"]
    assert done["status"] == "skipped" and done["reason"] == "orders_still_open"
    assert len(fake.order_posts()) == posts  # nothing sent on top of it

    # the recheck window over (the submit never arrived): it counts as never sent
    with sqlite3.connect(state) as db:
        db.execute("UPDATE intents SET updated_at = '2000-01-01T00:00:00+00:00' "
                   "WHERE client_order_id = ?", (hung,))
    third = json_lines(run_cli_in_process("once", "--config", config, env=KEYS_ENV).stdout)
    assert [e["action"] for e in third if e["event"] == "order_reconciled"] == ["mark_unsent"]
    [done] = [e for e in third if e["event"] == "cycle_finished"]
    assert done["status"] == "finished" and done["orders_filled"] > 0
    created = [(o.symbol, o.side) for o in fake.orders_created()]
    assert len(created) == len(set(created))  # one order per symbol and side


def test_once_alpaca_order_left_working_by_a_killed_run_is_canceled_past_the_wait(
    fake: FakeAlpaca, write_config: Any
) -> None:
    """A run killed while its first order worked (a stuck SPY sell): the sender would have
    canceled it after order_wait_secs, but every later cycle only said orders_still_open,
    until the day order expired at the close. Past the wait it is canceled; the next cycle
    books the cancel and trades."""
    fake.stuck_symbols.add("SPY")
    paused = alpaca_config(write_config, fake, faults={"enabled": True,
                                                       "pause_after_submit_secs": 5.0})
    _kill_once_after_its_first_order(fake, paused)
    config = str(write_config({"broker": {"kind": "alpaca", "order_wait_secs": 0.5},
                               "alpaca": {"base_url": fake.url, "data_url": fake.url,
                                          "poll_interval_secs": 0.02},
                               "universe": {"symbols": UNIVERSE}}, name="short_wait.toml"))
    time.sleep(0.6)  # the stuck order is now past the wait
    second = json_lines(run_cli_in_process("once", "--config", config, env=KEYS_ENV).stdout)
    [canceled] = [e for e in second if e["event"] == "order_canceled_past_wait"]
    assert canceled["symbol"] == "SPY" and canceled["side"] == "sell"
    [done] = [e for e in second if e["event"] == "cycle_finished"]
    assert done["reason"] == "orders_still_open"
    fake.stuck_symbols.clear()
    third = json_lines(run_cli_in_process("once", "--config", config, env=KEYS_ENV).stdout)
    [done] = [e for e in third if e["event"] == "cycle_finished"]
    assert done["status"] == "finished" and done["orders_filled"] > 0
    assert fake.orders_created()[0].status == "canceled"


@pytest.mark.parametrize("then", [429, 500])
def test_once_alpaca_lost_answer_then_refusals_waits_for_the_order_never_sells_twice(
    fake: FakeAlpaca, write_config: Any, then: int
) -> None:
    """The first attempt is carried out and its answer lost; the retries are answered 429
    (or 500) until the budget is spent. The last answer said nothing of the first attempt,
    yet the mark was cleared, and the next cycle, not seeing the order yet, sold the same
    SPY again. The submit's outcome is unknown: the next cycle waits for the order."""
    fake.lose_response_next(1)
    fake.fail_next(50, then, path_prefix="/v2/orders", method="POST")
    config = str(alpaca_config(write_config, fake, retry_budget_secs=0.3))
    first = json_lines(run_cli_in_process("once", "--config", config, env=KEYS_ENV).stdout)
    [failed] = [e for e in first if e["event"] == "cycle_failed"]
    assert "SubmitOutcomeUnknownError" in failed["error"]
    fake.clear_faults()
    [attempted] = {p["client_order_id"] for p in posted_orders(fake)}
    # the venue does not show it yet (the lag in which a second sell went out)
    fake.answer_next("/v2/orders:by_client_order_id",
                     {"code": 40410000, "message": "order not found"}, status=404)
    second = json_lines(run_cli_in_process("once", "--config", config, env=KEYS_ENV).stdout)
    [pending] = [e for e in second if e["event"] == "order_answer_pending"]
    assert pending["client_order_id"] == attempted
    [done] = [e for e in second if e["event"] == "cycle_finished"]
    assert done["reason"] == "orders_still_open"
    created = [(o.symbol, o.side) for o in fake.orders_created()]
    assert len(created) == len(set(created)) == 1  # the one carried out, never a second
