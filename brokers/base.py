"""The Broker protocol and the venue-neutral value types every adapter translates to.

Units: quantities are shares (fractional only where the asset allows it), prices are
per share in account currency, cash/equity/notional are account currency. Datetimes are
timezone-aware UTC. Nothing here imports from ``bot/``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from brokers.errors import BrokerDataError

if TYPE_CHECKING:  # numpy/pandas load lazily: read-only observers (status, health) skip them
    import pandas as pd

CLIENT_ORDER_ID_MAX_CHARS = 48
EXCHANGE_TZ = ZoneInfo("America/New_York")  # the exchange's wall clock (NYSE)
QTY_DECIMALS = 9  # fractional share precision: Alpaca's, and the simulator's


def _require_aware(name: str, value: datetime | None) -> None:
    if value is None or value.tzinfo is UTC:  # the common case, without a utcoffset() call
        return
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


def _require_finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


# The kind of the journal write that marks a submit as about to go out
# (``bot.engine.journal.Journal.mark_submit_sent``), "<kind> <side>", as a journal write
# hook sees it: the fault drill kills "after_intents" inside it (rolled back: journaled,
# nothing sent).
SUBMIT_SENT_WRITE = "submit_sent"


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderStatus(StrEnum):
    """Lifecycle states, a subset of Alpaca's that every venue can map to."""

    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)


