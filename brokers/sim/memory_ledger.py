"""The simulated account's books held in memory: the backtest's throw-away account.

The same methods as ``SimLedger`` (``brokers/sim/ledger.py``) over dicts and lists, for
``SimulatedBroker(":memory:", ...)``: a replay of 20 years books ~10⁵ orders, and a SQLite
transaction per order was a third of the backtest's time. Nothing here survives the
process, which is what ``:memory:`` promised anyway. ``test_sim_broker`` runs the same
trades through both ledgers and compares every order and fill.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from brokers.base import Fill, Order
from brokers.sim.ledger import Holding, LedgerState


class MemoryLedger:
    """``SimLedger``'s interface without a database (one process, caller serialises)."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}  # client_order_id → order, in booking order
        self._order_ids: set[str] = set()
        self._fills: dict[str, list[Fill]] = {}
        self._fill_order: list[Fill] = []  # every fill, oldest first

    def load_or_create(self, starting_cash: float) -> LedgerState:
        """A new account holding ``starting_cash`` (a memory ledger is always new)."""
        return LedgerState(True, float(starting_cash), None, False, {})

    def save_cursor(self, cursor_date: str | None, ended: bool) -> None:
        """Nothing to persist: the broker keeps its cursor itself."""

    def record(self, order: Order, fill: Fill | None, cash: float,
               holding: Holding | None) -> Order:
        """Store an order (id ``sim-<seq>``, as the SQLite ledger numbers them) and its fill;
        cash and holdings live in the broker's own cache."""
        order = replace(order, id=f"sim-{len(self._orders) + 1:09d}")
        self._orders[order.client_order_id] = order
        self._order_ids.add(order.id)
        if fill is not None:
            fill = replace(fill, order_id=order.id)
            self._fills.setdefault(fill.client_order_id, []).append(fill)
            self._fill_order.append(fill)
        return order

    def order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def has_order_id(self, order_id: str) -> bool:
        return order_id in self._order_ids

    def orders(self) -> list[Order]:
        return list(self._orders.values())

    def fills(self, client_order_id: str) -> list[Fill]:
        return list(self._fills.get(client_order_id, ()))

    def fill_rows(self) -> list[tuple[Any, ...]]:
        """Every fill as (symbol, side, qty, price, commission, at ISO), oldest first."""
        return [(f.symbol, f.side.value, f.qty, f.price, f.commission, f.at.isoformat())
                for f in self._fill_order]

    def close(self) -> None:
        """Nothing to close."""
