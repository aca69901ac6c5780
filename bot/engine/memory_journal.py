"""The backtest's journal: ``Journal``'s interface held in dicts, for one process.

A replay of 20 daily years journals ~10⁴ cycles and ~10⁵ orders; in SQLite (even
``:memory:``) that was ~60 statements a cycle, a fifth of the backtest's time. The
backtest's journal dies with the process, so nothing is lost by not writing it: the cycle
code is the same, only the store differs. ``tests/test_memory_journal.py`` drives both
journals through the same calls and compares everything they return.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bot.engine.journal import IntentRecord, Journal
from bot.engine.statuses import OPEN_INTENT_STATUSES, CycleStatus, IntentStatus
from brokers.base import Fill, Order, OrderSide
from strategies.errors import StateError


class MemoryJournal(Journal):
    """``Journal`` without a file: the same reads and writes, nothing persisted."""

    def __init__(self) -> None:  # no SQLite: Journal.__init__ is not called on purpose
        self.path = ":memory:"
        self.read_only = False
        self.write_hook = None
        self._meta: dict[str, str] = {"instance_id": secrets.token_hex(2)}
        self._cycles: list[dict[str, Any]] = []
        self._cycle_of: dict[str, dict[str, Any]] = {}
        self._intents: dict[str, IntentRecord] = {}  # client_order_id → intent, in order
        self._open: dict[str, None] = {}  # the open ones, in order (SQLite: an index)
        self._fills: dict[str, list[Fill]] = {}

    def close(self) -> None:
        """Nothing to close."""

    def backup_to(self, dest: Path) -> int:
        raise StateError("the backtest's in-memory journal has no file to back up")

    # -- meta -------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._meta[key] = str(value)

    def delete_meta(self, key: str) -> None:
        self._meta.pop(key, None)

    # -- cycles -----------------------------------------------------------------------
    def start_cycle(self, asof: date | None) -> str:
        cycle_id = f"{self._meta['instance_id']}{len(self._cycles) + 1:06d}"
        row = {"cycle_id": cycle_id, "asof": asof.isoformat() if asof else None,
               "started_at": _now_iso(), "finished_at": None,
               "status": str(CycleStatus.RUNNING), "summary": None}
        self._cycles.append(row)
        self._cycle_of[cycle_id] = row
        return cycle_id

    def set_cycle_asof(self, cycle_id: str, asof: date) -> None:
        if cycle_id in self._cycle_of:
            self._cycle_of[cycle_id]["asof"] = asof.isoformat()

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

    def abandon_running_cycles(self) -> list[str]:
        ids = [r["cycle_id"] for r in self._cycles if r["status"] == CycleStatus.RUNNING]
        for cycle_id in ids:
            self._cycle_of[cycle_id].update(status=str(CycleStatus.INTERRUPTED),
                                            finished_at=_now_iso())
        return ids

    # -- intents and orders -----------------------------------------------------------
    def _store(self, intent: IntentRecord) -> None:
        self._intents[intent.client_order_id] = intent
        if intent.status in OPEN_INTENT_STATUSES:
            self._open[intent.client_order_id] = None
        else:
            self._open.pop(intent.client_order_id, None)

    def record_intents(self, cycle_id: str,
                       intents: Sequence[tuple[str, str, OrderSide, float, float]],
                       status: IntentStatus = IntentStatus.INTENT) -> None:
        rows = [IntentRecord(cid, cycle_id, sym, side, qty, price, IntentStatus(status), None,
                             0.0, None, None) for cid, sym, side, qty, price in intents]
        taken = [r.client_order_id for r in rows if r.client_order_id in self._intents]
        if taken or len({r.client_order_id for r in rows}) != len(rows):
            raise StateError(f"journal :memory:: client_order_id already journaled: {taken}")
        for r in rows:
            self._store(r)

    def update_from_order(self, order: Order) -> None:
        intent = self._intents.get(order.client_order_id)
        if intent is not None:
            self._store(replace(
                intent, status=IntentStatus(order.status.value), broker_order_id=order.id,
                filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price,
                reason=order.reject_reason if order.reject_reason is not None else intent.reason))

    def resize_intent(self, client_order_id: str, qty: float) -> None:
        intent = self._intents.get(client_order_id)
        if intent is not None and intent.status is IntentStatus.INTENT:
            self._store(replace(intent, qty=qty))

    def set_status(self, client_order_id: str, status: IntentStatus,
                   reason: str | None = None) -> None:
        intent = self._intents.get(client_order_id)
        if intent is not None:
            self._store(replace(intent, status=IntentStatus(status),
                                reason=reason if reason is not None else intent.reason))

    def record_order(self, order: Order, fills: Sequence[Fill]) -> None:
        self.update_from_order(order)
        self._fills[order.client_order_id] = list(fills)

    def intents(self, cycle_id: str | None = None,
                statuses: Sequence[IntentStatus] | None = None) -> list[IntentRecord]:
        wanted = None if statuses is None else {str(s) for s in statuses}
        return [r for r in self._intents.values()
                if (cycle_id is None or r.cycle_id == cycle_id)
                and (wanted is None or r.status in wanted)]

    def open_intents(self) -> list[IntentRecord]:
        return [self._intents[cid] for cid in self._open]

    def known_client_order_ids(self) -> set[str]:
        return set(self._intents)

    def intents_missing_fills(self) -> list[str]:
        return [r.client_order_id for r in self._intents.values()
                if r.filled_qty > 0 and r.filled_qty > 1e-9 + (1 + 1e-9) * sum(
                    f.qty for f in self._fills.get(r.client_order_id, ()))]

    def fill_count(self) -> int:
        return sum(len(f) for f in self._fills.values())


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()
