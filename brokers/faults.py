"""A ``Broker`` wrapper that injects faults: the drill and soak tool (never for live money).

``FaultInjectingBroker(inner, FaultPlan(seed, rates...))`` forwards every call to
``inner`` and, with the configured probabilities, makes it fail the ways venues fail:

* transient errors, rate limits (429) and timeouts on any call (``BrokerTransientError``);
  a submit that times out was *processed* by the venue first and only its answer is lost;
* rejections (the order never reaches the venue; the answer is a rejected order);
* partial fills: the venue fills part of the order and the rest is canceled (modelled
  honestly: only the filled part is sent to ``inner``, so the venue's books match);
* stale bars (``history`` ends a session early, as a late feed's does) and missing bars (one
  symbol's latest close is NaN).

Faults start after the first ``on_wake`` (startup checks see a healthy venue). Draws come
from ``random.Random(seed)``, so a plan replays the same faults for the same calls.

Drill-only: ``pause_after_submit_secs`` widens the window after each submit, and
``kill_at`` SIGKILLs the process at a named point of the cycle (see ``KILL_POINTS``).
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import structlog

from brokers.base import (
    QTY_DECIMALS,
    SUBMIT_SENT_WRITE,
    Account,
    AssetInfo,
    Broker,
    CashTransfer,
    Clock,
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Position,
)
from brokers.errors import SubmitOutcomeUnknownError
from strategies.errors import BrokerTransientError

log = structlog.get_logger("brokers.faults")
T = TypeVar("T")

KILL_POINTS = ("after_intents", "after_submit:N", "between_sells_and_buys",
               "inside_journal_write")
RATE_FIELDS = ("transient_rate", "rate_limit_rate", "timeout_rate", "reject_rate",
               "partial_fill_rate", "stale_bars_rate", "missing_bars_rate")


def parse_kill_at(value: str | None) -> tuple[str, int] | None:
    """``"after_submit:3"`` → ("after_submit", 3); other points have N = 0. Raises
    ValueError naming the accepted values."""
    if value is None:
        return None
    name, _, count = value.partition(":")
    if name == "after_submit" and count.isdigit() and int(count) >= 1:
        return name, int(count)
    if name in ("after_intents", "between_sells_and_buys", "inside_journal_write") and not count:
        return name, 0
    raise ValueError(f"kill_at {value!r} is not one of {', '.join(KILL_POINTS)} (N >= 1)")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Probabilities (each in [0, 1], summing to ≤ 1 per call) and drill switches."""

    seed: int = 0
    transient_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    reject_rate: float = 0.0  # submits only
    partial_fill_rate: float = 0.0  # submits only
    stale_bars_rate: float = 0.0  # history only
    missing_bars_rate: float = 0.0  # history only
    pause_after_submit_secs: float = 0.0
    kill_at: str | None = None

    def __post_init__(self) -> None:
        for name in RATE_FIELDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.transient_rate + self.rate_limit_rate + self.timeout_rate + max(
                self.reject_rate + self.partial_fill_rate,
                self.stale_bars_rate + self.missing_bars_rate) > 1.0:
            raise ValueError("fault rates for one call add up to more than 1")
        if not (math.isfinite(self.pause_after_submit_secs) and self.pause_after_submit_secs >= 0):
            raise ValueError("pause_after_submit_secs must be >= 0")
        parse_kill_at(self.kill_at)


