"""A simulated paper broker: a persistent SQLite account trading a replayed price file.

The market is a wide frame of daily closes. Its clock replays the frame: each
``on_wake()`` moves one row (trading day) forward (``advance_to`` jumps, for the backtest),
the market is "open" 15 minutes before the replay day's close (15:45 New York; 12:45 on
the NYSE's 13:00 early closes; open and close times come from the XNYS calendar, and a
row on a day that is no NYSE session gets the regular 9:30-16:00), and market orders fill
at once at that day's close moved against the trader by ``slippage_bps``. The account (cash,
positions, orders, fills, replay cursor) lives in ``sim_*`` tables of the bot's SQLite
file, one transaction per order, so it survives restarts; ``":memory:"`` gives a
throw-away account for backtests, its books in dicts (``brokers/sim/memory_ledger.py``).
It takes a side's orders in one call (``submit_batch``, ``brokers/booked_batch.py``); the
in-memory account prices a run of them at once (``brokers/sim/fill_run.py``). It
reports no latest trades (``TradePriceSource``): its trade price is the bar itself, so the
guard comparing the two could never fire (it cost ~1 µs a symbol every cycle).

Numbers: quantities are rounded to 9 decimals (Alpaca's fractional precision); cash is
plain float64 arithmetic (never rounded to cents, so equity = cash + Σ qty × close holds
exactly and nothing is silently lost). Prices and costs: ``brokers/sim/pricing.py``;
the SQLite books: ``brokers/sim/ledger.py``.

One instance per database file at a time: the account is cached in memory and written
through, so a second live instance on the same file would not see the first's trades.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import structlog

from brokers.base import (
    EXCHANGE_TZ,
    QTY_DECIMALS,
    Account,
    AssetInfo,
    Clock,
    Fill,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Position,
    trusted_order,
    trusted_position,
    validate_price_frame,
)
from brokers.booked_batch import BookedBatch
from brokers.calendar import xnys_sessions
from brokers.errors import BrokerConfigError, BrokerDataError
from brokers.sim.fill_run import RUN_MIN_ORDERS, leading_plain_run, plan_fill_run
from brokers.sim.ledger import LedgerState, SimLedger
from brokers.sim.memory_ledger import MemoryLedger
from brokers.sim.pricing import FillPlan, SimCosts, plan_fill

log = structlog.get_logger("brokers.sim")

REPLAY_BEFORE_CLOSE = timedelta(minutes=15)  # the cycle runs just before the close it fills at
OPEN_TIME = time(9, 30)  # regular hours, for rows on days the NYSE calendar has no session
CLOSE_TIME = time(16, 0)
WARMUP_ROWS = 252  # default replay start: one year (252 trading days) of history before it
ACCOUNT_NUMBER = "sim-paper"


def _exchange_time(day: date, at: time) -> datetime:
    """``day`` at New York wall-clock ``at``, as an aware UTC datetime."""
    return datetime.combine(day, at, EXCHANGE_TZ).astimezone(UTC)


def session_hours(days: Sequence[date]) -> tuple[list[datetime], list[datetime]]:
    """Open and close (aware UTC) of each day: the NYSE's (early closes included) for a
    session, regular 9:30-16:00 New York for any other day a price file may hold."""
    if not days:
        return [], []
    table = xnys_sessions(days[0], days[-1])
    opens, closes = [], []
    for day in days:
        i = table.index(day)
        opens.append(table.opens[i] if i is not None else _exchange_time(day, OPEN_TIME))
        closes.append(table.closes[i] if i is not None else _exchange_time(day, CLOSE_TIME))
    return opens, closes


def _as_date(value: date) -> date:
    """A calendar date from a date, pandas Timestamp or datetime (aware: New York's date)."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        aware = value.tzinfo is not None and value.utcoffset() is not None
        return value.astimezone(EXCHANGE_TZ).date() if aware else value.date()
    return value


def stored_account_problems(state: LedgerState, dates: Collection[date],
                            columns: Collection[str]) -> list[str]:
    """Why a stored sim account cannot continue on these prices (``dates``, ``columns``):
    its replay date is not among them, or it holds a symbol they do not price. The broker
    refuses to open on the first; ``allocbot check-config`` reports them."""
    problems = []
    if state.cursor_date is not None and date.fromisoformat(state.cursor_date) not in dates:
        problems.append(f"sim account replay date {state.cursor_date} is not in the price "
                        "data; use the price file the account was started with, or a new "
                        "state file")
    unpriced = sorted(set(state.holdings) - set(columns))
    if unpriced:
        problems.append(f"sim account holds {', '.join(unpriced)} but the price data has no "
                        "such column; keep every held symbol in the prices given to the "
                        "simulator")
    return problems


class SimulatedBroker:
    """The ``Broker`` protocol over a replayed price frame and a SQLite paper account."""

    name = "sim"
    fills_at_latest_bar = True  # ``LatestBarFills``: every fill is at the day's close

    def __init__(
        self,
        db_path: str | Path,
        prices: pd.DataFrame,
        *,
        starting_cash: float,
        costs: SimCosts | None = None,
        fractional: bool = True,
        replay_start: date | None = None,
        warmup_rows: int = WARMUP_ROWS,
        read_only: bool = False,
    ) -> None:
        """Open (or create) the paper account in ``db_path`` over ``prices``.

        Args:
            db_path: SQLite file shared with the journal (``":memory:"`` for a backtest).
            prices: wide daily closes, naive ``DatetimeIndex``, one column per symbol;
                must include every symbol the account holds.
            starting_cash: account currency; used only when the account is created.
            costs: commission (bps of the fill's notional, minimum per order) and slippage
                (bps the fill price moves against the trader); default: none.
            fractional: allow fractional quantities and notional orders.
            replay_start: the first wake opens the first data date ≥ this; default: the
                row after ``warmup_rows`` rows of history (one year, 252, unless the
                strategy and risk step need more).
            read_only: open the stored account without writing (``allocbot status``);
                the account must exist. Do not trade or wake a read-only broker.
        """
        if not math.isfinite(starting_cash) or starting_cash < 0:
            raise BrokerConfigError(f"sim starting_cash must be >= 0, got {starting_cash!r}")
        self._costs = costs or SimCosts()
        self._fractional = fractional
        # A shallow copy: under pandas' copy-on-write the caller's later edits of their
        # frame copy on their side, so the closes can be a view of the data, not a second
        # copy (21 MB at 500 symbols × 21 years).
        self._prices = validate_price_frame(prices, "sim prices").copy(deep=False)
        if self._prices.empty:
            raise BrokerDataError("sim prices: no rows or no symbols")
        self._closes = self._prices.to_numpy(dtype=np.float64)
        self._closes.flags.writeable = False
        self._dates: list[date] = list(self._prices.index.date)  # no Timestamp per row
        self._row_of: dict[date, int] = {d: i for i, d in enumerate(self._dates)}
        self._opens, self._closes_at = session_hours(self._dates)
        # The replay's "now" per day: one shared datetime for every order of the day.
        self._nows = [close - REPLAY_BEFORE_CLOSE for close in self._closes_at]
        self._col_of: dict[str, int] = {str(s): j for j, s in enumerate(self._prices.columns)}
        self._symbols = list(self._col_of)
        self._all_columns = list(range(len(self._symbols)))
        self._columns_of: dict[tuple[str, ...], list[int]] = {}
        self._column_index: dict[tuple[str, ...], pd.Index] = {}
        self._assets_cache: dict[tuple[str, ...], dict[str, AssetInfo]] = {}
        if len(self._col_of) != self._prices.shape[1]:
            raise BrokerDataError("sim prices: duplicate symbol columns")
        if replay_start is None:
            self._start_row = min(warmup_rows, len(self._dates) - 1)
        else:
            self._start_row = bisect_left(self._dates, replay_start)
        self._lock = threading.RLock()
        self._ledger: SimLedger | MemoryLedger = (
            MemoryLedger() if str(db_path) == ":memory:"
            else SimLedger(db_path, read_only=read_only))
        # The backtest's books take a run of fills at once; a SQLite account (the paper
        # daemon's) books each order in its own transaction, as it always did.
        self._run_ledger = self._ledger if isinstance(self._ledger, MemoryLedger) else None
        state = self._ledger.load_or_create(float(starting_cash))
        self._restore(state)
        if not state.created and not read_only:
            self._note_ignored_settings(state, float(starting_cash), replay_start)

    def _note_ignored_settings(self, state: LedgerState, starting_cash: float,
                               replay_start: date | None) -> None:
        """Warn (``sim_config_ignored``) when ``[sim] starting_cash`` or ``replay_start``
        ask for an account other than the stored one: they apply when an account is
        created, and a resumed one keeps its cash and replay date."""
        ignored: dict[str, str] = {}
        if starting_cash != state.starting_cash:
            ignored["starting_cash"] = (f"{starting_cash:g} (the account was created with "
                                        f"{state.starting_cash:g})")
        if (replay_start is not None and state.cursor_date is not None
                and replay_start > date.fromisoformat(state.cursor_date)):
            ignored["replay_start"] = (f"{replay_start} (the account's replay is at "
                                       f"{state.cursor_date})")
        if ignored:
            log.warning("sim_config_ignored", **ignored,
                        note="[sim] starting_cash and replay_start apply when the account is "
                             "created; point [bot].state_dir at a new directory for a new one")

    def _restore(self, state: LedgerState) -> None:
        """Take over the stored account; its replay date must be in the price data."""
        self._cash, self._ended = state.cash, state.ended
        self._row: int | None = None
        problems = stored_account_problems(state, self._row_of, self._col_of)
        if problems:
            raise BrokerDataError(problems[0])
        if state.cursor_date is not None:
            self._row = self._row_of[date.fromisoformat(state.cursor_date)]
        self._qty = {s: qty for s, (qty, _) in state.holdings.items()}
        self._avg = {s: avg for s, (_, avg) in state.holdings.items()}
        # The same quantities by price column, so equity is one vector product per call.
        self._qty_by_col = np.zeros(len(self._col_of))
        for symbol, qty in self._qty.items():
            self._qty_by_col[self._col_of[symbol]] = qty
        self._fills_booked = 0  # with the mark row, keys the account/positions caches
        self._positions_cache: tuple[tuple[int, int], dict[str, Position]] | None = None
        self._account_cache: tuple[tuple[int, int], Account] | None = None
        if state.created:
            log.info("sim_account_created", starting_cash=state.cash)
        else:
            log.info("sim_account_resumed", cash=state.cash, replay_date=state.cursor_date)

    def _save_cursor(self) -> None:
        cursor = None if self._row is None else self._dates[self._row].isoformat()
        self._ledger.save_cursor(cursor, self._ended)

    def close(self) -> None:
        """Close the database connection (the account stays on disk)."""
        with self._lock:
            self._ledger.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- replay clock --------------------------------------------------------------

    def _is_open(self) -> bool:
        return self._row is not None and not self._ended

    def current_date(self) -> date | None:
        """The replay day the market is open on; None before the first wake or after the end."""
        with self._lock:
            return self._dates[self._row] if self._is_open() and self._row is not None else None

    def on_wake(self) -> None:
        """Advance the replayed market one trading day (the first wake opens the start day)."""
        with self._lock:
            last = len(self._dates) - 1
            if self._row is None and self._start_row <= last:
                self._row = self._start_row
                log.info("replay_started", replay_date=self._dates[self._row].isoformat())
            elif self._row is not None and self._row < last:
                self._row, self._ended = self._row + 1, False  # resumes if data were appended
            elif not self._ended:
                self._ended = True
                log.info("replay_ended", last_date=self._dates[last].isoformat())
            self._save_cursor()

    def advance_to(self, day: date) -> date:
        """Open the market on the last data date ≤ ``day`` and return it (backtest driver).

        Raises:
            BrokerDataError: ``day`` is before the first data date.
            ValueError: it would move the replay backwards (fills cannot be undone).
        """
        with self._lock:
            day = _as_date(day)
            row = bisect_right(self._dates, day) - 1
            if row < 0:
                raise BrokerDataError(
                    f"sim prices: {day} is before the first date {self._dates[0]}"
                )
            if self._row is not None and row < self._row:
                raise ValueError(
                    f"replay cannot move backwards: at {self._dates[self._row]}, asked for {day}"
                )
            self._ended = self._ended and row == self._row  # an ended replay stays ended
            self._row = row
            self._save_cursor()
            return self._dates[row]

    def _replay_now(self, row: int) -> datetime:
        return self._nows[row]

    def clock(self) -> Clock:
        """Open 15 minutes before the replay day's close (the calendar's, early closes
        included); closed before the first wake and at the end."""
        with self._lock:
            if self._is_open() and self._row is not None:
                row = self._row
                following = row + 1 < len(self._dates)
                return Clock(
                    now=self._replay_now(row),
                    is_open=True,
                    next_open=self._opens[row + 1] if following else None,
                    next_close=self._closes_at[row],
                )
            if self._row is None and self._start_row < len(self._dates):
                first = self._start_row
                return Clock(
                    now=self._opens[first] - timedelta(minutes=30),
                    is_open=False,
                    next_open=self._opens[first],
                    next_close=self._closes_at[first],
                )
            return Clock(now=self._closes_at[-1], is_open=False)

    def _visible_rows(self) -> int:
        """How many rows are in the past or present of the replay clock."""
        if self._row is None:
            return min(self._start_row, len(self._dates))
        return self._row + 1

    # ----- market data ---------------------------------------------------------------

    def _columns(self, symbols: Sequence[str]) -> list[int]:
        """The price columns of ``symbols``, kept per distinct symbol tuple (the cycle asks
        for its universe's every day); every column in order is ``_all_columns`` itself.
        Read only."""
        key = tuple(symbols)
        cols = self._columns_of.get(key)
        if cols is not None:
            return cols
        missing = [s for s in key if s not in self._col_of]
        if missing:
            raise BrokerDataError(
                f"sim prices have no symbol(s) {', '.join(missing)} "
                f"(available: {', '.join(self._col_of)})"
            )
        cols = [self._col_of[s] for s in key]
        if cols == self._all_columns:
            cols = self._all_columns
        if len(self._columns_of) < 64:  # bounded: a caller asking for ever new sets
            self._columns_of[key] = cols
        return cols

    def history(self, symbols: Sequence[str], lookback_days: int, end: date) -> pd.DataFrame:
        """The last ``lookback_days`` closes on or before min(``end``, replay day); never later.
        Read-only: for the whole universe it is a view of the replay's closes."""
        if lookback_days < 1:
            raise ValueError(f"lookback_days must be >= 1, got {lookback_days}")
        symbols = list(symbols)
        cols = self._columns(symbols)
        with self._lock:
            stop = min(bisect_right(self._dates, _as_date(end)), self._visible_rows())
        start = max(0, stop - lookback_days)
        key = tuple(symbols)
        columns = self._column_index.get(key)
        if columns is None:  # object dtype: the cycle iterates it; pandas' str arrays are slow
            columns = self._column_index[key] = pd.Index(symbols, dtype=object)
        rows = self._closes[start:stop]
        if cols is not self._all_columns:  # the whole universe in order (the cycle): a view
            rows = rows[:, cols]
        return pd.DataFrame(rows, index=self._prices.index[start:stop], columns=columns,
                            copy=False)

    def assets(self, symbols: Sequence[str]) -> dict[str, AssetInfo]:
        """Every priced symbol is tradable; fractionable as configured (asked every cycle,
        so each universe's answer is kept: the values are frozen)."""
        key = tuple(symbols)
        known = self._assets_cache.get(key)
        if known is None:
            self._columns(symbols)
            known = self._assets_cache[key] = {
                s: AssetInfo(s, tradable=True, fractionable=self._fractional) for s in symbols}
        return dict(known)

    def _mark_row(self) -> int:
        """The row positions are valued at: today, or the last visible day when closed."""
        return self._row if self._row is not None else self._visible_rows() - 1

    def _close(self, symbol: str, row: int) -> float:
        if row < 0:
            raise BrokerDataError(f"sim: no price for {symbol} before the replay starts")
        value = float(self._closes[row, self._col_of[symbol]])
        if math.isnan(value):
            raise BrokerDataError(f"sim: no price for held {symbol} on {self._dates[row]}")
        return value

    # ----- account -------------------------------------------------------------------

    def account(self) -> Account:
        """Cash and equity = cash + Σ qty × close of the mark day.

        The sum is ``math.fsum`` (correctly rounded, so independent of position order); each
        term is the same float product as the position's ``market_value``. Cached until the
        next fill or day (execution and the backtest ask several times between two).
        """
        with self._lock:
            key = (self._mark_row(), self._fills_booked)
            if self._account_cache is None or self._account_cache[0] != key:
                self._account_cache = (key, self._value_account(key[0]))
            return self._account_cache[1]

    def _value_account(self, row: int) -> Account:
        if not self._qty:
            return Account(ACCOUNT_NUMBER, self._cash, self._cash, buying_power=self._cash)
        held = np.flatnonzero(self._qty_by_col)
        if row < 0:
            self._close(self._symbols[held[0]], row)  # raises: nothing to value them at
        values = self._qty_by_col[held] * self._closes[row, held]
        equity = math.fsum([self._cash, *values.tolist()])
        if math.isnan(equity):  # a held symbol without a close (fsum passes a NaN on)
            self._close(self._symbols[held[np.isnan(values)][0]], row)  # raises, naming it
        return Account(ACCOUNT_NUMBER, self._cash, equity, buying_power=self._cash)

    def positions(self) -> dict[str, Position]:
        """Holdings valued at the mark day's close (cached until the next fill or day)."""
        with self._lock:
            row = self._mark_row()
            key = (row, self._fills_booked)
            if self._positions_cache is None or self._positions_cache[0] != key:
                self._positions_cache = (key, self._value_positions(row))
            return dict(self._positions_cache[1])

    def _value_positions(self, row: int) -> dict[str, Position]:
        """Each holding at ``row``'s close, market value = qty × close (one vector product).
        Qty and average price are the books' own finite numbers, so when every value is
        finite the positions are built without re-checking them."""
        if row >= 0 and self._qty:
            cols = [self._col_of[s] for s in self._qty]
            values = self._qty_by_col[cols] * self._closes[row, cols]
            if np.isfinite(values).all():
                avg = self._avg
                return {s: trusted_position(s, qty, avg[s], value) for (s, qty), value
                        in zip(self._qty.items(), values.tolist(), strict=True)}
        # before the replay, a missing price or an overflow: the checked path raises, naming it
        return {s: Position(s, qty, self._avg[s], qty * self._close(s, row))
                for s, qty in self._qty.items()}

    def held_qty(self, symbols: Sequence[str]) -> np.ndarray:
        """Shares held of each of ``symbols`` (0.0 for none), as ``positions()[s].qty``
        gives them, without building a ``Position`` each: the backtest reads its books
        after every cycle that traded (500 symbols: one array copy instead of 500 values)."""
        cols = self._columns(symbols)
        with self._lock:
            return self._qty_by_col[cols]

    # ----- orders --------------------------------------------------------------------

    def submit_order(self, request: OrderRequest) -> Order:
        """Fill a market order now at today's close ± slippage, or record it as rejected.

        Idempotent: a known ``client_order_id`` returns the stored order, untouched.
        """
        return self.submit_batch([request]).order(0)

    def submit_batch(self, requests: Sequence[OrderRequest]) -> BookedBatch:
        """``submit_order`` for each request in turn, under one lock, answered in columns
        (``ImmediateFillVenue``): the same books as one call per order."""
        batch = BookedBatch()
        with self._lock:
            ledger = self._run_ledger
            booked = (self._book_run(requests, batch, ledger)
                      if ledger is not None and len(requests) >= RUN_MIN_ORDERS else 0)
            for request in requests[booked:]:
                self._submit(request, batch)
        return batch

    def _book_run(self, requests: Sequence[OrderRequest], batch: BookedBatch,
                  ledger: MemoryLedger) -> int:
        """Book the batch's leading run of plain orders (one side, by quantity, each for a
        different known symbol, new ids) at once with ``plan_fill_run``: the books and
        answers ``_submit`` gives one by one. Returns how many requests it booked."""
        if not self._is_open() or self._row is None or not requests:
            return 0
        run = leading_plain_run(requests, self._col_of, ledger)
        if not run:
            return 0
        side, col_of = run[0].side, self._col_of
        symbols = [r.symbol for r in run]
        asked = [float(r.qty) for r in run]  # type: ignore[arg-type]
        cols = [col_of[sym] for sym in symbols]
        held = [self._qty.get(sym, 0.0) for sym in symbols]
        buy = side is OrderSide.BUY
        fills = plan_fill_run(buy, asked, self._closes[self._row, cols], np.array(held),
                              self._cash, self._costs, self._fractional)
        n = fills.accepted
        if n == 0:
            return 0
        qty, price = fills.qty[:n].tolist(), fills.price[:n].tolist()
        commission = fills.commission[:n].tolist()
        now = self._nows[self._row]
        cids = [r.client_order_id for r in run[:n]]
        order_ids = ledger.book_fills(cids, symbols[:n], side, asked[:n],
                                      fills.qty[:n], fills.price[:n], fills.commission[:n], now)
        batch.add_fills(order_ids, cids, symbols[:n], side, asked[:n], [None] * n, qty, price,
                        commission, now)
        self._hold_after_fills(symbols[:n], held[:n], qty, price, buy)
        self._cash = float(fills.cash_after[n - 1])
        self._fills_booked += n
        return n

    def _hold_after_fills(self, symbols: list[str], held: list[float], qty: list[float],
                          price: list[float], buy: bool) -> None:
        """The position cache after a run of fills, with ``_fill``'s arithmetic (quantities
        rounded by ``round``; the average entry price in the same float operations)."""
        if buy:
            after = [round(before + q, QTY_DECIMALS) for before, q in zip(held, qty, strict=True)]
            avg_before = np.array([self._avg.get(sym, 0.0) for sym in symbols])
            avg = ((np.array(held) * avg_before + np.array(qty) * np.array(price))
                   / np.array(after)).tolist()
        else:
            after = [round(before - q, QTY_DECIMALS) for before, q in zip(held, qty, strict=True)]
            avg = [self._avg.get(sym, 0.0) for sym in symbols]
        self._qty_by_col[[self._col_of[sym] for sym in symbols]] = np.maximum(after, 0.0)
        self._qty.update(zip(symbols, after, strict=True))
        self._avg.update(zip(symbols, avg, strict=True))
        for symbol, left in zip(symbols, after, strict=True):
            if not left > 0:  # sold out (a buy always leaves a holding)
                del self._qty[symbol], self._avg[symbol]

    def _submit(self, request: OrderRequest, batch: BookedBatch) -> None:
        known = self._ledger.order(request.client_order_id)
        if known is not None:
            batch.add_order(known, self._ledger.fills(request.client_order_id))
            return
        outcome = self._evaluate(request)
        now = (self._nows[self._row]  # = clock().now, cheaper
               if self._is_open() and self._row is not None else self.clock().now)
        qty = None if request.qty is None else float(request.qty)
        notional = None if request.notional is None else float(request.notional)
        if isinstance(outcome, str):
            # Built from checked parts (a validated request, the replay's aware clock):
            # trusted_order skips re-checking them. The id is sim-<seq>: known now in
            # memory, set by the SQLite ledger inside its write ("" until then).
            order = trusted_order(self._ledger.next_order_id(), request.client_order_id,
                                  request.symbol, request.side, OrderStatus.REJECTED, qty,
                                  notional, 0.0, None, now, outcome)
            batch.add_order(self._ledger.record(order, None, self._cash, None), [])
            return
        order_id = self._fill(request, qty, notional, now, outcome)
        batch.add_fill(order_id, request.client_order_id, request.symbol, request.side, qty,
                       notional, outcome.qty, outcome.price, outcome.commission, now)

    def _evaluate(self, request: OrderRequest) -> FillPlan | str:
        if not self._is_open() or self._row is None:
            return "market_closed: the simulated market is closed (replay not started or ended)"
        if request.symbol not in self._col_of:
            return f"unknown_symbol: {request.symbol} is not in the sim price data"
        close = float(self._closes[self._row, self._col_of[request.symbol]])
        if math.isnan(close):
            return f"no_price: {request.symbol} has no price on {self._dates[self._row]}"
        held = self._qty.get(request.symbol, 0.0)
        return plan_fill(request, close, held, self._cash, self._costs, self._fractional)

    def _fill(self, request: OrderRequest, qty: float | None, notional: float | None,
              now: datetime, plan: FillPlan) -> str:
        """Book a fill: write it with the new cash and position, then update the cache;
        returns the order's id.

        The average entry price excludes commission, as Alpaca reports it.
        """
        symbol = request.symbol
        held, avg = self._qty.get(symbol, 0.0), self._avg.get(symbol, 0.0)
        if request.side is OrderSide.BUY:
            held_after = round(held + plan.qty, QTY_DECIMALS)
            avg = (held * avg + plan.qty * plan.price) / held_after
        else:
            held_after = round(held - plan.qty, QTY_DECIMALS)
        cash = self._cash + plan.cash_delta
        order_id = self._ledger.book_fill(
            request.client_order_id, symbol, request.side, qty, notional, plan.qty, plan.price,
            plan.commission, now, cash, held_after, avg)
        self._cash = cash
        self._fills_booked += 1
        self._qty_by_col[self._col_of[symbol]] = max(held_after, 0.0)
        if held_after > 0:
            self._qty[symbol], self._avg[symbol] = held_after, avg
        else:
            self._qty.pop(symbol, None)
            self._avg.pop(symbol, None)
        return order_id

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        with self._lock:
            return self._ledger.order(client_order_id)

    def list_orders(self, open_only: bool = True, latest: int | None = None) -> list[Order]:
        """Every order (``latest``: the most recent that many), oldest first; simulated
        orders are terminal at once, so none are open."""
        if open_only:
            return []
        with self._lock:
            return self._ledger.orders(latest)

    def cancel_order(self, order_id: str) -> None:
        """No-op: every simulated order is already terminal. Unknown ids are an error."""
        with self._lock:
            if not self._ledger.has_order_id(order_id):
                raise BrokerDataError(f"sim: no order with id {order_id}")

    def wait_for_order(self, client_order_id: str, timeout_secs: float) -> Order:
        """The order's state, already terminal (fills are immediate); no waiting happens."""
        order = self.get_order_by_client_id(client_order_id)
        if order is None:
            raise BrokerDataError(f"sim: no order with client_order_id {client_order_id}")
        return order

    def fills_for(self, client_order_id: str) -> list[Fill]:
        with self._lock:
            return self._ledger.fills(client_order_id)

    def fills_table(self) -> pd.DataFrame:
        """Every fill of the account, oldest first, as columns symbol, side, qty, price,
        commission, at (aware UTC): one query, for the backtest's trade list."""
        with self._lock:
            return self._ledger.fills_frame()
