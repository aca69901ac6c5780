"""The states a cycle and an order intent can be in, as the journal stores them."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from brokers.base import OrderStatus

if TYPE_CHECKING:
    from bot.engine.journal import Journal

# Journal meta keys of the drawdown kill switch: set by the cycle, cleared by
# `allocbot rearm`, read by `allocbot status`/`health`.
HALT_KEY = "halted"  # the halt's reason while trading is halted
PEAK_KEY = "peak_equity"  # the equity peak the drawdown is measured from
HALT_REMINDED_KEY = "halt_reminded"  # the exchange day of the last still_halted warning
# The account's equity when a cycle first read it: the baseline of "P&L since inception"
# (a cycle that failed after its orders filled, before any cycle finished, paid costs the
# first finished cycle's ``equity_before`` no longer shows).
INCEPTION_KEY = "inception_equity"
# The account's cash transfers (deposits, withdrawals) the bot has seen, and the day it last
# read them (``bot.engine.cash_transfers``; read by status for P&L net of transfers).
TRANSFERS_KEY = "cash_transfers"
# The broker account the state file belongs to (``Journal.recorded_account``): recorded at
# the first writer open, compared at every later one (``bot.engine.runtime.open_runtime``).
ACCOUNT_KEY = "account"


def recorded_peak(journal: Journal) -> float:
    """The recorded equity peak (account currency; 0.0 before the first cycle). Anything
    but a finite number ≥ 0 (a hand edit) raises ``Journal.corrupt_meta``'s error: the
    kill switch never measures from a NaN."""
    peak = journal.meta_json(PEAK_KEY)
    if peak is None:
        return 0.0
    if type(peak) in (float, int) and math.isfinite(peak) and peak >= 0:
        return float(peak)
    raise journal.corrupt_meta(PEAK_KEY, "is not an equity peak (a finite amount ≥ 0)")


def recorded_inception(journal: Journal) -> float | None:
    """The equity recorded at the first account read (None in a journal from before the
    key, or before any cycle read the account); a hand edit to anything but a finite
    amount ≥ 0 raises ``Journal.corrupt_meta``'s error."""
    equity = journal.meta_json(INCEPTION_KEY)
    if equity is None:
        return None
    if type(equity) in (float, int) and math.isfinite(equity) and equity >= 0:
        return float(equity)
    raise journal.corrupt_meta(INCEPTION_KEY, "is not an equity (a finite amount ≥ 0)")


def record_inception(journal: Journal, equity: float) -> None:
    """Record the baseline of "P&L since inception" once: ``equity``, the account's equity
    as this cycle read it, or, in a journal written before the key existed, its oldest
    cycle's ``equity_before`` (the baseline status used then: an upgrade keeps it)."""
    if journal.meta(INCEPTION_KEY) is None:
        earlier = journal.first_equity_before()
        journal.set_meta_json(INCEPTION_KEY, equity if earlier is None else earlier)


# An intent's reason when reconciliation found the venue without it (the process died
# before its submit arrived): the venue may still receive that submit late, so such
# intents are looked up again for ``UNSENT_RECHECK_SECS`` (``bot.engine.reconcile``).
NEVER_REACHED_VENUE = "never reached the venue (found by the next reconciliation)"
# An intent's reason from just before its submit until the venue's answer is journaled: a
# submit whose answer never came (a timeout, a process killed mid-request) may still reach
# the venue, so reconciliation does not call it unsent while it is this recent (within
# ``UNSENT_RECHECK_SECS``): it stays open and no cycle trades; one 404 two seconds later
# had the next cycle buy the same shares again before the first order arrived.
SUBMIT_UNANSWERED = "submit sent; the venue's answer has not arrived"

UNSENT_RECHECK_SECS = 900.0  # a dead process's TCP send buffer is retransmitted for ≤ ~15 min
# A skipped cycle's reason (its summary's ``"reason"``) when the market was closed.
MARKET_CLOSED = "market_closed"
# What a closed-market row of the journal stands for: it is the last of a run of wakes that
# found the market closed (``Journal.finish_cycle`` folds each into the next), how many
# and since when (the first one's start, UTC ISO).
CLOSED_WAKES, CLOSED_SINCE = "closed_wakes", "closed_since"


