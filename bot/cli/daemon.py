"""``allocbot run`` (the daemon) and ``allocbot once`` (one cycle, then exit)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.startup import config_option, load, open_runtime
from bot.engine.statuses import CycleStatus
from bot.errors import EXIT_CYCLE_FAILED


@click.command()
@config_option
@click.option("--max-cycles", type=click.IntRange(min=1), default=None,
              help="Stop after this many wakes (default: run until SIGTERM/Ctrl-C); "
                   "exit 1 if none of them finished.")
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def run(config_path: Path, max_cycles: int | None, live: bool) -> None:
    """Run the daemon on the configured schedule until stopped."""
    from bot.engine import cycle
    from bot.engine.scheduler import Daemon

    cfg = load(config_path)
    rt = open_runtime(cfg, live)
    statuses: list[CycleStatus] = []

    def wake() -> None:
        rt.broker.on_wake()
        statuses.append(cycle.run(rt.context).status)

    try:
        Daemon(cfg.schedule, wake, max_cycles=max_cycles).run()
    finally:
        rt.close()
    if max_cycles is not None and all(s is CycleStatus.FAILED for s in statuses):
        sys.exit(EXIT_CYCLE_FAILED)  # not one of the cycles asked for got through


@click.command()
@config_option
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def once(config_path: Path, live: bool) -> None:
    """Run exactly one cycle now, then exit (1 if the cycle failed)."""
    from bot.engine import cycle

    cfg = load(config_path)
    rt = open_runtime(cfg, live)
    try:
        rt.broker.on_wake()
        result = cycle.run(rt.context)
    finally:
        rt.close()
    sys.exit(EXIT_CYCLE_FAILED if result.status is CycleStatus.FAILED else 0)
