"""What an operator sees, gathered once: config + read-only journal + sim ledger → a frozen
``StatusReport`` that ``allocbot status`` (text and ``--json``) and the status web page both
render.

Read-only: the journal and the simulator's books are opened with SQLite ``mode=ro`` and
nothing is created or written, so it is safe beside a running daemon. Light: no pandas, no
strategy, no broker SDK is imported (the ≤ 0.4 s budget of ``allocbot status``).

Where the figures come from:

* sim broker — cash and holdings from the simulator's ledger, valued at the price file's
  close on the replay date (exactly what the daemon's next cycle would see). Each universe
  holding is judged as the planner judges it: its weight is a fraction of cash + the
  universe's holdings, its target the last cycle's after ``[rebalance].cash_buffer``
  (``bot.core.drift.buffered_targets``), and ``drifted`` the planner's band test
  (``bot.core.drift``); a holding outside the universe (the bot never trades it) is listed
  apart, in the account's equity but in no weight;
* Alpaca — the journal's last known figures (equity of the last cycle, its targets): status
  makes no network call and needs no keys; the holdings table is empty and a note says so.

P&L is money in account currency: since inception (equity − the equity the first cycle
read before trading, ``INCEPTION_KEY``), month-to-date and year-to-date (equity − the last
equity journaled before the month/year of the valuation date; the inception equity when
the account is younger), each less the deposits and withdrawals applied since
(``bot.engine.cash_transfers``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from bot.config import Config
from bot.engine.instance_lock import LockHolder, read_lock_holder
from bot.engine.journal import Journal
from bot.engine.statuses import (
    CLOSED_WAKES,
    HALT_KEY,
    CycleStatus,
    recorded_inception,
    recorded_peak,
    recorded_transfers,
)
from bot.errors import AllocbotError
from bot.monitoring.outcomes import MARKET_CLOSED, is_success

REARM_COMMAND = "allocbot rearm"
HISTORY_DAYS_FOR_YTD = 367  # valuation days read at least (one a day at most)
# A dry-run cycle's note: its planned orders were journaled, none sent (its "0 filled"
# read as orders that failed)
DRY_RUN_NOTE = "dry run: orders planned, not sent"


@dataclass(frozen=True, slots=True)
class DaemonState:
    """The instance lock's holder: is a daemon (or another writer) running now?"""

    alive: bool
    pid: int | None = None
    started_at: str | None = None  # UTC ISO
    command: str | None = None
    # it read another config file, or this one before its last edit (``_config_changed_note``)
    config_note: str | None = None


@dataclass(frozen=True, slots=True)
class CycleRow:
    """One journaled cycle; ``equity`` is after trading (or at the halt); ``error`` only for
    failed cycles, ``note`` the skip/halt reason."""

    cycle_id: str
    asof: str | None
    started_at: str  # UTC ISO
    finished_at: str | None
    status: str
    orders_planned: int | None
    orders_filled: int | None
    equity: float | None
    var: float | None
    note: str | None
    error: str | None
    wakes: int = 1  # a closed-market row: the wakes of its closed stretch (CLOSED_WAKES)
    detail: str | None = None  # a guard-blocked row: the guards and what breached them

    @property
    def succeeded(self) -> bool:
        """Finished, or skipped because the market was closed (``outcomes.is_success``)."""
        return is_success(self.status, self.note)

    @property
    def shown_note(self) -> str:
        """The note as shown: the skip/halt reason (with what breached a guard), and the
        wakes of a closed stretch."""
        note = f"{self.note}: {self.detail}" if self.note and self.detail else self.note or ""
        return f"{note} ×{self.wakes:,} wakes" if self.wakes > 1 else note


@dataclass(frozen=True, slots=True)
class HoldingRow:
    """A held or targeted universe symbol as the planner judges it: ``weight`` is a fraction
    of the universe's equity (cash + universe holdings), ``target`` the last cycle's target
    after the cash buffer (``strategy_target`` before it), ``drift`` = weight − target and
    ``drifted`` the planner's drift-band test. Holdings the status cannot see (Alpaca: it
    makes no API call) are None: unknown, never shown as zero; so are the targets, drift and
    drifted before any cycle has recorded targets (a first cycle killed or failed before)."""

    symbol: str
    qty: float | None
    price: float | None
    value: float | None
    weight: float | None
    target: float | None  # None: unknown (no cycle has recorded targets yet)
    drift: float | None
    drifted: bool | None  # None: unknown (the holdings or the targets are)
    strategy_target: float | None


