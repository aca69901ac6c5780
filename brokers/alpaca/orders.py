"""Alpaca orders → our ``Order``/``Fill`` types, and the per-process record of what was seen.

Alpaca reports ``filled_qty`` and ``filled_avg_price`` cumulatively and may repeat an update;
``OrderBook.observe`` turns each increase into one synthetic ``Fill`` (commission 0: Alpaca
charges none on US equities). The fill's price follows from the two volume-weighted
averages: ``(q2*p2 - q1*p1) / (q2 - q1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

import structlog

from brokers.alpaca.http import ApiErrorInfo
from brokers.base import Fill, Order, OrderRequest, OrderSide, OrderStatus
from brokers.errors import BrokerDataError

log = structlog.get_logger("brokers.alpaca")

_QTY_DECIMALS = 9
_QTY_STEP = Decimal(1).scaleb(-_QTY_DECIMALS)
_CENT = Decimal("0.01")
_PRICE_DECIMALS = 6  # below a hundredth of a cent: float noise from the averaging
_STATUS = {
    "new": OrderStatus.NEW,
    "pending_new": OrderStatus.NEW,
    "accepted": OrderStatus.ACCEPTED,
    "accepted_for_bidding": OrderStatus.ACCEPTED,
    "pending_review": OrderStatus.ACCEPTED,
    "held": OrderStatus.ACCEPTED,
    "calculated": OrderStatus.ACCEPTED,
    "stopped": OrderStatus.ACCEPTED,
    "suspended": OrderStatus.ACCEPTED,
    "done_for_day": OrderStatus.ACCEPTED,
    "pending_cancel": OrderStatus.ACCEPTED,
    "pending_replace": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "replaced": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


@dataclass(frozen=True, slots=True)
class SeenOrder:
    """An order as Alpaca reported it, with the time of that report."""

    order: Order
    updated_at: datetime


_SIDES = {"buy": OrderSide.BUY, "sell": OrderSide.SELL}
_PLAIN_ORDER_CLASSES = ("", "simple")  # what a MarketOrderRequest without legs becomes
_EQUITY = "us_equity"


def _text(value: object) -> str | None:
    """An enum's value, a string as is, None for None."""
    return None if value is None else str(getattr(value, "value", value))


def not_a_plain_order(raw: object) -> str | None:
    """Why an alpaca-py ``Order`` is not a single-symbol US-equity order (the only kind
    this adapter sends), or None if it is one.

    Other kinds (alpaca-py's ``Order``: ``order_class`` mleg/bracket/oco/oto, ``legs``,
    ``asset_class`` us_option/crypto; a multi-leg order has no top-level ``symbol`` or
    ``side``) are someone else's: they cannot be translated into our ``Order`` without
    inventing a symbol or a side.
    """
    order_class = _text(getattr(raw, "order_class", None))
    if order_class is not None and order_class not in _PLAIN_ORDER_CLASSES:
        return f"order class {order_class}"
    legs = getattr(raw, "legs", None)
    if legs:
        return f"an order with {len(legs)} legs"
    asset_class = _text(getattr(raw, "asset_class", None))
    if asset_class is not None and asset_class != _EQUITY:
        return f"asset class {asset_class}"
    return None


def order_symbols(raw: object) -> list[str]:
    """The symbols an order names: its own, else its legs' (for a log line)."""
    symbol = getattr(raw, "symbol", None)
    if symbol:
        return [str(symbol)]
    return [str(leg.symbol) for leg in getattr(raw, "legs", None) or [] if leg.symbol]


def _float_or_none(value: object, field: str, cid: str, redact: Callable[[str], str]
                   ) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise BrokerDataError(redact(
            f"order {cid}: Alpaca's {field} is {str(value)[:40]!r}, expected a finite number"))
    return number


def order_from_alpaca(raw: object, redact: Callable[[str], str] = str) -> SeenOrder:
    """Translate an alpaca-py ``Order`` model. Non-terminal Alpaca states map to NEW /
    ACCEPTED, or PARTIALLY_FILLED once something has filled.

    An answer that cannot be read as a single-symbol equity order (another kind, no symbol,
    a side other than buy/sell, a number that is not one) raises ``BrokerDataError`` naming
    the order: it is never booked as something it is not. ``redact`` masks secrets in the
    venue's text that the message quotes.
    """
    cid = str(raw.client_order_id)  # type: ignore[attr-defined]
    kind = not_a_plain_order(raw)
    if kind is not None:
        raise BrokerDataError(redact(
            f"order {cid}: Alpaca reports {kind} ({'/'.join(order_symbols(raw)) or 'no symbol'})"
            ", not a single-symbol equity order; this adapter cannot book it"))
    status_text = str(getattr(raw.status, "value", raw.status))  # type: ignore[attr-defined]
    status = _STATUS.get(status_text, OrderStatus.ACCEPTED)
    filled_qty = _float_or_none(raw.filled_qty, "filled_qty", cid, redact) or 0.0  # type: ignore[attr-defined]
    if status in (OrderStatus.NEW, OrderStatus.ACCEPTED) and filled_qty > 0:
        status = OrderStatus.PARTIALLY_FILLED
    side = _SIDES.get(_text(raw.side) or "")  # type: ignore[attr-defined]
    if side is None or not raw.symbol:  # type: ignore[attr-defined]
        raise BrokerDataError(redact(
            f"order {cid}: Alpaca reports symbol {_text(raw.symbol)!r} and side "  # type: ignore[attr-defined]
            f"{_text(raw.side)!r}; expected a symbol and buy or sell"))  # type: ignore[attr-defined]
    order = Order(
        id=str(raw.id),  # type: ignore[attr-defined]
        client_order_id=cid,
        symbol=str(raw.symbol),  # type: ignore[attr-defined]
        side=side,
        status=status,
        qty=_float_or_none(raw.qty, "qty", cid, redact),  # type: ignore[attr-defined]
        notional=_float_or_none(raw.notional, "notional", cid, redact),  # type: ignore[attr-defined]
        filled_qty=filled_qty,
        filled_avg_price=_float_or_none(raw.filled_avg_price, "filled_avg_price", cid, redact),  # type: ignore[attr-defined]
        submitted_at=raw.submitted_at.astimezone(UTC),  # type: ignore[attr-defined]
        reject_reason=f"alpaca status {status_text}" if status is OrderStatus.REJECTED else None,
    )
    updated = raw.filled_at if status is OrderStatus.FILLED and raw.filled_at else raw.updated_at  # type: ignore[attr-defined]
    return SeenOrder(order, updated.astimezone(UTC))


