"""``allocbot status``: account, holdings vs the last targets with drift, recent cycles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from bot.cli.startup import config_option, load, open_read_only_runtime
from bot.core.rebalance import drift_mask


def render_status(rt: Any, console: Console | None = None) -> None:
    """Print readable tables built from the broker's account and the journal."""
    console = console or Console()
    account = rt.broker.account()
    positions = rt.broker.positions()
    cycles = rt.journal.recent_cycles(10)
    last_targets: dict[str, float] = next(
        (c["summary"].get("targets", {}) for c in cycles if c["summary"].get("targets")), {})
    console.print(f"[bold]Account[/bold] {account.account_number}  equity {account.equity:,.2f}  "
                  f"cash {account.cash:,.2f}  ({account.cash / account.equity:.1%} of equity)"
                  if account.equity > 0 else f"Account {account.account_number}: no equity")
    policy = rt.context.settings.policy
    table = Table(title="Holdings vs targets (targets from the last cycle)")
    for col in ("symbol", "qty", "value", "weight", "target", "drift", "drifted?"):
        table.add_column(col, justify="right")
    symbols = sorted(set(positions) | set(last_targets))
    for sym in symbols:
        pos = positions.get(sym)
        value = pos.market_value if pos else 0.0
        weight = value / account.equity if account.equity > 0 else 0.0
        target = float(last_targets.get(sym, 0.0))
        drifted = bool(drift_mask(np.array(weight), np.array(target), policy.drift_abs,
                                  policy.drift_rel))
        table.add_row(sym, f"{pos.qty:,.4f}" if pos else "0", f"{value:,.2f}", f"{weight:.2%}",
                      f"{target:.2%}", f"{weight - target:+.2%}", "yes" if drifted else "")
    console.print(table)
    recent = Table(title="Last cycles")
    for col in ("cycle", "as of", "status", "orders", "filled", "equity after"):
        recent.add_column(col)
    for c in cycles:
        s = c["summary"]
        recent.add_row(c["cycle_id"], c["asof"] or "", c["status"],
                       str(s.get("orders_planned", "")), str(s.get("orders_filled", "")),
                       f"{s['equity_after']:,.2f}" if "equity_after" in s else
                       str(s.get("reason", s.get("error", ""))))
    console.print(recent)


@click.command()
@config_option
def status(config_path: Path) -> None:
    """Show the account, holdings vs targets with drift, and the last cycles."""
    cfg = load(config_path, logs_to_stderr=True)
    rt = open_read_only_runtime(cfg)  # reads only: safe beside a running daemon
    try:
        render_status(rt)
    finally:
        rt.close()