OUTSIDE_UNIVERSE_NOTE = "outside the universe, untouched"


@dataclass(frozen=True, slots=True)
class OutsideRow:
    """A holding outside the universe (``foreign_position_seen``): never traded, never
    drifted; ``weight`` is a fraction of the whole account's equity."""

    symbol: str
    qty: float
    price: float | None
    value: float
    weight: float
    note: str = OUTSIDE_UNIVERSE_NOTE


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order intent still open at the venue, or abandoned unsent after a restart."""

    client_order_id: str
    cycle_id: str
    symbol: str
    side: str
    qty: float
    filled_qty: float
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """Equity (account currency) after the cycle of market date ``asof``."""

    asof: str
    equity: float


@dataclass(frozen=True, slots=True)
class AccountFigures:
    """Money in account currency; ``drawdown`` a fraction below ``peak_equity``."""

    source: str  # "sim_ledger" | "journal"
    valued_on: str | None  # market date the figures are valued at
    equity: float
    cash: float | None
    inception_equity: float | None
    pnl_since_inception: float | None
    pnl_mtd: float | None
    pnl_ytd: float | None
    peak_equity: float
    drawdown: float
    net_transfers: float  # deposits less withdrawals since the bot started watching them


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything ``allocbot status`` and the status page show (plain data: ``as_dict``)."""

    generated_at: str  # UTC ISO
    config_path: str | None
    state_db: str
    mode: str
    strategy: str
    broker: str
    daemon: DaemonState
    last_cycle: CycleRow | None
    last_success_at: str | None  # finished_at of the last success (``is_success``)
    next_wake: str | None  # UTC ISO; None when no daemon runs
    halted_reason: str | None
    rearm_command: str
    account: AccountFigures | None
    max_drawdown: float | None
    var: float | None  # the last cycle's ex-ante VaR (fraction of equity)
    max_var: float | None
    cash_buffer: float  # [rebalance].cash_buffer: the holdings' targets are after it
    universe_equity: float | None  # cash + universe holdings: the base of their weights
    holdings: tuple[HoldingRow, ...]  # universe symbols held or targeted
    outside_universe: tuple[OutsideRow, ...]  # held, outside the universe, untouched
    open_orders: tuple[OrderRow, ...]
    cycles: tuple[CycleRow, ...]  # newest first
    equity_curve: tuple[EquityPoint, ...]  # oldest first
    notes: tuple[str, ...]

    def holdings_caption(self) -> str:
        """What the holdings table measures (the CLI's and the page's caption)."""
        buffer = f", after the {self.cash_buffer:.2%} cash buffer" if self.cash_buffer > 0 else ""
        base = (f"; weights of cash + universe holdings, {self.universe_equity:,.2f}"
                if self.universe_equity is not None else "")
        return ("holdings vs targets, as the planner judges them (targets from the last "
                f"cycle{buffer}{base})")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (``allocbot status --json``, ``/status.json``)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def build_status_report(cfg: Config, now: datetime | None = None, *, cycles: int = 10,
                        curve_points: int = 2000) -> StatusReport:
    """Gather the status of the bot ``cfg`` describes, reading its state without writing.

    Args:
        cfg: the loaded config (``load_config(path, check_strategy=False)`` is enough).
        now: aware UTC time used for the next wake (default: the clock).
        cycles: how many recent cycles to list.
        curve_points: at most this many (latest) points of the equity curve.

    Raises:
        StateError: the state file exists but cannot be read (corrupt, foreign, newer).
    """
    now = now or datetime.now(UTC)
    holder = read_lock_holder(cfg.bot.state_dir)
    daemon = (DaemonState(holder.alive, holder.pid, _iso(holder.started_at), holder.command,
                          _config_changed_note(cfg, holder))
              if holder is not None else DaemonState(alive=False))
    base: dict[str, Any] = {
            "generated_at": now.isoformat(),
            "config_path": str(cfg.source) if cfg.source else None,
            "state_db": str(cfg.state_db), "mode": cfg.bot.mode, "strategy": cfg.strategy.name,
            "broker": cfg.broker.kind, "daemon": daemon, "rearm_command": REARM_COMMAND,
            "max_drawdown": cfg.risk.max_drawdown, "max_var": cfg.risk.max_var,
            "cash_buffer": cfg.rebalance.cash_buffer}
    if not cfg.state_db.exists():
        return StatusReport(**base, last_cycle=None, last_success_at=None, next_wake=None,
                            halted_reason=None, account=None, var=None, universe_equity=None,
                            holdings=(), outside_universe=(), open_orders=(), cycles=(),
                            equity_curve=(),
                            notes=(f"no state yet at {cfg.state_db}: the bot has not run "
                                   "(start it with 'allocbot run')",))
    journal = Journal.open_read_only(cfg.state_db)
    try:
        return _from_journal(cfg, journal, base, now, cycles, curve_points)
    finally:
        journal.close()


