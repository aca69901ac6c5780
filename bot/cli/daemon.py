"""``allocbot run`` (the daemon) and ``allocbot once`` (one cycle, then exit)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.startup import config_option, fail_on, load, open_runtime
from bot.engine.statuses import CycleStatus
from bot.errors import EXIT_CYCLE_FAILED, AllocbotError


@click.command()
@config_option
@click.option("--max-cycles", type=click.IntRange(min=1), default=None,
              help="Stop after this many wakes (default: run until SIGTERM/Ctrl-C).")
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def run(config_path: Path, max_cycles: int | None, live: bool) -> None:
    """Run the daemon on the configured schedule until stopped."""
    from bot.engine import cycle
    from bot.engine.scheduler import Daemon

    cfg = load(config_path)
    rt = open_runtime(cfg, live, command="run")

    def wake() -> None:
        rt.broker.on_wake()
        cycle.run(rt.context)

    try:
        Daemon(cfg.schedule, wake, max_cycles=max_cycles).run()
    finally:
        rt.close()


@click.command()
@config_option
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def once(config_path: Path, live: bool) -> None:
    """Run exactly one cycle now, then exit (1 if the cycle failed)."""
    from bot.engine import cycle

    cfg = load(config_path)
    rt = open_runtime(cfg, live, command="once")
    try:
        rt.broker.on_wake()
        result = cycle.run(rt.context)
    except AllocbotError as exc:  # the journal itself failed (disk full, file made read-only)
        fail_on(exc)
    finally:
        rt.close()
    sys.exit(EXIT_CYCLE_FAILED if result.status is CycleStatus.FAILED else 0)
