"""The backtest's journal: ``Journal``'s interface held in memory, for one process.

A replay of 20 daily years journals ~10⁴ cycles and ~10⁵ orders; in SQLite (even
``:memory:``) that was ~60 statements a cycle, a fifth of the backtest's time. The
backtest's journal dies with the process, so nothing is lost by not writing it: the cycle
code is the same, only the store differs. Intents are columns (lists and ``array("d")``,
one row per intent) and fills are kept only as what the journal's reads use (a count and
a summed qty per intent): ~250 bytes an order instead of ~600 of objects.
``tests/test_memory_state.py`` and ``tests/test_sim_broker_books.py`` drive both journals
through the same calls and compare everything they return.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

from bot.engine.journal import IntentRecord, Journal, new_instance_id
from bot.engine.statuses import (
    NEVER_REACHED_VENUE,
    OPEN_INTENT_STATUSES,
    CycleStatus,
    IntentStatus,
    spent_qty,
)
from brokers.base import Fill, Order, OrderSide, OrderStatus
from brokers.booked_batch import BookedBatch
from strategies.errors import StateError

_NONE = math.nan  # how a float column holds None
_INTENT_OF = {status: IntentStatus(status.value) for status in OrderStatus}


class MemoryJournal(Journal):
    """``Journal`` without a file: the same reads and writes, nothing persisted."""

    def __init__(self) -> None:  # no SQLite: Journal.__init__ is not called on purpose
        self.path = ":memory:"
        self.read_only = False
        self.write_hook = None
        self._meta: dict[str, str] = {"instance_id": new_instance_id()}
        # JSON values kept as the objects given (not serialized: the signal memo of 500
        # weights took ~0.5 ms a cycle to write as text); ``meta`` renders them on demand
        self._meta_json: dict[str, Any] = {}
        self._cycles: list[dict[str, Any]] = []
        self._cycle_of: dict[str, dict[str, Any]] = {}
        self._unsent_at: dict[str, str] = {}  # intents reconciliation marked unsent: when
        # the day guard's index: asof (ISO) → its cycles, and a cycle's intent rows
        self._cycles_on_day: dict[str, list[str]] = {}
        self._rows_of_cycle: dict[str, list[range]] = {}
        # Intents as columns, one row per client_order_id in journaling order (SQLite's
        # created_at, position): 10⁵ IntentRecord objects were a third of a long backtest's
        # memory. Records are rebuilt when read (intents, open_intents).
        self._row_of: dict[str, int] = {}
        self._cids: list[str] = []
        self._cycle_ids: list[str] = []
        self._symbols: list[str] = []
        self._sides: list[OrderSide] = []
        self._qty = array("d")
        self._price_est = array("d")
        self._statuses: list[IntentStatus] = []
        self._broker_ids: list[str | None] = []
        self._filled_qty = array("d")
        self._avg_price = array("d")  # NaN: None
        self._reasons: dict[int, str] = {}  # row → reason (few intents have one)
        self._fill_counts = array("q")
        self._fill_qty_sums = array("d")
        self._unjournaled_fills: dict[str, tuple[int, float]] = {}  # cid without an intent
        self._fill_total = 0
        self._open: dict[str, None] = {}  # the open ones, in order (SQLite: an index)

    def close(self) -> None:
        """Nothing to close."""

    def backup_to(self, dest: Path) -> int:
        raise StateError("the backtest's in-memory journal has no file to back up")

    # -- meta -------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        if key in self._meta_json:
            return json.dumps(self._meta_json[key])
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._meta_json.pop(key, None)
        self._meta[key] = str(value)

    def delete_meta(self, key: str) -> None:
        self._meta.pop(key, None)
        self._meta_json.pop(key, None)

    def meta_json(self, key: str) -> Any:
        if key in self._meta_json:
            return self._meta_json[key]
        raw = self._meta.get(key)
        return None if raw is None else self._decoded(key, raw)

    def set_meta_json(self, key: str, value: Any) -> None:
        self._meta.pop(key, None)
        self._meta_json[key] = value

    def fill_totals(self) -> tuple[float, dict[str, float]]:
        raise StateError("the backtest's in-memory journal keeps no fill totals (the "
                         "simulator has no cash transfers to check against them)")

    def set_meta_jsons(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.set_meta_json(key, value)

    # -- cycles -----------------------------------------------------------------------
    def start_cycle(self, asof: date | None) -> str:
        cycle_id = f"{self._meta['instance_id']}{len(self._cycles) + 1:06d}"
        row = {"cycle_id": cycle_id, "asof": asof.isoformat() if asof else None,
               "started_at": _now_iso(), "finished_at": None,
               "status": str(CycleStatus.RUNNING), "summary": None}
        self._cycles.append(row)
        self._cycle_of[cycle_id] = row
        if asof is not None:
            self._cycles_on_day.setdefault(asof.isoformat(), []).append(cycle_id)
        return cycle_id

    def set_cycle_asof(self, cycle_id: str, asof: date) -> None:
        row = self._cycle_of.get(cycle_id)
        if row is not None:
            if row["asof"] is not None:
                self._cycles_on_day[row["asof"]].remove(cycle_id)
            row["asof"] = asof.isoformat()
            self._cycles_on_day.setdefault(row["asof"], []).append(cycle_id)

    def finish_cycle(self, cycle_id: str, status: CycleStatus, summary: dict[str, Any]) -> None:
        if cycle_id in self._cycle_of:
            self._cycle_of[cycle_id].update(status=str(status), finished_at=_now_iso(),
                                            summary=dict(summary))

    def recent_cycles(self, limit: int = 10) -> list[dict[str, Any]]:
        out = []
        for row in reversed(self._cycles[-limit:] if limit > 0 else []):
            item = dict(row)  # the summary as SQLite returns it: through JSON
            summary = item["summary"]
            item["summary"] = json.loads(json.dumps(summary, default=str)) if summary else {}
            out.append(item)
        return out

    def first_equity_before(self) -> float | None:
        for row in self._cycles:
            figure = (row["summary"] or {}).get("equity_before")
            if row["finished_at"] is not None and figure is not None:
                return float(figure)
        return None

    def abandon_running_cycles(self) -> list[str]:
        ids = [r["cycle_id"] for r in self._cycles if r["status"] == CycleStatus.RUNNING]
        for cycle_id in ids:
            self._cycle_of[cycle_id].update(status=str(CycleStatus.INTERRUPTED),
                                            finished_at=_now_iso())
        return ids

    # -- intents and orders -----------------------------------------------------------
    def _open_or_close(self, row: int) -> None:
        """Keep ``_open`` (SQLite: the status index) in step with the row's status."""
        cid = self._cids[row]
        if self._statuses[row] in OPEN_INTENT_STATUSES:
            self._open[cid] = None
        else:
            self._open.pop(cid, None)

    def record_intents(self, cycle_id: str,
                       intents: Sequence[tuple[str, str, OrderSide, float, float]],
                       status: IntentStatus = IntentStatus.INTENT) -> None:
        status = IntentStatus(status)
        intents = list(intents)  # read several times below (one pass per column)
        cids = [row[0] for row in intents]
        if not self._row_of.keys().isdisjoint(cids) or len(set(cids)) != len(cids):
            taken = [cid for cid in cids if cid in self._row_of]
            raise StateError(f"journal :memory:: client_order_id already journaled: {taken}")
        qty = array("d", [row[3] for row in intents])  # converted before anything is stored:
        price_est = array("d", [row[4] for row in intents])  # a batch lands whole or not at all
        first, n = len(self._cids), len(cids)
        self._row_of.update(zip(cids, range(first, first + n), strict=True))
        self._rows_of_cycle.setdefault(cycle_id, []).append(range(first, first + n))
        self._cids += cids
        self._cycle_ids += [cycle_id] * n
        self._symbols += [row[1] for row in intents]
        self._sides += [row[2] for row in intents]
        self._qty += qty
        self._price_est += price_est
        self._statuses += [status] * n
        self._broker_ids += [None] * n
        self._filled_qty += array("d", bytes(8 * n))
        self._avg_price += array("d", [_NONE]) * n
        self._fill_counts += array("q", bytes(8 * n))
        self._fill_qty_sums += array("d", bytes(8 * n))
        if self._unjournaled_fills:  # fills recorded before their intent (reconciliation)
            for row in range(first, first + n):
                count, qty_sum = self._unjournaled_fills.pop(self._cids[row], (0, 0.0))
                self._fill_counts[row], self._fill_qty_sums[row] = count, qty_sum
        if status in OPEN_INTENT_STATUSES:
            self._open.update(dict.fromkeys(cids))

    def update_from_order(self, order: Order) -> None:
        row = self._row_of.get(order.client_order_id)
        if row is not None:
            avg = order.filled_avg_price
            self._set_state(row, order.status, order.id, order.filled_qty,
                            _NONE if avg is None else avg, order.reject_reason)

    def _set_state(self, row: int, status: OrderStatus, broker_id: str, filled_qty: float,
                   avg_price: float, reason: str | None) -> None:
        """A journaled order's latest state (``avg_price`` NaN: none; SQLite, too, reads NaN
        as NULL)."""
        self._statuses[row] = _INTENT_OF.get(status) or IntentStatus(status.value)
        self._broker_ids[row] = broker_id
        self._filled_qty[row] = filled_qty
        self._avg_price[row] = avg_price
        if reason is not None:
            self._reasons[row] = reason
        self._open_or_close(row)

    def _count_fills(self, client_order_id: str, row: int | None, count: int,
                     qty_sum: float) -> None:
        """Of an order's fills, what the journal's reads use: how many (``fill_count``) and
        their summed qty (``intents_missing_fills``); an order never journaled as an intent
        is counted all the same."""
        if row is None:
            old = self._unjournaled_fills.get(client_order_id, (0, 0.0))[0]
            self._unjournaled_fills[client_order_id] = (count, qty_sum)
        else:
            old = self._fill_counts[row]
            self._fill_counts[row], self._fill_qty_sums[row] = count, qty_sum
        self._fill_total += count - old

    def resize_intent(self, client_order_id: str, qty: float) -> None:
        row = self._row_of.get(client_order_id)
        if row is not None and self._statuses[row] is IntentStatus.INTENT:
            self._qty[row] = qty

    def mark_submit_sent(self, client_order_id: str, side: OrderSide) -> None:
        """Nothing to mark: a backtest's journal is never reconciled after a crash (its
        venue answers within the call)."""

    def clear_submit_mark(self, client_order_id: str) -> None:
        """Nothing was marked (``mark_submit_sent``)."""

    def unanswered_submits_since(self, since: str) -> dict[str, str]:
        return {}  # nothing is ever marked (``mark_submit_sent``)

    def set_status(self, client_order_id: str, status: IntentStatus,
                   reason: str | None = None) -> None:
        row = self._row_of.get(client_order_id)
        if row is not None:
            self._statuses[row] = IntentStatus(status)
            if reason is not None:
                self._reasons[row] = reason
            self._open_or_close(row)
            if status == IntentStatus.UNSENT and reason == NEVER_REACHED_VENUE:
                self._unsent_at[client_order_id] = _now_iso()

    def intent_statuses(self, client_order_ids: Sequence[str]) -> dict[str, IntentStatus]:
        return {cid: self._statuses[self._row_of[cid]] for cid in client_order_ids
                if cid in self._row_of}

    def unsent_since(self, since: str) -> list[str]:
        return [cid for cid, at in self._unsent_at.items()
                if at >= since and self._statuses[self._row_of[cid]] == IntentStatus.UNSENT]

    def record_order(self, order: Order, fills: Sequence[Fill]) -> None:
        """The order's state and its fills (their count and summed qty)."""
        self.update_from_order(order)
        qty_sum = fills[0].qty if len(fills) == 1 else sum(f.qty for f in fills)  # one, usually
        self._count_fills(order.client_order_id, self._row_of.get(order.client_order_id),
                          len(fills), qty_sum)

    def record_batch(self, batch: BookedBatch) -> None:
        """``record_order`` for every order of the batch, straight from its columns."""
        rows = [self._row_of.get(cid) for cid in batch.client_order_ids]
        if None not in rows and batch.all_filled():  # the usual batch: all journaled, filled
            self._record_filled(cast("list[int]", rows), batch)
            return
        for i, (cid, row) in enumerate(zip(batch.client_order_ids, rows, strict=True)):
            if row is not None:
                self._set_state(row, batch.statuses[i], batch.order_ids[i],
                                batch.filled_qty[i], batch.prices[i], batch.reasons.get(i))
            filled = batch.has_fill(i)
            self._count_fills(cid, row, int(filled), batch.filled_qty[i] if filled else 0.0)

    def _record_filled(self, rows: list[int], batch: BookedBatch) -> None:
        """``_set_state`` and ``_count_fills`` for journaled orders each filled in one fill,
        with no reason to keep."""
        statuses, broker_ids = self._statuses, self._broker_ids
        filled_qty, avg_price = self._filled_qty, self._avg_price
        counts, sums, cids = self._fill_counts, self._fill_qty_sums, self._cids
        filled = IntentStatus.FILLED
        for row, order_id, qty, price in zip(rows, batch.order_ids, batch.filled_qty,
                                             batch.prices, strict=True):
            statuses[row], broker_ids[row] = filled, order_id
            filled_qty[row], avg_price[row] = qty, price
            self._fill_total += 1 - counts[row]
            counts[row], sums[row] = 1, qty
            self._open.pop(cids[row], None)

    def _record_at(self, row: int) -> IntentRecord:
        avg = self._avg_price[row]
        return IntentRecord(
            self._cids[row], self._cycle_ids[row], self._symbols[row], self._sides[row],
            self._qty[row], self._price_est[row], self._statuses[row], self._broker_ids[row],
            self._filled_qty[row], None if avg != avg else avg, self._reasons.get(row))

    def intents(self, cycle_id: str | None = None,
                statuses: Sequence[IntentStatus] | None = None) -> list[IntentRecord]:
        wanted = None if statuses is None else {str(s) for s in statuses}
        cycle_ids, states = self._cycle_ids, self._statuses
        return [self._record_at(row) for row in range(len(self._cids))
                if (cycle_id is None or cycle_ids[row] == cycle_id)
                and (wanted is None or states[row] in wanted)]

    def open_intents(self) -> list[IntentRecord]:
        return [self._record_at(self._row_of[cid]) for cid in self._open]

    def day_notional(self, day: date) -> float:
        total = 0.0
        for cycle_id in self._cycles_on_day.get(day.isoformat(), ()):
            for rows in self._rows_of_cycle.get(cycle_id, ()):
                for i in rows:
                    total += spent_qty(self._statuses[i], self._qty[i],
                                       self._filled_qty[i]) * self._price_est[i]
        return total

    def known_client_order_ids(self) -> set[str]:
        return set(self._row_of)

    def intents_missing_fills(self) -> list[str]:
        filled, sums = self._filled_qty, self._fill_qty_sums
        return [self._cids[row] for row in range(len(self._cids))
                if filled[row] > 0 and filled[row] > 1e-9 + (1 + 1e-9) * sums[row]]

    def fill_count(self) -> int:
        return self._fill_total


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()
