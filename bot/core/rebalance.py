"""The rebalance planner: holdings + target weights + prices + policy → orders (pure).

Weights are fractions of equity, equity = cash + Σ qty·price at the planning prices.
Drift bands follow a threshold rule with an absolute and a relative band (cf. bt's
``RunIfOutOfBounds``), with zero and new targets handled explicitly instead of dividing
by the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from bot.core.drift import buffered_targets, drift_mask
from brokers.base import QTY_DECIMALS, OrderSide
from strategies.base import WEIGHT_SUM_TOLERANCE
from strategies.errors import InputDataError


class UnsupportedPositionError(InputDataError):
    """The account holds something the planner cannot manage (a short position in a
    universe symbol): the operator must close it at the venue; no order is sent."""

BPS = 1e-4
_FLOOR_SNAP_DECIMALS = 4  # snap to 1e-4 of the last kept unit before flooring (float noise)
RebalanceMode = Literal["drifted_only", "all_when_any"]


@dataclass(frozen=True, slots=True)
class RebalancePolicy:
    """When and how to trade back to target.

    Args:
        drift_abs: absolute band, fraction of equity: drifted when |w − t| > drift_abs.
        drift_rel: relative band: drifted when |w − t| > drift_rel · t.
        mode: ``drifted_only`` trades only drifted assets; ``all_when_any`` brings every
            asset to target as soon as one has drifted.
        min_order_notional: account currency; smaller orders are not emitted (except a
            full exit of a dropped symbol, which is always emitted so no dust lingers).
        cash_buffer: fraction of equity kept in cash: targets are scaled down when they
            would leave less, and buys never draw estimated cash below it.
        cost_bps_estimate: commission + slippage reserve, basis points of notional,
            deducted from sell proceeds and added to buy cost when sizing buys.
    """

    drift_abs: float = 0.05
    drift_rel: float = 0.25
    mode: RebalanceMode = "all_when_any"
    min_order_notional: float = 1.0
    cash_buffer: float = 0.0
    cost_bps_estimate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("drift_abs", "drift_rel", "min_order_notional", "cost_bps_estimate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"rebalance policy {name} must be a finite number ≥ 0, got {value!r}")
        if not (math.isfinite(self.cash_buffer) and 0 <= self.cash_buffer < 1):
            raise ValueError(
                f"rebalance policy cash_buffer must be in [0, 1), got {self.cash_buffer!r}")
        if self.mode not in ("drifted_only", "all_when_any"):
            raise ValueError(
                f"rebalance policy mode must be 'drifted_only' or 'all_when_any', got {self.mode!r}"
            )


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """One market order the planner wants: ``qty`` shares (> 0) at planning ``price``."""

    symbol: str
    side: OrderSide
    qty: float
    price: float
    notional: float
    reason: str  # "drift", "new_target", "dropped", "rebalance" (all_when_any, not drifted)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.qty) and self.qty > 0):
            raise ValueError(
                f"planned order {self.symbol}: qty must be finite and > 0, got {self.qty!r}")
        if not (math.isfinite(self.price) and self.price > 0):
            raise ValueError(
                f"planned order {self.symbol}: price must be finite and > 0, got {self.price!r}"
            )


_new = object.__new__
_PLANNED_SET = tuple(PlannedOrder.__dict__[name].__set__ for name in PlannedOrder.__slots__)


def _reason(drifted: bool, held_qty: float, target: float) -> str:
    if not drifted:
        return "rebalance"
    return "new_target" if held_qty == 0 else "dropped" if target == 0 else "drift"


def _planned_orders(universe: tuple[str, ...], side: OrderSide, qty: np.ndarray,
                    px: list[float], why: tuple[list[bool], list[float], list[float]],
                    ) -> list[PlannedOrder]:
    """A ``PlannedOrder`` for each symbol with ``qty > 0``, by universe position, with
    ``__post_init__``'s checks made once over the batch (500 orders a cycle at 500
    symbols); if they fail, the checked constructor names the order. ``why``: drifted,
    held qty and target per symbol, which give the order's reason."""
    drifted, held, target = why
    amounts = qty.tolist()
    rows = [(i, amounts[i], px[i], _reason(drifted[i], held[i], target[i]))
            for i in np.flatnonzero(qty > 0).tolist()]
    if not all(math.isfinite(q) and math.isfinite(p) and p > 0 for _, q, p, _ in rows):
        return [PlannedOrder(universe[i], side, q, p, q * p, r) for i, q, p, r in rows]
    s0, s1, s2, s3, s4, s5 = _PLANNED_SET
    orders = []
    for i, q, p, reason in rows:
        order = _new(PlannedOrder)
        s0(order, universe[i])
        s1(order, side)
        s2(order, q)
        s3(order, p)
        s4(order, q * p)
        s5(order, reason)
        orders.append(order)
    return orders


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    """The planner's answer. ``orders``: all sells first, then buys, each by symbol.

    ``symbols`` is the sorted union of held symbols and symbols with a target > 0;
    ``current`` and ``target`` (after the cash buffer) are their weights, as arrays (the
    ``current_weights``/``target_weights`` Series are built only when asked for);
    ``cash_after`` is estimated with the policy's cost reserve.
    """

    orders: tuple[PlannedOrder, ...]
    drifted: tuple[str, ...]
    symbols: tuple[str, ...]
    current: np.ndarray
    target: np.ndarray
    equity: float
    cash_after: float

    @property
    def current_weights(self) -> pd.Series:
        return pd.Series(self.current, index=pd.Index(self.symbols, dtype=object), dtype=float)

    @property
    def target_weights(self) -> pd.Series:
        return pd.Series(self.target, index=pd.Index(self.symbols, dtype=object), dtype=float)

    @property
    def max_drift(self) -> float:
        """Largest |weight − target| before this plan's orders (fractions of equity)."""
        return float(np.abs(self.current - self.target).max()) if self.current.size else 0.0


