"""``allocbot status`` and ``allocbot health``: what an operator checks, read-only.

Both read the journal with SQLite ``mode=ro`` (safe beside a running daemon, never create
state) and import nothing heavy (no pandas, no strategy, no rich): each answers in well
under 0.4 s. The data comes from ``bot.monitoring.status_report``, which the status page
renders too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli.startup import config_option, fail_on, load
from bot.errors import AllocbotError

if TYPE_CHECKING:
    from bot.monitoring.status_report import AccountFigures, StatusReport

EXIT_UNHEALTHY = 1


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(config_path: Path, as_json: bool) -> None:
    """Mode, daemon, last cycles, halt, equity and P&L, risk, holdings vs targets."""
    from bot.monitoring.status_report import build_status_report

    cfg = load(config_path, logs_to_stderr=True, check_strategy=False, configure_logs=False)
    try:
        report = build_status_report(cfg)
    except AllocbotError as exc:
        fail_on(exc)
    click.echo(report.to_json() if as_json else render_status_text(report))


@click.command()
@config_option
def health(config_path: Path) -> None:
    """Exit 0 when the last successful cycle is recent enough for the schedule, else 1
    with one line saying why (no cycle yet, no successful cycle yet, last success at T,
    halted, failing, orders refused)."""
    from bot.monitoring.health import assess_health

    cfg = load(config_path, logs_to_stderr=True, check_strategy=False, configure_logs=False)
    try:
        verdict = assess_health(cfg)
    except AllocbotError as exc:
        fail_on(exc)
    click.echo(verdict.reason, err=not verdict.healthy)
    sys.exit(0 if verdict.healthy else EXIT_UNHEALTHY)


def render_status_text(r: StatusReport) -> str:
    """The report as plain text for a terminal (columns aligned, no colour needed)."""
    out = [f"allocbot {r.mode} · strategy {r.strategy} · broker {r.broker} · {r.state_db}"]
    d = r.daemon
    out.append(f"daemon      {'running' if d.alive else 'not running'}"
               + (f" (pid {d.pid}, since {_clock(d.started_at)} UTC, {d.command})"
                  if d.alive else ""))
    if d.config_note:  # before the limits it contradicts
        out.append(f"            NOTE: {d.config_note}")
    if r.last_cycle is not None:
        c = r.last_cycle
        out.append(f"last cycle  {_clock(c.finished_at or c.started_at)} UTC  {c.status}"
                   + (f" (market date {c.asof})" if c.asof else "")
                   + (f": {c.error or c.shown_note}" if c.error or c.note else ""))
    success = f"{_clock(r.last_success_at)} UTC" if r.last_success_at else "never"
    wake = f"{_clock(r.next_wake)} UTC" if r.next_wake else "- (no daemon running)"
    out.append(f"last success {success}   next wake {wake}")
    if r.halted_reason:
        out += ["", f"!! TRADING HALTED: {r.halted_reason}",
                f"!! nothing is traded until you review and run: {r.rearm_command}"]
    out += ["", *_account_lines(r.account, r)]
    out += ["", r.holdings_caption()]
    out += _table(("symbol", "qty", "price", "value", "weight", "target", "drift", "drifted"),
                  [(h.symbol, _unknown(h.qty, ",.4f"), _money(h.price), _money(h.value),
                    _unknown(h.weight, ".2%"), _unknown(h.target, ".2%"), _unknown(h.drift, "+.2%"),
                    _yes_unknown(h.drifted)) for h in r.holdings])
    if r.outside_universe:
        out += ["", "outside the universe (untouched: never traded, in no weight above; "
                "weight = share of the account's equity)"]
        out += _table(("symbol", "qty", "price", "value", "weight", "status"),
                      [(o.symbol, f"{o.qty:,.4f}", _money(o.price), _money(o.value),
                        f"{o.weight:.2%}", o.note) for o in r.outside_universe])
    out += ["", "open and unsent orders"]
    out += _table(("client_order_id", "symbol", "side", "qty", "filled", "status", "reason"),
                  [(o.client_order_id, o.symbol, o.side, f"{o.qty:,.4f}", f"{o.filled_qty:,.4f}",
                    o.status, o.reason or "") for o in r.open_orders])
    out += ["", "last cycles"]
    out += _table(("cycle", "market date", "finished (UTC)", "status", "orders", "filled",
                   "equity", "note", "error"),
                  [(c.cycle_id, c.asof or "", _clock(c.finished_at), c.status,
                    _int(c.orders_planned), _int(c.orders_filled), _money(c.equity),
                    c.shown_note, c.error or "") for c in r.cycles])
    out += [f"note: {n}" for n in r.notes]
    return "\n".join(out)


def _account_lines(a: AccountFigures | None, r: StatusReport) -> list[str]:
    if a is None:
        return ["account     no figures yet (no cycle has valued the account)"]
    source = "sim ledger" if a.source == "sim_ledger" else "journal, last cycle"
    lines = [f"account ({source}, valued on {a.valued_on or '-'})",
             f"  equity     {_money(a.equity)}" + (f"   cash {_money(a.cash)}"
                                                  if a.cash is not None else "")]
    put_in = (a.inception_equity or 0.0) + a.net_transfers  # the money the P&L was made on
    lines.append(f"  P&L        since inception {_signed(a.pnl_since_inception)}"
                 + (f" ({a.pnl_since_inception / put_in:+.2%})"
                    if a.pnl_since_inception is not None and put_in > 0 else "")
                 + f"   MTD {_signed(a.pnl_mtd)}   YTD {_signed(a.pnl_ytd)}"
                 + (f"   net of transfers {_signed(a.net_transfers)}" if a.net_transfers else ""))
    limit = f"max_drawdown {r.max_drawdown:.2%}" if r.max_drawdown is not None else \
        "no max_drawdown set"
    lines.append(f"  drawdown   {a.drawdown:.2%} below peak {_money(a.peak_equity)}   ({limit})")
    var = f"{r.var:.2%} of equity" if r.var is not None else "-"
    var_limit = f"max_var {r.max_var:.2%}" if r.max_var is not None else "no max_var set"
    lines.append(f"  VaR        {var}   ({var_limit})")
    return lines


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    line = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*headers).rstrip(), *(line.format(*row).rstrip() for row in rows)]


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _unknown(value: float | None, spec: str) -> str:
    """A figure, or "-" where status cannot know it (Alpaca holdings, targets before any
    cycle recorded them)."""
    return "-" if value is None else format(value, spec)


def _yes_unknown(flag: bool | None) -> str:
    """"yes", "", or "-" where status cannot know it (Alpaca holdings, no targets yet)."""
    return "-" if flag is None else "yes" if flag else ""


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.2f}"


def _int(value: int | None) -> str:
    return "" if value is None else str(value)


def _clock(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
