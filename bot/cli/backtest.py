"""``allocbot backtest``: replay the strategy over history with the daemon's own cycle."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli.startup import config_option, fail, fail_on, load
from bot.errors import AllocbotError
from bot.logs import backtest_repeats, configure_logging, log_repeated_warnings


@click.command()
@config_option
@click.option("--prices", "prices_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Price CSV (default: the config's [sim].prices).")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First backtest day (default: [backtest].start, else after the warm-up).")
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last backtest day (default: [backtest].end, else the last data day).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("backtest"), show_default=True, help="Directory for the outputs.")
@click.option("--benchmark", default=None, metavar="STRATEGY",
              help="Benchmark strategy name, fixed preset, or none: no benchmark run "
                   "(default: [backtest].benchmark, else sixty_forty when the universe has "
                   "SPY and a bond ETF, else equal_weight).")
@click.option("--walk-forward", "walk_forward", default=None, metavar="TRAIN:TEST",
              help="Refit on TRAIN days, trade the next TEST days, repeat (e.g. 756:63).")
def backtest(config_path: Path, prices_path: Path | None, start: Any, end: Any,
             out_dir: Path, benchmark: str | None, walk_forward: str | None) -> None:
    """Replay the strategy over history with the daemon's own cycle; write the report."""
    import structlog

    from bot.backtest.setup import run_command
    from bot.backtest.walk_forward import parse_walk_forward
    from bot.engine.preflight import PreflightError

    cfg = load(config_path, logs_to_stderr=True)
    level = cfg.backtest.log_level
    repeats = backtest_repeats(level)  # a warning of every cycle: written thrice, then counted
    configure_logging(cfg.bot.log_format, level, sys.stderr, drops=[repeats] if repeats else ())
    # filtered levels cost nothing per call (thousands of cycles log below the level); no
    # logger caching: a cached module logger would keep this configuration for good
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(
        getattr(logging, level.upper())), cache_logger_on_first_use=False)
    try:
        wf = parse_walk_forward(walk_forward) if walk_forward else None
        run_command(cfg, prices_path, start.date() if start else None,
                    end.date() if end else None, out_dir, benchmark, wf,
                    show_progress=sys.stdout.isatty())
    except PreflightError as exc:  # the strategy cannot work with the prices' universe
        fail(f"invalid config {config_path}: {exc}")
    except AllocbotError as exc:
        fail_on(exc)
    log_repeated_warnings(repeats)
