"""The Alpaca adapter: alpaca-py's ``TradingClient`` and ``StockHistoricalDataClient``
behind our ``Broker`` protocol. alpaca-py types never leave the ``brokers/alpaca*`` modules.

Safety for an unattended bot (see shared/FIELD-NOTES.md): every HTTP call has a timeout and
our own bounded retry (``alpaca_http``); every order carries its ``client_order_id`` and a
422 duplicate is resolved by looking the order up, never by resending (and if the lookup
cannot show the order yet, its state is unknown: a ``SubmitOutcomeUnknownError``, never a
rejection); rejections come back as ``REJECTED`` orders carrying Alpaca's code and message;
keys never reach a message, even when the venue echoes one (``Redactor``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import structlog
from alpaca.common.enums import Sort
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.models import BarSet, Trade
from alpaca.data.requests import StockBarsRequest, StockLatestTradeRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide as AlpacaSide
from alpaca.trading.enums import QueryOrderStatus, TimeInForce
from alpaca.trading.models import Asset, TradeAccount
from alpaca.trading.models import Calendar as AlpacaCalendar
from alpaca.trading.models import Clock as AlpacaClock
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.requests import GetCalendarRequest, GetOrdersRequest, MarketOrderRequest

from brokers.alpaca.activities import MAX_PAGES, PAGE_SIZE, transfer_query, transfers_from_page
from brokers.alpaca.data import (
    NEW_YORK,
    CachedDailyCloses,
    DailyCloseCache,
    RawBars,
    lookback_start,
)
from brokers.alpaca.http import ApiErrorInfo, Redactor, RetryBudget, install_http_policy
from brokers.alpaca.orders import (
    OrderBook,
    not_a_plain_order,
    order_from_alpaca,
    order_symbols,
    size_order,
)
from brokers.base import (
    Account,
    AssetInfo,
    CashTransfer,
    Clock,
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Position,
    masked_account_number,
)
from brokers.errors import (
    BrokerConfigError,
    BrokerDataError,
    BrokerTransientError,
    SubmitOutcomeUnknownError,
)

log = structlog.get_logger("brokers.alpaca")
_Model = TypeVar("_Model")

KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"
PAPER_ACCOUNT_PREFIX = "PA"
DUPLICATE_CLIENT_ORDER_ID_CODE = 40010001
SIP_RECENT_DATA_DELAY = timedelta(minutes=16)
CANCEL_GRACE_POLLS = 4  # polls after a cancel for Alpaca to report it (pending_cancel first)
_FEEDS = {"iex": DataFeed.IEX, "sip": DataFeed.SIP, "delayed_sip": DataFeed.DELAYED_SIP}


def account_is_paper(account: Account) -> bool:
    """Alpaca paper account numbers begin with "PA"."""
    return account.account_number.startswith(PAPER_ACCOUNT_PREFIX)


def check_account_mode(account: Account, paper: bool, fix: str | None = None) -> None:
    """Refuse a config for the live account that reaches a paper account, or the reverse;
    ``fix`` says what to change (default: the keys or ``[bot] mode``)."""
    if account_is_paper(account) != paper:
        want, got = ("paper", "live") if paper else ("live", "paper")
        raise BrokerConfigError(
            f"configured for the {want} account but Alpaca account "
            f"{mask_account_number(account)} is a {got} account: "
            f"{fix or f'use the {want} keys or change [bot] mode'}"
        )


def mask_account_number(account: Account) -> str:
    """Account number with all but the last 4 characters masked, for logs."""
    return masked_account_number(account.account_number)


def _same_terms(order: Order, side: OrderSide, qty: float | None,
                notional: float | None) -> bool:
    """Whether the venue's ``order`` is the one we sent under its id (a resend after a
    lost answer), not an older order that happens to carry it: same side, and the same
    quantity (or notional) to the venue's 9 decimals (the symbol is in the id)."""
    def same(a: float | None, b: float | None) -> bool:
        return (a is None and b is None) or (
            a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b)))
    return order.side is side and same(order.qty, qty) and same(order.notional, notional)


