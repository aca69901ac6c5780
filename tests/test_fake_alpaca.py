"""The fake Alpaca server itself answers with Alpaca's shapes (raw HTTP, no SDK)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import requests
from fake_alpaca import FakeAlpaca

AUTH = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
# ``required:`` lists of shared/reference/alpaca/trading-openapi.yaml and data-openapi.yaml
REQUIRED = {
    "account": ["id", "status"],
    "order": ["symbol", "notional", "qty", "type", "side", "time_in_force"],
    "asset": [
        "id",
        "class",
        "exchange",
        "symbol",
        "name",
        "status",
        "tradable",
        "marginable",
        "shortable",
        "easy_to_borrow",
        "fractionable",
    ],
    "position": [
        "asset_id",
        "symbol",
        "exchange",
        "asset_class",
        "avg_entry_price",
        "qty",
        "side",
        "market_value",
        "cost_basis",
        "unrealized_pl",
        "unrealized_plpc",
        "unrealized_intraday_pl",
        "unrealized_intraday_plpc",
        "current_price",
        "lastday_price",
        "change_today",
        "asset_marginable",
    ],
    "calendar": ["date", "open", "close", "session_open", "session_close"],
    "bar": ["t", "o", "h", "l", "c", "v"],
}


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    bars = pd.DataFrame(
        {"SPY": [1.0, 2.0, 3.0], "TLT": [4.0, 5.0, 6.0]},
        index=pd.bdate_range("2024-03-07", periods=3, name="date"),
    )
    with FakeAlpaca(bars=bars, positions={"TLT": (2, 4.5)}) as server:
        yield server
    assert server.errors == []


def get(fake: FakeAlpaca, path: str, **params: Any) -> requests.Response:
    return requests.get(fake.url + path, params=params, headers=AUTH, timeout=5)


def test_fake_shapes_carry_openapi_required_fields_and_string_numbers(fake: FakeAlpaca) -> None:
    order = requests.post(
        fake.url + "/v2/orders",
        headers=AUTH,
        timeout=5,
        json={
            "symbol": "SPY",
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "x1",
        },
    ).json()
    answers = {
        "account": get(fake, "/v2/account").json(),
        "order": order,
        "asset": get(fake, "/v2/assets/SPY").json(),
        "position": get(fake, "/v2/positions").json()[0],
        "calendar": get(fake, "/v2/calendar").json()[0],
        "bar": get(fake, "/v2/stocks/bars", symbols="SPY", timeframe="1Day").json()["bars"]["SPY"][
            0
        ],
    }
    for shape, fields in REQUIRED.items():
        assert set(fields) <= set(answers[shape]), shape
    assert isinstance(answers["account"]["cash"], str)
    assert isinstance(answers["position"]["qty"], str)
    assert isinstance(answers["order"]["filled_qty"], str)
    assert {"n", "vw"} <= set(answers["bar"])


def test_fake_bars_paginate_by_symbol_then_time(fake: FakeAlpaca) -> None:
    seen: list[tuple[str, str]] = []
    token = None
    pages = 0
    while True:
        params = {"symbols": "TLT,SPY", "timeframe": "1Day", "limit": 4}
        body = get(fake, "/v2/stocks/bars", **params, **({"page_token": token} if token else {}))
        payload = body.json()
        seen += [(s, b["t"]) for s, bars in payload["bars"].items() for b in bars]
        pages += 1
        token = payload["next_page_token"]
        if token is None:
            break
    assert pages == 2
    assert seen == sorted(seen) and len(seen) == 6


def test_fake_missing_auth_headers_answers_401(fake: FakeAlpaca) -> None:
    answer = requests.get(fake.url + "/v2/account", timeout=5)
    assert answer.status_code == 401 and answer.json()["code"] == 40110000


def test_fake_fault_filters_by_method_and_logs_it(fake: FakeAlpaca) -> None:
    fake.fail_next(1, 503, method="POST", path_prefix="/v2/orders")
    assert get(fake, "/v2/orders").status_code == 200  # GET not matched
    posted = requests.post(fake.url + "/v2/orders", headers=AUTH, json={}, timeout=5)
    assert posted.status_code == 503
    assert [(r.method, r.status) for r in fake.logged(path="/v2/orders")] == [
        ("GET", 200),
        ("POST", 503),
    ]


def test_fake_sell_beyond_position_refused_with_buying_power_code(fake: FakeAlpaca) -> None:
    answer = requests.post(
        fake.url + "/v2/orders",
        headers=AUTH,
        timeout=5,
        json={
            "symbol": "TLT",
            "qty": 3,
            "side": "sell",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "s1",
        },
    )
    assert answer.status_code == 403 and answer.json()["code"] == 40310000
