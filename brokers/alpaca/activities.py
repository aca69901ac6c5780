"""Alpaca's account activities read as cash transfers (``GET /v2/account/activities``).

alpaca-py's ``TradingClient`` does not wrap this endpoint, so the adapter calls it through
the client's own ``get`` (same session, timeout, keys and retry budget) and this module
checks each entry. The activity types are Alpaca's (``shared/reference/alpaca``,
``ActivityType``): only those that move money in or out of the account from outside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from typing import Any

from brokers.base import CashTransfer
from brokers.errors import BrokerDataError

# CSD cash deposit, CSW cash withdrawal, JNLC cash journal (between accounts), ACATC cash
# moved in or out by ACATS. Not DIV*/INT*/FEE (the portfolio's return and costs) and not
# JNLS/ACATS (securities, which arrive as positions without a cash amount).
TRANSFER_TYPES = ("CSD", "CSW", "JNLC", "ACATC")
PAGE_SIZE = 100  # Alpaca's maximum for this endpoint
MAX_PAGES = 50  # 5,000 transfers in one read: beyond is not an account this bot serves
_CANCELLED = frozenset({"canceled", "cancelled"})  # a booking Alpaca reversed
# A reversed booking is listed as its own transfer (the opposite amount, this suffix on the
# id): applied, like any, once the cash moves back; the booking itself stays as it was.
REVERSAL_SUFFIX = ":canceled"


def transfer_query(since: date, page_token: str | None) -> dict[str, str | int]:
    """The query of one page of transfers booked on or after ``since``, oldest first."""
    query: dict[str, str | int] = {
        "activity_types": ",".join(TRANSFER_TYPES), "direction": "asc",
        "after": f"{since.isoformat()}T00:00:00Z", "page_size": PAGE_SIZE}
    if page_token is not None:
        query["page_token"] = page_token
    return query


def transfers_from_page(rows: Any, redact: Callable[[str], str]) -> list[CashTransfer]:
    """The transfers in one page of the endpoint's answer (a JSON list); a missing or
    garbled field is a ``BrokerDataError`` naming it (its text redacted). Entries of other
    types (the endpoint was asked for these only) are left out; a reversed (canceled)
    booking is listed as its reversal."""
    if not isinstance(rows, list):
        raise BrokerDataError(f"GET /v2/account/activities: Alpaca answered a "
                              f"{type(rows).__name__}, expected a list")
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise BrokerDataError(f"GET /v2/account/activities: an entry is a "
                                  f"{type(row).__name__}, expected an object")
        kind = row.get("activity_type")
        if kind not in TRANSFER_TYPES:
            continue
        activity_id = row.get("id")
        if not isinstance(activity_id, str) or not activity_id:
            raise BrokerDataError(redact(f"Alpaca activity {kind} has id {activity_id!r}, "
                                         "expected text"))
        on = _booked_on(row.get("date"), activity_id, redact)
        amount = _amount(row.get("net_amount"), activity_id, redact)
        if str(row.get("status", "")).lower() in _CANCELLED:  # its money goes back
            out.append(CashTransfer(id=f"{activity_id}{REVERSAL_SUFFIX}", on=on,
                                    amount=-amount, kind=kind))
        else:
            out.append(CashTransfer(id=activity_id, on=on, amount=amount, kind=kind))
    return out


def _booked_on(value: object, activity_id: str, redact: Callable[[str], str]) -> date:
    """The activity's date ("2024-03-01" or a date-time: its first ten characters)."""
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise BrokerDataError(redact(f"Alpaca activity {activity_id} has date {value!r}, "
                                     "expected an ISO date")) from None


def _amount(value: object, activity_id: str, redact: Callable[[str], str]) -> float:
    try:
        amount = float(value)  # type: ignore[arg-type]  # Alpaca sends numbers as text
    except (TypeError, ValueError):
        amount = math.nan
    if not math.isfinite(amount):
        raise BrokerDataError(redact(f"Alpaca activity {activity_id} has net_amount {value!r}, "
                                     "expected a finite number"))
    return amount
