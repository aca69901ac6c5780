"""How the buys after the sells are sized, end to end against FakeAlpaca (``allocbot once``):
they keep ``[rebalance] cash_buffer`` when a sell does not fill, they fit the buying power
an open order leaves, and a plan made at older closes than the fills still has every buy
filled. Each was a finding of an operator trial (cash at $0 with a 10 % buffer; SPY and
TLT refused 403 with 70 % left in cash; the last buy refused with 40 % left in cash).

FakeAlpaca models what these need: an open buy reserves buying power until it fills
(``_buying_power``), a sell of a ``stuck_symbols`` symbol never fills and is canceled after
``order_wait_secs``, and orders fill at the last close of each symbol (the latest trade it
reports), so a day whose bar one symbol lacks is planned at the previous day's closes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import API_KEY, KEYS_ENV, SECRET_KEY, UNIVERSE, recent_bars

from bot.core.rebalance import PlannedOrder, RebalancePolicy
from brokers.base import Account, OrderSide

WEIGHTS = {"SPY": 0.3, "TLT": 0.4, "IEF": 0.1, "GLD": 0.1, "DBC": 0.1}  # fully invested


def config(write_config: Any, fake: FakeAlpaca, *, wait_secs: float = 3,
           **rebalance: Any) -> Path:
    return write_config({
        "broker": {"kind": "alpaca", "order_wait_secs": wait_secs},
        "alpaca": {"base_url": fake.url, "data_url": fake.url, "http_timeout_secs": 2.0,
                   "retry_budget_secs": 10.0, "retry_backoff_secs": 0.02,
                   "retry_backoff_max_secs": 0.2, "poll_interval_secs": 0.02},
        "universe": {"symbols": UNIVERSE},
        "strategy": {"name": "fixed", "params": {"weights": WEIGHTS}},
        "risk": {"max_var": None},  # the targets as given: the buys need all the cash
        "rebalance": {"drift_abs": 0.01, **rebalance},
    })


def once(write_config: Any, fake: FakeAlpaca, **kw: Any) -> list[dict[str, Any]]:
    proc = run_cli_in_process("once", "--config", str(config(write_config, fake, **kw)),
                              env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = json_lines(proc.stdout)
    finished = [e for e in events if e["event"] == "cycle_finished"]
    assert finished and finished[0]["status"] == "finished", finished
    return events


def account(fake: FakeAlpaca) -> tuple[float, float, dict[str, float]]:
    """Cash, equity and each position's value at the venue, as an operator reads them."""
    values = {s: float(q) * fake.last_close(s) for s, (q, _) in fake.positions.items()}
    return float(fake.cash), float(fake.cash) + sum(values.values()), values


def refused_buys(fake: FakeAlpaca) -> list[str]:
    return [r.body["symbol"] for r in fake.order_posts()
            if r.body["side"] == "buy" and r.status != 200]


@pytest.fixture
def servers() -> Iterator[list[FakeAlpaca]]:
    made: list[FakeAlpaca] = []
    yield made
    for server in made:
        server.stop()
        assert server.errors == []


def start(servers: list[FakeAlpaca], bars: pd.DataFrame, **venue: Any) -> FakeAlpaca:
    fake = FakeAlpaca(bars=bars, api_key=API_KEY, secret_key=SECRET_KEY, bars_page_size=500,
                      **venue).start()
    servers.append(fake)
    return fake


def test_unfilled_sell_leaves_the_cash_buffer_in_cash(servers: list[FakeAlpaca],
                                                      write_config: Any) -> None:
    """80 % SPY to sell down to 30 %, $20k cash, cash_buffer 0.10: the SPY sell never fills.
    The buys may spend only what exceeds 10 % of equity (they spent all $20k: cash $0)."""
    bars = recent_bars()
    spy = float(np.floor(80_000 / bars["SPY"].iloc[-1]))
    fake = start(servers, bars, cash=20_000.0, positions={"SPY": (spy, 90.0)}, fill_polls=1)
    fake.stuck_symbols.add("SPY")
    events = once(write_config, fake, wait_secs=0.2, cash_buffer=0.10)
    cash, equity, held = account(fake)
    assert [e["symbol"] for e in events if e["event"] == "order_unfilled"] == ["SPY"]
    assert held["SPY"] / equity == pytest.approx(0.8, abs=0.01)  # the sell did not happen
    assert cash >= 0.10 * equity * (1 - 1e-6)  # the buffer is still there
    assert cash <= 0.11 * equity  # ...and the rest of the cash was invested
    assert set(held) == set(UNIVERSE) and refused_buys(fake) == []
    scaled = [e for e in events if e["event"] == "buys_scaled_to_cash"]
    assert scaled and scaled[0]["level"] == "warning" and scaled[0]["cause"] == "cash"