def _as_floats(series: pd.Series) -> np.ndarray:
    """A Series' values as float64; non-numbers become NaN (and are then reported)."""
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _checked_symbols(name: str, series: pd.Series) -> list[str]:
    """A Series' index as symbols, each once."""
    symbols = [str(s) for s in series.index]
    if len(set(symbols)) != len(symbols):
        dup = next(s for i, s in enumerate(symbols) if s in symbols[:i])
        raise InputDataError(f"{name}: duplicate symbol {dup!r}")
    return symbols


def _checked_values(name: str, series: pd.Series) -> tuple[list[str], np.ndarray]:
    """Symbols and finite float values of a Series."""
    symbols = _checked_symbols(name, series)
    values = _as_floats(series)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputDataError(f"{name}: {symbols[i]!r} is {values[i]!r}; a finite number is required")
    return symbols, values


# Float noise in a share count, below the venues' 9-decimal quantity step: a whole share
# held as 0.9999999999 is one share, not dust; 0.999999999 (a real 9-decimal amount) is
# dust at a whole-share venue. Execution cuts whole-share sells with the same tolerance.
WHOLE_SHARE_NOISE = 5e-10


def _floor_qty(qty: np.ndarray, whole: np.ndarray, qty_decimals: int) -> np.ndarray:
    """Round quantities down: to whole shares where ``whole``, else to ``qty_decimals``."""
    scale = np.where(whole, 1.0, 10.0 ** qty_decimals)
    return np.maximum(np.floor((qty * scale).round(_FLOOR_SNAP_DECIMALS)) / scale, 0.0)


def _size_sells(qty: np.ndarray, want: np.ndarray, whole: np.ndarray, exit_all: np.ndarray,
                qty_decimals: int) -> np.ndarray:
    """Shares to sell: a full exit sells exactly what is held; whole shares round to the
    nearest share of the target, fractional ones round down; never more than held."""
    excess = np.maximum(qty - want, 0.0)
    whole_held = np.floor(qty.round(9))  # held shares, ignoring float noise
    nearest_whole = np.minimum(np.floor(excess + 0.5), whole_held)
    sized = np.where(whole, nearest_whole, _floor_qty(excess, whole, qty_decimals))
    return np.minimum(np.where(exit_all, qty, sized), qty)


