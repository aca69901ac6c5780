"""AlpacaBroker against the local FakeAlpaca: real alpaca-py over real HTTP, no network."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import structlog
from fake_alpaca import FakeAlpaca

from brokers.alpaca.broker import AlpacaBroker, check_account_mode, fetch_daily_closes
from brokers.alpaca.orders import round_qty_down, size_order
from brokers.base import Account, Broker, OrderRequest, OrderSide, OrderStatus
from brokers.errors import BrokerConfigError, BrokerDataError, BrokerTransientError

API_KEY = "PKTESTKEY0123456789AB"
SECRET_KEY = "SeCrEtTeStKeY0123456789abcdefghijklmnopq"
SYMBOLS = ["SPY", "TLT", "GLD"]


def make_bars(days: int = 80) -> pd.DataFrame:
    """Business-day closes spanning a DST change (Mar 2024), distinct per symbol and day."""
    index = pd.bdate_range("2024-01-02", periods=days, name="date")
    steps = np.arange(days, dtype=float)
    return pd.DataFrame(
        {"SPY": 470.0 + steps, "TLT": 95.0 + 0.25 * steps, "GLD": 190.0 + 0.5 * steps},
        index=index,
    )


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(
        bars=make_bars(),
        cash=10_000.0,
        positions={"TLT": (20, 90.0)},
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        bars_page_size=25,
    ) as server:
        yield server
    assert server.errors == []


def make_broker(fake: FakeAlpaca, cache_dir: Path, **overrides: Any) -> AlpacaBroker:
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "secret_key": SECRET_KEY,
        "paper": True,
        "base_url": fake.url,
        "data_url": fake.url,
        "cache_dir": cache_dir,
        "http_timeout_secs": 0.3,
        "retry_budget_secs": 5.0,
        "poll_interval_secs": 0.005,
        "retry_backoff_secs": 0.005,
        "retry_backoff_max_secs": 0.02,
    }
    options.update(overrides)
    return AlpacaBroker(**options)


@pytest.fixture
def broker(fake: FakeAlpaca, tmp_path: Path) -> AlpacaBroker:
    return make_broker(fake, tmp_path / "cache")


def buy(
    symbol: str, cid: str, qty: float | None = None, notional: float | None = None
) -> OrderRequest:
    return OrderRequest(symbol, OrderSide.BUY, cid, qty=qty, notional=notional)


# ---------------------------------------------------------------- account, clock, assets


def test_broker_satisfies_protocol(broker: AlpacaBroker) -> None:
    assert isinstance(broker, Broker)
    assert broker.name == "alpaca"


def test_account_string_numbers_parsed_to_floats(broker: AlpacaBroker) -> None:
    account = broker.account()
    assert account.account_number == "PA3EXAMPLE01"
    assert account.cash == 10_000.0
    last_tlt = make_bars()["TLT"].iloc[-1]
    assert account.equity == pytest.approx(10_000.0 + 20 * last_tlt)


def test_positions_parsed_with_qty_and_market_value(broker: AlpacaBroker) -> None:
    positions = broker.positions()
    assert list(positions) == ["TLT"]
    assert positions["TLT"].qty == 20.0
    assert positions["TLT"].avg_entry_price == 90.0
    assert positions["TLT"].market_value == pytest.approx(20 * make_bars()["TLT"].iloc[-1])


def test_clock_closed_market_reported_closed_in_utc(fake: FakeAlpaca, broker: AlpacaBroker) -> None:
    fake.is_open = False
    clock = broker.clock()
    assert clock.is_open is False
    assert clock.now.utcoffset() is not None and clock.now.utcoffset().total_seconds() == 0


def test_trading_days_come_from_broker_calendar(broker: AlpacaBroker) -> None:
    days = broker.trading_days(date(2024, 1, 1), date(2024, 1, 10))
    assert days == [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]


def test_assets_flags_passed_through(fake: FakeAlpaca, broker: AlpacaBroker) -> None:
    fake.assets["GLD"] = (True, False)
    assets = broker.assets(SYMBOLS)
    assert assets["SPY"].fractionable is True
    assert assets["GLD"].fractionable is False


def test_assets_non_tradable_symbol_raises_naming_it(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.assets["GLD"] = (False, True)
    with pytest.raises(BrokerConfigError, match="GLD is not tradable"):
        broker.assets(SYMBOLS)


def test_assets_unknown_symbol_raises_naming_it(broker: AlpacaBroker) -> None:
    with pytest.raises(BrokerConfigError, match="symbol XYZQ"):
        broker.assets(["XYZQ"])


def test_check_account_mode_live_config_on_paper_account_refuses() -> None:
    paper_account = Account(account_number="PA1234567", cash=1.0, equity=1.0, buying_power=1.0)
    check_account_mode(paper_account, paper=True)
    with pytest.raises(BrokerConfigError, match=r"the live account .* paper account"):
        check_account_mode(paper_account, paper=False)


# ---------------------------------------------------------------- history


def bars_requests(fake: FakeAlpaca) -> list[dict[str, str]]:
    return [r.query for r in fake.logged("GET", "/v2/stocks/bars")]


def test_history_paginated_bars_become_wide_closes_on_exchange_dates(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    bars = make_bars()
    prices = broker.history(SYMBOLS, lookback_days=60, end=bars.index[-1].date())
    pd.testing.assert_frame_equal(prices, bars.tail(60), check_freq=False)
    queries = bars_requests(fake)
    assert len(queries) > 1  # 180 bars at 25 per page
    assert all(q["adjustment"] == "all" and q["feed"] == "iex" for q in queries)


def test_history_second_call_fetches_only_missing_tail(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    bars = make_bars()
    first_end, second_end = bars.index[-11].date(), bars.index[-1].date()
    broker.history(SYMBOLS, 40, first_end)
    fake.requests.clear()
    prices = broker.history(SYMBOLS, 40, second_end)
    pd.testing.assert_frame_equal(prices, bars.tail(40), check_freq=False)
    starts = {q["start"] for q in bars_requests(fake)}
    # re-reads only the last cached day (to detect re-adjustment) onwards: 11 days x 3 symbols
    midnight_ny = pd.Timestamp(first_end).tz_localize("America/New_York").tz_convert("UTC")
    assert starts == {midnight_ny.isoformat()}
    assert sum(1 for _ in bars_requests(fake)) == 2  # 33 bars, pages of 25


def test_history_fully_cached_range_sends_no_request(fake: FakeAlpaca, tmp_path: Path) -> None:
    end = make_bars().index[-1].date()
    make_broker(fake, tmp_path).history(SYMBOLS, 30, end)
    fake.requests.clear()
    again = make_broker(fake, tmp_path).history(SYMBOLS, 30, end)  # a restart reads the disk
    assert bars_requests(fake) == []
    assert len(again) == 30


def test_history_readjusted_past_closes_refetch_whole_symbol(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    bars = make_bars()
    broker.history(SYMBOLS, 40, bars.index[-11].date())
    fake.bars = bars.assign(SPY=bars["SPY"] * 0.98)  # a dividend re-adjusts all of SPY's history
    prices = broker.history(SYMBOLS, 40, bars.index[-1].date())
    assert prices["SPY"].to_numpy() == pytest.approx(bars["SPY"].tail(40).to_numpy() * 0.98)


def test_history_symbol_without_bars_raises_naming_it(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.assets["NOBARS"] = (True, True)
    with pytest.raises(BrokerDataError, match="no daily bars for NOBARS"):
        broker.history(["SPY", "NOBARS"], 20, make_bars().index[-1].date())


def test_history_symbol_missing_a_day_raises_naming_it(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    bars = make_bars()
    holed = bars.copy()
    holed.loc[bars.index[-5], "GLD"] = np.nan
    fake.bars = holed
    with pytest.raises(BrokerDataError, match="GLD on " + str(bars.index[-5].date())):
        broker.history(SYMBOLS, 20, bars.index[-1].date())


def test_fetch_daily_closes_returns_requested_range(broker: AlpacaBroker) -> None:
    prices = fetch_daily_closes(broker, ["SPY", "TLT"], date(2024, 1, 8), date(2024, 1, 12))
    assert [d.day for d in prices.index] == [8, 9, 10, 11, 12]
    assert prices.index.name == "date"
    assert prices.loc["2024-01-08", "SPY"] == 474.0


def test_history_sip_feed_never_asks_for_the_last_15_minutes(
    fake: FakeAlpaca, tmp_path: Path
) -> None:
    broker = make_broker(fake, tmp_path, feed="sip")
    today = datetime.now(UTC).date()
    broker.daily_closes(["SPY"], date(2024, 1, 2), today)
    query = bars_requests(fake)[0]
    assert query["feed"] == "sip"
    assert datetime.fromisoformat(query["end"]) <= datetime.now(UTC) - timedelta(minutes=15)


# ---------------------------------------------------------------- orders


def test_round_qty_down_never_rounds_up() -> None:
    assert round_qty_down(3.9999, fractionable=False) == 3.0
    assert round_qty_down(0.3, fractionable=True) == 0.3
    assert round_qty_down(1.1234567899, fractionable=True) == 1.123456789


def test_submit_order_non_fractionable_sends_whole_shares(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.assets["GLD"] = (True, False)
    order = broker.submit_order(buy("GLD", "c-gld", qty=3.7))
    assert [p.body["qty"] for p in fake.order_posts()] == [3]
    assert order.qty == 3.0


def test_submit_order_rounding_to_zero_shares_sends_nothing(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.assets["GLD"] = (True, False)
    order = broker.submit_order(buy("GLD", "c-gld", qty=0.6))
    assert fake.order_posts() == []
    assert order.status is OrderStatus.REJECTED and "rounded down to 0" in order.reject_reason
    assert broker.wait_for_order("c-gld", 1.0) == order


def test_size_order_notional_on_non_fractionable_asset_refused() -> None:
    size = size_order(buy("GLD", "c-g", notional=500.0), fractionable=False)
    assert size.refusal is not None and "not fractionable" in size.refusal
    assert size_order(buy("SPY", "c-s", notional=500.009), fractionable=True).notional == 500.0


def test_submit_order_notional_rounded_down_to_cents(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    broker.submit_order(buy("SPY", "c-n", notional=1234.5678))
    (post,) = fake.order_posts()
    assert post.body["notional"] == 1234.56 and "qty" not in post.body
    assert post.body["client_order_id"] == "c-n"
    assert (post.body["type"], post.body["time_in_force"]) == ("market", "day")


def test_wait_for_order_partial_fills_over_polls_yield_fill_deltas(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.fill_polls = 4
    broker.submit_order(buy("SPY", "c-part", qty=10))
    order = broker.wait_for_order("c-part", timeout_secs=5.0)
    fills = broker.fills_for("c-part")
    assert order.status is OrderStatus.FILLED and order.filled_qty == 10.0
    assert [f.qty for f in fills] == [2.5, 2.5, 2.5, 2.5]
    assert all(f.price == make_bars()["SPY"].iloc[-1] and f.commission == 0 for f in fills)
    broker.get_order_by_client_id("c-part")  # a repeated update adds no fill
    assert len(broker.fills_for("c-part")) == 4


def test_wait_for_order_timeout_cancels_then_refetches(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.stuck_symbols.add("SPY")
    broker.submit_order(buy("SPY", "c-stuck", qty=1))
    order = broker.wait_for_order("c-stuck", timeout_secs=0.05)
    assert order.status is OrderStatus.CANCELED
    assert len(fake.logged("DELETE", "/v2/orders/")) == 1
    assert fake.logged()[-1].path == "/v2/orders:by_client_order_id"


def test_list_orders_open_only_excludes_filled(fake: FakeAlpaca, broker: AlpacaBroker) -> None:
    broker.submit_order(buy("TLT", "c-done", qty=1))
    broker.wait_for_order("c-done", 1.0)
    fake.stuck_symbols.add("SPY")
    broker.submit_order(buy("SPY", "c-open", qty=1))
    assert [o.client_order_id for o in broker.list_orders(open_only=True)] == ["c-open"]
    assert {o.client_order_id for o in broker.list_orders(open_only=False)} == {"c-done", "c-open"}


def test_cancel_order_already_filled_is_left_alone(fake: FakeAlpaca, broker: AlpacaBroker) -> None:
    broker.submit_order(buy("TLT", "c-filled", qty=1))
    filled = broker.wait_for_order("c-filled", 1.0)
    broker.cancel_order(filled.id)  # Alpaca answers 422 "not cancelable": no exception
    assert [r.status for r in fake.logged("DELETE")] == [422]
    assert broker.get_order_by_client_id("c-filled").status is OrderStatus.FILLED


def test_wait_for_order_filled_while_canceling_returns_filled_with_fills(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.stuck_symbols.add("SPY")
    fake.fill_on_cancel.add("SPY")  # the fill races the cancel: Alpaca answers 422
    broker.submit_order(buy("SPY", "c-race", qty=2))
    order = broker.wait_for_order("c-race", timeout_secs=0.05)
    assert order.status is OrderStatus.FILLED
    assert sum(f.qty for f in broker.fills_for("c-race")) == 2.0
    assert [r.status for r in fake.logged("DELETE")] == [422]


def test_submit_order_buy_beyond_buying_power_returns_rejected_with_code(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    order = broker.submit_order(buy("SPY", "c-big", qty=100))
    assert order.status is OrderStatus.REJECTED
    assert "40310000" in order.reject_reason and "buying power" in order.reject_reason
    assert fake.orders_created() == []


def test_submit_order_duplicate_client_order_id_returns_existing_order(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    first = broker.submit_order(buy("SPY", "c-dup", qty=1))
    again = broker.submit_order(buy("SPY", "c-dup", qty=1))
    assert again.id == first.id
    assert len(fake.orders_created()) == 1
    assert [r.status for r in fake.order_posts()] == [200, 422]


def test_submit_order_id_of_another_order_at_the_venue_is_not_booked_as_this_one(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    """A state file restored from a backup once reused a cycle id: the venue's older
    order under that client_order_id (another quantity) was booked as the new order's
    fill. It is now refused, naming the likely cause, and nothing is sent."""
    first = broker.submit_order(buy("SPY", "c-old", qty=3))
    again = broker.submit_order(buy("SPY", "c-old", qty=1))
    assert again.status is OrderStatus.REJECTED and not again.id and again.filled_qty == 0
    assert again.reject_reason is not None
    assert "already names another order" in again.reject_reason
    assert "buy 3.0 SPY, not buy 1.0 SPY" in again.reject_reason
    assert "restored from a backup" in again.reject_reason
    assert [o.id for o in fake.orders_created()] == [first.id]


def test_submit_order_lost_response_retried_without_second_order(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.fail_next(
        1, 500, after=True, path_prefix="/v2/orders", method="POST"
    )  # accepted, answer lost
    order = broker.submit_order(buy("SPY", "c-lost", qty=1))
    assert order.client_order_id == "c-lost" and order.id
    assert len(fake.orders_created()) == 1


def test_submit_order_processed_then_response_lost_finds_it_by_client_id(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.lose_response_next()  # the venue creates the order, the connection then drops
    order = broker.submit_order(buy("SPY", "c-gone", qty=1))
    assert order.client_order_id == "c-gone" and order.id
    venue = [o for o in fake.orders_created() if o.client_order_id == "c-gone"]
    assert len(venue) == 1 and venue[0].id == order.id
    # the path taken: lost answer, retry refused 422 "must be unique", lookup by client id
    assert [r.status for r in fake.order_posts()] == [0, 422]
    lookups = fake.logged("GET", "/v2/orders:by_client_order_id")
    assert len(lookups) == 1 and lookups[0].query == {"client_order_id": "c-gone"}
    assert lookups[0].status == 200


# ---------------------------------------------------------------- retries and timeouts


def test_account_burst_of_429s_retried_then_succeeds(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.fail_next(4, 429)
    assert broker.account().cash == 10_000.0
    assert [r.status for r in fake.logged("GET", "/v2/account")] == [429] * 4 + [200]


def test_positions_500s_and_html_502_retried_then_succeed(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.fail_next(2, 500)
    fake.fail_next(1, 502, html=True)
    assert "TLT" in broker.positions()
    assert [r.status for r in fake.logged("GET", "/v2/positions")] == [500, 500, 502, 200]


def test_clock_hung_response_times_out_and_is_retried(
    fake: FakeAlpaca, broker: AlpacaBroker
) -> None:
    fake.hang_next(1, hang_secs=2.0)
    assert broker.clock().is_open is True
    assert len(fake.logged("GET", "/v2/clock")) == 2


def test_retry_budget_spent_raises_transient_error_until_on_wake(
    fake: FakeAlpaca, tmp_path: Path
) -> None:
    broker = make_broker(fake, tmp_path, retry_budget_secs=0.05, retry_backoff_secs=0.01)
    fake.fail_next(50, 502, html=True)
    with pytest.raises(BrokerTransientError, match=r"retry budget .* spent.*HTTP 502.*Bad Gateway"):
        broker.account()
    fake.clear_faults()
    fake.fail_next(1, 500)
    with pytest.raises(BrokerTransientError) as later:  # the budget stays spent this wake
        broker.account()
    # it says who spent the budget (it said "after 1 attempts; the budget is spent")
    assert "after 1 attempt(s) of this request and" in str(later.value)
    assert "of all this wake's requests" in str(later.value)
    broker.on_wake()
    fake.fail_next(1, 500)
    assert broker.account().cash == 10_000.0  # a new cycle retries again


def test_sdk_own_retry_disabled_so_one_429_costs_one_request(
    fake: FakeAlpaca, tmp_path: Path
) -> None:
    broker = make_broker(fake, tmp_path, retry_budget_secs=0.0)
    fake.fail_next(1, 429)
    with pytest.raises(BrokerTransientError):
        broker.clock()
    assert len(fake.logged("GET", "/v2/clock")) == 1  # alpaca-py would have slept 3 s and resent


# ---------------------------------------------------------------- secrets


def test_from_environment_missing_secret_names_variable_not_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", API_KEY)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    with pytest.raises(BrokerConfigError, match="APCA_API_SECRET_KEY") as caught:
        AlpacaBroker.from_environment(paper=True, cache_dir=tmp_path)
    assert API_KEY not in str(caught.value)


def test_keys_never_in_errors_logs_or_repr(fake: FakeAlpaca, tmp_path: Path) -> None:
    texts: list[str] = []
    with structlog.testing.capture_logs() as logs:
        broker = make_broker(fake, tmp_path, retry_budget_secs=0.05)
        texts.append(repr(broker))
        fake.fail_next(20, 500)
        for call in (broker.account, lambda: broker.history(["SPY"], 5, date(2024, 3, 1))):
            with pytest.raises(BrokerTransientError) as caught:
                call()
            texts.append(str(caught.value))
            assert caught.value.__context__ is None  # no SDK frames (headers) attached
        fake.clear_faults()
        broker.on_wake()
        broker.submit_order(buy("SPY", "c-big", qty=1000))
        wrong = make_broker(fake, tmp_path, api_key="PKWRONGKEY000", secret_key="wrongsecret")
        with pytest.raises(BrokerConfigError) as refused:
            wrong.account()
        texts.append(str(refused.value))
        assert refused.value.__context__ is None
    texts.extend(repr(event) for event in logs)
    assert logs and any("401" in t for t in texts)
    for text in texts:
        assert API_KEY not in text and SECRET_KEY not in text
        assert "wrongsecret" not in text