def test_buys_fit_buying_power_held_by_an_open_order(servers: list[FakeAlpaca],
                                                     write_config: Any) -> None:
    """A manual open buy (not the bot's) holds ~$42k of the $100k: every buy is scaled to
    the buying power left and filled; none is refused 403 (SPY and TLT were, 70 % cash)."""
    fake = start(servers, recent_bars(), cash=100_000.0, fill_polls=1)
    status, body = fake.handle("POST", "/v2/orders", {}, {
        "symbol": "TLT", "side": "buy", "qty": "400", "type": "market",
        "time_in_force": "day", "client_order_id": "manual-1"})
    assert status == 200 and body["status"] == "accepted"
    held_by_manual = 100_000.0 - float(fake._buying_power())
    assert held_by_manual > 40_000
    events = once(write_config, fake)
    cash, _, held = account(fake)
    assert refused_buys(fake) == []
    assert [e for e in events if e["event"] in ("order_rejected", "order_refused")] == []
    assert set(held) == set(UNIVERSE)  # every target bought, in proportion
    assert held["TLT"] / held["IEF"] == pytest.approx(4.0, rel=0.01)
    assert held["SPY"] / held["IEF"] == pytest.approx(3.0, rel=0.01)
    # what is left is the manual order's money, not a refused buy's
    assert cash == pytest.approx(held_by_manual, rel=0.02)
    scaled = [e for e in events if e["event"] == "buys_scaled_to_cash"]
    assert scaled and scaled[0]["buying_power"] == pytest.approx(100_000 - held_by_manual,
                                                                 abs=0.01)


def test_buys_planned_at_older_closes_all_fill(servers: list[FakeAlpaca],
                                               write_config: Any) -> None:
    """GLD has no bar today, so the plan uses yesterday's closes for every symbol; the
    venue fills at today's, 1 % higher. Every buy fills and the cash is invested (the last
    buy, TLT at 40 %, was refused in full for insufficient buying power)."""
    bars = recent_bars()
    bars.iloc[-1] = bars.iloc[-2] * 1.01
    bars.iloc[-1, bars.columns.get_loc("GLD")] = np.nan
    fake = start(servers, bars, cash=100_000.0, fill_polls=1)
    events = once(write_config, fake)
    assert any(e["event"] == "bars_partial_day_dropped" for e in events)
    cash, equity, held = account(fake)
    assert refused_buys(fake) == []
    assert all(o.status == "filled" for o in fake.orders_created())
    assert set(held) == set(UNIVERSE)
    assert cash < 0.01 * equity  # invested, bar a small margin
    assert held["TLT"] / equity == pytest.approx(0.40, abs=0.01)


class _StubBroker:
    """The account the buys are sized against, and nothing else (not a simulator, no
    latest trades): only the price margin applies."""

    def __init__(self, cash: float, buying_power: float, equity: float) -> None:
        self._account = Account("PA3STUB", cash, equity, buying_power)

    def account(self) -> Account:
        return self._account


class _Journal:
    def __init__(self) -> None:
        self.resized: dict[str, float] = {}

    def resize_intent(self, cid: str, qty: float) -> None:
        self.resized[cid] = qty

    def set_status(self, cid: str, status: Any, reason: str) -> None:
        raise AssertionError(f"{cid} dropped: {reason}")


def _buys() -> list[tuple[str, PlannedOrder]]:
    return [("c-A-b", PlannedOrder("A", OrderSide.BUY, 300.0, 100.0, 30_000.0, "drift")),
            ("c-B-b", PlannedOrder("B", OrderSide.BUY, 100.0, 100.0, 10_000.0, "drift"))]


@pytest.mark.parametrize(
    ("cash", "buying_power", "plan_equity", "cash_buffer", "spendable"),
    [(50_000.0, 20_000.0, None, 0.0, 20_000.0),  # buying power below cash
     (30_000.0, 80_000.0, None, 0.0, 30_000.0),  # a margin account: cash
     (20_000.0, 20_000.0, None, 0.1, 10_000.0),  # the buffer, of the account's equity
     (20_000.0, 20_000.0, 120_000.0, 0.1, 8_000.0)],  # ...or of the plan's equity
    ids=["buying-power", "cash", "buffer-account-equity", "buffer-plan-equity"])
def test_buys_spend_at_most_min_cash_buying_power_less_the_buffer(
    cash: float, buying_power: float, plan_equity: float | None, cash_buffer: float,
    spendable: float,
) -> None:
    """$40k of buys against an account of $100k equity: they are scaled in proportion to
    min(cash, buying power) − cash_buffer × equity, each costed with the price margin."""
    from bot.engine.execution import (  # here: the tests above run on any execution module
        MARKET_BUY_MARGIN_BPS,
        ExecutionSettings,
        _size_buys_to_cash,
    )

    settings = ExecutionSettings(prefix="c", dry_run=False, order_wait_secs=1.0,
                                 policy=RebalancePolicy(cash_buffer=cash_buffer),
                                 plan_equity=plan_equity)
    sized = _size_buys_to_cash(_StubBroker(cash, buying_power, 100_000.0),  # type: ignore[arg-type]
                               _Journal(), _buys(), settings,  # type: ignore[arg-type]
                               {"A": True, "B": True})
    cost = sum(qty * 100.0 * (1 + MARKET_BUY_MARGIN_BPS * 1e-4) for _, _, _, qty in sized)
    assert cost <= spendable
    assert cost == pytest.approx(spendable, rel=1e-6)
    qty = {symbol: q for _, symbol, _, q in sized}
    assert qty["A"] / qty["B"] == pytest.approx(3.0, rel=1e-6)  # scaled in proportion