def _size_buys(shortfall: np.ndarray, px: np.ndarray, whole: np.ndarray, budget: float,
               cost: float, qty_decimals: int) -> np.ndarray:
    """Shares to buy, rounded down; scaled down proportionally when their cost (with the
    cost reserve) exceeds ``budget``."""
    budget = max(budget, 0.0)
    buys = _floor_qty(shortfall, whole, qty_decimals)
    unit = np.where(whole, 1.0, 10.0 ** -qty_decimals)
    factor = 1.0
    for _ in range(8):  # a few shrinking passes absorb float rounding at the budget edge
        need = float((buys * px).sum()) * (1 + cost)
        if need <= budget:
            return buys
        factor *= budget / need * (1 - 1e-12)
        # At the rounding edge a factor of 1 − 1e-12 moves no floored quantity, and all
        # buys used to be dropped after 8 passes: also take one increment off each buy so
        # every pass makes progress.
        one_less = _floor_qty(np.maximum(buys - unit, 0.0), whole, qty_decimals)
        buys = np.minimum(_floor_qty(shortfall * factor, whole, qty_decimals), one_less)
    return np.zeros_like(buys)


def plan_rebalance(holdings_qty: pd.Series, cash: float, targets: pd.Series,
                   prices: pd.Series, policy: RebalancePolicy,
                   fractionable: Mapping[str, bool] | None = None,
                   qty_decimals: int = QTY_DECIMALS) -> RebalancePlan:
    """Plan the orders that bring drifted holdings back to target.

    Rules, in order: targets are scaled by (1 − cash_buffer)/Σt when Σt > 1 − cash_buffer;
    nothing drifted → empty plan; sells are sized first (a full exit sells exactly the
    held qty, even below ``min_order_notional``); buys are sized to target, rounded down,
    and scaled down proportionally when their cost × (1 + cost_bps) exceeds
    cash + sells × (1 − cost_bps) − cash_buffer × equity; orders under
    ``min_order_notional`` are dropped. Orders: sells, then buys, each by symbol.

    Args:
        holdings_qty: shares held per symbol (≥ 0); symbols held but not in ``targets``
            have target 0 and are sold in full.
        cash: account currency available.
        targets: fractions of equity (≥ 0, sum ≤ 1, rest cash).
        prices: planning price per share for every held symbol and every symbol with a
            target > 0 (an unheld zero-target symbol needs none and is left out).
        policy: drift bands, mode, minimum notional, cash buffer, cost reserve.
        fractionable: per symbol; ``None`` means every symbol is fractionable, a symbol
            missing from a given mapping trades whole shares (the safe choice).
        qty_decimals: fractional quantities are rounded down to this many decimals.

    Raises:
        ValueError: NaN/negative quantity or target, targets summing above 1, or a held or
            targeted symbol without a finite positive price (named in the message).
    """
    held_syms, held_qty = _checked_values("holdings_qty", holdings_qty)
    tgt_syms, tgt_values = _checked_values("targets", targets)
    price_syms, price_values = _checked_symbols("prices", prices), _as_floats(prices)
    symbols = tuple(dict.fromkeys([*held_syms, *tgt_syms]))  # held ∪ targeted, once each
    position = {sym: i for i, sym in enumerate(symbols)}
    qty, tgt = np.zeros(len(symbols)), np.zeros(len(symbols))
    qty[[position[sym] for sym in held_syms]] = held_qty
    tgt[[position[sym] for sym in tgt_syms]] = tgt_values
    price_of = dict(zip(price_syms, price_values.tolist(), strict=True))
    px = np.array([price_of.get(sym, np.nan) for sym in symbols], dtype=float)
    if fractionable is None:
        whole = np.zeros(len(symbols), dtype=bool)
    else:
        whole = np.array([not fractionable.get(sym, False) for sym in symbols], dtype=bool)
    return plan_rebalance_aligned(symbols, qty, float(cash), tgt, px, policy, whole,
                                  qty_decimals)