# the summary figures a cycle values the account by (halted cycles store ``equity``)
EQUITY_FIGURES = ("equity_after", "equity")


def _from_journal(cfg: Config, journal: Journal, base: dict[str, Any], now: datetime,
                  limit: int, curve_points: int) -> StatusReport:
    # bounded reads: the last ``limit`` cycles, one row a day for the equity history, and
    # single-row queries for the rest (an interval schedule journals a row a wake while
    # the market is open)
    recent = [cycle_row(c) for c in journal.recent_cycles(limit)]
    # the curve's days, and at least a year and a day: the year-to-date P&L's reference is
    # the last valuation before 1 January
    history = _equity_history([cycle_row(c) for c in journal.daily_cycles(
        EQUITY_FIGURES, latest=max(curve_points, HISTORY_DAYS_FOR_YTD))])
    last_success = last_success_cycle(journal)
    var_cycle = journal.latest_cycle(figure="var")
    targets_cycle = journal.latest_cycle(figure="targets")
    recorded = None if targets_cycle is None else targets_cycle["summary"].get("targets")
    # None: no cycle has recorded targets (the first one died or failed before its risk step)
    targets = ({str(k): float(v) for k, v in recorded.items()}
               if isinstance(recorded, dict) else None)
    whose = targets_cycle["summary"].get("strategy") if targets_cycle is not None else None
    inception = recorded_inception(journal)
    if inception is None:  # a journal from before the key: the first finished cycle's
        inception = journal.first_equity_before()
    notes: list[str] = []
    if whose is not None and whose != cfg.strategy.name:
        notes.append(f"the targets shown are the last cycle's, from strategy {whose!r}, not "
                     f"this config's {cfg.strategy.name!r} (a fallback, a changed config, or "
                     "another config on this state dir): the next cycle recomputes them")
    account, book = _valuation(cfg, journal, history, targets, inception, notes)
    daemon: DaemonState = base["daemon"]
    if recent and recent[0].status == CycleStatus.RUNNING and not daemon.alive:
        notes.append(f"cycle {recent[0].cycle_id} is still marked running but no process "
                     "runs it: it died mid-cycle (the next start marks it interrupted and "
                     "reconciles its orders with the venue)")
    elif recent and recent[0].status == CycleStatus.RUNNING and cfg.broker.kind == "sim":
        # the sim's holdings are read as they stand, the targets are the last finished
        # cycle's: mid-cycle the two can belong to different cycles
        judged = ("judged against the previous cycle's targets" if targets is not None else
                  "and no cycle has finished yet to give targets")
        notes.append(f"cycle {recent[0].cycle_id} is running: the holdings may be part-way "
                     f"through its orders, {judged} (look again once it finishes)")
    return StatusReport(
        **base,
        last_cycle=recent[0] if recent else None,
        last_success_at=last_success["finished_at"] if last_success else None,
        next_wake=next_wake(cfg, recent[0] if recent else None, now) if daemon.alive else None,
        halted_reason=journal.meta(HALT_KEY),
        account=account, var=None if var_cycle is None else cycle_row(var_cycle).var,
        universe_equity=book.universe_equity,
        holdings=book.holdings, outside_universe=book.outside,
        open_orders=_orders(journal, recent), cycles=tuple(recent),
        equity_curve=tuple(EquityPoint(v.asof, v.equity) for v in history[-curve_points:]),
        notes=tuple(notes),
    )


def _config_changed_note(cfg: Config, holder: LockHolder | None) -> str | None:
    """A running daemon that read another config file, or this one before its last edit:
    the limits and strategy shown here are the file's, not the ones it trades with."""
    if holder is None or not holder.alive or holder.config_digest is None:
        return None
    if holder.config_digest == cfg.source_digest and holder.config == str(cfg.source):
        return None
    what = (f"an earlier version of {cfg.source}" if holder.config == str(cfg.source)
            else f"another config file ({holder.config})")
    return (f"the running daemon (pid {holder.pid}, started {holder.started_at}) read "
            f"{what}: it trades with those settings until restarted; the strategy and "
            "limits shown here are this file's")


