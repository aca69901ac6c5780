"""JSON shapes of FakeAlpaca's answers, after Alpaca's OpenAPI (shared/reference/alpaca/).

Numbers in account/position/order JSON are strings; bars are numbers with ``n``/``vw``;
timestamps are RFC 3339. Pure functions of their arguments.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


@dataclass(slots=True)
class FakeOrder:
    """The venue's mutable record of one order (``target_qty`` = shares to fill)."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal | None
    notional: Decimal | None
    price: float
    target_qty: Decimal
    created_at: datetime
    status: str = "accepted"
    filled_qty: Decimal = Decimal(0)
    polls: int = 0
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    filled_at: datetime | None = None
    canceled_at: datetime | None = None


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def num(value: float | Decimal) -> str:
    """Alpaca's string-typed numbers."""
    return format(Decimal(str(value)).normalize(), "f")


def asset_id(symbol: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol))


def account_json(
    number: str, cash: Decimal, buying_power: Decimal, market: Decimal
) -> dict[str, Any]:
    """GET /v2/account (OpenAPI ``Account``)."""
    equity = cash + market
    return {
        "id": "e6fe16f3-64a4-4921-8928-cadf02f92f98",
        "account_number": number,
        "status": "ACTIVE",
        "currency": "USD",
        "cash": num(cash),
        "buying_power": num(buying_power),
        "regt_buying_power": num(buying_power),
        "non_marginable_buying_power": num(buying_power),
        "portfolio_value": num(equity),
        "equity": num(equity),
        "last_equity": num(equity),
        "long_market_value": num(market),
        "short_market_value": "0",
        "multiplier": "1",
        "pattern_day_trader": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "shorting_enabled": False,
        "created_at": "2024-01-01T00:00:00Z",
        "daytrade_count": 0,
    }


def position_json(symbol: str, qty: Decimal, avg: Decimal, price: Decimal) -> dict[str, Any]:
    """One element of GET /v2/positions (OpenAPI ``Position``), a long position."""
    return {
        "asset_id": asset_id(symbol),
        "symbol": symbol,
        "exchange": "ARCA",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "avg_entry_price": num(avg),
        "qty": num(qty),
        "qty_available": num(qty),
        "side": "long",
        "market_value": num(qty * price),
        "cost_basis": num(qty * avg),
        "unrealized_pl": num(qty * (price - avg)),
        "unrealized_plpc": "0",
        "unrealized_intraday_pl": "0",
        "unrealized_intraday_plpc": "0",
        "current_price": num(price),
        "lastday_price": num(price),
        "change_today": "0",
    }


def clock_json(is_open: bool, now: datetime) -> dict[str, Any]:
    """GET /v2/clock: times in New York with their offset, as Alpaca sends them."""
    local = now.astimezone(NEW_YORK)
    day = local.date()
    session = datetime.combine(day, datetime.min.time(), NEW_YORK)
    return {
        "timestamp": local.isoformat(),
        "is_open": is_open,
        "next_open": (session + timedelta(days=1)).replace(hour=9, minute=30).isoformat(),
        "next_close": session.replace(hour=16).isoformat(),
    }


def calendar_day_json(day: date) -> dict[str, Any]:
    """One element of GET /v2/calendar (regular session)."""
    return {
        "date": day.isoformat(),
        "open": "09:30",
        "close": "16:00",
        "session_open": "0400",
        "session_close": "2000",
        "settlement_date": day.isoformat(),
    }


def asset_json(symbol: str, tradable: bool, fractionable: bool) -> dict[str, Any]:
    """GET /v2/assets/{symbol} (OpenAPI ``Assets``)."""
    return {
        "id": asset_id(symbol),
        "class": "us_equity",
        "exchange": "ARCA",
        "symbol": symbol,
        "name": f"{symbol} fake",
        "status": "active",
        "tradable": tradable,
        "marginable": True,
        "shortable": False,
        "easy_to_borrow": False,
        "fractionable": fractionable,
    }


def bar_json(stamp: datetime, close: float) -> dict[str, Any]:
    """One daily bar (flat OHLC at the close), with the ``n``/``vw`` alpaca-py requires."""
    return {
        "t": iso(stamp),
        "o": close,
        "h": close,
        "l": close,
        "c": close,
        "v": 1000,
        "n": 10,
        "vw": close,
    }


def order_json(o: FakeOrder) -> dict[str, Any]:
    """An order as GET/POST /v2/orders return it (OpenAPI ``Order``)."""
    filled = o.filled_qty > 0
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "created_at": iso(o.created_at),
        "updated_at": iso(o.updated_at),
        "submitted_at": iso(o.created_at),
        "filled_at": iso(o.filled_at),
        "expired_at": None,
        "canceled_at": iso(o.canceled_at),
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, o.symbol)),
        "symbol": o.symbol,
        "asset_class": "us_equity",
        "notional": None if o.notional is None else num(o.notional),
        "qty": None if o.qty is None else num(o.qty),
        "filled_qty": num(o.filled_qty),
        "filled_avg_price": num(o.price) if filled else None,
        "order_class": "simple",
        "order_type": "market",
        "type": "market",
        "side": o.side,
        "time_in_force": "day",
        "limit_price": None,
        "stop_price": None,
        "status": o.status,
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
    }


def trade_json(stamp: datetime, price: float) -> dict[str, Any]:
    """One latest trade (GET /v2/stocks/trades/latest), as Alpaca's v2 market data sends it."""
    return {"t": iso(stamp), "x": "V", "p": price, "s": 100, "c": ["@"], "i": 1, "z": "B"}