@lru_cache(maxsize=16)
def _sort_order(symbols: tuple[str, ...]) -> np.ndarray:
    """Positions of ``symbols`` in sorted order (the plan lists symbols sorted); computed
    once per universe."""
    if len(set(symbols)) != len(symbols):
        dup = next(s for i, s in enumerate(symbols) if s in symbols[:i])
        raise InputDataError(f"symbols: duplicate symbol {dup!r}")
    return np.array(sorted(range(len(symbols)), key=symbols.__getitem__), dtype=np.intp)


def _first_bad(name: str, symbols: Sequence[str], values: np.ndarray, bad: np.ndarray) -> str:
    i = int(np.argmax(bad))
    return f"{name}: {symbols[i]!r} is {values[i]!r}; a finite number is required"


def plan_rebalance_aligned(symbols: tuple[str, ...], qty: np.ndarray, cash: float,
                           targets: np.ndarray, prices: np.ndarray, policy: RebalancePolicy,
                           whole: np.ndarray, qty_decimals: int = QTY_DECIMALS) -> RebalancePlan:
    """``plan_rebalance`` on arrays aligned to ``symbols`` (the cycle's universe, unique):
    held shares, target weights, planning prices (NaN allowed only where nothing is held or
    targeted) and whether each trades whole shares. Same rules, same answer, no pandas."""
    if not math.isfinite(cash):
        raise InputDataError(f"cash must be a finite number, got {cash!r}")
    order = _sort_order(symbols)
    if not (np.isfinite(qty).all() and np.isfinite(targets).all()):  # one check, usually
        for name, values in (("holdings_qty", qty), ("targets", targets)):
            bad = ~np.isfinite(values)
            if bad.any():
                raise InputDataError(_first_bad(name, symbols, values, bad))
    if qty.size and qty.min() < 0:
        i = int(np.argmax(qty < 0))
        raise UnsupportedPositionError(
            f"short position in {symbols[i]!r} ({qty[i]} shares) is not supported: "
            "allocbot trades long-only; close it at the broker, then the next cycle resumes")
    if targets.size and targets.min() < 0:
        i = int(np.argmax(targets < 0))
        raise InputDataError(f"targets: {symbols[i]!r} = {targets[i]} is negative")
    total = float(targets.sum())
    if total > 1 + WEIGHT_SUM_TOLERANCE:
        raise InputDataError(f"targets sum to {total:.12g} > 1; weights are fractions of equity")
    active = order[(qty[order] > 0) | (targets[order] > 0)]  # sorted held ∪ targeted
    px = prices[active]
    bad = ~(np.isfinite(px) & (px > 0))
    if bad.any():
        sym = symbols[active[int(np.argmax(bad))]]
        raise InputDataError(f"no usable price for {sym!r} (got {px[int(np.argmax(bad))]!r}); "
                             "every held or targeted symbol needs a finite price > 0")
    return _plan_sorted(tuple([symbols[i] for i in active.tolist()]), qty[active],
                        targets[active], px, float(cash), policy, whole[active], qty_decimals)