@dataclass(frozen=True, slots=True)
class Clock:
    """The venue's market clock. ``now`` is the venue's time (replayed for the simulator)."""

    now: datetime
    is_open: bool
    next_open: datetime | None = None
    next_close: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("now", "next_open", "next_close"):
            _require_aware(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class Account:
    """Account snapshot. ``equity`` = cash + market value of positions."""

    account_number: str
    cash: float
    equity: float
    buying_power: float
    currency: str = "USD"

    def __post_init__(self) -> None:
        for name in ("cash", "equity", "buying_power"):
            _require_finite(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    qty: float
    avg_entry_price: float
    market_value: float

    def __post_init__(self) -> None:
        for name in ("qty", "avg_entry_price", "market_value"):
            _require_finite(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class AssetInfo:
    symbol: str
    tradable: bool
    fractionable: bool


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A market, day order. Exactly one of ``qty`` (shares) or ``notional`` (currency)."""

    symbol: str
    side: OrderSide
    client_order_id: str
    qty: float | None = None
    notional: float | None = None

    def __post_init__(self) -> None:
        if (self.qty is None) == (self.notional is None):
            raise ValueError(f"order {self.client_order_id}: give exactly one of qty or notional")
        amount = self.qty if self.qty is not None else self.notional
        _require_finite("qty/notional", amount)
        if amount is None or amount <= 0:
            raise ValueError(f"order {self.client_order_id}: qty/notional must be > 0, got {amount}")
        if not self.client_order_id or len(self.client_order_id) > CLIENT_ORDER_ID_MAX_CHARS:
            raise ValueError(
                f"client_order_id must be 1..{CLIENT_ORDER_ID_MAX_CHARS} characters, "
                f"got {self.client_order_id!r}"
            )


@dataclass(frozen=True, slots=True)
class Order:
    """The venue's view of an order. ``filled_qty`` is cumulative."""

    id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    status: OrderStatus
    qty: float | None
    notional: float | None
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    submitted_at: datetime | None = None
    reject_reason: str | None = None

    def __post_init__(self) -> None:
        _require_aware("submitted_at", self.submitted_at)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: ``qty`` shares at ``price``, ``commission`` in account currency."""

    order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: float
    price: float
    commission: float
    at: datetime

    def __post_init__(self) -> None:
        _require_aware("at", self.at)
        for name in ("qty", "price", "commission"):
            _require_finite(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """What waiting on an order produced: its latest state and the new fills seen."""

    order: Order
    new_fills: tuple[Fill, ...] = field(default_factory=tuple)


# Trusted constructors: the same frozen values, built without ``__post_init__``'s checks, for
# our own code rebuilding a value from parts that were validated when they first entered (the
# simulator's books hold 10⁵ orders; ``tests/test_sim_broker_books.py`` checks every field).
# Values from outside (a venue's response, a file) always go through the checked constructor.
_new = object.__new__
_ORDER_SET = tuple(Order.__dict__[name].__set__ for name in Order.__slots__)
_FILL_SET = tuple(Fill.__dict__[name].__set__ for name in Fill.__slots__)
_POSITION_SET = tuple(Position.__dict__[name].__set__ for name in Position.__slots__)
_REQUEST_SET = tuple(OrderRequest.__dict__[name].__set__ for name in OrderRequest.__slots__)


def masked_account_number(number: str) -> str:
    """An account number with all but its last 4 characters masked (logs, messages)."""
    return "*" * max(len(number) - 4, 0) + number[-4:]


def qty_requests(rows: Sequence[tuple[str, str, OrderSide, float]]) -> list[OrderRequest]:
    """An ``OrderRequest`` by quantity for each (client_order_id, symbol, side, qty) row,
    with ``__post_init__``'s checks made once over the batch (a replay builds 10⁵
    requests); a batch that fails them is built one by one, which names the bad request."""
    if not all(q is not None and math.isfinite(q) and q > 0
               and 0 < len(cid) <= CLIENT_ORDER_ID_MAX_CHARS for cid, _, _, q in rows):
        return [OrderRequest(symbol, side, cid, q) for cid, symbol, side, q in rows]
    s0, s1, s2, s3, s4 = _REQUEST_SET
    requests = []
    for cid, symbol, side, q in rows:
        request = _new(OrderRequest)
        s0(request, symbol)
        s1(request, side)
        s2(request, cid)
        s3(request, q)
        s4(request, None)
        requests.append(request)
    return requests


def trusted_order(id: str, client_order_id: str, symbol: str, side: OrderSide,
                  status: OrderStatus, qty: float | None, notional: float | None,
                  filled_qty: float, filled_avg_price: float | None,
                  submitted_at: datetime | None, reject_reason: str | None) -> Order:
    """``Order(...)`` for already-checked parts (``submitted_at`` aware), no re-validation."""
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10 = _ORDER_SET
    order = _new(Order)
    s0(order, id)
    s1(order, client_order_id)
    s2(order, symbol)
    s3(order, side)
    s4(order, status)
    s5(order, qty)
    s6(order, notional)
    s7(order, filled_qty)
    s8(order, filled_avg_price)
    s9(order, submitted_at)
    s10(order, reject_reason)
    return order


def trusted_fill(order_id: str, client_order_id: str, symbol: str, side: OrderSide,
                 qty: float, price: float, commission: float, at: datetime) -> Fill:
    """``Fill(...)`` for already-checked parts (finite numbers, aware ``at``)."""
    s0, s1, s2, s3, s4, s5, s6, s7 = _FILL_SET
    fill = _new(Fill)
    s0(fill, order_id)
    s1(fill, client_order_id)
    s2(fill, symbol)
    s3(fill, side)
    s4(fill, qty)
    s5(fill, price)
    s6(fill, commission)
    s7(fill, at)
    return fill


def trusted_position(symbol: str, qty: float, avg_entry_price: float,
                     market_value: float) -> Position:
    """``Position(...)`` for already-checked finite numbers."""
    s0, s1, s2, s3 = _POSITION_SET
    position = _new(Position)
    s0(position, symbol)
    s1(position, qty)
    s2(position, avg_entry_price)
    s3(position, market_value)
    return position


@runtime_checkable
class Broker(Protocol):
    """What the cycle needs from a venue. Adapters translate their venue to these types.

    ``submit_order`` must be idempotent on ``client_order_id``: submitting an id the
    venue already has returns the existing order and never places a second one.
    """

    name: str

    def on_wake(self) -> None:
        """Called once per scheduler wake, before the cycle: the simulator advances its
        replayed market one trading day; a live venue resets its per-cycle retry budget."""
        ...

    def close(self) -> None:
        """Release connections and files (the account itself stays where it is)."""
        ...

    def clock(self) -> Clock: ...

    def account(self) -> Account: ...

    def positions(self) -> dict[str, Position]: ...

    def assets(self, symbols: Sequence[str]) -> dict[str, AssetInfo]: ...

    def history(self, symbols: Sequence[str], lookback_days: int, end: date) -> pd.DataFrame:
        """Daily adjusted closes, index = exchange dates (``DatetimeIndex``, naive dates),
        one column per symbol, the last row ≤ ``end``, at most ``lookback_days`` rows."""
        ...

    def submit_order(self, request: OrderRequest) -> Order: ...

    def get_order_by_client_id(self, client_order_id: str) -> Order | None: ...

    def list_orders(self, open_only: bool = True, latest: int | None = None) -> list[Order]:
        """The venue's orders (only the open ones by default); ``latest``: at most that many
        of the most recent (None: every one the venue lists)."""
        ...

    def cancel_order(self, order_id: str) -> None: ...

    def wait_for_order(self, client_order_id: str, timeout_secs: float) -> Order:
        """Poll until the order is terminal or ``timeout_secs`` elapse; return its latest state."""
        ...

    def fills_for(self, client_order_id: str) -> list[Fill]:
        """Every execution of the order so far (for journaling; may be reconstructed)."""
        ...


class LatestBarFills(Protocol):
    """An optional broker capability: ``fills_at_latest_bar`` is True when market orders
    fill at the latest daily bar the cycle planned on (the simulator, also behind the fault
    drill's wrapper), so buys are costed at their planning prices with no margin for the
    price moving before the fill. Brokers without it are costed with the margin
    (``bot.engine.execution.MARKET_BUY_MARGIN_BPS``)."""

    @property
    def fills_at_latest_bar(self) -> bool: ...


@runtime_checkable
class TradePriceSource(Protocol):
    """An optional broker capability: the venue's latest trade price per symbol (the
    pre-trade guards compare it with the latest daily bar). Brokers without it skip that check."""

    def latest_trade_prices(self, symbols: Sequence[str]) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class CashTransfer:
    """Money moved into (``amount`` > 0) or out of (< 0) the account from outside it: a
    deposit, a withdrawal, a cash journal between accounts, cash transferred in by ACATS.
    ``id`` is the venue's (unique per account); ``on`` the day the venue booked it;
    ``kind`` the venue's activity type. Dividends, interest and fees are not transfers:
    they are the portfolio's return."""

    id: str
    on: date
    amount: float  # account currency
    kind: str

    def __post_init__(self) -> None:
        _require_finite("amount", self.amount)


@runtime_checkable
class CashTransferSource(Protocol):
    """An optional broker capability: the account's cash transfers booked on or after
    ``since``, oldest first, so the kill switch can tell a withdrawal from a loss
    (``bot.engine.cash_transfers``). Brokers without it (the simulator) have none."""

    def cash_transfers(self, since: date) -> list[CashTransfer]: ...


def validate_price_frame(prices: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a wide close-price frame: sorted unique weekday dates, positive finite prices.

    Returns the frame unchanged; raises ``BrokerDataError`` naming the symbol and date.
    Leading NaNs (an asset not yet listed) are allowed; a NaN after the first price is not.
    """
    import numpy as np
    import pandas as pd

    if not isinstance(prices.index, pd.DatetimeIndex):
        raise BrokerDataError(f"{source}: index must be dates")
    dup = prices.index[prices.index.duplicated()]
    if len(dup):
        raise BrokerDataError(f"{source}: duplicate date {dup[0].date()}")
    if not prices.index.is_monotonic_increasing:
        bad = next(
            i for i in range(1, len(prices.index)) if prices.index[i] < prices.index[i - 1]
        )
        raise BrokerDataError(
            f"{source}: dates not sorted ascending at {prices.index[bad].date()} "
            f"(after {prices.index[bad - 1].date()})"
        )
    weekend = prices.index.day_of_week >= 5
    if weekend.any():
        day = prices.index[int(np.argmax(weekend))]
        raise BrokerDataError(
            f"{source}: {day.date()} is a {day.day_name()}: exchange closes fall on weekdays "
            "(a date column shifted by a day, or calendar days filled in?)")
    values = prices.to_numpy(dtype=float)
    present = ~np.isnan(values)
    gap = np.maximum.accumulate(present, axis=0) & ~present
    if gap.any():
        r, c = map(int, next(zip(*gap.nonzero(), strict=True)))
        raise BrokerDataError(
            f"{source}: missing price (NaN) for {prices.columns[c]} on {prices.index[r].date()}"
        )
    nonpos = present & ~(np.isfinite(values) & (values > 0))
    if nonpos.any():
        r, c = map(int, next(zip(*nonpos.nonzero(), strict=True)))
        raise BrokerDataError(
            f"{source}: price for {prices.columns[c]} on {prices.index[r].date()} is "
            f"{values[r, c]}, must be a positive finite number"
        )
    return prices
