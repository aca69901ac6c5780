"""Reconciliation of the journal with the venue: a pure diff, and the shell that applies it.

Run at start and before every cycle. It is idempotent: applying it twice changes nothing
the second time, and it never sends an order — it only learns what happened to ours.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog

from bot.engine.execution import log_order_booked, order_events_wanted
from bot.engine.journal import IntentRecord, Journal
from bot.engine.statuses import (
    NEVER_REACHED_VENUE,
    SUBMIT_UNANSWERED,
    UNSENT_RECHECK_SECS,
    IntentStatus,
)
from brokers.base import Broker, Order

log = structlog.get_logger("allocbot.reconcile")


@dataclass(frozen=True, slots=True)
class Correction:
    """What the journal should learn about one of its open intents."""

    client_order_id: str
    action: Literal["update", "mark_unsent", "mark_missing", "wait"]
    order: Order | None = None


def diff_journal_with_venue(
    open_intents: Sequence[IntentRecord], venue_orders: Mapping[str, Order | None],
    awaiting: Collection[str] = (),
) -> list[Correction]:
    """Compare open intents with the venue's orders looked up by client_order_id.

    An intent the venue never saw was not sent (the process died first): it is marked
    unsent and its id is never reused; but one whose submit went out unanswered within
    ``UNSENT_RECHECK_SECS`` (``awaiting``) may still arrive: "wait" (it stays open, so no
    cycle trades). One the venue knows is updated to the venue's state.
    """
    corrections: list[Correction] = []
    for intent in open_intents:
        order = venue_orders.get(intent.client_order_id)
        if order is None:
            action: Literal["mark_unsent", "mark_missing", "wait"] = (
                "mark_unsent" if intent.status is IntentStatus.INTENT else "mark_missing"
            )
            if action == "mark_unsent" and intent.client_order_id in awaiting:
                action = "wait"
            corrections.append(Correction(intent.client_order_id, action))
        elif (
            IntentStatus.of_order(order.status) is not intent.status
            or order.filled_qty != intent.filled_qty
            or order.id != intent.broker_order_id
        ):
            corrections.append(Correction(intent.client_order_id, "update", order))
    return corrections


def foreign_open_orders(orders: Sequence[Order], prefix: str, known_ids: set[str]
                        ) -> tuple[list[Order], list[Order]]:
    """Split the venue's open orders into (ours but unknown to this journal, not ours)."""
    ours_unknown = [o for o in orders if o.client_order_id.startswith(prefix)
                    and o.client_order_id not in known_ids]
    foreign = [o for o in orders if not o.client_order_id.startswith(prefix)]
    return ours_unknown, foreign


def repair_missing_fills(broker: Broker, journal: Journal) -> list[str]:
    """Ask the venue again for every order the journal shows (partly) filled but whose
    fills it lacks, and store its view and fills in one transaction; returns the ids. An
    order still open in the journal that the venue now reports final has its outcome
    logged (``log_order_booked``): the loop over open intents will not see it again."""
    repaired = []
    missing = journal.intents_missing_fills()
    was_open = {i.client_order_id for i in journal.open_intents()} if missing else set()
    for cid in missing:
        order = broker.get_order_by_client_id(cid)
        if order is None:
            continue
        fills = broker.fills_for(cid)
        journal.record_order(order, fills)
        repaired.append(cid)
        log.warning("order_fills_repaired", client_order_id=cid, fills=len(fills),
                    filled_qty=order.filled_qty)
        if cid in was_open:
            log_order_booked(log, order, fills, order_events_wanted(), submitted=False)
    return repaired


# Journal states of an intent the venue did not have when last asked: if it turns up at
# the venue after all (a submit that arrived after the process died), it is booked.
_NOT_AT_VENUE = (IntentStatus.UNSENT, IntentStatus.MISSING)
# The venue's most recent orders searched for them (Alpaca lists at most 500 a page; the
# bot sends one order per symbol a cycle, so a late one is among the last few).
LATEST_ORDERS_SEARCHED = 500


def book_found_late(broker: Broker, journal: Journal, venue_open: Sequence[Order],
                    prefix: str) -> list[str]:
    """Book the orders of ours the journal holds as never sent (or missing) but the venue
    has after all: a submit in flight when the process died can arrive after the next
    start marked it ``unsent``. They are the venue's open orders with such an id, and the
    intents marked unsent within ``UNSENT_RECHECK_SECS`` found among the venue's latest
    orders (one that arrived and filled between two cycles is no longer open). Each is
    journaled with its fills and logged ``order_found_late``; an open one blocks the cycle
    like any order of ours still working (the journal now lists it open). Returns their
    ids."""
    ours = [o.client_order_id for o in venue_open if o.client_order_id.startswith(prefix)]
    known = journal.intent_statuses(ours) if ours else {}
    found = {o.client_order_id: o for o in venue_open
             if known.get(o.client_order_id) in _NOT_AT_VENUE}
    since = (datetime.now(UTC) - timedelta(seconds=UNSENT_RECHECK_SECS)).isoformat()
    recent = set(journal.unsent_since(since)) - set(found)
    if recent:  # one listing of the venue's latest orders, not a lookup per intent
        found.update((o.client_order_id, o) for o in broker.list_orders(
            open_only=False, latest=LATEST_ORDERS_SEARCHED) if o.client_order_id in recent)
    for cid, order in found.items():
        fills = broker.fills_for(cid)
        journal.record_order(order, fills)
        log.warning("order_found_late", client_order_id=cid, symbol=order.symbol,
                    side=order.side.value, qty=order.qty, status=order.status.value,
                    filled_qty=order.filled_qty,
                    note="journaled as never sent, but the venue has it (a submit that "
                         "arrived after the process died): booked now; no cycle trades "
                         "while it works")
        # the journal holds the venue's answer for the first time: counted submitted here
        log_order_booked(log, order, fills, order_events_wanted(), submitted=True)
    return list(found)