def round_qty_down(qty: float, fractionable: bool) -> float:
    """Shares Alpaca accepts: 9 decimals if fractionable, else whole shares; never rounded up
    (a sell never exceeds the holding, a buy never exceeds the cash planned for it)."""
    step = _QTY_STEP if fractionable else Decimal(1)
    return float(Decimal(repr(qty)).quantize(step, rounding=ROUND_DOWN))


@dataclass(frozen=True, slots=True)
class OrderSize:
    """What to send for a request: ``qty`` or ``notional``, or ``refusal`` = why nothing."""

    qty: float | None
    notional: float | None
    refusal: str | None = None


def size_order(request: OrderRequest, fractionable: bool) -> OrderSize:
    """Round a request to what Alpaca accepts: qty down to 9 decimals (whole shares if the
    asset is not fractionable), notional down to cents (fractionable assets only)."""
    if request.qty is not None:
        qty = round_qty_down(request.qty, fractionable)
        if qty <= 0:
            unit = "0.000000001 shares" if fractionable else "1 whole share"
            return OrderSize(
                None,
                None,
                f"{request.symbol}: qty {request.qty} is below "
                f"{unit} (rounded down to 0); not sent",
            )
        return OrderSize(qty, None)
    assert request.notional is not None  # OrderRequest guarantees exactly one
    if not fractionable:
        return OrderSize(
            None,
            None,
            f"{request.symbol} is not fractionable: a notional "
            "order is impossible; send a whole-share qty",
        )
    notional = float(Decimal(repr(request.notional)).quantize(_CENT, rounding=ROUND_DOWN))
    if notional <= 0:
        return OrderSize(
            None,
            None,
            f"{request.symbol}: notional {request.notional} rounds down to 0 cents; not sent",
        )
    return OrderSize(None, notional)


class OrderBook:
    """What this process saw of each order: cumulative fill levels, fills, local verdicts."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, float]] = {}
        self._fills: dict[str, list[Fill]] = {}
        self._local: dict[str, Order] = {}

    def observe(self, seen: SeenOrder) -> Order:
        """Record a report; a rise in cumulative ``filled_qty`` becomes one ``Fill``."""
        order = seen.order
        cid = order.client_order_id
        prev_qty, prev_px = self._seen.get(cid, (0.0, 0.0))
        qty, px = order.filled_qty, order.filled_avg_price
        delta = round(qty - prev_qty, _QTY_DECIMALS)
        if delta > 0 and px is not None:
            price = (qty * px - prev_qty * prev_px) / delta
            if not math.isfinite(price) or price <= 0:
                price = px
            price = round(price, _PRICE_DECIMALS)
            fill = Fill(
                order_id=order.id,
                client_order_id=cid,
                symbol=order.symbol,
                side=order.side,
                qty=delta,
                price=price,
                commission=0.0,
                at=seen.updated_at,
            )
            self._fills.setdefault(cid, []).append(fill)
            self._seen[cid] = (qty, px)
            log.info(
                "order_fill_observed",
                client_order_id=cid,
                symbol=order.symbol,
                side=order.side.value,
                qty=delta,
                price=price,
                cumulative_qty=qty,
                status=order.status.value,
            )
        return order

    def fills(self, client_order_id: str) -> list[Fill]:
        return list(self._fills.get(client_order_id, []))

    def local(self, client_order_id: str) -> Order | None:
        """An order decided here without Alpaca holding it (not sent, or rejected)."""
        return self._local.get(client_order_id)

    def not_sent(self, request: OrderRequest, reason: str) -> Order:
        log.warning(
            "order_not_sent",
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            reason=reason,
        )
        return self._remember(request, request.qty, request.notional, reason)

    def rejected(
        self, request: OrderRequest, qty: float | None, notional: float | None, info: ApiErrorInfo
    ) -> Order:
        return self._remember(request, qty, notional, f"alpaca {info.describe()}")

    def _remember(
        self, request: OrderRequest, qty: float | None, notional: float | None, reason: str
    ) -> Order:
        order = Order(
            id="",
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            status=OrderStatus.REJECTED,
            qty=qty,
            notional=notional,
            submitted_at=None,
            reject_reason=reason,
        )
        self._local[request.client_order_id] = order
        return order