def _terms(side: OrderSide, symbol: str, qty: float | None, notional: float | None) -> str:
    return f"{side.value} {qty if qty is not None else f'${notional}'} {symbol}"


class AlpacaBroker:
    """``Broker`` over Alpaca's REST APIs (paper or live). Not thread-safe: one cycle at a time."""

    name = "alpaca"

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        paper: bool,
        feed: str = "iex",
        base_url: str | None = None,
        data_url: str | None = None,
        cache_dir: Path,
        http_timeout_secs: float = 10.0,
        retry_budget_secs: float = 60.0,
        poll_interval_secs: float = 0.5,
        retry_backoff_secs: float = 0.25,
        retry_backoff_max_secs: float = 8.0,
    ) -> None:
        if feed not in _FEEDS:
            raise BrokerConfigError(f"alpaca.feed = {feed!r}: expected one of {sorted(_FEEDS)}")
        if not api_key or not secret_key:
            raise BrokerConfigError(f"Alpaca keys missing: set {KEY_ENV} and {SECRET_ENV}")
        self.paper = paper
        self.feed = feed
        self.base_url = base_url
        self.data_url = data_url
        self.poll_interval_secs = poll_interval_secs
        self._trading = TradingClient(api_key, secret_key, paper=paper, url_override=base_url)
        self._data = StockHistoricalDataClient(api_key, secret_key, url_override=data_url)
        install_http_policy(self._trading, http_timeout_secs)
        install_http_policy(self._data, http_timeout_secs)
        # venue text (errors, odd values) may echo a key: masked before any message holds it
        self._redact = Redactor((api_key, secret_key))
        self._budget = RetryBudget(retry_budget_secs, retry_backoff_secs, retry_backoff_max_secs,
                                   redact=self._redact)
        self._orders = OrderBook()
        # ids Alpaca refused as duplicates: it holds an order under each, shown or not yet
        self._ids_at_venue: set[str] = set()
        self._skipped_orders: set[str] = set()  # other kinds of order, logged once each
        self._assets: dict[str, AssetInfo] = {}
        self._closes = CachedDailyCloses(
            DailyCloseCache(Path(cache_dir), feed),
            self._fetch_bars,
            lambda: datetime.now(NEW_YORK).date(),
            source=f"alpaca bars (feed {feed})",
        )

    @classmethod
    def from_environment(cls, **kwargs: Any) -> AlpacaBroker:
        """Build with keys from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` (never a file)."""
        keys: dict[str, Any] = {}
        for arg, env in (("api_key", KEY_ENV), ("secret_key", SECRET_ENV)):
            value = os.environ.get(env, "").strip()
            if not value:
                raise BrokerConfigError(
                    f"environment variable {env} is not set: export your Alpaca "
                    f"{'paper' if kwargs.get('paper', True) else 'live'} key there"
                )
            keys[arg] = value
        return cls(**keys, **kwargs)

    def __repr__(self) -> str:
        return (
            f"AlpacaBroker(paper={self.paper}, feed={self.feed!r}, "
            f"base_url={self.base_url!r}, data_url={self.data_url!r})"
        )

    def _number(self, value: object, field: str) -> float:
        return _number(value, field, self._redact)

    def close(self) -> None:
        """Close both HTTP sessions."""
        for client in (self._trading, self._data):
            session = getattr(client, "_session", None)  # alpaca-py keeps a requests.Session
            if session is not None:
                session.close()

    # ------------------------------------------------------------------ cycle
    def on_wake(self) -> None:
        """A new cycle: restore the retry budget."""
        self._budget.reset()

    def clock(self) -> Clock:
        c = _expect(self._budget.call("GET /v2/clock", self._trading.get_clock), AlpacaClock,
                    "GET /v2/clock")
        return Clock(
            now=c.timestamp.astimezone(UTC),
            is_open=bool(c.is_open),
            next_open=c.next_open.astimezone(UTC),
            next_close=c.next_close.astimezone(UTC),
        )

    def trading_days(self, start: date, end: date) -> list[date]:
        """Exchange trading days in [start, end] from Alpaca's calendar (not the host's)."""
        request = GetCalendarRequest(start=start, end=end)
        days = self._budget.call("GET /v2/calendar", lambda: self._trading.get_calendar(request))
        return [_expect(d, AlpacaCalendar, "GET /v2/calendar").date for d in days]

    def account(self) -> Account:
        a = _expect(self._budget.call("GET /v2/account", self._trading.get_account),
                    TradeAccount, "GET /v2/account")
        return Account(
            account_number=str(a.account_number),
            cash=self._number(a.cash, "account.cash"),
            equity=self._number(a.equity, "account.equity"),
            buying_power=self._number(a.buying_power, "account.buying_power"),
            currency=str(a.currency or "USD"),
        )

    def cash_transfers(self, since: date) -> list[CashTransfer]:
        """Deposits, withdrawals and cash journals booked on or after ``since``, oldest
        first (``brokers.alpaca.activities``); pages through ``page_token``, bounded."""
        out: list[CashTransfer] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            query = transfer_query(since, token)

            def read_page(query: dict[str, str | int] = query) -> Any:
                return self._trading.get("/account/activities", query)

            rows = self._budget.call("GET /v2/account/activities", read_page)
            out.extend(transfers_from_page(rows, self._redact))
            if not isinstance(rows, list) or len(rows) < PAGE_SIZE:
                return out
            last = rows[-1].get("id") if isinstance(rows[-1], dict) else None
            if not isinstance(last, str) or not last:
                break
            token = last
        raise BrokerDataError(f"GET /v2/account/activities: more than {MAX_PAGES * PAGE_SIZE} "
                              f"cash transfers since {since} (or a page without an id to "
                              "continue from)")

    def positions(self) -> dict[str, Position]:
        rows = self._budget.call("GET /v2/positions", self._trading.get_all_positions)
        out = {}
        for row in rows:
            p = _expect(row, AlpacaPosition, "GET /v2/positions")
            out[p.symbol] = Position(
                symbol=p.symbol,
                qty=self._number(p.qty, f"position {p.symbol}.qty"),
                avg_entry_price=self._number(p.avg_entry_price, f"position {p.symbol}.avg_entry_price"),
                market_value=self._number(p.market_value or "0", f"position {p.symbol}.market_value"),
            )
        return out

    def assets(self, symbols: Sequence[str]) -> dict[str, AssetInfo]:
        """Tradable/fractionable flags; a non-tradable or unknown symbol is a config error."""
        out = {}
        for symbol in symbols:

            def unknown(info: ApiErrorInfo, symbol: str = symbol) -> Any:
                raise BrokerConfigError(
                    f"symbol {symbol}: Alpaca does not know this asset ({info.describe()}); "
                    "remove it from [universe].symbols"
                )

            a = _expect(self._budget.call(
                f"GET /v2/assets/{symbol}",
                lambda s=symbol: self._trading.get_asset(s),  # type: ignore[misc]
                refused=unknown,
            ), Asset, f"GET /v2/assets/{symbol}")
            status = str(getattr(a.status, "value", a.status))
            if not (a.tradable and status == "active"):
                raise BrokerConfigError(
                    f"symbol {symbol} is not tradable on Alpaca (status {status}, "
                    f"tradable={a.tradable}): no order can be sent for it, so every cycle "
                    "fails (no other symbol is traded either) until it trades again, as after "
                    "a halt, or you remove it from [universe].symbols; shares of it already "
                    "held are then left untouched outside the universe (sell them at Alpaca "
                    "once it trades)"
                )
            out[symbol] = AssetInfo(symbol=symbol, tradable=True, fractionable=bool(a.fractionable))
        self._assets.update(out)
        return out

    # ------------------------------------------------------------------ data
    def history(self, symbols: Sequence[str], lookback_days: int, end: date) -> pd.DataFrame:
        """Last ``lookback_days`` daily adjusted closes up to ``end`` (cached on disk)."""
        frame = self._closes.closes(list(symbols), lookback_start(end, lookback_days), end)
        return frame.tail(lookback_days)

    def daily_closes(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """Daily adjusted closes on [start, end] (for ``allocbot data fetch``)."""
        return self._closes.closes(list(symbols), start, end)

    def _fetch_bars(self, symbols: Sequence[str], start: date, end: date) -> RawBars:
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            timeframe=TimeFrame.Day,
            start=datetime.combine(start, datetime.min.time(), NEW_YORK),
            end=self._bars_end(end),
            adjustment=Adjustment.ALL,
            feed=_FEEDS[self.feed],
            sort=Sort.ASC,
        )
        what = f"GET /v2/stocks/bars {','.join(symbols)} {start}..{end}"
        barset = _expect(self._budget.call(what, lambda: self._data.get_stock_bars(request)),
                         BarSet, what)
        raw = {s: [(b.timestamp, float(b.close)) for b in bars] for s, bars in barset.data.items()}
        log.info(
            "bars_fetched",
            symbols=list(symbols),
            start=str(start),
            end=str(end),
            bars=sum(len(v) for v in raw.values()),
            feed=self.feed,
        )
        return raw

    def latest_trade_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        """Last trade price per symbol (GET /v2/stocks/trades/latest on the configured feed),
        for the pre-trade check of the latest bar; a symbol without a trade is left out."""
        request = StockLatestTradeRequest(symbol_or_symbols=list(symbols), feed=_FEEDS[self.feed])
        what = f"GET /v2/stocks/trades/latest {','.join(symbols)}"
        trades = self._budget.call(what, lambda: self._data.get_stock_latest_trade(request))
        if not isinstance(trades, dict):
            raise BrokerDataError(f"{what}: Alpaca answered a {type(trades).__name__}, "
                                  "expected a table of trades by symbol")
        return {str(symbol): self._number(_expect(trade, Trade, what).price, f"{symbol} trade price")
                for symbol, trade in trades.items()}

    def _bars_end(self, end: date) -> datetime:
        """End of ``end``'s New York day; for the SIP feed no later than 16 minutes ago,
        since Alpaca's free plan refuses (403) queries of the latest 15 minutes of SIP."""
        end_of_day = datetime.combine(end, datetime.max.time().replace(microsecond=0), NEW_YORK)
        if self.feed != "sip":
            return end_of_day
        return min(end_of_day, datetime.now(UTC) - SIP_RECENT_DATA_DELAY)

    # ------------------------------------------------------------------ orders
    def submit_order(self, request: OrderRequest) -> Order:
        """Send a market day order; idempotent on ``client_order_id``; rejections returned."""
        asset = self._assets.get(request.symbol) or self.assets([request.symbol])[request.symbol]
        size = size_order(request, asset.fractionable)
        if size.refusal is not None:
            return self._orders.not_sent(request, size.refusal)
        qty, notional = size.qty, size.notional
        alpaca_request = MarketOrderRequest(
            symbol=request.symbol,
            qty=qty,
            notional=notional,
            side=AlpacaSide.BUY if request.side is OrderSide.BUY else AlpacaSide.SELL,
            time_in_force=TimeInForce.DAY,
            client_order_id=request.client_order_id,
        )
        cid = request.client_order_id

        def refused(info: ApiErrorInfo) -> Any:
            if info.code == DUPLICATE_CLIENT_ORDER_ID_CODE or "must be unique" in info.message:
                existing = self.get_order_by_client_id(cid)
                if existing is not None and _same_terms(existing, request.side, qty, notional):
                    log.info(
                        "order_duplicate_found",
                        client_order_id=cid,
                        order_id=existing.id,
                        status=existing.status.value,
                    )
                    return existing
                if existing is not None:  # never book another order's fills as this one's
                    return self._orders.not_sent(request, (
                        f"client_order_id {cid} already names another order at Alpaca "
                        f"({_terms(existing.side, existing.symbol, existing.qty, existing.notional)}"
                        f", not {_terms(request.side, request.symbol, qty, notional)}): was the "
                        "state file restored from a backup? Nothing was sent; the next cycle "
                        "uses new ids"))
                # Alpaca holds an order under this id but does not show it (yet): it may be
                # working or filled. Not a rejection (that is final and never reconciled):
                # unknown, so the cycle fails and the next reconciliation books what it is.
                self._ids_at_venue.add(cid)
                log.warning("order_state_unknown", client_order_id=cid, symbol=request.symbol,
                            reason=info.describe())
                raise SubmitOutcomeUnknownError(
                    f"POST /v2/orders {cid}: Alpaca refused a resend because it already holds "
                    f"an order with client_order_id {cid} ({info.describe()}), but its lookup "
                    "does not show that order yet: its state is unknown, nothing was booked. "
                    "The next cycle's reconciliation looks it up again.")
            return self._orders.rejected(request, qty, notional, info)

        raw = self._budget.call(
            f"POST /v2/orders {cid}",
            lambda: self._trading.submit_order(alpaca_request),
            refused=refused,
            creates=True,
        )
        if isinstance(raw, Order):  # answered by ``refused``: already logged or rejected
            if raw.status is OrderStatus.REJECTED and not raw.id:
                log.warning(
                    "order_refused",
                    client_order_id=cid,
                    symbol=request.symbol,
                    reason=raw.reject_reason,
                )
            return raw
        order = self._orders.observe(order_from_alpaca(raw, self._redact))
        log.info(
            "order_accepted",
            client_order_id=cid,
            order_id=order.id,
            symbol=request.symbol,
            side=request.side.value,
            qty=qty,
            notional=notional,
        )
        return order

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The venue's order under ``client_order_id``; None if Alpaca has none (404) —
        unless Alpaca already said it holds one (a 422 duplicate): then the order's state is
        unknown and a ``BrokerTransientError`` is raised, never None (which would let the
        journal call it unsent)."""
        local = self._orders.local(client_order_id)
        if local is not None:
            return local
        what = f"GET /v2/orders:by_client_order_id {client_order_id}"

        def refused(info: ApiErrorInfo) -> Any:
            if info.status != 404:
                return _raise_refused(info)
            if client_order_id in self._ids_at_venue:
                raise BrokerTransientError(
                    f"{what}: Alpaca answered 404, but it refused this client_order_id as a "
                    "duplicate earlier, so it holds the order: its state is unknown. The next "
                    "cycle looks it up again.")
            return None

        raw = self._budget.call(
            what, lambda: self._trading.get_order_by_client_id(client_order_id), refused=refused)
        return None if raw is None else self._orders.observe(order_from_alpaca(raw, self._redact))

    def list_orders(self, open_only: bool = True, latest: int | None = None) -> list[Order]:
        """The venue's orders. Orders of another kind (multi-leg, bracket/OCO/OTO, options,
        crypto) cannot be ours — this adapter sends only single-symbol equity orders — and
        have no single symbol or side to translate: they are left out, each logged once as
        ``foreign_order_skipped`` (the bot leaves them untouched, as any foreign order)."""
        status = QueryOrderStatus.OPEN if open_only else QueryOrderStatus.ALL
        # the most recent first (Alpaca's default direction), at most 500 a page
        query = GetOrdersRequest(status=status, limit=min(latest or 500, 500))
        rows = self._budget.call("GET /v2/orders", lambda: self._trading.get_orders(query))
        orders = []
        for row in (_expect(r, AlpacaOrder, "GET /v2/orders") for r in rows):
            kind = not_a_plain_order(row)
            if kind is None:
                orders.append(self._orders.observe(order_from_alpaca(row, self._redact)))
                continue
            order_id = str(row.id)
            if order_id not in self._skipped_orders:
                self._skipped_orders.add(order_id)
                log.info("foreign_order_skipped", order_id=order_id,
                         client_order_id=self._redact(str(row.client_order_id)),
                         kind=self._redact(kind),
                         symbols=[self._redact(s) for s in order_symbols(row)],
                         status=str(getattr(row.status, "value", row.status)),
                         note="not a single-symbol equity order, so not ours; left untouched")
        return orders

    def cancel_order(self, order_id: str) -> None:
        """Ask Alpaca to cancel; an order that is already done (404/422) is left alone."""

        def refused(info: ApiErrorInfo) -> None:
            log.info("order_cancel_refused", order_id=order_id, reason=info.describe())

        self._budget.call(
            f"DELETE /v2/orders/{order_id}",
            lambda: self._trading.cancel_order_by_id(order_id),
            refused=refused,
        )

    def wait_for_order(self, client_order_id: str, timeout_secs: float) -> Order:
        """Poll until terminal; on timeout cancel, then re-fetch (it may have filled
        meanwhile) for a few more polls until Alpaca reports the cancel as done.
        ``timeout_secs`` 0 reads the order once (the caller's wait for it is already over:
        a batch shares one ``order_wait_secs`` from its submits)."""
        order = self._poll_until_terminal(client_order_id, timeout_secs)
        if order.status.is_terminal:
            return order
        log.warning(
            "order_wait_timed_out",
            client_order_id=client_order_id,
            order_id=order.id,
            status=order.status.value,
            filled_qty=order.filled_qty,
            timeout_secs=round(timeout_secs, 3),
        )
        self.cancel_order(order.id)
        grace_secs = CANCEL_GRACE_POLLS * self.poll_interval_secs
        return self._poll_until_terminal(client_order_id, grace_secs)

    def _poll_until_terminal(self, client_order_id: str, timeout_secs: float) -> Order:
        deadline = time.monotonic() + timeout_secs
        while True:
            order = self._require_order(client_order_id)
            remaining = deadline - time.monotonic()
            if order.status.is_terminal or remaining <= 0:
                return order
            time.sleep(min(self.poll_interval_secs, remaining))

    def _require_order(self, client_order_id: str) -> Order:
        order = self.get_order_by_client_id(client_order_id)
        if order is None:
            raise BrokerDataError(
                f"order {client_order_id}: Alpaca has no order with this client_order_id"
            )
        return order

    def fills_for(self, client_order_id: str) -> list[Fill]:
        """Executions observed so far, synthesized from cumulative filled_qty (commission 0)."""
        return self._orders.fills(client_order_id)


def fetch_daily_closes(
    broker: AlpacaBroker, symbols: Sequence[str], start: date, end: date
) -> pd.DataFrame:
    """Daily adjusted closes for the ``allocbot data fetch`` command: index ``date``
    (exchange dates), one column per symbol."""
    if end < start:
        raise BrokerDataError(f"data fetch: end {end} is before start {start}")
    return broker.daily_closes(symbols, start, end)


def _expect(value: object, kind: type[_Model], what: str) -> _Model:
    """The SDK's model of an answer; a raw dict or any other shape is a data error (alpaca-py
    types every call as ``Model | dict``: the dict form appears only with ``raw_data``)."""
    if not isinstance(value, kind):
        raise BrokerDataError(
            f"{what}: Alpaca answered a {type(value).__name__}, expected {kind.__name__}")
    return value


def _number(value: object, field: str, redact: Callable[[str], str] = str) -> float:
    """Alpaca sends numbers as strings; a missing, garbled or infinite one is a data error
    (its text quoted with ``redact`` applied: a garbled field could hold anything)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise BrokerDataError(redact(f"Alpaca {field} is {value!r}, expected a finite number"))
    return number


def _raise_refused(info: ApiErrorInfo) -> Any:
    raise BrokerConfigError(f"Alpaca refused the request ({info.describe()})")
