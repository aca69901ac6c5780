"""A batch's plain orders booked at once: the backtest's simulator fills a side's orders
for distinct symbols in array arithmetic (``plan_fill_run``) instead of one ``plan_fill``
each, with the same numbers bit for bit; anything else in the batch is booked one by one.
``tests/test_sim_fill_run.py`` replays random batches both ways."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from brokers.base import QTY_DECIMALS, OrderRequest
from brokers.sim.memory_ledger import MemoryLedger
from brokers.sim.pricing import SimCosts

# Below this many requests one ``plan_fill`` each is faster: a run's array set-up is a few
# dozen µs. Measured through execute_plan, µs an order, run vs one by one: 15.3 vs 13.1 at
# 8 orders a side, 10.0 vs 10.4 at 16, 8.1 vs 9.5 at 24, 5 vs 9 at 500.
RUN_MIN_ORDERS = 16


def leading_plain_run(requests: Sequence[OrderRequest], col_of: Mapping[str, int],
                      ledger: MemoryLedger) -> Sequence[OrderRequest]:
    """The requests up to the first that is not plain: another side, a notional order,
    an unknown or repeated symbol, an id already booked. Usually all of them (checked
    in bulk first)."""
    side = requests[0].side
    symbols = {r.symbol for r in requests}
    cids = [r.client_order_id for r in requests]
    if (len(symbols) == len(requests) == len(set(cids)) and col_of.keys() >= symbols
            and all(r.side is side and r.qty is not None for r in requests)
            and ledger.knows_none(cids)):
        return requests
    seen_symbols: set[str] = set()
    seen_ids: set[str] = set()
    for i, r in enumerate(requests):
        if (r.side is not side or r.qty is None or r.symbol not in col_of
                or r.symbol in seen_symbols or r.client_order_id in seen_ids
                or not ledger.knows_none([r.client_order_id])):
            return requests[:i]
        seen_symbols.add(r.symbol)
        seen_ids.add(r.client_order_id)
    return requests


class FillRun(NamedTuple):
    """``plan_fill``'s answers for the first ``accepted`` orders of a run, as arrays."""

    accepted: int  # the leading orders plan_fill accepts as asked
    qty: np.ndarray  # rounded to QTY_DECIMALS
    price: np.ndarray
    commission: np.ndarray
    cash_after: np.ndarray  # the account's cash after each fill


def plan_fill_run(buy: bool, asked_qty: Sequence[float], closes: np.ndarray,
                  held_qty: np.ndarray, cash: float, costs: SimCosts,
                  fractional: bool) -> FillRun:
    """``plan_fill`` over a run of one side's quantity orders, each for a different symbol,
    booked in turn: the longest leading part it accepts as asked (no rejection, no clip to
    cash), priced in array arithmetic with the very operations ``plan_fill`` makes, so the
    numbers are the same bit for bit. The caller books the rest one order at a time.

    The cash each order sees is a running sum in booking order (``np.add.accumulate`` adds
    one term at a time, as the account does). A NaN close (the venue's "no_price") fails
    every comparison below, so the run stops there too."""
    slip = costs.slippage_bps / 1e4
    price = closes * (1 + slip) if buy else closes * (1 - slip)
    qty = np.array([round(q, QTY_DECIMALS) for q in asked_qty])
    gross = qty * price
    commission = np.maximum(costs.commission_min, gross * costs.commission_bps / 1e4)
    cost = gross + commission
    running = np.add.accumulate(np.concatenate(((cash,), -cost if buy else gross - commission)))
    after = running[1:]
    if buy:
        ok = (qty > 0) & (cost <= running[:-1])
    else:
        ok = (qty > 0) & (qty <= held_qty) & (after >= 0)
    if not fractional:
        asked = np.array(asked_qty)
        ok &= np.abs(asked - np.round(asked)) <= 10.0**-QTY_DECIMALS
    refused = np.flatnonzero(~ok)
    accepted = int(refused[0]) if len(refused) else len(ok)
    return FillRun(accepted, qty, price, commission, after)
