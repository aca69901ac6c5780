"""How the simulated venue prices a market order: slippage, commission, rejections.

Pure functions of the order, the day's close and the account's cash and holding:

* fill price = close × (1 + slippage_bps / 1e4) for a buy, × (1 − slippage_bps / 1e4) for
  a sell (the trader always pays the slippage);
* commission = max(commission_min, |qty × fill price| × commission_bps / 1e4);
* qty is rounded to 9 decimals (Alpaca's fractional precision); a notional order buys
  floor(notional / fill price) to 9 decimals, so it never costs more than asked;
* a buy whose cost + commission exceeds cash, a sell of more than is held (no shorting),
  and a fractional quantity or a notional order when fractional trading is off are
  rejected, as a real broker would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from brokers.base import QTY_DECIMALS, OrderRequest, OrderSide
from brokers.errors import BrokerConfigError


@dataclass(frozen=True, slots=True)
class SimCosts:
    """Trading costs: commission = max(min, |notional| × bps / 1e4); slippage moves the price."""

    commission_bps: float = 0.0
    commission_min: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("commission_bps", "commission_min", "slippage_bps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise BrokerConfigError(f"sim {name} must be a finite number >= 0, got {value!r}")
            # floats (a TOML ``1`` is an int): a fill's commission is then always a float
            object.__setattr__(self, name, float(value))


# A buy sized to the exact cash can exceed it by float rounding (the planner sums the
# orders' costs in one order, the account pays them one by one): such a buy is clipped to
# the cash, by whole units of its quantity, instead of being rejected.
CASH_ROUNDING_TOLERANCE = 1e-12


def _clip_to_cash(qty: float, price: float, cash: float, costs: SimCosts,
                  fractional: bool) -> tuple[float, float, float, float]:
    """The largest quantity (in 1e-9 shares, or whole shares) whose cost fits ``cash``."""
    unit = 10.0**-QTY_DECIMALS if fractional else 1.0
    for _ in range(4):  # one unit is always enough for a rounding excess; bounded anyway
        qty = round(qty - unit, QTY_DECIMALS)
        gross = qty * price
        commission = max(costs.commission_min, gross * costs.commission_bps / 1e4)
        if gross + commission <= cash or qty <= 0:
            break
    return qty, gross, commission, gross + commission


class FillPlan(NamedTuple):
    """What a market order does to the account if it is accepted (a named tuple: one is
    built per order, 3× cheaper than a frozen dataclass)."""

    qty: float
    price: float
    commission: float
    cash_delta: float


def plan_fill(
    request: OrderRequest,
    close: float,
    held_qty: float,
    cash: float,
    costs: SimCosts,
    fractional: bool,
) -> FillPlan | str:
    """Price a market order at ``close``; return the fill, or a rejection reason.

    Reasons start with a stable code: ``fractional_not_allowed``, ``qty_too_small``,
    ``insufficient_qty`` (sell more than held: no shorting), ``insufficient_buying_power``.
    """
    buy = request.side is OrderSide.BUY
    slip = costs.slippage_bps / 1e4
    price = close * (1 + slip) if buy else close * (1 - slip)
    if request.qty is not None:
        qty = round(float(request.qty), QTY_DECIMALS)  # a float even for an int request
        if not fractional and abs(request.qty - round(request.qty)) > 10.0**-QTY_DECIMALS:
            return (
                f"fractional_not_allowed: qty {request.qty} of {request.symbol} is not a whole "
                f"number of shares and fractional trading is off"
            )
    else:
        if not fractional:
            return (
                f"fractional_not_allowed: notional order for {request.symbol} needs fractional "
                f"shares, which are off; send a whole-share qty"
            )
        notional = float(request.notional or 0.0)
        # Floor (not round) so a notional buy never costs more than asked. An exact quotient
        # can floor one unit low through float error: take the next unit when it still costs
        # no more than asked.
        units = math.floor(notional / price * 10**QTY_DECIMALS)
        if (units + 1) / 10**QTY_DECIMALS * price <= notional:
            units += 1
        qty = units / 10**QTY_DECIMALS
    if qty <= 0:
        return f"qty_too_small: {request.symbol} order rounds to 0 shares at price {price}"
    gross = qty * price
    commission = max(costs.commission_min, gross * costs.commission_bps / 1e4)
    if buy:
        cost = gross + commission
        if cost > cash >= cost * (1 - CASH_ROUNDING_TOLERANCE):
            qty, gross, commission, cost = _clip_to_cash(qty, price, cash, costs, fractional)
        if cost > cash or qty <= 0:
            return (
                f"insufficient_buying_power: buy {qty} {request.symbol} costs {cost:.2f} "
                f"(commission {commission:.2f}) but cash is {cash:.2f}"
            )
        return FillPlan(qty, price, commission, -cost)
    if qty > held_qty:
        return (
            f"insufficient_qty: sell {qty} {request.symbol} but only {held_qty} held "
            f"(short selling is not allowed)"
        )
    proceeds = gross - commission
    if cash + proceeds < 0:
        return (
            f"insufficient_buying_power: commission {commission:.2f} on selling "
            f"{request.symbol} exceeds cash {cash:.2f} plus proceeds {gross:.2f}"
        )
    return FillPlan(qty, price, commission, proceeds)