def last_success_cycle(journal: Journal) -> dict[str, Any] | None:
    """The journal's last successful cycle (``outcomes.is_success``: it finished, or the
    market was closed), however far back: ``health``, ``status`` and the metrics' seed."""
    found = [journal.latest_cycle(statuses=[CycleStatus.FINISHED]),
             journal.latest_cycle(statuses=[CycleStatus.SKIPPED], reason=MARKET_CLOSED)]
    return max((c for c in found if c is not None), key=lambda c: c["finished_at"],
               default=None)


def cycle_row(raw: dict[str, Any]) -> CycleRow:
    """A journal cycle as a row; halted cycles store ``equity``, finished ``equity_after``."""
    s = raw["summary"]
    equity = s.get("equity_after", s.get("equity"))
    failed = raw["status"] == CycleStatus.FAILED
    return CycleRow(
        cycle_id=raw["cycle_id"], asof=raw["asof"], started_at=raw["started_at"],
        finished_at=raw["finished_at"], status=raw["status"],
        orders_planned=s.get("orders_planned"), orders_filled=s.get("orders_filled"),
        equity=None if equity is None else float(equity),
        var=None if s.get("var") is None else float(s["var"]),
        note=s.get("reason") or (DRY_RUN_NOTE if s.get("mode") == "dry_run" else None),
        error=s.get("error") if failed else None,
        detail=s.get("guard_detail"),
        wakes=wakes if type(wakes := s.get(CLOSED_WAKES, 1)) is int and wakes > 1 else 1,
    )


class Valuation(NamedTuple):
    """A cycle's valuation of the account: its exchange day, equity, and when it ended."""

    asof: str
    equity: float
    at: str  # UTC ISO (the cycle's finished_at)


def _equity_history(rows: list[CycleRow]) -> list[Valuation]:
    """The last valuation of each day a cycle valued the account, oldest first."""
    by_day: dict[str, Valuation] = {}
    for row in reversed(rows):
        if row.asof and row.equity is not None and math.isfinite(row.equity):
            by_day[row.asof] = Valuation(row.asof, row.equity, row.finished_at or "")
    return [by_day[day] for day in sorted(by_day)]


def _valuation(cfg: Config, journal: Journal,
               history: list[Valuation], targets: dict[str, float] | None,
               inception: float | None, notes: list[str]
               ) -> tuple[AccountFigures | None, _Book]:
    """Account figures and holdings: from the sim ledger, else the journal's last cycle."""
    if cfg.broker.kind == "sim":
        sim = _sim_holdings(cfg, notes)
        if sim is not None:
            cash, valued_on, priced = sim
            equity = math.fsum([cash, *(q * p for q, p in priced.values())])
            figures = _figures("sim_ledger", Valuation(valued_on or "", equity, ""), cash,
                               cfg.sim.starting_cash if inception is None else inception,
                               history, journal)
            return figures, _book(priced, cash, equity, targets, cfg, notes)
    else:
        notes.append("Alpaca: figures are the journal's as of the last cycle (status makes "
                     "no API call); holdings are not shown")
    book = _book(None, 0.0, 0.0, targets, cfg, notes)
    if not history:
        return None, book
    # the last cycle that valued the account
    return _figures("journal", history[-1], None, inception, history, journal), book


def _figures(source: str, valued: Valuation, cash: float | None,
             inception: float | None, history: list[Valuation],
             journal: Journal) -> AccountFigures:
    """The account's figures at ``valued`` (the sim ledger's: ``at`` empty, now). P&L is
    net of the transfers applied between its reference and the valuation; the drawdown
    adds those applied after the valuation (a cycle that applied one and failed valued
    nothing) to its equity, as the peak was rescaled for them."""
    equity, valued_on = valued.equity, valued.asof or None
    transfers = recorded_transfers(journal)

    def moved(after: str | None, until: str | None) -> float:
        return 0.0 if transfers is None else transfers.applied_between(after, until)

    until = valued.at or None
    later = moved(until, None) if until is not None else 0.0
    peak = max(recorded_peak(journal), equity + later)
    day = date.fromisoformat(valued_on) if valued_on else None

    def pnl_since(start: date | None) -> float | None:
        """Equity less the reference and the money moved in since (a deposit is no gain)."""
        if start is None:
            return None
        before = [v for v in history if v.asof < start.isoformat()]
        ref = before[-1].equity if before else inception
        if ref is None:
            return None
        return round(equity - ref - moved(before[-1].at if before else None, until), 2)

    return AccountFigures(
        source=source, valued_on=valued_on, equity=round(equity, 2),
        cash=None if cash is None else round(cash, 2),
        inception_equity=None if inception is None else round(inception, 2),
        pnl_since_inception=(None if inception is None
                             else round(equity - inception - moved(None, until), 2)),
        pnl_mtd=pnl_since(day.replace(day=1) if day else None),
        pnl_ytd=pnl_since(date(day.year, 1, 1) if day else None),
        peak_equity=round(peak, 2),
        drawdown=round(max(0.0, 1 - (equity + later) / peak), 6) if peak > 0 else 0.0,
        net_transfers=round(moved(None, until), 2),
    )


