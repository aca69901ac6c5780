"""AlpacaBroker edge cases found by an operator trial (report h7, items 2, 6 and 8): real
alpaca-py over real HTTP against FakeAlpaca, with the venue's odd answers injected through
the fake's own hooks (``lose_response_next``, ``answer_next``, ``fail_next``).

* A 422 "client_order_id must be unique" proves the venue holds the order: when its lookup
  misses (404), the order's state is unknown — never booked as rejected.
* An order of another kind in the account (alpaca-py's multi-leg shape: no top-level symbol
  or side, ``legs`` inside) is not ours and must not crash listing or reconciliation.
* A venue message that echoes the keys is redacted before it reaches an Order or an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fake_alpaca import FakeAlpaca, FakeOrder
from fake_alpaca_shapes import order_json
from test_alpaca_adapter import API_KEY, SECRET_KEY, buy, make_bars, make_broker

from bot.core.rebalance import PlannedOrder, RebalancePolicy
from bot.engine.execution import ExecutionSettings, client_order_id, execute_plan
from bot.engine.journal import Journal
from bot.engine.reconcile import reconcile
from bot.engine.statuses import IntentStatus
from brokers.alpaca.broker import AlpacaBroker
from brokers.base import OrderSide, OrderStatus
from brokers.errors import BrokerConfigError, BrokerDataError, BrokerTransientError
from tests.conftest import capture_logs

NOT_FOUND = {"code": 40410000, "message": "order not found"}
PREFIX = "ab"


@pytest.fixture
def venue() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(bars=make_bars(), cash=10_000.0, positions={"TLT": (20, 90.0)},
                    api_key=API_KEY, secret_key=SECRET_KEY) as server:
        yield server
    assert server.errors == []


@pytest.fixture
def alpaca(venue: FakeAlpaca, tmp_path: Path) -> Iterator[AlpacaBroker]:
    broker = make_broker(venue, tmp_path / "cache")
    yield broker
    broker.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    books = Journal(tmp_path / "journal.db")
    yield books
    books.close()


# ---------------------------------------------------------------- A: 422 duplicate, lookup 404


def test_lost_response_then_lookup_miss_raises_transient_naming_the_id(
    venue: FakeAlpaca, alpaca: AlpacaBroker
) -> None:
    """Report item 2: the lookup's 404 was read as "no such order" and the order came back
    REJECTED (a final state, never reconciled) while it filled at the venue."""
    venue.lose_response_next()  # the venue creates the order; the answer never arrives
    venue.answer_next("/v2/orders:by_client_order_id", NOT_FOUND, status=404)
    with capture_logs() as logs, pytest.raises(BrokerTransientError, match="c-unknown") as caught:
        alpaca.submit_order(buy("SPY", "c-unknown", qty=1))
    assert "state is unknown" in str(caught.value)
    assert caught.value.__context__ is None  # no SDK frames (request headers) attached
    events = [e["event"] for e in logs]
    assert "order_state_unknown" in events
    assert "order_refused" not in events and "order_rejected" not in events
    assert [r.status for r in venue.order_posts()] == [0, 422]  # never a third send
    created = venue.orders_created()
    assert [o.client_order_id for o in created] == ["c-unknown"]
    later = alpaca.get_order_by_client_id("c-unknown")  # the venue shows it now
    assert later is not None and later.id == created[0].id
    assert later.status is OrderStatus.FILLED and later.filled_qty == 1.0


def test_lookup_miss_after_a_duplicate_is_never_read_as_no_such_order(
    venue: FakeAlpaca, alpaca: AlpacaBroker
) -> None:
    """Alpaca said the id exists: a second 404 (the next reconciliation in this process)
    must not let the journal mark the order unsent either."""
    venue.lose_response_next()
    venue.answer_next("/v2/orders:by_client_order_id", NOT_FOUND, status=404, count=2)
    with pytest.raises(BrokerTransientError):
        alpaca.submit_order(buy("SPY", "c-slow", qty=1))
    alpaca.on_wake()
    with pytest.raises(BrokerTransientError, match=r"c-slow.*404.*state is unknown"):
        alpaca.get_order_by_client_id("c-slow")
    found = alpaca.get_order_by_client_id("c-slow")
    assert found is not None and found.client_order_id == "c-slow"
    assert alpaca.get_order_by_client_id("c-never-sent") is None  # a plain 404 stays None


def test_cycle_with_lookup_miss_fails_and_next_reconciliation_books_the_fill(
    venue: FakeAlpaca, alpaca: AlpacaBroker, journal: Journal
) -> None:
    """The engine's side: the error stops the batch with the intent still open (status
    ``intent``, not ``rejected``); the next cycle's reconciliation finds the venue's order
    and books its fill, and marks the buy that was never sent as unsent."""
    settings = ExecutionSettings(PREFIX, dry_run=False, order_wait_secs=1.0,
                                 policy=RebalancePolicy())
    plan = [PlannedOrder("SPY", OrderSide.BUY, 2.0, 549.0, 1098.0, "drift"),
            PlannedOrder("GLD", OrderSide.BUY, 3.0, 229.5, 688.5, "drift")]
    journal.set_meta("instance_id", "e2e")
    cycle_id = journal.start_cycle(date(2024, 4, 19))
    spy = client_order_id(PREFIX, cycle_id, "SPY", OrderSide.BUY)
    gld = client_order_id(PREFIX, cycle_id, "GLD", OrderSide.BUY)
    venue.lose_response_next()
    venue.answer_next("/v2/orders:by_client_order_id", NOT_FOUND, status=404)
    with pytest.raises(BrokerTransientError, match=spy):
        execute_plan(alpaca, journal, cycle_id, plan, settings, {"SPY": True, "GLD": True})
    statuses = {i.client_order_id: i.status for i in journal.intents()}
    assert statuses == {spy: IntentStatus.INTENT, gld: IntentStatus.INTENT}
    assert [o.client_order_id for o in venue.orders_created()] == [spy]  # GLD never sent

    alpaca.on_wake()  # the next cycle
    reconcile(alpaca, journal, PREFIX)
    booked = {i.client_order_id: i for i in journal.intents()}
    assert booked[spy].status is IntentStatus.FILLED and booked[spy].filled_qty == 2.0
    assert booked[gld].status is IntentStatus.UNSENT
    assert journal.open_intents() == []
    assert journal.intents_missing_fills() == []  # the fill itself is journaled too


# ---------------------------------------------------------------- B: orders of another kind


def mleg_order_json() -> dict[str, Any]:
    """An open two-leg options order as alpaca-py documents it (``Order``: symbol, side,
    asset_id and asset_class omitted at the top level of an mleg order; legs inside)."""
    base = FakeOrder("0b5c6a38-2222-4333-8444-555555555555", "manual-spread-1", "SPY", "buy",
                     None, None, 1.0, 0, datetime.now(UTC))
    top = order_json(base)
    leg = {**top, "order_class": "mleg", "asset_class": "us_option", "ratio_qty": "1",
           "type": None, "order_type": None}
    top.update({"symbol": None, "side": None, "asset_id": None, "asset_class": None,
                "order_class": "mleg", "qty": "1", "type": "limit", "limit_price": "1.25",
                "legs": [{**leg, "id": "0b5c6a38-2222-4333-8444-000000000001",
                          "symbol": "SPY261218C00600000", "side": "buy"},
                         {**leg, "id": "0b5c6a38-2222-4333-8444-000000000002",
                          "symbol": "SPY261218C00610000", "side": "sell"}]})
    return top


def answer_open_orders_with(venue: FakeAlpaca, extra: dict[str, Any]) -> None:
    """The next GET /v2/orders lists the venue's own open orders plus ``extra``."""
    status, own = venue.handle("GET", "/v2/orders", {"status": "open"}, None)
    assert status == 200
    venue.answer_next("/v2/orders", [extra, *own])