class CycleStatus(StrEnum):
    """How a cycle ended (``running`` while it runs)."""

    RUNNING = "running"
    FINISHED = "finished"  # ran every step (it may have planned no order)
    SKIPPED = "skipped"  # market closed, an earlier order still working, or a guard blocked
    HALTED = "halted"  # the drawdown kill switch is on: nothing traded
    HELD = "held"  # the strategy could not compute and no fallback could: nothing traded
    FAILED = "failed"  # bad data, a strategy that could not compute, a venue failure
    INTERRUPTED = "interrupted"  # the process died mid-cycle; found at the next start


class IntentStatus(StrEnum):
    """An order intent's state: the bot's own states, then the venue's (``OrderStatus``)."""

    INTENT = "intent"  # journaled, not yet known to have reached the venue
    UNSENT = "unsent"  # found after a restart never to have reached the venue; abandoned
    DRY_RUN = "dry_run"  # dry-run mode: journaled and logged, never sent
    MISSING = "missing"  # the venue once knew it and no longer does
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @classmethod
    def of_order(cls, status: OrderStatus) -> IntentStatus:
        """The intent state that mirrors a venue order state."""
        return cls(status.value)


class _Kind(NamedTuple):
    """A summary figure's JSON types (null: no figure) and how an error names them."""

    types: frozenset[type]
    name: str


_NULL: type = type(None)
_NUMBER = _Kind(frozenset({int, float, _NULL}), "a number")  # json.loads': a bool is not
_COUNT = _Kind(frozenset({int, _NULL}), "a whole number")
_TEXT = _Kind(frozenset({str, _NULL}), "text")
_LIST = _Kind(frozenset({list, _NULL}), "a list")
# What a cycle summary (``cycle.run``'s figures, the journal's ``cycles.summary``) holds,
# figure by figure: ``status``, the status page and the metrics read these back.
SUMMARY_FIGURES: dict[str, _Kind] = {
    **dict.fromkeys(("equity_before", "equity_after", "equity", "cash_after", "commission",
                     "turnover", "var", "drawdown", "max_drift", "duration_ms"), _NUMBER),
    **dict.fromkeys(("orders_planned", "orders_submitted", "orders_filled",
                     "orders_partially_filled", "orders_rejected", "orders_unfilled"), _COUNT),
    "reason": _TEXT, "error": _TEXT, "strategy": _TEXT, "mode": _TEXT, "drifted": _LIST,
    "guards": _LIST,
    "guard_detail": _TEXT,
    "held": _Kind(frozenset({bool, _NULL}), "true or false"),
    "targets": _Kind(frozenset({dict, _NULL}), "an object {symbol: weight}"),
}
_JSON_NAMES: dict[type, str] = {bool: "a boolean", int: "a number", float: "a number",
                                str: "text", list: "a list", dict: "an object"}


def summary_problem(summary: dict[str, Any]) -> str | None:
    """What is wrong with a cycle summary read back from the journal (a hand edit), or
    None: a known figure of another JSON type, or a target weight that is not a number."""
    for key, value in summary.items():
        kind = SUMMARY_FIGURES.get(key)
        if kind is not None and type(value) not in kind.types:
            return f"{key!r} is {_JSON_NAMES.get(type(value), 'null')}, not {kind.name}"
    targets = summary.get("targets")
    for symbol, weight in targets.items() if targets else ():
        if type(weight) not in _NUMBER.types or weight is None:
            return f"the target weight of {symbol!r} is not a number"
    return None


OPEN_INTENT_STATUSES: tuple[IntentStatus, ...] = (
    IntentStatus.INTENT, IntentStatus.NEW, IntentStatus.ACCEPTED, IntentStatus.PARTIALLY_FILLED)


def spent_qty(status: str, qty: float, filled_qty: float) -> float:
    """How much of an order intent counts toward the day's turnover cap: all of it while it
    may still trade (journaled but not known to have reached the venue, or open there: a
    crash before the venue answered over-counts, never under-counts), what filled once it
    ended (rejected, canceled, expired, unsent, dry-run: only what it traded)."""
    return qty if status in OPEN_INTENT_STATUSES else filled_qty