def _sim_holdings(cfg: Config, notes: list[str]
                  ) -> tuple[float, str | None, dict[str, tuple[float, float]]] | None:
    """(cash, replay date, symbol → (qty, close)) from the simulator's books, read-only."""
    from brokers.price_row import read_price_row
    from brokers.sim.ledger import SimLedger

    try:
        ledger = SimLedger(cfg.state_db, read_only=True)
    except AllocbotError as exc:
        notes.append(f"sim account unreadable: {exc}")
        return None
    try:
        state = ledger.load_or_create(cfg.sim.starting_cash)
    except AllocbotError as exc:
        notes.append(str(exc))
        return None
    finally:
        ledger.close()
    if not state.holdings:
        return state.cash, state.cursor_date, {}
    if state.cursor_date is None:
        notes.append("sim account holds positions but has no replay date")
        return None
    try:
        closes = read_price_row(cfg.sim.prices, state.cursor_date)
    except AllocbotError as exc:
        notes.append(f"cannot value the holdings: {exc}")
        return None
    missing = sorted(set(state.holdings) - set(closes))
    if missing:
        notes.append(f"no close for {', '.join(missing)} on {state.cursor_date}")
        return None
    priced = {sym: (qty, closes[sym]) for sym, (qty, _) in state.holdings.items()}
    return state.cash, state.cursor_date, priced


@dataclass(frozen=True, slots=True)
class _Book:
    """The holdings as the planner sees them, and what it leaves alone."""

    universe_equity: float | None
    holdings: tuple[HoldingRow, ...]
    outside: tuple[OutsideRow, ...]


def _book(priced: dict[str, tuple[float, float]] | None, cash: float, equity: float,
          recorded: dict[str, float] | None, cfg: Config, notes: list[str]) -> _Book:
    """Split the holdings (``priced``: symbol → (qty, close); None when unknown, as with
    Alpaca) into the universe's, judged like the planner (``_holding_rows``), and the
    ones outside the universe (valued as part of the account's ``equity``). ``recorded``:
    the last cycle's targets, None when no cycle has recorded any."""
    targets = recorded or {}
    universe = cfg.universe.symbols  # None: every price column (all the sim can hold)
    inside = {s: h for s, h in (priced or {}).items() if universe is None or s in universe}
    outside = sorted(set(priced or {}) - set(inside))
    stale = sorted(s for s in targets if universe is not None and s not in universe)
    if stale:
        notes.append(f"the last cycle's targets name {', '.join(stale)}, outside the universe "
                     "now: not shown (the next cycle computes targets for the new universe)")
    excluded = sorted(s for s, (qty, _) in inside.items() if s in cfg.universe.exclude and qty)
    if excluded:  # its row shows the last cycle's target, from before the exclusion
        notes.append(f"{', '.join(excluded)} held but excluded ([universe].exclude): the next "
                     "cycle sells it back to cash (its target shown is the last cycle's)")
    rows = _holding_rows(inside if priced is not None else None, cash,
                         {s: t for s, t in targets.items() if s not in stale}, cfg,
                         targets_known=recorded is not None)
    if recorded is None and rows:
        notes.append("no cycle has recorded targets yet (the first cycle did not get that far: "
                     "killed or failed): the holdings' target, drift and drifted are unknown "
                     "('-'), not zero; the next cycle computes the targets")
    universe_equity = (math.fsum([cash, *(q * p for q, p in inside.values())])
                       if priced is not None else None)
    return _Book(
        universe_equity=None if universe_equity is None else round(universe_equity, 2),
        holdings=rows,
        outside=tuple(OutsideRow(symbol=s, qty=priced[s][0], price=priced[s][1],
                                 value=round(priced[s][0] * priced[s][1], 2),
                                 weight=round(priced[s][0] * priced[s][1] / equity, 6)
                                 if equity > 0 else 0.0)
                      for s in outside if priced is not None))