def _plan_sorted(universe: tuple[str, ...], qty: np.ndarray, tgt_raw: np.ndarray,
                 px: np.ndarray, cash: float, policy: RebalancePolicy, whole: np.ndarray,
                 qty_decimals: int) -> RebalancePlan:
    """The planner's rules on validated arrays over the sorted held ∪ targeted symbols."""
    if not 0 <= qty_decimals <= 12:
        raise ValueError(f"qty_decimals must be in 0..12, got {qty_decimals!r}")
    value = qty * px
    equity = float(cash + value.sum())
    if not equity > 0:
        raise InputDataError(
            f"equity (cash {cash} + positions {value.sum()}) must be > 0, got {equity}")
    cur = value / equity
    tgt = buffered_targets(tgt_raw, policy.cash_buffer)
    drifted = drift_mask(cur, tgt, policy.drift_abs, policy.drift_rel)
    # dust: under one share of a whole-share asset with no target (a corporate action's
    # remainder): no order can sell it, so it neither drifts nor trades (its exit was
    # refused on every cycle, and under all_when_any re-traded everything else each time)
    dust = whole & (tgt == 0) & (qty > 0) & (qty < 1 - WHOLE_SHARE_NOISE)
    drifted &= ~dust
    if not drifted.any():
        return RebalancePlan((), (), universe, cur, tgt, equity, cash)

    trade = drifted if policy.mode == "drifted_only" else ~dust
    want = tgt * equity / px
    exit_all = trade & (tgt == 0) & (qty > 0)
    sells = np.where(trade, _size_sells(qty, want, whole, exit_all, qty_decimals), 0.0)
    keep_sell = (sells > 0) & ((sells * px >= policy.min_order_notional) | exit_all)
    sells = np.where(keep_sell, sells, 0.0)

    cost = policy.cost_bps_estimate * BPS
    cash_after_sells = cash + float((sells * px).sum()) * (1 - cost)
    budget = cash_after_sells - policy.cash_buffer * equity
    shortfall = np.where(trade, np.maximum(want - qty, 0.0), 0.0)
    buys = _size_buys(shortfall, px, whole, budget, cost, qty_decimals)
    buys = np.where(buys * px >= policy.min_order_notional, buys, 0.0)

    why = (drifted.tolist(), qty.tolist(), tgt.tolist())
    px_l = px.tolist()
    orders = (_planned_orders(universe, OrderSide.SELL, sells, px_l, why)
              + _planned_orders(universe, OrderSide.BUY, buys, px_l, why))
    cash_after = cash_after_sells - float((buys * px).sum()) * (1 + cost)
    drifted_syms = tuple(universe[i] for i in drifted.nonzero()[0].tolist())
    return RebalancePlan(tuple(orders), drifted_syms, universe, cur, tgt, equity, cash_after)


@dataclass(frozen=True, slots=True)
class BuySizing:
    """Buys fitted to the cash actually there: ``qty`` per buy (0 = dropped), the scale
    applied (1 = untouched) and the cash the planned buys needed with their costs."""

    qty: tuple[float, ...]
    scale: float
    needed: float


def buys_cash_needed(buys: Sequence[PlannedOrder], policy: RebalancePolicy,
                     commission_min: float) -> float:
    """Cash the buys need: Σ notional × (1 + cost_bps_estimate) + commission_min per buy."""
    return (sum(o.notional for o in buys) * (1.0 + policy.cost_bps_estimate * BPS)
            + commission_min * len(buys))


