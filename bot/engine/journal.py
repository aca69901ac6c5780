"""The journal: the bot's memory in one SQLite file (WAL mode).

Cycles, order intents (written *before* an order is sent), the venue's view of each
order, and fills. An intent's ``client_order_id`` is deterministic, so after a crash the
journal and the venue can be reconciled without ever sending an order twice.
"""

from __future__ import annotations

import json
import math
import secrets
import shlex
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bot.engine.statuses import (
    ACCOUNT_KEY,
    MARKET_CLOSED,
    NEVER_REACHED_VENUE,
    OPEN_INTENT_STATUSES,
    SUBMIT_UNANSWERED,
    CycleStatus,
    IntentStatus,
    closed_wake_folded,
    spent_qty,
    summary_problem,
)
from brokers.base import SUBMIT_SENT_WRITE, Fill, Order, OrderSide
from brokers.booked_batch import BookedBatch
from brokers.sqlite_state import (
    Schema,
    backup_database,
    check_schema_read_only,
    connect,
    open_schema,
    state_error,
)
from strategies.errors import StateError

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cycle_id TEXT UNIQUE NOT NULL,
    asof TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS intents (
    client_order_id TEXT PRIMARY KEY,
    cycle_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty REAL NOT NULL,
    price_est REAL NOT NULL,
    status TEXT NOT NULL,
    broker_order_id TEXT,
    filled_qty REAL NOT NULL DEFAULT 0,
    filled_avg_price REAL,
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS intents_status ON intents(status);
CREATE TABLE IF NOT EXISTS fills (
    client_order_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    commission REAL NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (client_order_id, position)
);
"""
# A cycle row as the journal's reads give it (``Journal._read_cycles``).
_CYCLE_COLUMNS = "cycle_id, asof, started_at, finished_at, status, summary"
# Ordered migrations: entry i takes the file from version i to i + 1 (append, never edit).
JOURNAL_SCHEMA = Schema(
    component="journal",
    migrations=(_SCHEMA_V1,),
    owned=frozenset({"meta", "cycles", "intents", "fills"}),
    tolerated_prefixes=("sim_",),  # the simulator's account shares the file
)


@dataclass(frozen=True, slots=True)
class IntentRecord:
    client_order_id: str
    cycle_id: str
    symbol: str
    side: OrderSide
    qty: float
    price_est: float
    status: IntentStatus
    broker_order_id: str | None
    filled_qty: float
    filled_avg_price: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class AccountIdentity:
    """The broker account a state file belongs to (meta ``ACCOUNT_KEY``)."""

    broker: str  # the adapter: "alpaca" or "sim"
    account_number: str  # whole in the state file (0600); masked wherever it is shown
    mode: str  # "paper" or "live", as the venue reports the account


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def new_instance_id() -> str:
    """The first part of every cycle id (and so of every client_order_id) until the
    journal is next opened for writing: 6 random hex digits, drawn at each writer open.
    A state file restored from a backup then never reuses an id the venue has already
    seen (its cycle numbers repeat; Alpaca keeps the earlier order under that id)."""
    return secrets.token_hex(3)


class Journal:
    """SQLite-backed journal; safe to share between the scheduler's thread and the CLI."""

    def __init__(self, path: Path | str) -> None:
        """Open (creating or migrating) the journal for writing; unusable state raises
        ``StateError`` naming the file and the fix."""
        db = connect(path)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=10000")
            open_schema(db, path, JOURNAL_SCHEMA, pragmas=("journal_mode=WAL", "synchronous=FULL"))
        except sqlite3.Error as exc:
            db.close()
            raise state_error(path, exc) from exc
        except BaseException:
            db.close()
            raise
        self._init(path, db, read_only=False)
        try:
            self.set_meta("instance_id", new_instance_id())
        except sqlite3.Error as exc:
            db.close()
            raise state_error(path, exc) from exc

    def _init(self, path: Path | str, db: sqlite3.Connection, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self.write_hook: Callable[[str], None] | None = None  # drills: called before COMMIT
        self._lock = threading.RLock()
        self._db = db

    @classmethod
    def open_read_only(cls, path: Path) -> Journal:
        """The journal for reading only (SQLite ``mode=ro``): never creates or writes a byte;
        ``StateError`` naming the file when it is missing, corrupt, foreign or newer."""
        db = connect(path, read_only=True)
        try:
            db.row_factory = sqlite3.Row
            check_schema_read_only(db, path, JOURNAL_SCHEMA)
        except BaseException:
            db.close()
            raise
        journal = cls.__new__(cls)
        journal._init(path, db, read_only=True)
        return journal

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def backup_to(self, dest: Path) -> int:
        """Copy the journal's whole file (with the sim account sharing it) to ``dest`` with
        SQLite's online backup API: a consistent snapshot even while the daemon writes.
        Returns the copy's size in bytes."""
        with self._lock:
            return backup_database(self._db, self.path, dest)

    @contextmanager
    def _tx(self, kind: str = "write") -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise StateError(f"journal {self.path} was opened read-only; this is a bug")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    if self.write_hook is not None:  # the fault drill's "inside a write"
                        self.write_hook(kind)
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:  # disk full, file made read-only, corrupted page...
                raise state_error(self.path, exc, doing="write") from exc

    # -- meta -------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def meta_json(self, key: str) -> Any:
        """The JSON value kept under ``key`` (None when absent). Treat it as read-only: the
        backtest's in-memory journal hands back the very object it was given. Text that is
        not JSON (a hand edit) raises ``corrupt_meta``'s error."""
        raw = self.meta(key)
        return None if raw is None else self._decoded(key, raw)

    def _decoded(self, key: str, raw: str) -> Any:
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise self.corrupt_meta(key, f"is not JSON ({exc.msg}: character {exc.pos})"
                                    ) from None

    def corrupt_meta(self, key: str, problem: str) -> StateError:
        """The error for a meta value the bot cannot read, naming the state file, the key
        and both ways out (the value itself is not shown: it may be long)."""
        delete = self._sqlite_command(f"DELETE FROM meta WHERE key = '{key}'")
        return StateError(
            f"state file {self.path}: meta key {key!r} {problem}; restore the file from a "
            f"backup made by 'allocbot state backup', or delete the key so that allocbot starts it "
            f"afresh: {delete}")

    def _sqlite_command(self, statement: str) -> str:
        """The shell command that runs ``statement`` (no double quote or $ in it) on this
        state file, as the errors and notes advise it: the path quoted for the shell."""
        return f'sqlite3 {shlex.quote(str(self.path))} "{statement}"'

    def set_meta_json(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-serializable; not changed afterwards) under ``key``."""
        self.set_meta(key, json.dumps(value))

    def fill_totals(self) -> tuple[float, dict[str, float]]:
        """Every journaled fill summed: the cash they moved (sells' proceeds less buys'
        cost, less commissions; account currency) and the shares they moved per symbol
        (bought less sold). A cash checkpoint taken with these tells the cash and shares
        the bot's own orders moved since from what anything else moved."""
        with self._lock:
            rows = self._db.execute(
                "SELECT symbol, SUM(CASE side WHEN 'buy' THEN qty ELSE -qty END), "
                "SUM(CASE side WHEN 'sell' THEN qty * price ELSE -qty * price END - commission) "
                "FROM fills GROUP BY symbol").fetchall()
        return math.fsum(float(r[2]) for r in rows), {str(r[0]): float(r[1]) for r in rows}

    def set_meta_jsons(self, values: dict[str, Any]) -> None:
        """Keep several JSON values in one transaction (a crash keeps all or none)."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                           [(key, json.dumps(value)) for key, value in values.items()])

    def recorded_account(self) -> AccountIdentity | None:
        """The account this state file belongs to; None until one is recorded (a new file,
        or one written before allocbot recorded accounts). Anything but what
        ``record_account`` wrote (a hand edit) raises ``corrupt_meta``'s error."""
        value = self.meta_json(ACCOUNT_KEY)
        if value is None:
            return None
        names = [f.name for f in fields(AccountIdentity)]
        if (isinstance(value, dict) and sorted(value) == sorted(names)
                and all(isinstance(value[n], str) and value[n] for n in names)):
            return AccountIdentity(**value)
        raise self.corrupt_meta(ACCOUNT_KEY, f"is not an account (an object with {', '.join(names)}"
                                " as text)")

    def record_account(self, account: AccountIdentity) -> None:
        """Tie this state file to ``account`` (``recorded_account`` reads it back)."""
        self.set_meta_json(ACCOUNT_KEY, asdict(account))

    # -- cycles -----------------------------------------------------------------------
    def start_cycle(self, asof: date | None) -> str:
        """Open a cycle; its id ``<instance><seq>`` is unique for this state file, and
        beyond it: the instance part is drawn anew at each writer open (``new_instance_id``)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO cycles(cycle_id, asof, started_at, status) VALUES (?, ?, ?, ?)",
                ("pending", asof.isoformat() if asof else None, _now_iso(), CycleStatus.RUNNING),
            )
            seq = int(cur.lastrowid or 0)
            cycle_id = f"{self.meta('instance_id')}{seq:06d}"
            db.execute("UPDATE cycles SET cycle_id = ? WHERE seq = ?", (cycle_id, seq))
        return cycle_id

    def set_cycle_asof(self, cycle_id: str, asof: date) -> None:
        with self._tx() as db:
            db.execute("UPDATE cycles SET asof = ? WHERE cycle_id = ?", (asof.isoformat(), cycle_id))

    def finish_cycle(self, cycle_id: str, status: CycleStatus, summary: dict[str, Any]) -> None:
        """Record how the cycle ended. A wake that found the market closed right after
        another that did takes that one's place (``closed_wake_folded``): a closed stretch
        is one row however often the schedule wakes (an interval of 60 s wrote ~1,000 a
        day, kept for ever)."""
        with self._tx() as db:
            if status == CycleStatus.SKIPPED and summary.get("reason") == MARKET_CLOSED:
                summary = self._fold_closed_wake(db, cycle_id, summary)
            db.execute(
                "UPDATE cycles SET status = ?, finished_at = ?, summary = ? WHERE cycle_id = ?",
                (status, _now_iso(), json.dumps(summary, default=str), cycle_id),
            )

    def _fold_closed_wake(self, db: sqlite3.Connection, cycle_id: str,
                          summary: dict[str, Any]) -> dict[str, Any]:
        """Delete the cycle row before ``cycle_id`` when it is a closed-market skip too, and
        return ``summary`` carrying its wake count on (inside the caller's transaction)."""
        previous = db.execute(
            "SELECT cycle_id, status, started_at, summary FROM cycles WHERE seq < "
            "(SELECT seq FROM cycles WHERE cycle_id = ?) ORDER BY seq DESC LIMIT 1",
            (cycle_id,)).fetchone()
        if previous is None:
            return summary
        figures = self._summary(previous["cycle_id"], previous["summary"])
        folded = closed_wake_folded(summary, (previous["status"], previous["started_at"],
                                              figures))
        if folded is None:
            return summary
        db.execute("DELETE FROM cycles WHERE cycle_id = ?", (previous["cycle_id"],))
        return folded

    def recent_cycles(self, limit: int = 10) -> list[dict[str, Any]]:
        return self._read_cycles(f"SELECT {_CYCLE_COLUMNS} FROM cycles ORDER BY seq DESC LIMIT ?",
                            [limit])

    def _read_cycles(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        """The cycle rows ``sql`` selects (``_CYCLE_COLUMNS``), each summary read back as
        its figures (``_summary``)."""
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{**dict(row), "summary": self._summary(row["cycle_id"], row["summary"])}
                for row in rows]

    def first_equity_before(self) -> float | None:
        """The oldest finished cycle's ``equity_before`` (the account's equity before its
        orders), None when no cycle recorded one."""
        first = self.latest_cycle(figure="equity_before", oldest=True)
        return None if first is None else float(first["summary"]["equity_before"])

    def latest_cycle(self, *, statuses: Sequence[str] | None = None, reason: str | None = None,
                     figure: str | None = None, oldest: bool = False) -> dict[str, Any] | None:
        """The newest (``oldest``: the first) finished cycle, as ``recent_cycles`` gives
        it, with one of ``statuses``, whose summary's ``reason`` is ``reason`` and which
        holds a non-null figure ``figure`` (each when given); None if there is none. One
        query however long the journal: an interval schedule writes a row per wake while
        the market is open (~390 a day at 60 s), and reading them all made ``status``
        take seconds."""
        where: list[str] = ["finished_at IS NOT NULL"]
        args: list[Any] = []
        if statuses is not None:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if reason is not None:  # (a hand-edited summary may not be JSON: json_valid first)
            where.append("(CASE WHEN json_valid(summary) THEN json_extract(summary, '$.reason')"
                         " END) = ?")
            args.append(reason)
        if figure is not None:
            where.append("(CASE WHEN json_valid(summary) THEN json_type(summary, ?) END) "
                         "NOT IN ('null')")
            args.append(f"$.{figure}")
        found = self._read_cycles(f"SELECT {_CYCLE_COLUMNS} FROM cycles WHERE {' AND '.join(where)} "
                             f"ORDER BY seq {'ASC' if oldest else 'DESC'} LIMIT 1", args)
        return found[0] if found else None

    def daily_cycles(self, figures: Sequence[str], latest: int | None = None
                     ) -> list[dict[str, Any]]:
        """Each day's (``asof``) last cycle holding a number under one of ``figures``, oldest
        day first, as ``recent_cycles`` gives them: one row a day however many wakes; only
        the ``latest`` days when given (a status render decoded every day of a journal
        years long, to keep the last 2,000)."""
        holds = " OR ".join("json_type(summary, ?) IN ('real', 'integer')" for _ in figures)
        rows = self._read_cycles(
            f"SELECT {_CYCLE_COLUMNS} FROM cycles WHERE seq IN (SELECT MAX(seq) FROM cycles "
            f"WHERE asof IS NOT NULL AND (CASE WHEN json_valid(summary) THEN ({holds}) END) "
            "GROUP BY asof) ORDER BY asof DESC LIMIT ?",
            [*(f"$.{f}" for f in figures), -1 if latest is None else latest])
        return rows[::-1]

    def _summary(self, cycle_id: str, text: str | None) -> dict[str, Any]:
        """A finished cycle's figures. A summary that is not a JSON object, or whose known
        figures have the wrong JSON types (``summary_problem``: a hand edit), reads as a
        ``reason`` saying so and how to clear it (the note ``status`` shows; not a log line:
        the read-only commands print their report on stdout): the figures are history shown
        by ``status`` and seeded into the metrics, never used to trade."""
        if not text:
            return {}
        try:
            summary = json.loads(text)
        except json.JSONDecodeError:
            summary = None
        problem = summary_problem(summary) if isinstance(summary, dict) else "not a JSON object"
        if problem is None:
            return summary
        fix = self._sqlite_command(f"UPDATE cycles SET summary = NULL WHERE cycle_id = '{cycle_id}'")
        return {"reason": f"figures unreadable ({problem}); clear them: {fix}"}

    def abandon_running_cycles(self) -> list[str]:
        """Mark cycles left 'running' by a crash as 'interrupted'; return their ids."""
        with self._tx() as db:
            ids = [r["cycle_id"] for r in db.execute(
                "SELECT cycle_id FROM cycles WHERE status = ?", (CycleStatus.RUNNING,))]
            db.execute(
                "UPDATE cycles SET status = ?, finished_at = ? WHERE status = ?",
                (CycleStatus.INTERRUPTED, _now_iso(), CycleStatus.RUNNING),
            )
        return ids

    # -- intents and orders -----------------------------------------------------------
    def record_intents(self, cycle_id: str, intents: Sequence[tuple[str, str, OrderSide, float, float]],
                       status: IntentStatus = IntentStatus.INTENT) -> None:
        """Journal (client_order_id, symbol, side, qty, price_est) rows in one transaction."""
        now = _now_iso()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO intents(client_order_id, cycle_id, position, symbol, side, qty, "
                "price_est, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (cid, cycle_id, i, sym, side.value, qty, price, status, now, now)
                    for i, (cid, sym, side, qty, price) in enumerate(intents)
                ],
            )

    def update_from_order(self, order: Order) -> None:
        """Store the venue's latest view of an order we sent."""
        with self._tx() as db:
            self._update_order(db, order)

    @staticmethod
    def _update_order(db: sqlite3.Connection, order: Order) -> None:
        db.execute(  # the venue's answer replaces SUBMIT_UNANSWERED
            "UPDATE intents SET status = ?, broker_order_id = ?, filled_qty = ?, "
            "filled_avg_price = ?, reason = CASE WHEN reason = ? THEN ? "
            "ELSE COALESCE(?, reason) END, updated_at = ? WHERE client_order_id = ?",
            (order.status.value, order.id, order.filled_qty, order.filled_avg_price,
             SUBMIT_UNANSWERED, order.reject_reason, order.reject_reason, _now_iso(),
             order.client_order_id),
        )

    def resize_intent(self, client_order_id: str, qty: float) -> None:
        """Shrink an intent before it is sent (buys scaled to the cash actually there)."""
        with self._tx() as db:
            db.execute("UPDATE intents SET qty = ?, updated_at = ? WHERE client_order_id = ? "
                       "AND status = ?", (qty, _now_iso(), client_order_id, IntentStatus.INTENT))

    def mark_submit_sent(self, client_order_id: str, side: OrderSide) -> None:
        """Journal, just before its submit goes out, that an intent's answer is awaited
        (``SUBMIT_UNANSWERED``): reconciliation does not take a 404 for "never sent" while
        it is recent. The venue's answer replaces the reason (``record_order``)."""
        with self._tx(f"{SUBMIT_SENT_WRITE} {side.value}") as db:
            db.execute("UPDATE intents SET reason = ?, updated_at = ? WHERE client_order_id = ? "
                       "AND status = ?", (SUBMIT_UNANSWERED, _now_iso(), client_order_id,
                                          IntentStatus.INTENT))

    def unanswered_submits_since(self, since: str) -> dict[str, str]:
        """client_order_id → when its submit went out (UTC ISO), for the intents still
        awaiting their answer (``SUBMIT_UNANSWERED``) marked at or after ``since``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT client_order_id, updated_at FROM intents WHERE status = ? AND "
                "reason = ? AND updated_at >= ?", (IntentStatus.INTENT, SUBMIT_UNANSWERED, since))
            return {str(cid): str(at) for cid, at in rows}

    def clear_submit_mark(self, client_order_id: str) -> None:
        """Undo ``mark_submit_sent``: the submit failed with an answer that says the venue
        did not process it (a 429, a refused connection), so a 404 means never sent."""
        with self._tx() as db:
            db.execute("UPDATE intents SET reason = NULL, updated_at = ? WHERE "
                       "client_order_id = ? AND status = ? AND reason = ?",
                       (_now_iso(), client_order_id, IntentStatus.INTENT, SUBMIT_UNANSWERED))

    def set_status(self, client_order_id: str, status: IntentStatus, reason: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE intents SET status = ?, reason = COALESCE(?, reason), updated_at = ? "
                "WHERE client_order_id = ?",
                (status, reason, _now_iso(), client_order_id),
            )

    @staticmethod
    def _replace_fills(db: sqlite3.Connection, client_order_id: str,
                       fills: Sequence[Fill]) -> None:
        db.execute("DELETE FROM fills WHERE client_order_id = ?", (client_order_id,))
        db.executemany(
            "INSERT INTO fills(client_order_id, position, symbol, side, qty, price, "
            "commission, at) VALUES (?,?,?,?,?,?,?,?)",
            [(client_order_id, i, f.symbol, f.side.value, f.qty, f.price, f.commission,
              f.at.isoformat()) for i, f in enumerate(fills)],
        )

    def record_order(self, order: Order, fills: Sequence[Fill]) -> None:
        """The venue's view of an order and its full list of fills, in one transaction: a
        crash never leaves a filled order without its fills (the venue's list replaces
        ours, so repeating it is harmless)."""
        with self._tx("record_order") as db:
            self._update_order(db, order)
            self._replace_fills(db, order.client_order_id, fills)

    def record_batch(self, batch: BookedBatch) -> None:
        """``record_order`` for every order of a batch a venue answered at once, in one
        transaction."""
        with self._tx("record_order") as db:
            for row in range(len(batch)):
                self._update_order(db, batch.order(row))
                self._replace_fills(db, batch.client_order_ids[row], batch.fills(row))

    def day_notional(self, day: date) -> float:
        """Σ|notional| at planning prices that the orders of ``day``'s cycles count toward
        the day's turnover cap (``statuses.spent_qty``): read from the intents, so an order
        a failed cycle never sent, or the venue refused, counts nothing once known."""
        sql = ("SELECT i.status, i.qty, i.filled_qty, i.price_est FROM intents i "
               "JOIN cycles c ON c.cycle_id = i.cycle_id WHERE c.asof = ?")
        with self._lock:
            rows = self._db.execute(sql, (day.isoformat(),)).fetchall()
        return sum(spent_qty(r[0], r[1], r[2]) * r[3] for r in rows)

    def intents(self, cycle_id: str | None = None, statuses: Sequence[IntentStatus] | None = None
                ) -> list[IntentRecord]:
        where: list[str] = []
        args: list[Any] = []
        if cycle_id is not None:
            where.append("cycle_id = ?")
            args.append(cycle_id)
        if statuses is not None:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        return self._read_intents(" AND ".join(where), args)

    def open_and_unsent_intents(self, cycle_ids: Sequence[str]) -> list[IntentRecord]:
        """The intents still open (``OPEN_INTENT_STATUSES``) and the ``unsent`` ones of
        ``cycle_ids``, in ``intents``' order: what ``allocbot status`` lists. The unsent rows
        of other cycles (one per whole-share buy dropped for cash, kept for ever) are
        filtered out by SQLite, not read back."""
        open_marks = ",".join("?" * len(OPEN_INTENT_STATUSES))
        where = f"status IN ({open_marks})"
        args: list[Any] = list(OPEN_INTENT_STATUSES)
        if cycle_ids:
            where += f" OR (status = ? AND cycle_id IN ({','.join('?' * len(cycle_ids))}))"
            args += [IntentStatus.UNSENT, *cycle_ids]
        return self._read_intents(where, args)

    def _read_intents(self, where: str, args: Sequence[Any]) -> list[IntentRecord]:
        """The intents ``where`` (SQL, may be empty) selects, oldest first."""
        sql = ("SELECT client_order_id, cycle_id, symbol, side, qty, price_est, status, "
               "broker_order_id, filled_qty, filled_avg_price, reason FROM intents"
               + (f" WHERE {where}" if where else "") + " ORDER BY created_at, position")
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [
            IntentRecord(
                client_order_id=r["client_order_id"], cycle_id=r["cycle_id"], symbol=r["symbol"],
                side=OrderSide(r["side"]), qty=r["qty"], price_est=r["price_est"],
                status=IntentStatus(r["status"]), broker_order_id=r["broker_order_id"],
                filled_qty=r["filled_qty"], filled_avg_price=r["filled_avg_price"],
                reason=r["reason"],
            )
            for r in rows
        ]

    def open_intents(self) -> list[IntentRecord]:
        """Intents whose outcome is not yet known (unsent, in flight, or partially filled)."""
        return self.intents(statuses=OPEN_INTENT_STATUSES)

    def intent_statuses(self, client_order_ids: Sequence[str]) -> dict[str, IntentStatus]:
        """The journaled status of each of ``client_order_ids`` this journal holds."""
        marks = ",".join("?" * len(client_order_ids))
        with self._lock:
            rows = self._db.execute(f"SELECT client_order_id, status FROM intents WHERE "
                                    f"client_order_id IN ({marks})", list(client_order_ids))
            return {cid: IntentStatus(status) for cid, status in rows}

    def unsent_since(self, since: str) -> list[str]:
        """Intents reconciliation marked never sent (``NEVER_REACHED_VENUE``) at ``since``
        (UTC ISO) or later: their submit may still reach the venue."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT client_order_id FROM intents WHERE status = ? AND reason = ? AND "
                "updated_at >= ?", (IntentStatus.UNSENT, NEVER_REACHED_VENUE, since))]

    def known_client_order_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT client_order_id FROM intents")}

    def intents_missing_fills(self) -> list[str]:
        """client_order_ids whose journaled fills add up to less than their filled qty (a
        torn write by an older allocbot, or a fill list the venue reported late)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT i.client_order_id FROM intents i WHERE i.filled_qty > 0 AND "
                "i.filled_qty > 1e-9 + (1 + 1e-9) * COALESCE((SELECT SUM(f.qty) FROM fills f "
                "WHERE f.client_order_id = i.client_order_id), 0) ORDER BY i.created_at"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def fill_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM fills").fetchone()[0])
