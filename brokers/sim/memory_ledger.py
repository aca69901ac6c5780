"""The simulated account's books held in memory: the backtest's throw-away account.

The same methods as ``SimLedger`` (``brokers/sim/ledger.py``) for
``SimulatedBroker(":memory:", ...)``: a replay of 20 years books ~10⁵ orders, and a SQLite
transaction per order was a third of the backtest's time. Nothing here survives the
process, which is what ``:memory:`` promised anyway. ``tests/test_memory_state.py`` runs the
same cycles on both ledgers and compares every order and fill.

The books are columns (one row per order, in booking order; floats in ``array("d")``), not
one ``Order`` and ``Fill`` object per trade: 500 assets × 20 monthly years book 1.1·10⁵
orders, and objects cost ~700 bytes an order against ~150 here. ``Order``/``Fill`` values
are rebuilt when asked (``order``, ``fills``, ``orders``), field for field as recorded.
"""

from __future__ import annotations

import math
from array import array
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from brokers.base import Fill, Order, OrderSide, OrderStatus, trusted_fill, trusted_order
from brokers.sim.ledger import FILL_FRAME_COLUMNS, Holding, LedgerState, fill_frame_from_rows

_NONE = math.nan  # how the float columns hold None (qty, notional, avg price; no fill's commission)
_REFS, _NUMBERS = 4, 5  # references and floats per order row


def _order_id(row: int) -> str:
    """``sim-<seq>``, seq = row + 1: the SQLite ledger's numbering."""
    return f"sim-{row + 1:09d}"


def _fits_columns(order: Order, fill: Fill | None) -> bool:
    """Whether the columns give ``order`` and ``fill`` back unchanged: float fields hold
    floats (NaN only where it cannot be mistaken for None; numpy floats come back as Python
    floats of the same value, as from SQLite) and the fill is the order's own execution.
    True for the simulator's orders unless a quantity is an int; anything else is kept whole."""
    qty, notional, avg = order.qty, order.notional, order.filled_avg_price
    # type(x) is float (not isinstance): a float subclass would not come back as itself
    if not ((qty is None or (type(qty) is float and qty == qty))
            and (notional is None or (type(notional) is float and notional == notional))
            and (avg is None or (type(avg) is float and avg == avg))
            and type(order.filled_qty) is float and order.submitted_at is not None):
        return False
    if fill is None:
        return True
    commission = fill.commission
    return (fill.client_order_id is order.client_order_id and fill.symbol is order.symbol
            and fill.side is order.side and fill.qty is order.filled_qty
            and fill.price is avg and fill.at is order.submitted_at
            and type(commission) is float and commission == commission)