def size_buys_to_cash(buys: tuple[PlannedOrder, ...], cash: float, policy: RebalancePolicy,
                      commission_min: float, fractionable: Mapping[str, bool],
                      qty_decimals: int = QTY_DECIMALS) -> BuySizing:
    """Scale planned buys down when ``cash`` (re-read after the sells filled) is less than
    they need: needed = Σ notional × (1 + cost_bps) + commission_min per buy; each qty ×
    (cash − the minimum commissions) / (needed − them) is floored like the planner's
    (whole shares where not fractionable), the buys it floors to none are dropped and the
    rest scaled again without their commissions; then the whole shares the floor took
    are given back where the cash allows (``_whole_shares_back``); a buy left below
    ``min_order_notional`` or at 0 shares is dropped (qty 0). Never above ``cash``."""
    needed = buys_cash_needed(buys, policy, commission_min)
    if needed <= cash:
        return BuySizing(tuple(o.qty for o in buys), 1.0, needed)
    cash = max(cash, 0.0)
    planned = np.array([o.qty for o in buys], dtype=float)
    price = np.array([o.price for o in buys], dtype=float)
    whole = np.array([not fractionable.get(o.symbol, False) for o in buys], dtype=bool)
    unit_cost = 1.0 + policy.cost_bps_estimate * BPS
    active = np.ones(len(buys), dtype=bool)
    share: np.ndarray | None = None  # each buy's proportional share, before any is dropped
    for _ in range(len(buys)):  # each pass drops at least one buy, or ends
        fixed = commission_min * int(np.count_nonzero(active))  # they do not scale with qty
        variable = float((planned * price)[active].sum()) * unit_cost
        scale = max(cash - fixed, 0.0) / variable if variable > 0.0 else 0.0
        raw = np.where(active, planned * min(scale, 1.0), 0.0)
        share = raw if share is None else share
        qty = _floor_qty(raw, whole, qty_decimals)
        floored_out = active & (qty <= 0.0)
        if not floored_out.any():
            break
        if floored_out.all():  # the commissions alone exceed the cash: drop the buys
            if np.count_nonzero(active) == 1:  # one share of which it cannot pay, else the
                break                           # smallest
            unaffordable = active & whole & (price * unit_cost + commission_min > cash)
            floored_out = unaffordable if unaffordable.any() else np.zeros(len(buys), bool)
            if not unaffordable.any():
                floored_out[int(np.argmin(np.where(active, planned * price, np.inf)))] = True
        active &= ~floored_out  # their commissions pay for the others' shares
    assert share is not None  # (buys is never empty here: needed > cash ≥ 0)
    qty = _whole_shares_back(qty, np.maximum(share, raw), planned, whole, price, cash,
                             unit_cost, commission_min, policy.min_order_notional,
                             qty_decimals)
    qty = np.where((qty > 0) & (qty * price >= policy.min_order_notional), qty, 0.0)
    if _buys_cost(qty, price, unit_cost, commission_min) > cash:  # the floor's snap rounded
        qty = np.where(whole, np.floor(raw), np.floor(raw * 10.0 ** qty_decimals)  # up
                       / 10.0 ** qty_decimals)
        qty = np.where((qty > 0) & (qty * price >= policy.min_order_notional), qty, 0.0)
    return BuySizing(tuple(float(q) for q in qty), scale, needed)


def _buys_cost(qty: np.ndarray, price: np.ndarray, unit_cost: float,
               commission_min: float) -> float:
    """Cash the buys ``qty`` need: Σ qty × price × (1 + cost_bps) + commission_min each."""
    return float((qty * price).sum()) * unit_cost + commission_min * np.count_nonzero(qty)


def _whole_shares_back(qty: np.ndarray, raw: np.ndarray, planned: np.ndarray,
                       whole: np.ndarray, price: np.ndarray, cash: float, unit_cost: float,
                       commission_min: float, min_notional: float,
                       qty_decimals: int) -> np.ndarray:
    """Give back, largest remainder first, the share each whole-share buy lost to the floor
    (at most its planned qty) while the buys' cost stays within ``cash``, taking the room
    from the fractional buys if the spare cash is short (never pushing one of them below
    ``min_notional``): a 1-share buy scaled by 0.9975 (the live price margin, every fully
    invested rebalance at Alpaca) floored to none on every cycle, leaving that asset a
    share under target for good."""
    fractional = ~whole
    for i in np.argsort(-np.where(whole, raw - qty, 0.0), kind="stable").tolist():
        if not whole[i] or raw[i] - qty[i] <= 0.0 or qty[i] + 1.0 > planned[i]:
            continue
        trial = qty.copy()
        trial[i] += 1.0
        over = _buys_cost(trial, price, unit_cost, commission_min) - cash
        if over > 0.0:  # shrink the fractional buys by what the share needs
            room = float((trial[fractional] * price[fractional]).sum()) * unit_cost
            if not room > over:
                continue
            trial[fractional] = _floor_qty(trial[fractional] * ((room - over) / room),
                                           whole[fractional], qty_decimals)
            kept = qty[fractional] * price[fractional] >= min_notional
            if (kept & (trial[fractional] * price[fractional] < min_notional)).any():
                continue
        if _buys_cost(trial, price, unit_cost, commission_min) <= cash:
            qty = trial
    return qty