def _planner_targets(targets: dict[str, float], cash_buffer: float) -> dict[str, float]:
    """The targets the planner drifts against: after the cash buffer
    (``bot.core.drift.buffered_targets``, on plain floats: no numpy)."""
    from bot.core.drift import buffered_targets

    return dict(zip(targets, buffered_targets(list(targets.values()), cash_buffer), strict=True))


def _holding_rows(priced: dict[str, tuple[float, float]] | None, cash: float,
                  targets: dict[str, float], cfg: Config, *, targets_known: bool = True
                  ) -> tuple[HoldingRow, ...]:
    """Universe symbols held or targeted, judged as the planner judges them: weights of
    cash + these holdings at ``priced``'s closes, the targets after the cash buffer, the
    planner's drift rule (``bot.core.drift``). ``priced`` None: the holdings are unknown
    (Alpaca): targets only, nothing flagged. ``targets_known`` False: no cycle has recorded
    targets, so target, drift and drifted are unknown (not a zero target: "sell it all")."""
    from bot.core.drift import drift_mask

    held = priced or {}
    symbols = sorted(set(held) | {s for s, t in targets.items() if t > 0})
    if not symbols:
        return ()
    goal = _planner_targets(targets, cfg.rebalance.cash_buffer)
    if priced is None:  # unknown holdings: the targets only (no made-up zero and −target drift)
        return tuple(HoldingRow(symbol=s, qty=None, price=None, value=None, weight=None,
                                target=round(goal.get(s, 0.0), 6), drift=None, drifted=None,
                                strategy_target=round(targets.get(s, 0.0), 6))
                     for s in symbols)
    values = [held[s][0] * held[s][1] if s in held else 0.0 for s in symbols]
    equity = math.fsum([cash, *values])  # the planner's equity: cash + universe holdings
    weights = [v / equity if equity > 0 else 0.0 for v in values]
    if not targets_known:
        return tuple(HoldingRow(symbol=s, qty=held[s][0] if s in held else 0.0,
                                price=held[s][1] if s in held else None, value=round(v, 2),
                                weight=round(w, 6), target=None, drift=None, drifted=None,
                                strategy_target=None)
                     for s, v, w in zip(symbols, values, weights, strict=True))
    policy = cfg.rebalance
    return tuple(
        HoldingRow(symbol=s, qty=held[s][0] if s in held else 0.0,
                   price=held[s][1] if s in held else None, value=round(v, 2),
                   weight=round(w, 6), target=round(goal.get(s, 0.0), 6),
                   drift=round(w - goal.get(s, 0.0), 6),
                   drifted=equity > 0
                   and bool(drift_mask(w, goal.get(s, 0.0), policy.drift_abs, policy.drift_rel)),
                   strategy_target=round(targets.get(s, 0.0), 6))
        for s, v, w in zip(symbols, values, weights, strict=True)
    )


def _orders(journal: Journal, recent: Sequence[CycleRow], limit: int = 50
            ) -> tuple[OrderRow, ...]:
    """Open intents (not yet final at the venue) and the ones abandoned unsent by the
    ``recent`` cycles shown (older unsent rows piled up for weeks under "open and unsent
    orders", read as orders still pending; only those are read)."""
    rows = journal.open_and_unsent_intents([c.cycle_id for c in recent])[-limit:]
    return tuple(OrderRow(i.client_order_id, i.cycle_id, i.symbol, i.side.value, i.qty,
                          i.filled_qty, str(i.status), i.reason) for i in rows)


def next_wake(cfg: Config, last: CycleRow | None, now: datetime) -> str | None:
    """When the scheduler wakes next: the cron's next fire time, or the last start plus
    the interval (never earlier than ``now``)."""
    schedule = cfg.schedule
    if schedule.interval_secs is not None:
        if last is None:
            return now.isoformat()
        due = datetime.fromisoformat(last.started_at) + timedelta(seconds=schedule.interval_secs)
        return max(due, now).isoformat()
    from bot.engine.scheduler import build_trigger

    fire = build_trigger(schedule).get_next_fire_time(None, now)
    return None if fire is None else fire.astimezone(UTC).isoformat()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)