def closed_wake_folded(summary: dict[str, Any], previous: tuple[str, str, dict[str, Any]]
                       ) -> dict[str, Any] | None:
    """A closed-market skip's ``summary`` after folding in the journal's ``previous`` cycle
    (status, started_at, summary) when that was one too: its wake count and first start
    carried on. None when ``previous`` is anything else (it stays a row of its own)."""
    status, started_at, figures = previous
    if status != CycleStatus.SKIPPED or figures.get("reason") != MARKET_CLOSED:
        return None
    wakes = figures.get(CLOSED_WAKES, 1)
    return {**summary, CLOSED_WAKES: (wakes if type(wakes) is int else 1) + 1,
            CLOSED_SINCE: figures.get(CLOSED_SINCE, started_at)}


class TransferState(StrEnum):
    """Where a cash transfer the venue lists stands with the kill switch's peak."""

    BASELINE = "baseline"  # listed when the bot started watching: already in the equity
    PENDING = "pending"  # listed, but the account's cash does not show it yet
    APPLIED = "applied"  # the cash showed it: the peak was rescaled for it
    UNMATCHED = "unmatched"  # the cash never showed it within the look-back: not applied


class SeenTransfer(NamedTuple):
    """A cash transfer as the journal keeps it (``bot.engine.cash_transfers``)."""

    id: str
    on: str  # the venue's booking day (ISO)
    amount: float  # account currency: + in, − out
    kind: str
    state: str  # a TransferState
    seen_asof: str  # the exchange day of the cycle that first listed it
    applied_at: str | None = None  # UTC ISO time of the cycle's account read that applied it


class TransferRecord(NamedTuple):
    """The transfers listed so far and the account's checkpoint at the last read: its
    cash and positions (symbol → [shares, price]) and the journal's fill totals then
    (``Journal.fill_totals``), so that the next read can tell what else moved the cash."""

    checked_through: str  # the exchange day of the last read (ISO)
    cash: float
    positions: dict[str, list[float]]
    fills_cash: float
    fills_qty: dict[str, float]
    transfers: tuple[SeenTransfer, ...]

    def applied_between(self, after: str | None, until: str | None) -> float:
        """The net amount of the transfers applied after the UTC ISO time ``after`` (None:
        from the start) and at or before ``until`` (None: to now), account currency."""
        return math.fsum(t.amount for t in self.transfers
                         if t.state == TransferState.APPLIED and t.applied_at is not None
                         and (after is None or t.applied_at > after)
                         and (until is None or t.applied_at <= until))


_RECORD_KEYS = sorted(TransferRecord._fields)
_STATES = frozenset(TransferState)


def recorded_transfers(journal: Journal) -> TransferRecord | None:
    """The cash transfers seen so far (None before the first read, or with a broker that
    has none); anything but what ``bot.engine.cash_transfers`` wrote (a hand edit) raises
    ``Journal.corrupt_meta``'s error."""
    value = journal.meta_json(TRANSFERS_KEY)
    if value is None:
        return None
    try:
        if sorted(value) != _RECORD_KEYS:
            raise ValueError
        transfers = tuple(SeenTransfer(**t) for t in value["transfers"])
        positions = {str(k): [float(q), float(p)] for k, (q, p) in value["positions"].items()}
        fills_qty = {str(k): float(q) for k, q in value["fills_qty"].items()}
        numbers = [value["cash"], value["fills_cash"], *(t.amount for t in transfers),
                   *fills_qty.values(), *(x for qp in positions.values() for x in qp)]
        if not (all(type(x) in (float, int) and math.isfinite(x) for x in numbers)
                and all(isinstance(t.id, str) and isinstance(t.on, str) and t.state in _STATES
                        for t in transfers)):
            raise ValueError
        return TransferRecord(str(value["checked_through"]), float(value["cash"]), positions,
                              float(value["fills_cash"]), fills_qty, transfers)
    except (TypeError, ValueError, AttributeError):
        raise journal.corrupt_meta(
            TRANSFERS_KEY, "is not a record of cash transfers (checked_through, cash, positions, "
            "fills_cash, fills_qty, transfers)") from None