def test_list_orders_skips_a_multi_leg_order_and_logs_it_once(
    venue: FakeAlpaca, alpaca: AlpacaBroker
) -> None:
    """Report item 6: ``ValueError: 'None' is not a valid OrderSide`` on every cycle."""
    venue.stuck_symbols.add("GLD")
    alpaca.submit_order(buy("GLD", "c-open", qty=1))
    with capture_logs() as logs:
        for _ in range(2):
            answer_open_orders_with(venue, mleg_order_json())
            assert [o.client_order_id for o in alpaca.list_orders()] == ["c-open"]
    skipped = [e for e in logs if e["event"] == "foreign_order_skipped"]
    assert len(skipped) == 1  # once per order, not once per cycle
    assert skipped[0]["client_order_id"] == "manual-spread-1"
    assert skipped[0]["kind"] == "order class mleg"
    assert skipped[0]["symbols"] == ["SPY261218C00600000", "SPY261218C00610000"]
    assert [r.status for r in venue.logged("GET", "/v2/orders")] == [200, 200]


def test_reconcile_with_a_multi_leg_order_in_the_account_leaves_it_alone(
    venue: FakeAlpaca, alpaca: AlpacaBroker, journal: Journal
) -> None:
    answer_open_orders_with(venue, mleg_order_json())
    with capture_logs() as logs:
        reconcile(alpaca, journal, PREFIX)
    events = [e["event"] for e in logs]
    assert "foreign_order_skipped" in events and "journal_reconciled" in events
    assert "order_unknown_seen" not in events
    assert journal.intents() == [] and venue.order_posts() == []
    assert [r.method for r in venue.requests if r.path.startswith("/v2/orders")] == ["GET"]


