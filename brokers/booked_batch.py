"""A side's market orders booked in one call by a venue that answers at once (the simulator).

A replay books ~10⁵ orders. One ``Order`` and one ``Fill`` object per order, built by the
simulator only for the journal to take them apart again, were most of execution's time.
A venue with the ``ImmediateFillVenue`` capability takes a list of requests and answers in
columns; the journal records the batch in one step. Live venues keep ``submit_order``, one
order at a time, each journaled as soon as the venue has answered it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from brokers.base import (
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    trusted_fill,
    trusted_order,
)


@dataclass(frozen=True, slots=True)
class BookedBatch:
    """One row per request, in request order, each order terminal: filled in one fill of
    ``filled_qty`` shares at ``prices`` (``commissions`` in account currency), or not
    filled (price NaN, commission 0; ``reasons`` holds a rejection's reason by row).
    The venue appends the rows (``add_fill``, ``add_order``) before handing it over;
    readers only read."""

    client_order_ids: list[str] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    sides: list[OrderSide] = field(default_factory=list)
    qty: list[float | None] = field(default_factory=list)
    notional: list[float | None] = field(default_factory=list)
    statuses: list[OrderStatus] = field(default_factory=list)
    filled_qty: list[float] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)
    commissions: list[float] = field(default_factory=list)
    submitted_at: list[datetime | None] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.client_order_ids)

    def add_fill(self, order_id: str, client_order_id: str, symbol: str, side: OrderSide,
                 qty: float | None, notional: float | None, filled_qty: float, price: float,
                 commission: float, at: datetime) -> None:
        """A row for an order filled at once in one fill (the venue's checked numbers)."""
        self.add_fills([order_id], [client_order_id], [symbol], side, [qty], [notional],
                       [filled_qty], [price], [commission], at)

    def add_fills(self, order_ids: list[str], client_order_ids: list[str], symbols: list[str],
                  side: OrderSide, qty: Sequence[float | None], notional: Sequence[float | None],
                  filled_qty: list[float], prices: list[float], commissions: list[float],
                  at: datetime) -> None:
        """Rows for orders of one side each filled at once in one fill, at one time."""
        n = len(order_ids)
        self.client_order_ids.extend(client_order_ids)
        self.order_ids.extend(order_ids)
        self.symbols.extend(symbols)
        self.sides.extend([side] * n)
        self.qty.extend(qty)
        self.notional.extend(notional)
        self.statuses.extend([OrderStatus.FILLED] * n)
        self.filled_qty.extend(filled_qty)
        self.prices.extend(prices)
        self.commissions.extend(commissions)
        self.submitted_at.extend([at] * n)

    def add_order(self, order: Order, fills: Sequence[Fill]) -> None:
        """A row for an order the venue already holds (a known id, a rejection), with its
        fills: none, or the one it was filled in."""
        fill = fills[0] if len(fills) == 1 else None
        if len(fills) > 1 or not order.status.is_terminal or (fill is not None and (
                fill.qty != order.filled_qty or fill.price != order.filled_avg_price
                or fill.at != order.submitted_at)):
            raise ValueError(f"order {order.client_order_id}: a booked batch holds terminal "
                             f"orders filled at most once, at their average price")
        if order.reject_reason is not None:
            self.reasons[len(self.client_order_ids)] = order.reject_reason
        self.client_order_ids.append(order.client_order_id)
        self.order_ids.append(order.id)
        self.symbols.append(order.symbol)
        self.sides.append(order.side)
        self.qty.append(order.qty)
        self.notional.append(order.notional)
        self.statuses.append(order.status)
        self.filled_qty.append(order.filled_qty)
        self.prices.append(math.nan if order.filled_avg_price is None
                           else order.filled_avg_price)
        self.commissions.append(0.0 if fill is None else fill.commission)
        self.submitted_at.append(order.submitted_at)

    def order(self, row: int) -> Order:
        """Row ``row`` as the ``Order`` ``submit_order`` returns."""
        price = self.prices[row]
        return trusted_order(
            self.order_ids[row], self.client_order_ids[row], self.symbols[row],
            self.sides[row], self.statuses[row], self.qty[row], self.notional[row],
            self.filled_qty[row], None if math.isnan(price) else price,
            self.submitted_at[row], self.reasons.get(row))

    def has_fill(self, row: int) -> bool:
        """Whether row ``row`` was filled (in its one fill, at ``prices[row]``)."""
        return not math.isnan(self.prices[row]) and self.submitted_at[row] is not None

    def all_filled(self) -> bool:
        """Whether every row is FILLED in its one fill (``has_fill``), with no reason."""
        return (self.statuses.count(OrderStatus.FILLED) == len(self.statuses)
                and not self.reasons and None not in self.submitted_at
                and not any(price != price for price in self.prices))  # NaN: no fill

    def fills(self, row: int) -> list[Fill]:
        """Row ``row``'s fills as ``fills_for`` returns them: none, or its one fill."""
        at = self.submitted_at[row]
        if at is None or not self.has_fill(row):
            return []
        return [trusted_fill(self.order_ids[row], self.client_order_ids[row],
                             self.symbols[row], self.sides[row], self.filled_qty[row],
                             self.prices[row], self.commissions[row], at)]


@runtime_checkable
class ImmediateFillVenue(Protocol):
    """An optional broker capability: a list of market orders submitted in one call, each
    answered at once (filled or rejected), as ``submit_order`` would answer it one by one
    (idempotent on ``client_order_id``)."""

    def submit_batch(self, requests: Sequence[OrderRequest]) -> BookedBatch: ...