def _die(point: str) -> None:
    """The drill's crash: no cleanup, no flush, exactly what a power cut or OOM kill does."""
    log.warning("fault_kill", point=point, pid=os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


class FaultInjectingBroker:
    """The ``Broker`` protocol over ``inner``, failing as ``plan`` says."""

    def __init__(self, inner: Broker, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.name = inner.name
        self._rng = random.Random(plan.seed)
        self._armed = False
        self._kill = parse_kill_at(plan.kill_at)
        self._submits = 0  # successful submits in this process (for after_submit:N)
        self._sells_this_wake = 0
        self._intents_passed = False
        self._views: dict[str, Order] = {}  # orders whose answer the fault changed
        self.injected: dict[str, int] = {}

    @property
    def fills_at_latest_bar(self) -> bool:
        """``LatestBarFills`` as ``inner`` answers it: the drill changes no fill price."""
        return bool(getattr(self.inner, "fills_at_latest_bar", False))

    @property
    def cash_transfers(self) -> Callable[[date], list[CashTransfer]] | None:
        """``CashTransferSource`` as ``inner`` has it (None: it has none, as the simulator):
        a drill on Alpaca still tells a withdrawal from a loss."""
        return getattr(self.inner, "cash_transfers", None)

    # ----- fault draws ------------------------------------------------------------
    def _count(self, kind: str, call: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1
        log.info("fault_injected", fault=kind, call=call)

    def _transport_fault(self, call: str) -> str | None:
        """Draw once: 'transient' | 'rate_limit' | 'timeout' | a call-specific band | None."""
        if not self._armed:
            return None
        p, draw = self.plan, self._rng.random()
        for kind, rate in (("transient", p.transient_rate), ("rate_limit", p.rate_limit_rate),
                           ("timeout", p.timeout_rate)):
            if draw < rate:
                return kind
            draw -= rate
        if call == "submit_order":
            for kind, rate in (("reject", p.reject_rate), ("partial_fill", p.partial_fill_rate)):
                if draw < rate:
                    return kind
                draw -= rate
        if call == "history":
            for kind, rate in (("stale_bars", p.stale_bars_rate),
                               ("missing_bars", p.missing_bars_rate)):
                if draw < rate:
                    return kind
                draw -= rate
        return None

    def _raise_transport(self, kind: str, call: str) -> None:
        self._count(kind, call)
        text = {"transient": "connection reset by peer", "rate_limit": "429 too many requests",
                "timeout": "read timed out"}[kind]
        raise BrokerTransientError(f"injected fault in {call}: {text}")

    def _call(self, call: str, fn: Callable[..., T], *args: Any) -> T:
        kind = self._transport_fault(call)
        if kind in ("transient", "rate_limit"):
            self._raise_transport(kind, call)
        result = fn(*args)
        if kind == "timeout":  # the venue answered; the answer never arrived
            self._raise_transport(kind, call)
        return result

    # ----- lifecycle --------------------------------------------------------------
    def on_wake(self) -> None:
        self.inner.on_wake()
        self._armed = True
        self._sells_this_wake = 0

    def close(self) -> None:
        self.inner.close()

    def journal_write_hook(self, kind: str) -> None:
        """Called by the journal inside each write transaction (before COMMIT); kills the
        process inside the first write of an order's outcome, or inside the write that
        marks a submit as about to go out (rolled back: journaled, nothing sent) for
        ``after_intents`` and, at the first buy after sells, ``between_sells_and_buys``."""
        if self._kill is None or not self._armed:
            return
        point = self._kill[0]
        if point == "inside_journal_write" and kind == "record_order":
            _die("inside_journal_write")
        if kind.startswith(SUBMIT_SENT_WRITE):
            if point == "after_intents":
                _die(point)
            if point == "between_sells_and_buys" and kind.endswith(OrderSide.BUY.value) \
                    and self._sells_this_wake > 0:
                _die(point)

    # ----- reads ------------------------------------------------------------------
    def clock(self) -> Clock:
        return self._call("clock", self.inner.clock)

    def account(self) -> Account:
        return self._call("account", self.inner.account)

    def positions(self) -> dict[str, Position]:
        return self._call("positions", self.inner.positions)

    def assets(self, symbols: Sequence[str]) -> dict[str, AssetInfo]:
        return self._call("assets", self.inner.assets, symbols)

    def history(self, symbols: Sequence[str], lookback_days: int, end: date) -> pd.DataFrame:
        kind = self._transport_fault("history")
        if kind in ("transient", "rate_limit", "timeout"):
            self._raise_transport(kind, "history")
        frame = self.inner.history(symbols, lookback_days, end)
        if kind == "stale_bars" and len(frame) > 1:
            # a feed a day late: the same number of bars, ending the session before (a
            # frame one row short was refused as too little history, not seen as stale)
            self._count(kind, "history")
            return self.inner.history(symbols, lookback_days, frame.index[-2].date())
        if kind == "missing_bars" and len(frame) and frame.shape[1]:
            self._count(kind, "history")
            frame = frame.copy()
            frame.iloc[-1, self._rng.randrange(frame.shape[1])] = np.nan
        return frame

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        order = self._call("get_order_by_client_id", self.inner.get_order_by_client_id,
                           client_order_id)
        return self._views.get(client_order_id, order)

    def list_orders(self, open_only: bool = True, latest: int | None = None) -> list[Order]:
        return self._call("list_orders", self.inner.list_orders, open_only, latest)

    def cancel_order(self, order_id: str) -> None:
        self._call("cancel_order", self.inner.cancel_order, order_id)

    def wait_for_order(self, client_order_id: str, timeout_secs: float) -> Order:
        order = self._call("wait_for_order", self.inner.wait_for_order, client_order_id,
                           timeout_secs)
        return self._views.get(client_order_id, order)

    def fills_for(self, client_order_id: str) -> list[Fill]:
        return self._call("fills_for", self.inner.fills_for, client_order_id)

    # ----- orders -----------------------------------------------------------------
    def submit_order(self, request: OrderRequest) -> Order:
        kind = self._transport_fault("submit_order")
        if kind in ("transient", "rate_limit"):
            self._raise_transport(kind, "submit_order")
        if kind == "reject":
            self._count(kind, "submit_order")
            return self._rejected(request)
        if kind == "partial_fill" and (part := self._partial_request(request)) is not None:
            self._count(kind, "submit_order")
            order = self._partially_filled(request, self.inner.submit_order(part))
        else:
            order = self.inner.submit_order(request)
        self._after_submit(request)
        if kind == "timeout":  # processed, the answer lost: its outcome is unknown
            self._count(kind, "submit_order")
            raise SubmitOutcomeUnknownError("injected fault in submit_order: read timed out")
        return order

    def _after_submit(self, request: OrderRequest) -> None:
        self._submits += 1
        if request.side is OrderSide.SELL:
            self._sells_this_wake += 1
        if self.plan.pause_after_submit_secs > 0:
            time.sleep(self.plan.pause_after_submit_secs)
        if self._kill is not None and self._kill[0] == "after_submit" \
                and self._submits == self._kill[1]:
            _die(f"after_submit:{self._submits}")

    def _rejected(self, request: OrderRequest) -> Order:
        order = Order(
            id=f"fault-{request.client_order_id}", client_order_id=request.client_order_id,
            symbol=request.symbol, side=request.side, status=OrderStatus.REJECTED,
            qty=request.qty, notional=request.notional, filled_qty=0.0, filled_avg_price=None,
            submitted_at=None, reject_reason="injected fault: rejected by the venue")
        self._views[request.client_order_id] = order
        return order

    @staticmethod
    def _partial_request(request: OrderRequest) -> OrderRequest | None:
        """Half the quantity (whole shares if the order was in whole shares), or None."""
        if request.qty is None:
            return None
        whole = float(request.qty).is_integer()
        half = math.floor(request.qty / 2) if whole else round(request.qty / 2, QTY_DECIMALS)
        if half <= 0 or half >= request.qty:
            return None
        return replace(request, qty=float(half))

    def _partially_filled(self, request: OrderRequest, venue_order: Order) -> Order:
        """The venue filled the part it was sent; the rest counts as canceled. (An order
        still working at the venue is left as the venue reports it.)"""
        if not venue_order.status.is_terminal:
            return venue_order
        order = replace(venue_order, qty=request.qty, status=(
            OrderStatus.CANCELED if venue_order.status is OrderStatus.FILLED
            else venue_order.status), reject_reason=(
            "injected fault: partially filled, rest canceled"
            if venue_order.status is OrderStatus.FILLED else venue_order.reject_reason))
        self._views[request.client_order_id] = order
        return order
