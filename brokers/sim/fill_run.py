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

    The cash each order sees is a running sum in booking order (``np.cumsum`` adds one term
    at a time, as the account does)."""
    slip = costs.slippage_bps / 1e4
    price = closes * (1 + slip) if buy else closes * (1 - slip)
    asked = np.array(asked_qty, dtype=float)
    qty = np.array([round(float(q), QTY_DECIMALS) for q in asked_qty], dtype=float)
    gross = qty * price
    commission = np.maximum(costs.commission_min, gross * costs.commission_bps / 1e4)
    delta = -(gross + commission) if buy else gross - commission
    running = np.cumsum(np.concatenate(([cash], delta)))
    before, after = running[:-1], running[1:]
    ok = (qty > 0) & ~np.isnan(closes)  # NaN: the venue rejects "no_price" first
    if not fractional:
        ok &= np.abs(asked - np.round(asked)) <= 10.0**-QTY_DECIMALS
    if buy:
        ok &= gross + commission <= before
    else:
        ok &= (qty <= held_qty) & (after >= 0)
    accepted = len(ok) if ok.all() else int(np.argmin(ok))
    return FillRun(accepted, qty, price, commission, after)
