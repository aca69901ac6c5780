"""The simulated paper account's books in SQLite: cash, positions, orders, fills, cursor.

Every table is prefixed ``sim_`` because the file is shared with the bot's journal.
WAL mode with ``synchronous=NORMAL`` survives a killed process; each order (with its
fill, cash and position change) is written in one ``BEGIN IMMEDIATE`` transaction, so a
crash leaves either all of it or none. Only ``brokers/sim/broker.py`` uses this module.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from brokers.base import Fill, Order, OrderSide, OrderStatus, trusted_fill, trusted_order
from brokers.sqlite_state import (
    Schema,
    check_schema_read_only,
    connect,
    open_schema,
    state_error,
)
from strategies.errors import StateError

if TYPE_CHECKING:  # pandas only for the trade table: `allocbot status` reads this ledger
    import pandas as pd

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
# Ordered migrations (entry i takes version i to i + 1; append, never edit). The file's
# PRAGMA user_version belongs to the journal that shares it, so this version lives in
# its own one-row table.
SIM_SCHEMA = Schema(
    component="sim account",
    migrations=(_SCHEMA,),
    owned=frozenset({"sim_account", "sim_positions", "sim_orders", "sim_fills"}),
    tolerated=frozenset({"meta", "cycles", "intents", "fills"}),  # the journal's tables
    version_table="sim_schema",
)
_ORDER_COLUMNS = (
    "id, client_order_id, symbol, side, status, qty, notional, filled_qty, "
    "filled_avg_price, submitted_at, reject_reason"
)
_FILL_COLUMNS = "order_id, client_order_id, symbol, side, qty, price, commission, at"
_SELECT_ORDER_BY_CID = f"SELECT {_ORDER_COLUMNS} FROM sim_orders WHERE client_order_id = ?"
_SELECT_ORDERS = f"SELECT {_ORDER_COLUMNS} FROM sim_orders ORDER BY seq"
_SELECT_LATEST_ORDERS = f"SELECT {_ORDER_COLUMNS} FROM sim_orders ORDER BY seq DESC LIMIT ?"
_SELECT_FILLS = f"SELECT {_FILL_COLUMNS} FROM sim_fills WHERE client_order_id = ? ORDER BY rowid"
_NEXT_SEQ = "SELECT COALESCE(MAX(seq), 0) + 1 FROM sim_orders"
_INSERT_ORDER = f"INSERT INTO sim_orders (seq, {_ORDER_COLUMNS}) VALUES ({', '.join('?' * 12)})"
_INSERT_FILL = f"INSERT INTO sim_fills ({_FILL_COLUMNS}) VALUES ({', '.join('?' * 8)})"
_UPDATE_CASH = "UPDATE sim_account SET cash = ? WHERE id = 1"
_UPDATE_CURSOR = "UPDATE sim_account SET cursor_date = ?, ended = ? WHERE id = 1"
_UPSERT_POSITION = (
    "INSERT INTO sim_positions (symbol, qty, avg_entry_price) VALUES (?, ?, ?) "
    "ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, "
    "avg_entry_price = excluded.avg_entry_price"
)
_DELETE_POSITION = "DELETE FROM sim_positions WHERE symbol = ?"
FILL_FRAME_COLUMNS = ("symbol", "side", "qty", "price", "commission", "at")


def fill_frame_from_rows(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """``fill_rows`` as a frame: columns ``FILL_FRAME_COLUMNS``, ``at`` aware UTC."""
    import pandas as pd

    table = pd.DataFrame.from_records(rows, columns=list(FILL_FRAME_COLUMNS))
    table["at"] = pd.to_datetime(table["at"], utc=True, format="ISO8601")
    return table


@dataclass(frozen=True, slots=True)
class LedgerState:
    """The account as stored: cash, replay cursor (ISO date or None), holdings, and the
    cash it was created with."""

    created: bool
    cash: float
    cursor_date: str | None
    ended: bool
    holdings: dict[str, tuple[float, float]]  # symbol → (qty, avg entry price)
    starting_cash: float


class Holding(NamedTuple):
    """A position after a fill; qty 0 means the position is closed (row deleted). A named
    tuple, not a dataclass: one is built per fill, and a tuple is 3× cheaper to make."""

    symbol: str
    qty: float
    avg_entry_price: float


def _order_from_row(row: tuple[Any, ...]) -> Order:
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


def _fill_from_row(row: tuple[Any, ...]) -> Fill:
    return Fill(
        row[0], row[1], row[2], OrderSide(row[3]), row[4], row[5], row[6],
        datetime.fromisoformat(row[7]),
    )  # fmt: skip


class SimLedger:
    """Reads and writes the ``sim_*`` tables through one connection (caller serialises)."""

    def __init__(self, db_path: str | Path, read_only: bool = False) -> None:
        """Open (creating or migrating) the books; ``read_only`` opens with SQLite
        ``mode=ro`` and never writes. Unusable files raise ``StateError``."""
        self._path, self._read_only = db_path, read_only
        db = connect(db_path, read_only=read_only, timeout_secs=5.0)
        try:
            if read_only:
                check_schema_read_only(db, db_path, SIM_SCHEMA)
            else:
                # synchronous=NORMAL: durable across process crashes in WAL mode
                open_schema(db, db_path, SIM_SCHEMA,
                            pragmas=("journal_mode=WAL", "synchronous=NORMAL"))
        except sqlite3.Error as exc:
            db.close()
            raise state_error(db_path, exc) from exc
        except BaseException:
            db.close()
            raise
        self._db = db

    def load_or_create(self, starting_cash: float) -> LedgerState:
        """The stored account, or a new one holding ``starting_cash`` if there is none
        (read-only books without an account raise ``StateError``)."""
        db = self._db
        row = db.execute("SELECT cash, cursor_date, ended, starting_cash FROM sim_account"
                         ).fetchone()
        created = row is None
        if created and self._read_only:
            raise StateError(f"state file {self._path} holds no sim account yet; run "
                             "'allocbot once' (or the daemon) first")
        if created:
            db.execute(
                "INSERT INTO sim_account (id, cash, starting_cash, cursor_date, ended, created_at)"
                " VALUES (1, ?, ?, NULL, 0, ?)",
                (starting_cash, starting_cash, datetime.now(UTC).isoformat()),
            )
            row = (starting_cash, None, 0, starting_cash)
        held = db.execute("SELECT symbol, qty, avg_entry_price FROM sim_positions ORDER BY symbol")
        holdings = {symbol: (float(qty), float(avg)) for symbol, qty, avg in held}
        return LedgerState(created, float(row[0]), row[1], bool(row[2]), holdings,
                           float(row[3]))

    def save_cursor(self, cursor_date: str | None, ended: bool) -> None:
        self._db.execute(_UPDATE_CURSOR, (cursor_date, int(ended)))

    def next_order_id(self) -> str:
        """"": the id ``sim-<seq>`` is taken from the database inside ``record``'s
        transaction (so it never repeats across processes); ``record`` sets it."""
        return ""

    def record(
        self, order: Order, fill: Fill | None, cash: float, holding: Holding | None
    ) -> Order:
        """Store an order and, if it filled, its fill, the new cash and position: atomically.

        The order's id ``sim-<seq>`` is taken from the database inside the transaction, so
        it never repeats even across processes; the stored order is returned.
        """
        submitted_at = order.submitted_at
        assert submitted_at is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            seq = int(db.execute(_NEXT_SEQ).fetchone()[0])
            order = replace(order, id=f"sim-{seq:09d}")
            db.execute(
                _INSERT_ORDER,
                (seq, order.id, order.client_order_id, order.symbol, order.side.value,
                 order.status.value, order.qty, order.notional, order.filled_qty,
                 order.filled_avg_price, submitted_at.isoformat(), order.reject_reason),
            )  # fmt: skip
            if fill is not None:
                db.execute(
                    _INSERT_FILL,
                    (order.id, fill.client_order_id, fill.symbol, fill.side.value,
                     fill.qty, fill.price, fill.commission, fill.at.isoformat()),
                )  # fmt: skip
                db.execute(_UPDATE_CASH, (cash,))
            if holding is not None and holding.qty > 0:
                db.execute(_UPSERT_POSITION, (holding.symbol, holding.qty, holding.avg_entry_price))
            elif holding is not None:
                db.execute(_DELETE_POSITION, (holding.symbol,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return order

    def book_fill(self, client_order_id: str, symbol: str, side: OrderSide, qty: float | None,
                  notional: float | None, fill_qty: float, price: float, commission: float,
                  at: datetime, cash: float, held_qty: float, avg_entry_price: float) -> str:
        """``record`` of a filled market order and its one fill, from the simulator's own
        checked numbers (``at`` aware); returns the stored order's id."""
        order = trusted_order("", client_order_id, symbol, side, OrderStatus.FILLED, qty,
                              notional, fill_qty, price, at, None)
        fill = trusted_fill("", client_order_id, symbol, side, fill_qty, price, commission, at)
        return self.record(order, fill, cash, Holding(symbol, held_qty, avg_entry_price)).id

    def order(self, client_order_id: str) -> Order | None:
        row = self._db.execute(_SELECT_ORDER_BY_CID, (client_order_id,)).fetchone()
        return None if row is None else _order_from_row(row)

    def has_order_id(self, order_id: str) -> bool:
        query = "SELECT 1 FROM sim_orders WHERE id = ?"
        return self._db.execute(query, (order_id,)).fetchone() is not None

    def orders(self, latest: int | None = None) -> list[Order]:
        """Every order, oldest first (``latest``: the most recent that many)."""
        if latest is None:
            return [_order_from_row(r) for r in self._db.execute(_SELECT_ORDERS)]
        rows = self._db.execute(_SELECT_LATEST_ORDERS, (latest,)).fetchall()
        return [_order_from_row(r) for r in reversed(rows)]

    def fills(self, client_order_id: str) -> list[Fill]:
        return [_fill_from_row(r) for r in self._db.execute(_SELECT_FILLS, (client_order_id,))]

    def fill_rows(self) -> list[tuple[Any, ...]]:
        """Every fill as a raw row (symbol, side, qty, price, commission, at ISO), oldest
        first: the backtest's trade list, without building 10⁵ Fill objects."""
        query = "SELECT symbol, side, qty, price, commission, at FROM sim_fills ORDER BY rowid"
        return self._db.execute(query).fetchall()

    def fills_frame(self) -> pd.DataFrame:
        """Every fill, oldest first, as a frame (``FILL_FRAME_COLUMNS``): one query."""
        return fill_frame_from_rows(self.fill_rows())

    def close(self) -> None:
        self._db.close()