def test_multi_leg_order_under_a_looked_up_id_is_a_data_error_not_booked(
    venue: FakeAlpaca, alpaca: AlpacaBroker
) -> None:
    """Our id answered with another kind of order cannot be read as ours: a clean data
    error naming the id (the cycle fails; nothing is journaled), not a crash."""
    venue.answer_next("/v2/orders:by_client_order_id",
                      {**mleg_order_json(), "client_order_id": "ab-x000001-SPY-b"})
    with pytest.raises(BrokerDataError, match=r"ab-x000001-SPY-b.*order class mleg"):
        alpaca.get_order_by_client_id("ab-x000001-SPY-b")


# ---------------------------------------------------------------- C: echoed secrets


def echo(prefix: str = "") -> str:
    return json.dumps({"code": 40310000,
                       "message": f"{prefix}forbidden for key {API_KEY} / secret {SECRET_KEY}"})


def assert_redacted(text: str | None) -> None:
    assert text is not None and "***" in text
    assert API_KEY not in text and SECRET_KEY not in text
    assert API_KEY[:8] not in text and SECRET_KEY[:8] not in text  # not even cut in half


def test_rejection_echoing_the_keys_is_redacted_in_reject_reason_and_logs(
    venue: FakeAlpaca, alpaca: AlpacaBroker
) -> None:
    """Report item 8: the reject reason went to the journal and ``allocbot status`` raw."""
    venue.answer_next("/v2/orders", echo(), status=403, method="POST")
    with capture_logs() as logs:
        order = alpaca.submit_order(buy("SPY", "c-echo", qty=1))
    assert order.status is OrderStatus.REJECTED and "40310000" in (order.reject_reason or "")
    assert_redacted(order.reject_reason)
    assert all(API_KEY not in repr(e) and SECRET_KEY not in repr(e) for e in logs)


def test_key_straddling_the_excerpt_cut_is_not_left_half_visible(
    venue: FakeAlpaca, alpaca: AlpacaBroker
) -> None:
    venue.answer_next("/v2/orders", echo("x" * 172), status=403, method="POST")
    order = alpaca.submit_order(buy("SPY", "c-cut", qty=1))
    assert_redacted(order.reject_reason)


def test_errors_echoing_the_keys_are_redacted(venue: FakeAlpaca, tmp_path: Path) -> None:
    broker = make_broker(venue, tmp_path / "cache", retry_budget_secs=0.05)
    venue.answer_next("/v2/account", echo(), status=403)
    with pytest.raises(BrokerConfigError) as refused:
        broker.account()
    assert_redacted(str(refused.value))
    venue.answer_next("/v2/positions", echo(), status=503, count=20)
    with capture_logs() as logs, pytest.raises(BrokerTransientError) as spent:
        broker.positions()
    assert_redacted(str(spent.value))
    assert logs and all(API_KEY not in repr(e) and SECRET_KEY not in repr(e) for e in logs)
    venue.clear_faults()
    broker.on_wake()
    venue.answer_next("/v2/assets/ZZZZ", echo(), status=404)
    with pytest.raises(BrokerConfigError) as unknown:
        broker.assets(["ZZZZ"])
    assert_redacted(str(unknown.value))
    broker.close()
