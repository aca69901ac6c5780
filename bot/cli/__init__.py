"""The ``allocbot`` command line, one module per command family.

The only package (with the engine's runtime and scheduler) that knows about processes,
argv and exit codes. Exit codes: 0 success, 1 a cycle failed, 2 bad config, data or
state (nothing was sent). Each command imports what it needs when it runs, so
``allocbot --help`` loads no strategy, optimizer or broker SDK.
"""

from __future__ import annotations

import click

from bot.cli.backtest import backtest
from bot.cli.daemon import once, run
from bot.cli.data import data
from bot.cli.research import compare, sweep
from bot.cli.scaffold import init
from bot.cli.startup import defer_garbage_collection
from bot.cli.state import check_config, rearm, state
from bot.cli.status import health, status
from bot.cli.weights import weights


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="allocbot")
@click.pass_context
def main(ctx: click.Context) -> None:
    """allocbot: scheduled asset-allocation rebalancing with risk limits."""
    ctx.call_on_close(defer_garbage_collection())


for _command in (init, run, once, check_config, status, health, weights, backtest, data, rearm,
                 state, sweep, compare):
    main.add_command(_command)

__all__ = ["main"]