def _buy(symbol: str, qty: float, price: float) -> PlannedOrder:
    return PlannedOrder(symbol, OrderSide.BUY, qty, price, qty * price, "drift")


def _spent(qty: tuple[float, ...], buys: list[PlannedOrder], unit_cost: float = 1.0,
           commission_min: float = 0.0) -> float:
    return sum(q * b.price for q, b in zip(qty, buys, strict=True)) * unit_cost + \
        commission_min * sum(1 for q in qty if q > 0)


def test_one_share_buy_scaled_by_the_price_margin_keeps_its_share():
    """A 1-share whole-share buy beside a fractional one, scaled by 0.9975 (the live price
    margin of every fully invested rebalance at Alpaca): the floor dropped the share on
    every cycle ("not enough cash after sells" with cash to spare), so that asset stayed a
    share under target for good. The fractional buy now makes room for it."""
    from bot.core.rebalance import size_buys_to_cash

    buys = [_buy("SPY", 100.0, 400.0), _buy("DBC", 1.0, 97.02)]
    cash = 0.9975 * (40_000.0 + 97.02)
    sized = size_buys_to_cash(tuple(buys), cash, RebalancePolicy(), 0.0,
                              {"SPY": True, "DBC": False})
    assert sized.qty[1] == 1.0 and 99.0 < sized.qty[0] < 100.0
    assert _spent(sized.qty, buys) <= cash


def test_whole_share_buys_get_back_the_shares_the_floor_took_within_the_cash():
    from bot.core.rebalance import size_buys_to_cash

    buys = [_buy("A", 10.0, 50.0), _buy("B", 3.0, 100.0)]
    sized = size_buys_to_cash(tuple(buys), 790.0, RebalancePolicy(), 0.0, {})
    assert sized.qty == (9.0, 3.0) and _spent(sized.qty, buys) <= 790.0  # B's .96 first


def test_buys_sized_to_cash_never_exceed_it_nor_the_plan_and_stay_whole():
    """Random buys, costs and cash: within the cash with costs, never above the planned
    qty, whole shares where the asset is not fractionable."""
    from bot.core.rebalance import size_buys_to_cash

    rng = np.random.default_rng(3)
    for _ in range(2000):
        n = int(rng.integers(1, 6))
        whole = rng.random(n) < 0.5
        buys = [_buy(f"S{i}", float(rng.integers(1, 40)) if whole[i]
                     else round(float(rng.uniform(0.1, 40)), 6), float(rng.uniform(5, 500)))
                for i in range(n)]
        policy = RebalancePolicy(cost_bps_estimate=float(rng.choice([0.0, 5.0])),
                                 min_order_notional=float(rng.choice([0.0, 50.0])))
        commission = float(rng.choice([0.0, 1.0]))
        needed = sum(b.notional for b in buys)
        cash = needed * float(rng.uniform(0.5, 1.0))
        sized = size_buys_to_cash(tuple(buys), cash, policy, commission,
                                  {b.symbol: not w for b, w in zip(buys, whole, strict=True)})
        unit = 1 + policy.cost_bps_estimate / 1e4
        assert _spent(sized.qty, buys, unit, commission) <= cash + 1e-9
        assert all(0.0 <= q <= b.qty for q, b in zip(sized.qty, buys, strict=True))
        assert all(q == int(q) for q, w in zip(sized.qty, whole, strict=True) if w)
        assert all(q == 0 or q * b.price >= policy.min_order_notional
                   for q, b in zip(sized.qty, buys, strict=True))


def test_buys_sized_to_cash_edge_cases_a_review_found():
    """Minimum commissions charged for buys that floor to none (a $5 fractional buy that
    fits, dropped); the floor's snap rounding a whole share up past the cash ($28 over);
    a share given back that pushed a fractional buy under min_order_notional."""
    from bot.core.rebalance import size_buys_to_cash

    buys = [_buy("A", 1.0, 10.0), _buy("B", 0.5, 10.0)]
    sized = size_buys_to_cash(tuple(buys), 16.0, RebalancePolicy(), 10.0, {"B": True})
    assert sized.qty == (0.0, 0.5) and _spent(sized.qty, buys, commission_min=10.0) <= 16.0
    one = [_buy("X", 1.0, 700_000.0)]
    assert size_buys_to_cash(tuple(one), 0.99996 * 700_000.0, RebalancePolicy(), 0.0,
                             {}).qty == (0.0,)
    pair = [_buy("W", 1.0, 500.0), _buy("F", 1.0, 500.0)]
    sized = size_buys_to_cash(tuple(pair), 600.0, RebalancePolicy(min_order_notional=150.0),
                              0.0, {"F": True})
    assert sized.qty == (0.0, 1.0)  # F keeps its whole buy; W's share does not fit
