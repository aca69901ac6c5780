"""The state machine behind FakeAlpaca: account, positions, assets, orders, fills, bars.

No sockets here: ``FakeAlpacaVenue.handle(method, path, query, body)`` answers one request
with Alpaca's status codes and JSON shapes (``shared/reference/alpaca/*.yaml``: numbers in
account/position/order JSON are strings, bars carry ``n``/``vw`` and paginate with
``next_page_token``). Orders fill at the last close in ``fill_polls`` equal slices, one per
GET of the order; a buy costing more than the buying power is refused 403 40310000; a
repeated ``client_order_id`` is refused 422 40010001.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd
from fake_alpaca_shapes import (
    NEW_YORK,
    FakeOrder,
    account_json,
    asset_json,
    bar_json,
    calendar_day_json,
    clock_json,
    order_json,
    position_json,
    trade_json,
)

BUYING_POWER_CODE = 40310000
DUPLICATE_CID_CODE = 40010001
UNPROCESSABLE_CODE = 42210000


class FakeAlpacaVenue:
    """Alpaca's trading + data state; thread-safe through one lock (handlers are threads)."""

    def __init__(
        self,
        *,
        bars: pd.DataFrame | None = None,
        cash: float = 100_000.0,
        account_number: str = "PA3EXAMPLE01",
        positions: dict[str, tuple[float, float]] | None = None,
        assets: dict[str, tuple[bool, bool]] | None = None,
        is_open: bool = True,
        bars_page_size: int = 10_000,
        fill_polls: int = 1,
    ) -> None:
        """``bars``: wide close frame (dates x symbols). ``positions``: symbol -> (qty,
        avg price). ``assets``: symbol -> (tradable, fractionable); default every bars
        column tradable and fractionable. ``fill_polls``: order GETs until fully filled
        (each poll fills an equal slice; 0 = filled at submission)."""
        self.bars = bars if bars is not None else pd.DataFrame()
        self.cash = Decimal(str(cash))
        self.account_number = account_number
        self.positions: dict[str, tuple[Decimal, Decimal]] = {
            s: (Decimal(str(q)), Decimal(str(p))) for s, (q, p) in (positions or {}).items()
        }
        cols = [str(c) for c in self.bars.columns]
        self.assets = dict(assets) if assets is not None else dict.fromkeys(cols, (True, True))
        self.is_open = is_open
        self.bars_page_size = bars_page_size
        self.fill_polls = fill_polls
        self.stuck_symbols: set[str] = set()  # orders never fill on a poll
        self.fill_on_cancel: set[str] = set()  # ...but fill just before a cancel arrives
        self.orders: list[FakeOrder] = []
        self.errors: list[str] = []
        # GET /v2/stocks/trades/latest answers the last close unless overridden here: a
        # price, or any JSON value to serve as that symbol's trade (bad shapes for tests)
        self.latest_trades: dict[str, Any] = {}
        # non-trade activities (GET /v2/account/activities), oldest first: ``transfer``
        # books a deposit or withdrawal; tests may append any JSON (bad shapes)
        self.activities: list[Any] = []
        self._lock = threading.RLock()

    def orders_created(self) -> list[FakeOrder]:
        with self._lock:
            return list(self.orders)

    def transfer(self, amount: float, kind: str | None = None, on: date | None = None,
                 *, move_cash: bool = True) -> str:
        """Book a cash transfer (+ deposit, − withdrawal; ``kind`` CSD/CSW by sign unless
        given) dated ``on`` (today): the cash moves (unless ``move_cash`` is False) and an
        activity is listed. Returns its id."""
        with self._lock:
            day = on or datetime.now(NEW_YORK).date()
            activity_id = f"{day:%Y%m%d}000000000::{uuid.uuid4()}"
            self.activities.append({
                "id": activity_id, "activity_type": kind or ("CSD" if amount > 0 else "CSW"),
                "date": day.isoformat(), "net_amount": str(amount), "status": "executed"})
            if move_cash:
                self.cash += Decimal(str(amount))
            return activity_id

    # ---------------------------------------------------------------- pricing
    def last_close(self, symbol: str) -> float:
        series = self.bars[symbol].dropna()
        return float(series.iloc[-1])

    # ---------------------------------------------------------------- routing
    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """Route one authenticated request; returns (status, JSON-able payload or None)."""
        routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", r"/v2/account", lambda q, b: (200, self._account_json())),
            ("GET", r"/v2/account/activities", self._activities),
            ("GET", r"/v2/positions", lambda q, b: (200, self._positions_json())),
            ("GET", r"/v2/clock", lambda q, b: (200, clock_json(self.is_open, datetime.now(UTC)))),
            ("GET", r"/v2/calendar", self._calendar),
            ("GET", r"/v2/assets/(?P<sym>[^/]+)", self._asset),
            ("GET", r"/v2/orders", self._list_orders),
            ("POST", r"/v2/orders", self._submit),
            ("GET", r"/v2/orders:by_client_order_id", self._order_by_cid),
            ("GET", r"/v2/orders/(?P<oid>[^/]+)", self._order_by_id),
            ("DELETE", r"/v2/orders/(?P<oid>[^/]+)", self._cancel),
            ("GET", r"/v2/stocks/bars", self._bars),
            ("GET", r"/v2/stocks/trades/latest", self._latest_trades),
        ]
        for route_method, pattern, fn in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                with self._lock:
                    return fn(query, body, **match.groupdict())
        return 404, {"code": 40410000, "message": f"route not found: {method} {path}"}

    def handle_json(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, str]:
        """``handle`` with the payload serialized; a crash in the fake becomes a 500 and is
        kept in ``errors`` (tests assert it stays empty)."""
        try:
            status, payload = self.handle(method, path, query, body)
        except Exception as exc:  # noqa: BLE001 - a fake bug must fail the test, not hang it
            self.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            return 500, json.dumps({"code": 50000000, "message": f"fake crashed: {exc}"})
        return status, "" if payload is None else json.dumps(payload)

    # ---------------------------------------------------------------- trading
    def _account_json(self) -> dict[str, Any]:
        market = sum(
            (q * Decimal(str(self.last_close(s))) for s, (q, _) in self.positions.items()),
            Decimal(0),
        )
        return account_json(self.account_number, self.cash, self._buying_power(), market)

    def _activities(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """Alpaca's paging: ``after`` (a date-time; entries dated on or after its day),
        ``activity_types``, ``direction``, ``page_size`` (≤ 100), ``page_token`` (the id
        of the last entry of the previous page)."""
        types = set(query.get("activity_types", "").split(",")) - {""}
        after = query.get("after", "")[:10]
        rows = [a for a in self.activities
                if not isinstance(a, dict) or ((not types or a.get("activity_type") in types)
                                               and str(a.get("date", ""))[:10] >= after)]
        if query.get("direction", "desc") == "desc":
            rows.reverse()
        token = query.get("page_token")
        if token is not None:
            ids = [a.get("id") if isinstance(a, dict) else None for a in rows]
            rows = rows[ids.index(token) + 1:] if token in ids else []
        return 200, rows[:min(int(query.get("page_size", 100)), 100)]

    def _buying_power(self) -> Decimal:
        reserved = sum(
            (
                (o.target_qty - o.filled_qty) * Decimal(str(o.price))
                for o in self.orders
                if o.side == "buy" and o.status in ("accepted", "partially_filled")
            ),
            Decimal(0),
        )
        return self.cash - reserved

    def _positions_json(self) -> list[dict[str, Any]]:
        return [
            position_json(sym, qty, avg, Decimal(str(self.last_close(sym))))
            for sym, (qty, avg) in sorted(self.positions.items())
        ]

    def _calendar(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        start = date.fromisoformat(query.get("start", "1900-01-01")[:10])
        end = date.fromisoformat(query.get("end", "2999-12-31")[:10])
        days = [d.date() for d in pd.DatetimeIndex(self.bars.index) if start <= d.date() <= end]
        return 200, [calendar_day_json(d) for d in days]

    def _asset(self, query: dict[str, str], body: Any, sym: str) -> tuple[int, Any]:
        if sym not in self.assets:
            return 404, {"code": 40410000, "message": "asset not found"}
        return 200, asset_json(sym, *self.assets[sym])

    def _submit(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        cid = body.get("client_order_id") or str(uuid.uuid4())
        if any(o.client_order_id == cid for o in self.orders):
            return 422, {"code": DUPLICATE_CID_CODE, "message": "client_order_id must be unique"}
        sym, side = body["symbol"], body["side"]
        if body.get("type") != "market" or body.get("time_in_force") != "day":
            return 422, {"code": UNPROCESSABLE_CODE, "message": "only market day orders here"}
        if sym not in self.assets or not self.assets[sym][0]:
            return 422, {"code": UNPROCESSABLE_CODE, "message": f"asset {sym} is not tradable"}
        price = Decimal(str(self.last_close(sym)))
        qty = None if body.get("qty") is None else Decimal(str(body["qty"]))
        notional = None if body.get("notional") is None else Decimal(str(body["notional"]))
        if (qty is None) == (notional is None):
            return 422, {"code": UNPROCESSABLE_CODE, "message": "qty or notional is required"}
        fractionable = self.assets[sym][1]
        if notional is not None and not fractionable:
            return 422, {
                "code": UNPROCESSABLE_CODE,
                "message": "notional not allowed: not fractionable",
            }
        if qty is not None and qty != qty.to_integral_value() and not fractionable:
            return 422, {"code": UNPROCESSABLE_CODE, "message": "fractional qty not allowed"}
        target = (
            qty if qty is not None else (notional / price).quantize(Decimal("1e-9"), ROUND_DOWN)
        )
        if side == "buy" and target * price > self._buying_power():
            return 403, {"code": BUYING_POWER_CODE, "message": "insufficient buying power"}
        held = self.positions.get(sym, (Decimal(0), Decimal(0)))[0]
        if side == "sell" and target > held:
            return 403, {
                "code": BUYING_POWER_CODE,
                "message": "insufficient qty available for order "
                f"(requested: {target}, available: {held})",
            }
        now = datetime.now(UTC)
        order = FakeOrder(
            str(uuid.uuid4()), cid, sym, side, qty, notional, float(price), target, now
        )
        self.orders.append(order)
        if self.fill_polls == 0:
            self._advance(order, force_all=True)
        return 200, order_json(order)

    def _advance(self, order: FakeOrder, force_all: bool = False) -> None:
        """One poll: fill the next slice of the order at the last close."""
        if order.status not in ("accepted", "partially_filled") or not self.is_open:
            return
        if order.symbol in self.stuck_symbols and not force_all:
            return
        order.polls += 1
        steps = max(self.fill_polls, 1)
        if force_all or order.polls >= steps:
            new_filled = order.target_qty
        else:
            new_filled = (order.target_qty * order.polls / steps).quantize(
                Decimal("1e-9"), ROUND_DOWN
            )
        delta = new_filled - order.filled_qty
        if delta <= 0:
            return
        price = Decimal(str(order.price))
        qty_held, avg = self.positions.get(order.symbol, (Decimal(0), Decimal(0)))
        if order.side == "buy":
            self.cash -= delta * price
            total = qty_held + delta
            self.positions[order.symbol] = (total, (qty_held * avg + delta * price) / total)
        else:
            self.cash += delta * price
            left = qty_held - delta
            if left > 0:
                self.positions[order.symbol] = (left, avg)
            else:
                self.positions.pop(order.symbol, None)
        order.filled_qty = new_filled
        order.updated_at = datetime.now(UTC)
        if new_filled >= order.target_qty:
            order.status, order.filled_at = "filled", order.updated_at
        else:
            order.status = "partially_filled"

    def _list_orders(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        status = query.get("status", "open")
        open_states = ("accepted", "partially_filled", "new")
        chosen = [
            o
            for o in self.orders
            if status == "all" or (status == "open") == (o.status in open_states)
        ]
        return 200, [order_json(o) for o in reversed(chosen)]

    def _order_by_cid(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        cid = query.get("client_order_id", "")
        return self._poll(next((o for o in self.orders if o.client_order_id == cid), None))

    def _order_by_id(self, query: dict[str, str], body: Any, oid: str) -> tuple[int, Any]:
        return self._poll(next((o for o in self.orders if o.id == oid), None))

    def _poll(self, order: FakeOrder | None) -> tuple[int, Any]:
        if order is None:
            return 404, {"code": 40410000, "message": "order not found"}
        self._advance(order)
        return 200, order_json(order)

    def _cancel(self, query: dict[str, str], body: Any, oid: str) -> tuple[int, Any]:
        order = next((o for o in self.orders if o.id == oid), None)
        if order is None:
            return 404, {"code": 40410000, "message": "order not found"}
        if order.symbol in self.fill_on_cancel:
            self._advance(order, force_all=True)
        if order.status not in ("accepted", "partially_filled"):
            return 422, {"code": UNPROCESSABLE_CODE, "message": "order is not cancelable"}
        order.status, order.canceled_at = "canceled", datetime.now(UTC)
        order.updated_at = order.canceled_at
        return 204, None

    # ---------------------------------------------------------------- market data
    def _bars(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if query.get("timeframe") != "1Day":
            return 400, {"code": 40010000, "message": "only 1Day bars in the fake"}
        symbols = [s for s in query.get("symbols", "").split(",") if s]
        start = _parse_ts(query.get("start"), datetime.min.replace(tzinfo=UTC))
        end = _parse_ts(query.get("end"), datetime.max.replace(tzinfo=UTC))
        # every session's close stamp, converted once per request (not per bar); JSON is
        # built only for the page served
        stamps = pd.DatetimeIndex(self.bars.index).tz_localize(NEW_YORK).tz_convert(UTC)
        in_range = (stamps >= start) & (stamps <= end)
        rows: list[tuple[str, datetime, float]] = []
        for sym in sorted(symbols):
            if sym not in self.bars.columns:
                continue
            closes = self.bars[sym].to_numpy(dtype=float)
            keep = np.flatnonzero(in_range & ~np.isnan(closes))
            rows.extend((sym, stamp, close) for stamp, close in
                        zip(stamps[keep].to_pydatetime(), closes[keep].tolist(), strict=True))
        offset = (
            int(base64.b64decode(query["page_token"]).decode()) if query.get("page_token") else 0
        )
        page = min(int(query.get("limit") or 1000), self.bars_page_size)
        chunk = rows[offset : offset + page]
        out: dict[str, list[dict[str, Any]]] = {}
        for sym, stamp, close in chunk:
            out.setdefault(sym, []).append(bar_json(stamp, close))
        more = offset + page < len(rows)
        token = base64.b64encode(str(offset + page).encode()).decode() if more else None
        return 200, {"bars": out, "next_page_token": token}


    def _latest_trades(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        symbols = [s for s in query.get("symbols", "").split(",") if s]
        stamp = datetime.now(UTC)
        out: dict[str, Any] = {}
        for sym in symbols:
            override = self.latest_trades.get(sym)
            if isinstance(override, int | float) and not isinstance(override, bool):
                out[sym] = trade_json(stamp, float(override))
            elif override is not None:
                out[sym] = override
            elif sym in self.bars.columns:
                out[sym] = trade_json(stamp, self.last_close(sym))
        return 200, {"trades": out}


def _parse_ts(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
