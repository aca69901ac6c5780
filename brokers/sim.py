"""A simulated paper broker: a persistent SQLite account trading a replayed price file.

The market is a wide frame of daily closes. Its clock replays the frame: each
``on_wake()`` moves one trading day forward (``advance_to`` jumps, for the backtest), the
market is "open" at 15:45 New York time of the replay day, and market orders fill at once
at that day's close moved against the trader by ``slippage_bps``. The account (cash,
positions, orders, fills, replay cursor) lives in ``sim_*`` tables of the bot's SQLite
file, one transaction per order, so it survives restarts; ``":memory:"`` gives a
throw-away account for backtests.

Numbers: quantities are rounded to 9 decimals (Alpaca's fractional precision); cash is
plain float64 arithmetic (never rounded to cents, so equity = cash + Σ qty × close holds
exactly and nothing is silently lost); commission = max(commission_min,
|qty × fill price| × commission_bps / 1e4).

One instance per database file at a time: the account is cached in memory and written
through, so a second live instance on the same file would not see the first's trades.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import structlog

from brokers.base import (
    Account,
    AssetInfo,
    Clock,
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Position,
    validate_price_frame,
)
from brokers.errors import BrokerConfigError, BrokerDataError

log = structlog.get_logger("brokers.sim")

EXCHANGE_TZ = ZoneInfo("America/New_York")
REPLAY_TIME = time(15, 45)  # the simulated cycle runs just before the close it fills at
OPEN_TIME = time(9, 30)
CLOSE_TIME = time(16, 0)
WARMUP_ROWS = 252  # default replay start: one year (252 trading days) of history before it
QTY_DECIMALS = 9  # fractional share precision, as Alpaca
ACCOUNT_NUMBER = "sim-paper"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cash REAL NOT NULL,
    starting_cash REAL NOT NULL,
    cursor_date TEXT,
    ended INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sim_positions (
    symbol TEXT PRIMARY KEY,
    qty REAL NOT NULL,
    avg_entry_price REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sim_orders (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL UNIQUE,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    status TEXT NOT NULL,
    qty REAL,
    notional REAL,
    filled_qty REAL NOT NULL,
    filled_avg_price REAL,
    submitted_at TEXT NOT NULL,
    reject_reason TEXT
);
CREATE TABLE IF NOT EXISTS sim_fills (
    order_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    commission REAL NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sim_fills_client_order_id ON sim_fills (client_order_id);
"""
_ORDER_COLUMNS = (
    "id, client_order_id, symbol, side, status, qty, notional, filled_qty, "
    "filled_avg_price, submitted_at, reject_reason"
)
_SELECT_ORDER_BY_CID = f"SELECT {_ORDER_COLUMNS} FROM sim_orders WHERE client_order_id = ?"
_INSERT_ORDER = (
    f"INSERT INTO sim_orders (seq, {_ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_FILL = "INSERT INTO sim_fills VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT_POSITION = (
    "INSERT INTO sim_positions (symbol, qty, avg_entry_price) VALUES (?, ?, ?) "
    "ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, "
    "avg_entry_price = excluded.avg_entry_price"
)


@dataclass(frozen=True, slots=True)
class SimCosts:
    """Trading costs: commission = max(min, |notional| × bps / 1e4); slippage moves the price."""

    commission_bps: float = 0.0
    commission_min: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("commission_bps", "commission_min", "slippage_bps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise BrokerConfigError(f"sim {name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class FillPlan:
    """What a market order does to the account if it is accepted."""

    qty: float
    price: float
    commission: float
    cash_delta: float


def plan_fill(
    request: OrderRequest,
    close: float,
    held_qty: float,
    cash: float,
    costs: SimCosts,
    fractional: bool,
) -> FillPlan | str:
    """Price a market order at ``close``; return the fill, or a rejection reason.

    Reasons start with a stable code: ``fractional_not_allowed``, ``qty_too_small``,
    ``insufficient_qty`` (sell more than held: no shorting), ``insufficient_buying_power``.
    """
    buy = request.side is OrderSide.BUY
    slip = costs.slippage_bps / 1e4
    price = close * (1 + slip) if buy else close * (1 - slip)
    if request.qty is not None:
        qty = round(request.qty, QTY_DECIMALS)
        if not fractional and abs(request.qty - round(request.qty)) > 10.0**-QTY_DECIMALS:
            return (
                f"fractional_not_allowed: qty {request.qty} of {request.symbol} is not a whole "
                f"number of shares and fractional trading is off"
            )
    else:
        if not fractional:
            return (
                f"fractional_not_allowed: notional order for {request.symbol} needs fractional "
                f"shares, which are off; send a whole-share qty"
            )
        notional = float(request.notional or 0.0)
        # Floor (not round) so a notional buy never costs more than asked; the epsilon keeps
        # an exact quotient from flooring one unit down through float error.
        qty = math.floor(notional / price * 10**QTY_DECIMALS + 1e-6) / 10**QTY_DECIMALS
    if qty <= 0:
        return f"qty_too_small: {request.symbol} order rounds to 0 shares at price {price}"
    gross = qty * price
    commission = max(costs.commission_min, gross * costs.commission_bps / 1e4)
    if buy:
        cost = gross + commission
        if cost > cash:
            return (
                f"insufficient_buying_power: buy {qty} {request.symbol} costs {cost:.2f} "
                f"(commission {commission:.2f}) but cash is {cash:.2f}"
            )
        return FillPlan(qty, price, commission, -cost)
    if qty > held_qty:
        return (
            f"insufficient_qty: sell {qty} {request.symbol} but only {held_qty} held "
            f"(short selling is not allowed)"
        )
    proceeds = gross - commission
    if cash + proceeds < 0:
        return (
            f"insufficient_buying_power: commission {commission:.2f} on selling "
            f"{request.symbol} exceeds cash {cash:.2f} plus proceeds {gross:.2f}"
        )
    return FillPlan(qty, price, commission, proceeds)


def _exchange_time(day: date, at: time) -> datetime:
    """``day`` at New York wall-clock ``at``, as an aware UTC datetime."""
    return datetime.combine(day, at, EXCHANGE_TZ).astimezone(UTC)


def _order_from_row(row: tuple) -> Order:
    return Order(
        id=row[0],
        client_order_id=row[1],
        symbol=row[2],
        side=OrderSide(row[3]),
        status=OrderStatus(row[4]),
        qty=row[5],
        notional=row[6],
        filled_qty=row[7],
        filled_avg_price=row[8],
        submitted_at=datetime.fromisoformat(row[9]),
        reject_reason=row[10],
    )


class SimulatedBroker:
    """The ``Broker`` protocol over a replayed price frame and a SQLite paper account."""

    name = "sim"

    def __init__(
        self,
        db_path: str | Path,
        prices: pd.DataFrame,
        *,
        starting_cash: float,
        commission_bps: float = 0.0,
        commission_min: float = 0.0,
        slippage_bps: float = 0.0,
        fractional: bool = True,
        replay_start: date | None = None,
    ) -> None:
        if not math.isfinite(starting_cash) or starting_cash < 0:
            raise BrokerConfigError(f"sim starting_cash must be >= 0, got {starting_cash!r}")
        self._costs = SimCosts(commission_bps, commission_min, slippage_bps)
        self._fractional = fractional
        self._prices = validate_price_frame(prices, "sim prices")
        if self._prices.empty:
            raise BrokerDataError("sim prices: no rows or no symbols")
        self._closes = self._prices.to_numpy(dtype=np.float64, copy=True)
        self._closes.flags.writeable = False
        self._dates: list[date] = [ts.date() for ts in self._prices.index]
        self._row_of: dict[date, int] = {d: i for i, d in enumerate(self._dates)}
        self._col_of: dict[str, int] = {str(s): j for j, s in enumerate(self._prices.columns)}
        if len(self._col_of) != self._prices.shape[1]:
            raise BrokerDataError("sim prices: duplicate symbol columns")
        if replay_start is None:
            self._start_row = min(WARMUP_ROWS, len(self._dates) - 1)
        else:
            self._start_row = bisect_left(self._dates, replay_start)
        self._lock = threading.RLock()
        self._db = self._connect(db_path)
        self._load_or_create(float(starting_cash))

    # ----- storage -------------------------------------------------------------------

    @staticmethod
    def _connect(db_path: str | Path) -> sqlite3.Connection:
        if str(db_path) != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(
                str(db_path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise BrokerConfigError(f"sim account database {db_path}: {exc}") from exc
        return db

    def _load_or_create(self, starting_cash: float) -> None:
        row = self._db.execute("SELECT cash, cursor_date, ended FROM sim_account").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO sim_account (id, cash, starting_cash, cursor_date, ended, created_at)"
                " VALUES (1, ?, ?, NULL, 0, ?)",
                (starting_cash, starting_cash, datetime.now(UTC).isoformat()),
            )
            self._cash, self._row, self._ended = starting_cash, None, False
            log.info("sim_account_created", starting_cash=starting_cash)
        else:
            self._cash, cursor, self._ended = float(row[0]), row[1], bool(row[2])
            self._row = None
            if cursor is not None:
                cursor_day = date.fromisoformat(cursor)
                if cursor_day not in self._row_of:
                    raise BrokerDataError(
                        f"sim account replay date {cursor} is not in the price data; use the "
                        f"price file the account was started with, or a new state file"
                    )
                self._row = self._row_of[cursor_day]
            log.info("sim_account_resumed", cash=self._cash, replay_date=cursor)
        self._qty: dict[str, float] = {}
        self._avg: dict[str, float] = {}
        held = self._db.execute("SELECT symbol, qty, avg_entry_price FROM sim_positions")
        for symbol, qty, avg in held:
            self._qty[symbol], self._avg[symbol] = float(qty), float(avg)
        last_seq = self._db.execute("SELECT MAX(seq) FROM sim_orders").fetchone()[0]
        self._next_seq = 1 + (last_seq or 0)

    def _save_cursor(self) -> None:
        cursor = None if self._row is None else self._dates[self._row].isoformat()
        self._db.execute(
            "UPDATE sim_account SET cursor_date = ?, ended = ? WHERE id = 1",
            (cursor, int(self._ended)),
        )

    def close(self) -> None:
        """Close the database connection (the account stays on disk)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SimulatedBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- replay clock --------------------------------------------------------------

    @property
    def prices(self) -> pd.DataFrame:
        """The whole validated price frame (future rows included: for the backtest's books)."""
        return self._prices

    def _is_open(self) -> bool:
        return self._row is not None and not self._ended

    def current_date(self) -> date | None:
        """The replay day the market is open on; None before the first wake or after the end."""
        with self._lock:
            return self._dates[self._row] if self._is_open() and self._row is not None else None

    def on_wake(self) -> None:
        """Advance the replayed market one trading day (the first wake opens the start day)."""
        with self._lock:
            if self._row is None:
                if self._start_row >= len(self._dates):
                    self._ended = True
                else:
                    self._row = self._start_row
                    log.info("replay_started", replay_date=self._dates[self._row].isoformat())
            elif self._row + 1 < len(self._dates):
                self._row += 1
                self._ended = False
            elif not self._ended:
                self._ended = True
                log.info("replay_ended", last_date=self._dates[self._row].isoformat())
            self._save_cursor()

    def advance_to(self, day: date) -> date:
        """Open the market on the last data date ≤ ``day`` and return it (backtest driver).

        Raises:
            BrokerDataError: ``day`` is before the first data date.
            ValueError: it would move the replay backwards (fills cannot be undone).
        """
        with self._lock:
            row = bisect_right(self._dates, day) - 1
            if row < 0:
                raise BrokerDataError(
                    f"sim prices: {day} is before the first date {self._dates[0]}"
                )
            if self._row is not None and row < self._row:
                raise ValueError(
                    f"replay cannot move backwards: at {self._dates[self._row]}, asked for {day}"
                )
            self._row, self._ended = row, False
            self._save_cursor()
            return self._dates[row]

    def clock(self) -> Clock:
        """Open at 15:45 New York on the replay day; closed before the first wake and at the end."""
        with self._lock:
            if self._is_open() and self._row is not None:
                day = self._dates[self._row]
                following = self._row + 1 < len(self._dates)
                return Clock(
                    now=_exchange_time(day, REPLAY_TIME),
                    is_open=True,
                    next_open=(
                        _exchange_time(self._dates[self._row + 1], OPEN_TIME) if following else None
                    ),
                    next_close=_exchange_time(day, CLOSE_TIME),
                )
            if self._row is None and self._start_row < len(self._dates):
                first = self._dates[self._start_row]
                return Clock(
                    now=_exchange_time(first, time(9, 0)),
                    is_open=False,
                    next_open=_exchange_time(first, OPEN_TIME),
                    next_close=_exchange_time(first, CLOSE_TIME),
                )
            return Clock(now=_exchange_time(self._dates[-1], CLOSE_TIME), is_open=False)

    def _visible_rows(self) -> int:
        """How many rows are in the past or present of the replay clock."""
        if self._row is None:
            return min(self._start_row, len(self._dates))
        return self._row + 1

    # ----- market data ---------------------------------------------------------------

    def _columns(self, symbols: Sequence[str]) -> list[int]:
        missing = [s for s in symbols if s not in self._col_of]
        if missing:
            raise BrokerDataError(
                f"sim prices have no symbol(s) {', '.join(missing)} "
                f"(available: {', '.join(self._col_of)})"
            )
        return [self._col_of[s] for s in symbols]

    def history(self, symbols: Sequence[str], lookback_days: int, end: date) -> pd.DataFrame:
        """The last ``lookback_days`` closes on or before min(``end``, replay day); never later."""
        if lookback_days < 1:
            raise ValueError(f"lookback_days must be >= 1, got {lookback_days}")
        symbols = list(symbols)
        cols = self._columns(symbols)
        with self._lock:
            stop = min(bisect_right(self._dates, end), self._visible_rows())
        start = max(0, stop - lookback_days)
        return pd.DataFrame(
            self._closes[start:stop][:, cols],
            index=self._prices.index[start:stop],
            columns=pd.Index(symbols),
        )

    def assets(self, symbols: Sequence[str]) -> dict[str, AssetInfo]:
        self._columns(symbols)
        return {s: AssetInfo(s, tradable=True, fractionable=self._fractional) for s in symbols}

    def _mark_row(self) -> int:
        """The row positions are valued at: today, or the last visible day when closed."""
        return self._row if self._row is not None else self._visible_rows() - 1

    def _close(self, symbol: str, row: int) -> float:
        if row < 0:
            raise BrokerDataError(f"sim: no price for {symbol} before the replay starts")
        value = float(self._closes[row, self._col_of[symbol]])
        if math.isnan(value):
            raise BrokerDataError(f"sim: no price for held {symbol} on {self._dates[row]}")
        return value

    # ----- account -------------------------------------------------------------------

    def account(self) -> Account:
        """equity = cash + Σ qty × close (math.fsum: correctly rounded, order-independent)."""
        with self._lock:
            row = self._mark_row()
            value = [qty * self._close(s, row) for s, qty in self._qty.items()]
            equity = math.fsum([self._cash, *value])
            return Account(ACCOUNT_NUMBER, self._cash, equity, buying_power=self._cash)

    def positions(self) -> dict[str, Position]:
        with self._lock:
            row = self._mark_row()
            return {
                s: Position(s, qty, self._avg[s], qty * self._close(s, row))
                for s, qty in self._qty.items()
            }

    # ----- orders --------------------------------------------------------------------

    def submit_order(self, request: OrderRequest) -> Order:
        """Fill a market order now at today's close ± slippage, or record it as rejected.

        Idempotent: a known ``client_order_id`` returns the stored order, untouched.
        """
        with self._lock:
            known = self.get_order_by_client_id(request.client_order_id)
            if known is not None:
                return known
            outcome = self._evaluate(request)
            now = self.clock().now
            qty = None if request.qty is None else float(request.qty)
            notional = None if request.notional is None else float(request.notional)
            order_id = f"sim-{self._next_seq:09d}"
            if isinstance(outcome, str):
                order = Order(
                    order_id, request.client_order_id, request.symbol, request.side,
                    OrderStatus.REJECTED, qty, notional,
                    submitted_at=now, reject_reason=outcome,
                )  # fmt: skip
                self._write(order, None)
            else:
                order = Order(
                    order_id, request.client_order_id, request.symbol, request.side,
                    OrderStatus.FILLED, qty, notional,
                    filled_qty=outcome.qty, filled_avg_price=outcome.price, submitted_at=now,
                )  # fmt: skip
                self._write(order, outcome)
            self._next_seq += 1
            return order

    def _evaluate(self, request: OrderRequest) -> FillPlan | str:
        if not self._is_open() or self._row is None:
            return "market_closed: the simulated market is closed (replay not started or ended)"
        if request.symbol not in self._col_of:
            return f"unknown_symbol: {request.symbol} is not in the sim price data"
        close = float(self._closes[self._row, self._col_of[request.symbol]])
        if math.isnan(close):
            return f"no_price: {request.symbol} has no price on {self._dates[self._row]}"
        held = self._qty.get(request.symbol, 0.0)
        return plan_fill(request, close, held, self._cash, self._costs, self._fractional)

    def _write(self, order: Order, plan: FillPlan | None) -> None:
        """Persist an order (and its fill's effect on cash/position) in one transaction."""
        assert order.submitted_at is not None
        at = order.submitted_at.isoformat()
        symbol = order.symbol
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                _INSERT_ORDER,
                (self._next_seq, order.id, order.client_order_id, symbol, order.side.value,
                 order.status.value, order.qty, order.notional, order.filled_qty,
                 order.filled_avg_price, at, order.reject_reason),
            )  # fmt: skip
            if plan is not None:
                new_cash, new_qty, new_avg = self._apply(symbol, order.side, plan)
                db.execute(
                    _INSERT_FILL,
                    (order.id, order.client_order_id, symbol, order.side.value, plan.qty,
                     plan.price, plan.commission, at),
                )  # fmt: skip
                db.execute("UPDATE sim_account SET cash = ? WHERE id = 1", (new_cash,))
                if new_qty > 0:
                    db.execute(_UPSERT_POSITION, (symbol, new_qty, new_avg))
                else:
                    db.execute("DELETE FROM sim_positions WHERE symbol = ?", (symbol,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if plan is not None:
            self._cash = new_cash
            if new_qty > 0:
                self._qty[symbol], self._avg[symbol] = new_qty, new_avg
            else:
                self._qty.pop(symbol, None)
                self._avg.pop(symbol, None)

    def _apply(self, symbol: str, side: OrderSide, plan: FillPlan) -> tuple[float, float, float]:
        """New (cash, qty, avg entry) after a fill; avg entry excludes commission, as Alpaca."""
        held = self._qty.get(symbol, 0.0)
        avg = self._avg.get(symbol, 0.0)
        if side is OrderSide.BUY:
            new_qty = round(held + plan.qty, QTY_DECIMALS)
            new_avg = (held * avg + plan.qty * plan.price) / new_qty
        else:
            new_qty = round(held - plan.qty, QTY_DECIMALS)
            new_avg = avg
        return self._cash + plan.cash_delta, new_qty, new_avg

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        with self._lock:
            row = self._db.execute(_SELECT_ORDER_BY_CID, (client_order_id,)).fetchone()
        return None if row is None else _order_from_row(row)

    def list_orders(self, open_only: bool = True) -> list[Order]:
        """Every order, oldest first; simulated orders are terminal at once, so none are open."""
        if open_only:
            return []
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_ORDER_COLUMNS} FROM sim_orders ORDER BY seq"
            ).fetchall()
        return [_order_from_row(r) for r in rows]

    def cancel_order(self, order_id: str) -> None:
        """No-op: every simulated order is already terminal. Unknown ids are an error."""
        with self._lock:
            found = self._db.execute(
                "SELECT 1 FROM sim_orders WHERE id = ?", (order_id,)
            ).fetchone()
        if found is None:
            raise BrokerDataError(f"sim: no order with id {order_id}")

    def wait_for_order(self, client_order_id: str, timeout_secs: float) -> Order:
        """The order's state, already terminal (fills are immediate); no waiting happens."""
        order = self.get_order_by_client_id(client_order_id)
        if order is None:
            raise BrokerDataError(f"sim: no order with client_order_id {client_order_id}")
        return order

    def fills_for(self, client_order_id: str) -> list[Fill]:
        with self._lock:
            rows = self._db.execute(
                "SELECT order_id, client_order_id, symbol, side, qty, price, commission, at "
                "FROM sim_fills WHERE client_order_id = ? ORDER BY rowid",
                (client_order_id,),
            ).fetchall()
        return [
            Fill(r[0], r[1], r[2], OrderSide(r[3]), r[4], r[5], r[6], datetime.fromisoformat(r[7]))
            for r in rows
        ]

