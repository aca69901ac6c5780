"""Deposits and withdrawals: rescale the drawdown kill switch's equity peak for money the
owner moved, so only the portfolio's losses count (``bot.core.risk.peak_after_transfers``).

Two sources, because neither alone says when the money moved:

* the venue's list of cash transfers (``CashTransferSource``) says *that* money moved and
  how much, but its entry may appear before or after the cash does;
* the account's cash, against a checkpoint taken at the previous cycle's last read, says
  *when*: a listed transfer is applied on the cycle whose cash moved by about its amount
  since the checkpoint, with no fill journaled in between (``landed``), so the peak is
  rescaled by an equity that holds it. Until then it is pending. One whose cash never
  shows within ``LOOK_BACK_DAYS`` (its cash moved first, before the listing; or fills
  blurred the interval) is left unapplied: the drawdown then sees it as before this
  existed, a gain or a loss, never counted twice.

The journal keeps every transfer listed (``TRANSFERS_KEY``) so none applies twice; the
record and the peak change in one transaction. The first read only records what is
listed: that money is already in the equity the peak was recorded from.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import structlog

from bot.core.risk import peak_after_transfers
from bot.engine.journal import Journal
from bot.engine.statuses import (
    PEAK_KEY,
    TRANSFERS_KEY,
    SeenTransfer,
    TransferRecord,
    TransferState,
    recorded_peak,
    recorded_transfers,
)
from brokers.base import Account, Broker, CashTransfer

log = structlog.get_logger("allocbot.cycle")

LOOK_BACK_DAYS = 7  # each read reaches this far before the last one (a back-dated booking)
PENDING_DAYS = 14  # a listed transfer whose cash has not shown by then is left unapplied
# |cash moved − transfer| within this of equity (dividends, interest and fees booked in the
# same interval) plus this of the transfer counts as the transfer's cash
CASH_NOISE_OF_EQUITY = 0.005
CASH_NOISE_OF_TRANSFER = 0.05


def apply_cash_transfers(broker: Broker, journal: Journal, account: Account, asof: date) -> None:
    """Record the account's newly listed cash transfers, apply those whose cash has landed
    (rescale the peak) and take this read as the next cash checkpoint. A broker without
    ``cash_transfers`` (the simulator) has none. A failed read raises: the cycle fails."""
    read = getattr(broker, "cash_transfers", None)
    if read is None:
        return
    record = recorded_transfers(journal)
    if record is None:  # the first read: already in the equity and the peak
        listed = read(asof - timedelta(days=LOOK_BACK_DAYS))
        journal.set_meta_json(TRANSFERS_KEY, _as_json(TransferRecord(
            asof.isoformat(), account.cash, journal.fills_cursor(),
            tuple(_seen(t, TransferState.BASELINE, asof) for t in _unique(listed)))))
        return
    checked = date.fromisoformat(record.checked_through)
    listed = read(min(checked, asof) - timedelta(days=LOOK_BACK_DAYS))
    known = {t.id for t in record.transfers}
    transfers = [*record.transfers, *(_seen(t, TransferState.PENDING, asof)
                                     for t in _unique(listed) if t.id not in known)]
    fills = journal.fills_cursor()
    pending = _landed_now(transfers, account, record) if fills == record.fills_seen else []
    values: dict[str, object] = {}
    if pending:
        net = math.fsum(t.amount for t in pending)
        now = datetime.now(UTC).isoformat()
        ids = {t.id for t in pending}
        transfers = [t._replace(state=TransferState.APPLIED, applied_at=now) if t.id in ids
                     else t for t in transfers]
        peak = recorded_peak(journal)
        values[PEAK_KEY] = peak_after_transfers(peak, account.equity, net)
        log.info("cash_transfers_applied", net_cash=net, equity=account.equity,
                 peak_equity_before=peak, peak_equity_after=values[PEAK_KEY],
                 transfers=[{"kind": t.kind, "on": t.on, "net_cash": t.amount} for t in pending],
                 note="the drawdown is measured as if this money had not moved")
    transfers = _expired(transfers, asof)
    values[TRANSFERS_KEY] = _as_json(TransferRecord(asof.isoformat(), account.cash, fills,
                                                    tuple(transfers)))
    journal.set_meta_jsons(values)


def checkpoint_cash(broker: Broker, journal: Journal, cash: float) -> None:
    """Take the cycle's last account read (after its orders) as the cash checkpoint, so
    the next cycle's cash move holds no fill of this one's."""
    if getattr(broker, "cash_transfers", None) is None:
        return
    record = recorded_transfers(journal)
    if record is not None:
        journal.set_meta_json(TRANSFERS_KEY, _as_json(record._replace(
            cash=cash, fills_seen=journal.fills_cursor())))


def _landed_now(transfers: list[SeenTransfer], account: Account, record: TransferRecord
                ) -> list[SeenTransfer]:
    """The pending transfers whose money the cash moved by since the checkpoint: all of
    them together, else the one alone that fits (the latest first); none when none fits."""
    pending = [t for t in transfers if t.state == TransferState.PENDING]
    moved = account.cash - record.cash
    for group in ([pending] if len(pending) > 1 else []) + [[t] for t in reversed(pending)]:
        if landed(moved, math.fsum(t.amount for t in group), account.equity):
            return group
    return []


def landed(cash_moved: float, net_transfer: float, equity: float) -> bool:
    """Whether the cash moved since the checkpoint is the pending transfers' money: within
    the noise of the same interval's other cash (dividends, fees) and closer to the
    transfers than to no move at all."""
    off = abs(cash_moved - net_transfer)
    noise = CASH_NOISE_OF_EQUITY * abs(equity) + CASH_NOISE_OF_TRANSFER * abs(net_transfer)
    return off <= noise and off < abs(cash_moved)


def _expired(transfers: list[SeenTransfer], asof: date) -> list[SeenTransfer]:
    """Pending transfers listed ``PENDING_DAYS`` ago become unmatched (warned once);
    baseline and unmatched entries are forgotten twice as long after they were listed,
    long past the reads' reach (applied ones are kept: status nets them out of P&L)."""
    horizon = (asof - timedelta(days=PENDING_DAYS)).isoformat()
    forget = (asof - timedelta(days=2 * PENDING_DAYS)).isoformat()
    out = []
    for t in transfers:
        if t.state == TransferState.PENDING and t.seen_asof < horizon:
            log.warning("cash_transfer_unmatched", kind=t.kind, on=t.on, net_cash=t.amount,
                        note="the account's cash never moved by this amount between two "
                             "cycles; it is not applied, so the drawdown counts it as a gain "
                             "or a loss (after a withdrawal that trips the kill switch: "
                             "allocbot rearm)")
            t = t._replace(state=TransferState.UNMATCHED)
        if t.state == TransferState.APPLIED or t.seen_asof >= forget:
            out.append(t)
    return out


def _unique(transfers: list[CashTransfer]) -> list[CashTransfer]:
    """The first of each id (pages read while a booking lands can repeat one)."""
    first: dict[str, CashTransfer] = {}
    for t in transfers:
        first.setdefault(t.id, t)
    return list(first.values())


def _seen(t: CashTransfer, state: TransferState, asof: date) -> SeenTransfer:
    return SeenTransfer(t.id, t.on.isoformat(), t.amount, t.kind, str(state), asof.isoformat())


def _as_json(record: TransferRecord) -> dict[str, object]:
    return {"checked_through": record.checked_through, "cash": record.cash,
            "fills_seen": record.fills_seen,
            "transfers": [t._asdict() for t in record.transfers]}
