"""Deposits and withdrawals: rescale the drawdown kill switch's equity peak for money the
owner moved, so only the portfolio's losses count (``bot.core.risk.peak_after_transfers``).

Two sources, because neither alone says when the money moved:

* the venue's list of cash transfers (``CashTransferSource``) says *that* money moved and
  how much, but its entry may appear before or after the cash does;
* the account, against a checkpoint taken at the previous cycle's account read, says
  *when*: the cash it moved by since, less what the bot's own fills moved (the journal's
  fill totals) and less what the owner's own trades moved (shares that changed beyond
  those fills, at their price), is the money from outside (``outside_cash``). A listed
  transfer is applied on the cycle whose outside cash is about its amount (``landed``), so
  the peak is rescaled by an equity that holds it. Until then it is pending. One whose
  cash never shows within ``PENDING_DAYS`` (its cash moved before the listing appeared) is
  left unapplied: the drawdown then sees it as before this existed, a gain or a loss,
  never counted twice.

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
from brokers.base import Account, Broker, CashTransfer, Position

log = structlog.get_logger("allocbot.cycle")

LOOK_BACK_DAYS = 7  # each read reaches this far before the last one (a back-dated booking)
PENDING_DAYS = 14  # a listed transfer whose cash has not shown by then is left unapplied
# |outside cash − transfers| within this of equity (dividends, interest and fees of the
# same days; the owner's trades valued at the last price) plus this of the transfers, plus
# a dollar, counts as the transfers' cash
CASH_NOISE_OF_EQUITY = 0.002
CASH_NOISE_OF_TRANSFER = 0.02
OWNER_PRICE_NOISE = 0.05  # of the owner's trades' value: their prices' move since, unknown
MAX_MATCHED_TOGETHER = 8  # pending transfers tried in every combination (2⁸ − 1 sums)


def apply_cash_transfers(broker: Broker, journal: Journal, account: Account,
                         positions: dict[str, Position], asof: date) -> None:
    """Record the account's newly listed cash transfers, apply those whose cash has landed
    (rescale the peak) and take this read as the next checkpoint. A broker without
    ``cash_transfers`` (the simulator) has none. A failed read raises: the cycle fails."""
    read = getattr(broker, "cash_transfers", None)
    if read is None:
        return
    record = recorded_transfers(journal)
    fills_cash, fills_qty = journal.fill_totals()
    held = {sym: [p.qty, p.market_value / p.qty] for sym, p in positions.items() if p.qty}
    if record is None:  # the first read: already in the equity and the peak
        listed = read(asof - timedelta(days=LOOK_BACK_DAYS))
        journal.set_meta_json(TRANSFERS_KEY, _as_json(TransferRecord(
            asof.isoformat(), account.cash, held, fills_cash, fills_qty,
            tuple(_seen(t, TransferState.BASELINE, asof) for t in _unique(listed)))))
        return
    checked = date.fromisoformat(record.checked_through)
    listed = read(min(checked, asof) - timedelta(days=LOOK_BACK_DAYS))
    known = {t.id for t in record.transfers}
    transfers = [*record.transfers, *(_seen(t, TransferState.PENDING, asof)
                                     for t in _unique(listed) if t.id not in known)]
    outside, owner_traded = outside_cash(record, account.cash, held, fills_cash, fills_qty)
    pending = _landed_now(transfers, outside, account.equity, owner_traded)
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
    values[TRANSFERS_KEY] = _as_json(TransferRecord(asof.isoformat(), account.cash, held,
                                                    fills_cash, fills_qty, tuple(transfers)))
    journal.set_meta_jsons(values)


def outside_cash(record: TransferRecord, cash: float, held: dict[str, list[float]],
                 fills_cash: float, fills_qty: dict[str, float]) -> tuple[float, float]:
    """The cash that came from outside the account since the checkpoint, and the value of
    the owner's own trades in it (account currency): the cash moved, less the bot's fills'
    cash, plus the cost of the shares that changed beyond those fills (the owner's trades,
    at the latest price known, this read's or, for a symbol now gone, the checkpoint's:
    selling to withdraw the proceeds moves the cash by the sale less the withdrawal). The
    price the owner traded at is not known: the figure is off by those shares' move."""
    moved = cash - record.cash - (fills_cash - record.fills_cash)
    owner_traded = 0.0
    for sym in set(record.positions) | set(held):
        qty_then, price_then = record.positions.get(sym, [0.0, math.nan])
        qty_now, price_now = held.get(sym, [0.0, math.nan])
        by_fills = fills_qty.get(sym, 0.0) - record.fills_qty.get(sym, 0.0)
        by_owner = qty_now - qty_then - by_fills
        if abs(by_owner) > 1e-9:
            value = by_owner * (price_now if qty_now else price_then)
            moved += value
            owner_traded += abs(value)
    return moved, owner_traded


def _landed_now(transfers: list[SeenTransfer], outside: float, equity: float,
                owner_traded: float = 0.0) -> list[SeenTransfer]:
    """The pending transfers whose money the outside cash is: the combination whose sum
    is nearest it within the noise (the larger one on a tie); none when none fits."""
    pending = [t for t in transfers if t.state == TransferState.PENDING]
    if len(pending) > MAX_MATCHED_TOGETHER:  # then all of them, or one alone
        groups = [pending, *([t] for t in pending)]
    else:
        groups = [[t for i, t in enumerate(pending) if mask >> i & 1]
                  for mask in range(1, 1 << len(pending))]
    fits = [(abs(outside - net), -len(g), g) for g in groups
            if landed(outside, net := math.fsum(t.amount for t in g), equity, owner_traded)]
    return min(fits, key=lambda f: (f[0], f[1]))[2] if fits else []


def landed(outside: float, net_transfer: float, equity: float,
           owner_traded: float = 0.0) -> bool:
    """Whether the outside cash is these transfers' money: within the noise of the same
    interval's other cash (and of the owner's trades' unknown prices), and nearer them
    than no move at all (unless they are as small as the noise, when applying them or not
    changes the peak by no more than it)."""
    off = abs(outside - net_transfer)
    noise = (CASH_NOISE_OF_EQUITY * abs(equity) + CASH_NOISE_OF_TRANSFER * abs(net_transfer)
             + OWNER_PRICE_NOISE * owner_traded + 1.0)
    return off <= noise and (off < abs(outside) or abs(net_transfer) <= noise)


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
                        note="no interval between two cycles showed this money coming in or "
                             "going out of the account's cash (beside the bot's fills and "
                             "the owner's trades); it is not applied, so the drawdown counts "
                             "it as a gain or a loss (after a withdrawal that tripped the kill "
                             "switch: allocbot rearm)")
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
    return {**record._asdict(), "transfers": [t._asdict() for t in record.transfers]}