def reconcile(broker: Broker, journal: Journal, prefix: str, repair_fills: bool = False
              ) -> list[Order]:
    """Bring the journal up to date with the venue; report orders that are not ours.
    Returns the venue's open orders that carry our prefix but are not in this journal
    (sent from a state file since replaced: a restored backup, a new state dir): the
    cycle must not trade on top of them.

    ``repair_fills`` (the first cycle of a process) also re-fetches the fills of orders
    whose fills are missing from the journal.
    """
    if repair_fills:
        repair_missing_fills(broker, journal)
    open_intents = journal.open_intents()
    venue = {i.client_order_id: broker.get_order_by_client_id(i.client_order_id)
             for i in open_intents}
    awaiting = (journal.unanswered_submits_since(
        (datetime.now(UTC) - timedelta(seconds=UNSENT_RECHECK_SECS)).isoformat())
        if any(i.reason == SUBMIT_UNANSWERED for i in open_intents) else {})
    corrections = diff_journal_with_venue(open_intents, venue, awaiting)
    status_of = {i.client_order_id: i.status for i in open_intents} if corrections else {}
    intent_of = {i.client_order_id: i for i in open_intents} if corrections else {}
    for c in corrections:
        if c.action == "wait":
            _log_answer_pending(intent_of[c.client_order_id], awaiting[c.client_order_id])
            continue
        if c.action == "update" and c.order is not None:
            fills = broker.fills_for(c.client_order_id)
            journal.record_order(c.order, fills)
            # the outcome the cycle that sent it never logged (it failed or died before its
            # journal write), if the order is final now: open intents have none logged yet
            log_order_booked(log, c.order, fills, order_events_wanted(),
                             submitted=False)
        elif c.action == "mark_unsent":
            journal.set_status(c.client_order_id, IntentStatus.UNSENT, NEVER_REACHED_VENUE)
        else:
            journal.set_status(c.client_order_id, IntentStatus.MISSING, "venue has no such order")
            _log_missing_at_venue(intent_of[c.client_order_id])
        # previous_status "intent": the venue holds an order whose submit this journal never
        # had an answer to (no order_submitted was logged for it; monitoring counts it here)
        log.info("order_reconciled", client_order_id=c.client_order_id, action=c.action,
                 status=c.order.status.value if c.order else None,
                 previous_status=status_of[c.client_order_id].value)
    venue_open = broker.list_orders(open_only=True)
    book_found_late(broker, journal, venue_open, prefix)
    # the journal's id set grows with every order ever sent: read it only when needed
    ours_unknown, foreign = foreign_open_orders(
        venue_open, prefix, journal.known_client_order_ids() if venue_open else set()
    )
    for o in ours_unknown:
        log.warning("order_unknown_seen", client_order_id=o.client_order_id, symbol=o.symbol,
                    note="carries our prefix but is not in this journal (a replaced state "
                         "file?); left untouched, and no cycle trades while it works")
    for o in foreign:
        log.info("foreign_order_seen", client_order_id=o.client_order_id, symbol=o.symbol,
                 note="not ours; left untouched")
    log.info("journal_reconciled", open_intents=len(open_intents), corrections=len(corrections))
    return ours_unknown


def _log_missing_at_venue(intent: IntentRecord) -> None:
    """An order this journal sent (the venue answered it) that the venue no longer knows:
    booked ``missing``, so it holds no cycle back; said as a warning, as nothing shows it
    after (``status`` lists open and unsent orders), and what it may have filled is not in
    the journal. It was an info ``order_reconciled`` line only."""
    log.warning("order_missing_at_venue", client_order_id=intent.client_order_id,
                symbol=intent.symbol, side=intent.side.value, qty=intent.qty,
                filled_qty=intent.filled_qty, previous_status=intent.status.value,
                broker_order_id=intent.broker_order_id,
                note="the journal sent this order but the venue has no order under its "
                     "client_order_id now: booked missing, its fills unknown to the journal; "
                     "check the orders and positions at the venue (booked if it shows up "
                     "again: order_found_late)")


def _log_answer_pending(intent: IntentRecord, sent_at: str) -> None:
    """An unanswered submit the venue does not show yet: it stays open (no cycle trades on
    top of it) until the venue shows it or ``UNSENT_RECHECK_SECS`` pass."""
    until = datetime.fromisoformat(sent_at) + timedelta(seconds=UNSENT_RECHECK_SECS)
    log.warning("order_answer_pending", client_order_id=intent.client_order_id,
                symbol=intent.symbol, side=intent.side.value, qty=intent.qty,
                sent_at=sent_at, until=until.isoformat(),
                note="its submit got no answer and the venue does not show it yet; it may "
                     "still arrive, so no cycle trades until it shows up or this time passes")