class MemoryLedger:
    """``SimLedger``'s interface without a database (one process, caller serialises)."""

    def __init__(self) -> None:
        self._row_of: dict[str, int] = {}  # client_order_id → row
        # Row-major: _REFS references and _NUMBERS floats per order (one extend per order
        # instead of an append per column).
        self._refs: list[Any] = []  # client_order_id, symbol, side, status
        self._numbers = array("d")  # qty, notional, filled qty, avg price, commission
        self._time_code = array("q")  # index into _times: one datetime per replay day
        self._times: list[datetime] = []
        self._code_of_time: dict[int, int] = {}  # id(datetime in _times) → its index
        self._reasons: dict[int, str] = {}  # row → reject reason (rejections are rare)
        self._whole: dict[int, tuple[Order, Fill | None]] = {}  # rows _fits_columns refused
        self._last_fill: Fill | None = None  # record()'s latest fill: fills_for asks next
        self._next_id = (-1, "")  # (row, its id), formatted once per order
        self._last_time: tuple[datetime | None, int] = (None, -1)  # _code's last answer

    def load_or_create(self, starting_cash: float) -> LedgerState:
        """A new account holding ``starting_cash`` (a memory ledger is always new)."""
        return LedgerState(True, float(starting_cash), None, False, {}, float(starting_cash))

    def save_cursor(self, cursor_date: str | None, ended: bool) -> None:
        """Nothing to persist: the broker keeps its cursor itself."""

    def next_order_id(self) -> str:
        """The id ``record`` gives the next order: the broker builds it with its id at once."""
        row = len(self._time_code)
        if self._next_id[0] != row:
            self._next_id = (row, _order_id(row))
        return self._next_id[1]

    def _code(self, at: datetime) -> int:
        if at is self._last_time[0]:  # the replay day's one datetime: every order of a day
            return self._last_time[1]
        code = self._code_of_time.get(id(at))
        if code is None:
            code = self._code_of_time[id(at)] = len(self._times)
            self._times.append(at)  # kept alive, so its id() is never reused
        self._last_time = (at, code)
        return code

    def record(self, order: Order, fill: Fill | None, cash: float,
               holding: Holding | None) -> Order:
        """Store an order (id ``sim-<seq>``, as the SQLite ledger numbers them) and its fill;
        cash and holdings live in the broker's own cache. Returns the stored order."""
        row = len(self._time_code)
        order_id = self._next_id[1] if self._next_id[0] == row else self.next_order_id()
        cid = order.client_order_id
        stored = order if order.id == order_id else trusted_order(
            order_id, cid, order.symbol, order.side, order.status, order.qty, order.notional,
            order.filled_qty, order.filled_avg_price, order.submitted_at, order.reject_reason)
        self._last_fill = (fill if fill is not None and fill.order_id == order_id
                           and fill.client_order_id == cid else None)
        self._row_of[cid] = row
        self._refs.extend((cid, order.symbol, order.side, order.status))
        if _fits_columns(order, fill):
            qty, notional, avg = order.qty, order.notional, order.filled_avg_price
            self._numbers.extend((_NONE if qty is None else qty,
                                  _NONE if notional is None else notional, order.filled_qty,
                                  _NONE if avg is None else avg,
                                  _NONE if fill is None else fill.commission))
            self._time_code.append(self._code(order.submitted_at))  # type: ignore[arg-type]
            if order.reject_reason is not None:
                self._reasons[row] = order.reject_reason
        else:
            kept = None if fill is None else Fill(order_id, *_fill_fields(fill))
            self._whole[row] = (stored, kept)
            self._numbers.extend((_NONE,) * _NUMBERS)
            self._time_code.append(-1)
        return stored

    def book_fill(self, client_order_id: str, symbol: str, side: OrderSide, qty: float | None,
                  notional: float | None, fill_qty: float, price: float, commission: float,
                  at: datetime, cash: float, held_qty: float, avg_entry_price: float) -> str:
        """``record`` of a filled market order and its one fill, written straight into the
        columns: the simulator's numbers are floats and finite by construction (its
        ``SimCosts`` are floats, quantities pass through ``float``/``round``), so the
        ``_fits_columns`` check ``record`` makes is not needed. Returns the order's id."""
        row = len(self._time_code)
        order_id = self._next_id[1] if self._next_id[0] == row else self.next_order_id()
        self._row_of[client_order_id] = row
        self._refs.extend((client_order_id, symbol, side, OrderStatus.FILLED))
        self._numbers.extend((_NONE if qty is None else qty,
                              _NONE if notional is None else notional, fill_qty, price,
                              commission))
        self._time_code.append(self._code(at))
        self._last_fill = None  # fills() rebuilds it from the columns when asked
        return order_id

    def knows_none(self, client_order_ids: list[str]) -> bool:
        """Whether no order with any of these client ids is booked."""
        return self._row_of.keys().isdisjoint(client_order_ids)

    def book_fills(self, client_order_ids: list[str], symbols: list[str], side: OrderSide,
                   qty: list[float], fill_qty: np.ndarray, price: np.ndarray,
                   commission: np.ndarray, at: datetime) -> list[str]:
        """``book_fill`` for a run of one side's filled quantity orders at one time, in
        bulk (rows appended in the given order); returns their order ids."""
        first = len(self._time_code)
        rows = range(first, first + len(client_order_ids))
        self._row_of.update(zip(client_order_ids, rows, strict=True))
        refs: list[Any] = [OrderStatus.FILLED] * (_REFS * len(rows))
        refs[0::_REFS], refs[1::_REFS] = client_order_ids, symbols
        refs[2::_REFS] = [side] * len(rows)
        self._refs += refs
        numbers = np.empty((len(rows), _NUMBERS))
        numbers[:, 0], numbers[:, 1], numbers[:, 2] = qty, _NONE, fill_qty
        numbers[:, 3], numbers[:, 4] = price, commission
        self._numbers.frombytes(numbers.tobytes())
        self._time_code.extend([self._code(at)] * len(rows))
        self._last_fill = None
        return [_order_id(row) for row in rows]

    def _order_at(self, row: int) -> Order:
        if self._whole and row in self._whole:
            return self._whole[row][0]
        cid, symbol, side, status = self._refs[_REFS * row:_REFS * row + _REFS]
        qty, notional, filled, avg, _ = self._numbers[_NUMBERS * row:_NUMBERS * row + _NUMBERS]
        return trusted_order(
            _order_id(row), cid, symbol, side, status, None if qty != qty else qty,
            None if notional != notional else notional, filled, None if avg != avg else avg,
            self._times[self._time_code[row]],
            self._reasons.get(row) if self._reasons else None)

    def _fills_at(self, row: int) -> list[Fill]:
        if self._whole and row in self._whole:
            kept = self._whole[row][1]
            return [] if kept is None else [kept]
        _, _, filled, price, commission = self._numbers[_NUMBERS * row:_NUMBERS * row + _NUMBERS]
        if commission != commission:
            return []
        cid, symbol, side, _ = self._refs[_REFS * row:_REFS * row + _REFS]
        return [trusted_fill(_order_id(row), cid, symbol, side, filled, price, commission,
                             self._times[self._time_code[row]])]

    def order(self, client_order_id: str) -> Order | None:
        row = self._row_of.get(client_order_id)
        return None if row is None else self._order_at(row)

    def has_order_id(self, order_id: str) -> bool:
        if not order_id.startswith("sim-"):
            return False
        try:
            row = int(order_id[4:]) - 1
        except ValueError:
            return False
        return 0 <= row < len(self._time_code) and _order_id(row) == order_id

    def orders(self, latest: int | None = None) -> list[Order]:
        rows = len(self._time_code)
        first = 0 if latest is None else max(rows - latest, 0)
        return [self._order_at(row) for row in range(first, rows)]

    def fills(self, client_order_id: str) -> list[Fill]:
        last = self._last_fill
        if last is not None and last.client_order_id == client_order_id:
            return [last]  # what _fills_at would rebuild: the order's own execution
        row = self._row_of.get(client_order_id)
        return [] if row is None else self._fills_at(row)

    def fill_rows(self) -> list[tuple[Any, ...]]:
        """Every fill as (symbol, side, qty, price, commission, at ISO), oldest first."""
        return [(f.symbol, f.side.value, f.qty, f.price, f.commission, f.at.isoformat())
                for row in range(len(self._time_code)) for f in self._fills_at(row)]

    def fills_frame(self) -> pd.DataFrame:
        """``fill_rows`` as ``SimLedger.fills_frame`` shapes it, built from the columns."""
        # Copies, not views: an array exporting its buffer could not grow any more.
        numbers = np.array(self._numbers, dtype=np.float64).reshape(-1, _NUMBERS)
        commission = numbers[:, 4]
        if self._whole or np.isnan(commission).all():
            return fill_frame_from_rows(self.fill_rows())  # the general (and empty) case
        rows = np.flatnonzero(~np.isnan(commission))
        symbols, sides = self._refs[1::_REFS], self._refs[2::_REFS]
        times = pd.to_datetime(self._times, utc=True)  # one per day, not per fill
        codes = np.array(self._time_code, dtype=np.int64)[rows]
        columns = {
            "symbol": [symbols[r] for r in rows.tolist()],
            "side": [sides[r].value for r in rows.tolist()],
            "qty": numbers[rows, 2],
            "price": numbers[rows, 3],
            "commission": commission[rows],
            "at": times.take(codes),
        }
        return pd.DataFrame(columns, columns=list(FILL_FRAME_COLUMNS))

    def close(self) -> None:
        """Nothing to close."""


def _fill_fields(fill: Fill) -> tuple[Any, ...]:
    """A fill's fields after ``order_id`` (it takes the stored order's id)."""
    return (fill.client_order_id, fill.symbol, fill.side, fill.qty, fill.price,
            fill.commission, fill.at)
