"""Deposits and withdrawals: read the venue's cash transfers each cycle and rescale the
equity peak for the new ones, so the drawdown kill switch measures the portfolio's losses,
not money the owner moved (``bot.core.risk.peak_after_transfers``).

The journal keeps every transfer seen (``TRANSFERS_KEY``), so none is applied twice, and
the peak and that record change in one transaction. The first read only records what is
there: those transfers are already in the equity the peak was recorded from. Each read
goes back ``LATE_BOOKING_DAYS`` before the last one, for a booking dated before it appears.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import structlog

from bot.core.risk import peak_after_transfers
from bot.engine.journal import Journal
from bot.engine.statuses import (
    PEAK_KEY,
    TRANSFERS_KEY,
    SeenTransfer,
    recorded_peak,
    recorded_transfers,
)
from brokers.base import Broker, CashTransfer

log = structlog.get_logger("allocbot.cycle")

LATE_BOOKING_DAYS = 7


def apply_cash_transfers(broker: Broker, journal: Journal, equity: float, asof: date) -> None:
    """Record the account's new cash transfers and rescale the peak for them (a broker
    without ``cash_transfers``, the simulator, has none). A failed read raises: the cycle
    fails rather than measure a withdrawal as a loss."""
    read = getattr(broker, "cash_transfers", None)
    if read is None:
        return
    record = recorded_transfers(journal)
    if record is None:  # the first read: already in the equity and the peak
        seen = read(asof - timedelta(days=LATE_BOOKING_DAYS))
        journal.set_meta_json(TRANSFERS_KEY, _record(asof, [_kept(t, None) for t in seen]))
        return
    checked = date.fromisoformat(record.checked_through)
    fetched: list[CashTransfer] = read(min(checked, asof) - timedelta(days=LATE_BOOKING_DAYS))
    # a baseline entry older than twice the look-back is forgotten; a booking that old is
    # never taken as new (the reads' window has passed it)
    horizon = (asof - timedelta(days=2 * LATE_BOOKING_DAYS)).isoformat()
    known = {t.id for t in record.transfers}
    new = [t for t in _unique(fetched) if t.id not in known and t.on.isoformat() >= horizon]
    kept = [t for t in record.transfers if t.applied_asof is not None or t.on >= horizon]
    if not new:
        if record.checked_through != asof.isoformat() or len(kept) != len(record.transfers):
            journal.set_meta_json(TRANSFERS_KEY, _record(asof, kept))
        return
    net = math.fsum(t.amount for t in new)
    peak = recorded_peak(journal)
    peak_after = peak_after_transfers(peak, equity, net)
    journal.set_meta_jsons({
        TRANSFERS_KEY: _record(asof, kept + [_kept(t, asof.isoformat()) for t in new]),
        PEAK_KEY: peak_after})
    log.info("cash_transfers_applied", net_cash=net, equity=equity,
             peak_equity_before=peak, peak_equity_after=peak_after,
             transfers=[{"kind": t.kind, "on": t.on.isoformat(), "net_cash": t.amount}
                        for t in new],
             note="the drawdown is measured as if this money had not moved")


def _unique(transfers: list[CashTransfer]) -> list[CashTransfer]:
    """The first of each id (pages read while a booking lands can repeat one)."""
    first: dict[str, CashTransfer] = {}
    for t in transfers:
        first.setdefault(t.id, t)
    return list(first.values())


def _kept(t: CashTransfer, applied_asof: str | None) -> SeenTransfer:
    return SeenTransfer(t.id, t.on.isoformat(), t.amount, t.kind, applied_asof)


def _record(asof: date, transfers: list[SeenTransfer]) -> dict[str, object]:
    return {"checked_through": asof.isoformat(),
            "transfers": [t._asdict() for t in transfers]}

