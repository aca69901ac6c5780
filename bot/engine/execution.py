"""Step 7 of the cycle: journal each order as an intent, then send it; sells first.

Every order carries a deterministic ``client_order_id`` written to the journal before the
order is sent, so a crash and a restart never send it twice (the venue refuses a repeated
id, and reconciliation marks never-sent intents as such). A venue that answers at once (the
simulator, ``ImmediateFillVenue``) takes a side's orders in one call and the journal
records its answers in one step; a crash between the two leaves journaled intents that
reconciliation looks up by id, as it does for a crash after any single submit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import structlog

from bot.core.rebalance import (
    BPS,
    WHOLE_SHARE_NOISE,
    PlannedOrder,
    RebalancePolicy,
    buys_cash_needed,
    size_buys_to_cash,
)
from bot.engine.journal import Journal
from bot.engine.pretrade import reports_latest_trades
from bot.engine.statuses import IntentStatus
from bot.errors import ConfigError
from bot.logs import taps_installed
from brokers.base import (
    CLIENT_ORDER_ID_MAX_CHARS,
    Broker,
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    qty_requests,
)
from brokers.booked_batch import ImmediateFillVenue
from brokers.errors import SubmitOutcomeUnknownError
from strategies.errors import BrokerTransientError

log = structlog.get_logger("allocbot.execution")

# A market buy at a venue that fills later (Alpaca, not the simulator) is costed at
# max(planning price, latest trade) × (1 + this): the fill comes at the ask, seconds after
# the check, and the venue refuses in full a buy its buying power does not cover.
MARKET_BUY_MARGIN_BPS = 25.0
# An order dropped because only a fraction of a share of a whole-share asset would be sold.
FRACTION_UNSELLABLE = "a fraction of a share: the asset trades in whole shares only"
# The cash buffer is kept to this fraction of equity: float noise between the planner's sum
# and the account's must not trim a buy (the simulator's figures stay exact).
_BUFFER_TOLERANCE = 1e-9


@lru_cache(maxsize=4096)
def _id_symbol(symbol: str) -> str:
    """The symbol as it appears in a client_order_id: letters, digits and dots only."""
    return re.sub(r"[^A-Za-z0-9.]", "_", symbol)


_SIDE_LETTER = {OrderSide.BUY: "b", OrderSide.SELL: "s"}


def client_order_id(prefix: str, cycle_id: str, symbol: str, side: OrderSide) -> str:
    """``<prefix>-<cycle id>-<symbol>-<b|s>``: never reused, even by a restored state file (the
    cycle id's instance part is drawn at each writer open), ≤ 48 characters."""
    cid = f"{prefix}-{cycle_id}-{_id_symbol(symbol)}-{_SIDE_LETTER[side]}"
    if len(cid) > CLIENT_ORDER_ID_MAX_CHARS:
        raise ConfigError(f"client_order_id for {symbol!r} would exceed 48 characters: {cid}")
    return cid


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    prefix: str
    dry_run: bool
    order_wait_secs: float
    policy: RebalancePolicy
    commission_min: float = 0.0  # per order, currency
    # the plan's equity: the buys keep policy.cash_buffer × it in cash; None = the account's
    # equity as re-read after the sells
    plan_equity: float | None = None


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    submitted: int
    filled: int
    partially_filled: int
    rejected: int
    unfilled: int
    commission: float
    traded_notional: float = 0.0  # Σ filled qty × planning price: what the orders traded


def execute_plan(broker: Broker, journal: Journal, cycle_id: str,
                 orders: Sequence[PlannedOrder], settings: ExecutionSettings,
                 fractionable: dict[str, bool]) -> ExecutionReport:
    """Journal all intents, send sells and wait for them, re-read cash, then send buys."""
    cids = [client_order_id(settings.prefix, cycle_id, o.symbol, o.side) for o in orders]
    journal.record_intents(
        cycle_id, [(c, o.symbol, o.side, o.qty, o.price) for c, o in zip(cids, orders, strict=True)],
        status=IntentStatus.DRY_RUN if settings.dry_run else IntentStatus.INTENT,
    )
    detail = log.is_enabled_for(logging.INFO)  # fields built only when written
    for cid, o in zip(cids, orders, strict=True) if detail else ():
        log.info("order_intended", client_order_id=cid, symbol=o.symbol, side=o.side.value,
                 qty=o.qty, price_est=o.price, notional_est=round(o.notional, 2), reason=o.reason)
    if settings.dry_run:
        log.info("orders_not_sent", reason="dry_run", count=len(orders))
        return ExecutionReport(0, 0, 0, 0, 0, 0.0)

    results: list[tuple[OrderStatus, float, float]] = []  # status, filled qty, commission
    sells = _whole_share_sells(journal, [(c, o) for c, o in zip(cids, orders, strict=True)
                                         if o.side is OrderSide.SELL], fractionable)
    buys = [(c, o) for c, o in zip(cids, orders, strict=True) if o.side is OrderSide.BUY]
    results += _send_and_wait(broker, journal, [(c, o.symbol, o.side, o.qty) for c, o in sells],
                              settings)
    sent = [c for c, _ in sells]
    if buys:
        sized = _size_buys_to_cash(broker, journal, buys, settings, fractionable)
        results += _send_and_wait(broker, journal, sized, settings)
        sent += [c for c, *_ in sized]
    price_of = {c: o.price for c, o in zip(cids, orders, strict=True)}

    statuses = [status for status, _, _ in results]
    filled, rejected = statuses.count(OrderStatus.FILLED), statuses.count(OrderStatus.REJECTED)
    partial = sum(1 for status, filled_qty, _ in results
                  if status is not OrderStatus.FILLED and filled_qty > 0)
    return ExecutionReport(
        submitted=len(results), filled=filled, partially_filled=partial, rejected=rejected,
        unfilled=len(results) - filled - rejected - partial,  # nothing filled (each once)
        commission=sum(commission for _, _, commission in results),
        traded_notional=sum(filled_qty * price_of[c]
                            for c, (_, filled_qty, _) in zip(sent, results, strict=True)),
    )


def _whole_share_sells(journal: Journal, sells: list[tuple[str, PlannedOrder]],
                       fractionable: dict[str, bool]) -> list[tuple[str, PlannedOrder]]:
    """Sells of a whole-share asset cut to its whole shares (the intent resized before
    anything is sent; none left: ``unsent``). A fraction held there (bought while
    fractional trading was on) cannot be sold: asking for it got the sell refused, and the
    buys after it dropped for want of its cash, on every cycle."""
    out = []
    for cid, o in sells:
        whole = float(math.floor(o.qty + WHOLE_SHARE_NOISE))
        if fractionable.get(o.symbol, False) or whole >= o.qty:
            out.append((cid, o))
        elif whole <= 0.0:
            journal.set_status(cid, IntentStatus.UNSENT, FRACTION_UNSELLABLE)
            log.warning("order_dropped", client_order_id=cid, symbol=o.symbol,
                        reason=FRACTION_UNSELLABLE)
        else:
            journal.resize_intent(cid, whole)
            out.append((cid, replace(o, qty=whole, notional=whole * o.price)))
    return out


def _size_buys_to_cash(broker: Broker, journal: Journal,
                       buys: Sequence[tuple[str, PlannedOrder]], settings: ExecutionSettings,
                       fractionable: dict[str, bool]) -> list[tuple[str, str, OrderSide, float]]:
    """Re-read the account after the sells and fit the buys to what may be spent
    (``size_buys_to_cash``); journal each resized or dropped intent before anything is sent.

    Spendable = min(cash, buying power) − cash_buffer × equity (the plan's, else the
    account's): an open order reserving buying power, a sell that did not fill and the
    buffer all shrink the buys proportionally instead of the venue refusing some of them.
    At a venue that fills later (not ``LatestBarFills``) each buy is costed at
    max(planning price, latest trade where the broker reports it) × (1 +
    ``MARKET_BUY_MARGIN_BPS``): planned at stale prices, the last buy would not fit."""
    account = broker.account()
    hard = min(account.cash, account.buying_power)
    equity = settings.plan_equity if settings.plan_equity is not None else account.equity
    reserve = settings.policy.cash_buffer * max(equity, 0.0)
    planned = tuple(o for _, o in buys)
    costed = (planned if getattr(broker, "fills_at_latest_bar", False)  # ``LatestBarFills``
              else _live_buy_prices(broker, planned))
    sizing = size_buys_to_cash(costed, hard, settings.policy, settings.commission_min,
                               fractionable)
    available = hard - reserve
    if reserve > 0 and sizing.needed > available + _BUFFER_TOLERANCE * max(equity, 0.0):
        sizing = size_buys_to_cash(costed, available, settings.policy,
                                   settings.commission_min, fractionable)
    if sizing.scale < 1.0:
        # a warning when the cash is short at the plan's own prices (a sell that did not
        # fill, buying power held by an open order, the buffer); info when only the live
        # price margin trimmed the buys (every fully invested rebalance at Alpaca)
        at_plan = buys_cash_needed(planned, settings.policy, settings.commission_min)
        short = at_plan > min(hard, available + _BUFFER_TOLERANCE * max(equity, 0.0))
        fields = {"cash": round(account.cash, 2), "buying_power": round(account.buying_power, 2),
                  "cash_buffer": round(reserve, 2), "available": round(max(available, 0.0), 2),
                  "needed": round(sizing.needed, 2), "scale": round(sizing.scale, 6)}
        if short:
            log.warning("buys_scaled_to_cash", cause="cash", **fields)
        else:
            log.info("buys_scaled_to_cash", cause="price_margin", **fields)
    sized: list[tuple[str, str, OrderSide, float]] = []
    for (cid, o), qty in zip(buys, sizing.qty, strict=True):
        if qty <= 0:
            journal.set_status(cid, IntentStatus.UNSENT, "not enough cash after sells")
            log.warning("order_dropped", client_order_id=cid, symbol=o.symbol,
                        reason="not enough cash after sells")
            continue
        if qty != o.qty:
            journal.resize_intent(cid, qty)
        sized.append((cid, o.symbol, o.side, qty))
    return sized


def _live_buy_prices(broker: Broker, buys: tuple[PlannedOrder, ...]) -> tuple[PlannedOrder, ...]:
    """The buys costed as a venue that fills later may charge them: at the higher of the
    planning price and the latest trade (if the broker reports trades), plus the margin."""
    latest: dict[str, float] = {}
    if reports_latest_trades(type(broker)):
        # a venue failure is already logged (request_retried, retry_budget_exhausted); the
        # sells are done, so the buys still go out, costed at the plan's prices + margin
        with contextlib.suppress(BrokerTransientError):
            latest = broker.latest_trade_prices(  # type: ignore[attr-defined]
                [o.symbol for o in buys])
    margin = 1.0 + MARKET_BUY_MARGIN_BPS * BPS
    costed = []
    for o in buys:
        trade = latest.get(o.symbol, 0.0)
        price = max(o.price, trade if math.isfinite(trade) else 0.0) * margin
        costed.append(replace(o, price=price, notional=o.qty * price))
    return tuple(costed)


@lru_cache(maxsize=16)
def _fills_at_once(broker_type: type) -> bool:
    """Whether the venue books a list of orders in one call (a protocol check, once per
    broker class)."""
    return issubclass(broker_type, ImmediateFillVenue)


def order_events_wanted() -> bool:
    """Whether the info-level order events (``order_submitted``, ``order_filled``) are
    built: when they are written, or when a log tap listens. Monitoring counts orders from
    these events, and a tap sees every event the code emits, below the configured level
    too (processors run before the stdlib level check); a backtest (no tap, warning) still
    builds none."""
    return log.is_enabled_for(logging.INFO) or taps_installed()


def _send_and_wait(broker: Broker, journal: Journal,
                   batch: Sequence[tuple[str, str, OrderSide, float]],
                   settings: ExecutionSettings) -> list[tuple[OrderStatus, float, float]]:
    """Submit a batch, then wait for each order; returns each final order's status, filled
    quantity and commission."""
    if not batch:  # (no sells, or every buy dropped): nothing to send or record
        return []
    requests = qty_requests(batch)
    detail = order_events_wanted()  # info fields built only when written or observed
    if _fills_at_once(type(broker)):
        return _book_at_once(broker, journal, requests, detail)
    return _send_one_by_one(broker, journal, requests, settings, detail)


def _book_at_once(broker: Broker, journal: Journal, requests: list[OrderRequest],
                  detail: bool) -> list[tuple[OrderStatus, float, float]]:
    """A venue that answers at once books the side in one call; the journal records it in
    one step. Order objects are built only for the orders that are logged."""
    booked = broker.submit_batch(requests)  # type: ignore[attr-defined]
    journal.record_batch(booked)
    for row, status in enumerate(booked.statuses):
        if detail or status is not OrderStatus.FILLED:  # a quiet fill logs nothing
            log_order_booked(log, booked.order(row), booked.fills(row), detail, submitted=True)
    return list(zip(booked.statuses, booked.filled_qty, booked.commissions, strict=True))


def _send_one_by_one(broker: Broker, journal: Journal, requests: list[OrderRequest],
                     settings: ExecutionSettings, detail: bool
                     ) -> list[tuple[OrderStatus, float, float]]:
    """Any other venue: each order journaled as soon as it is answered, then the open ones
    waited for. Each order's events follow its journal write at once: a later call that
    raises fails the cycle, and the next reconciliation logs only what the journal lacks
    (``log_order_booked``).

    Each order is waited for until ``order_wait_secs`` after its own answer (its deadline),
    not for ``order_wait_secs`` more once the orders before it are done: a batch sent
    together is waited for about one ``order_wait_secs`` in all (orders that stay working
    are then canceled one after another), as ``_cancel_orders_past_their_wait`` cancels a
    dead sender's orders by their age. Waiting a full wait per order in turn kept N stuck
    orders N waits (the last one working N × ``order_wait_secs`` before its cancel), and a
    stop during them outlasted the service manager's stop timeout."""
    sent: list[tuple[str, Order, list[Fill] | None, float]] = []  # + its wait's deadline
    for request in requests:
        cid = request.client_order_id
        # until its answer is journaled: reconciliation then never takes a 404 for "never
        # sent" while the submit may still arrive (``SUBMIT_UNANSWERED``)
        journal.mark_submit_sent(cid, request.side)
        try:
            order = broker.submit_order(request)
        except SubmitOutcomeUnknownError:
            raise  # it may be at the venue: the mark keeps every cycle off it until known
        except BrokerTransientError:
            journal.clear_submit_mark(cid)  # refused unprocessed (429s throughout)
            raise
        # any other error (an answer that did not parse, a bug) keeps the mark: the order
        # may exist, and waiting on it is recoverable where a second order is not
        final_fills = None
        if order.status.is_terminal:  # filled or refused at once: one journal write
            final_fills = broker.fills_for(cid)
            journal.record_order(order, final_fills)
            log_order_booked(log, order, final_fills, detail, submitted=True)
        else:
            journal.update_from_order(order)
            log_order_booked(log, order, None, detail, submitted=True)
        sent.append((cid, order, final_fills, time.monotonic() + settings.order_wait_secs))
    finals = []
    for cid, order, fills, deadline in sent:
        if fills is None:  # a terminal order cannot change: only open ones are waited for
            # what is left of its own wait (none: one look, then the cancel if it works)
            order = broker.wait_for_order(cid, max(0.0, deadline - time.monotonic()))
            fills = broker.fills_for(cid)
            journal.record_order(order, fills)  # status and fills: one transaction
            log_order_booked(log, order, fills, detail, submitted=False)
        finals.append((order.status, order.filled_qty, sum(f.commission for f in fills)))
    return finals


def log_order_booked(logger: Any, order: Order, fills: Sequence[Fill] | None, detail: bool,
                     submitted: bool) -> None:
    """The events of an order the journal has just recorded, logged by whichever path
    recorded it (execution, or the next cycle's reconciliation): ``order_submitted`` when
    the journal first holds the venue's answer (``submitted``), and the outcome once it
    holds a final state. Monitoring counts each order's outcome exactly once from them: an
    order still working after the wait (no outcome yet) stays open in the journal, and
    the reconciliation that books its end logs it. ``order_submitted`` and
    ``order_filled`` are info events, built only when ``detail``
    (``order_events_wanted``); every other outcome is a warning."""
    if submitted and detail:
        logger.info("order_submitted", client_order_id=order.client_order_id,
                    symbol=order.symbol, side=order.side.value, qty=order.qty,
                    broker_order_id=order.id, status=order.status.value)
    if fills is None or not order.status.is_terminal:
        return
    if order.status is OrderStatus.FILLED and not detail:
        return
    fields = {"client_order_id": order.client_order_id, "symbol": order.symbol,
              "side": order.side.value, "qty": order.qty, "filled_qty": order.filled_qty,
              "filled_avg_price": order.filled_avg_price, "status": order.status.value}
    if order.status is OrderStatus.FILLED:
        logger.info("order_filled", commission=round(sum(f.commission for f in fills), 4),
                    **fields)
    elif order.status is OrderStatus.REJECTED:
        logger.warning("order_rejected", reason=order.reject_reason, **fields)
    elif order.filled_qty > 0:
        logger.warning("order_partially_filled", reason=order.reject_reason, **fields)
    else:
        logger.warning("order_unfilled", reason=order.reject_reason, **fields)
