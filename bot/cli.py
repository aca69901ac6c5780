"""The ``allocbot`` command line: run, once, backtest, check-config, status, weights, rearm,
data.

The only module (with the scheduler) that knows about processes, argv and exit codes.
Exit codes: 0 success, 1 a cycle failed, 2 bad config or data (nothing was sent).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import structlog

from bot.config import Config, config_as_dict, load_config
from bot.errors import AllocbotError, BrokerConfigError, BrokerDataError, ConfigError
from bot.logs import configure_logging

log = structlog.get_logger("allocbot.cli")
EXIT_CYCLE_FAILED = 1
EXIT_BAD_INPUT = 2
F = TypeVar("F", bound=Callable[..., Any])


def _config_option(func: F) -> F:
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        default=lambda: os.environ.get("ALLOCBOT_CONFIG", "config.toml"), show_default=True,
        help="TOML config file (or set ALLOCBOT_CONFIG).",
    )(func)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    log.error("startup_failed", error=message)
    click.echo(f"allocbot: error: {message}", err=True)
    sys.exit(code)


def _load(config_path: Path, logs_to_stderr: bool = False) -> Config:
    """Load config and configure logging from it; bad config exits 2 with one message."""
    stream = sys.stderr if logs_to_stderr else sys.stdout
    configure_logging("json", "info", stream)
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        _fail(f"invalid config {config_path}: {exc}")
    configure_logging(cfg.bot.log_format, cfg.bot.log_level, stream)
    return cfg


def _open(cfg: Config, live: bool) -> Any:
    from threadpoolctl import threadpool_limits

    from bot.runtime import open_runtime

    # One BLAS thread for the process: on a small host, multi-threaded OpenBLAS stalls the
    # optimizers when another process competes for the cores (500-asset risk parity
    # measured at 2.5-3.2 s a call with 2 threads vs 24 ms with 1).
    threadpool_limits(limits=1, user_api="blas")
    try:
        return open_runtime(cfg, live_flag=live)
    except (ConfigError, BrokerDataError, BrokerConfigError) as exc:
        _fail(str(exc))
    except AllocbotError as exc:
        _fail(f"{type(exc).__name__}: {exc}", EXIT_CYCLE_FAILED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="allocbot")
def main() -> None:
    """allocbot: scheduled asset-allocation rebalancing with risk limits."""


@main.command()
@_config_option
@click.option("--max-cycles", type=click.IntRange(min=1), default=None,
              help="Stop after this many wakes (default: run until SIGTERM/Ctrl-C).")
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def run(config_path: Path, max_cycles: int | None, live: bool) -> None:
    """Run the daemon on the configured schedule until stopped."""
    from bot import cycle
    from bot.scheduler import Daemon

    cfg = _load(config_path)
    rt = _open(cfg, live)

    def wake() -> None:
        rt.broker.on_wake()
        cycle.run(rt.context)

    try:
        Daemon(cfg.schedule, wake, max_cycles=max_cycles).run()
    finally:
        rt.close()


@main.command()
@_config_option
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def once(config_path: Path, live: bool) -> None:
    """Run exactly one cycle now, then exit (1 if the cycle failed)."""
    from bot import cycle

    cfg = _load(config_path)
    rt = _open(cfg, live)
    try:
        rt.broker.on_wake()
        result = cycle.run(rt.context)
    finally:
        rt.close()
    sys.exit(EXIT_CYCLE_FAILED if result.status == "failed" else 0)


@main.command("check-config")
@_config_option
def check_config(config_path: Path) -> None:
    """Validate the config and print it resolved (defaults filled in) as JSON."""
    cfg = _load(config_path, logs_to_stderr=True)
    click.echo(json.dumps(config_as_dict(cfg), indent=2, default=str))


@main.command()
@_config_option
def rearm(config_path: Path) -> None:
    """Re-arm trading after a drawdown halt (resets the equity peak)."""
    from bot.cycle import HALT_KEY, PEAK_KEY
    from bot.journal import Journal

    cfg = _load(config_path, logs_to_stderr=True)
    journal = Journal(cfg.state_db)
    reason = journal.meta(HALT_KEY)
    journal.delete_meta(HALT_KEY)
    journal.delete_meta(PEAK_KEY)
    journal.close()
    log.warning("trading_rearmed", previous_halt=reason)
    click.echo("trading re-armed" + (f" (was halted: {reason})" if reason else " (was not halted)"))


@main.command()
@_config_option
@click.option("--prices", "prices_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Price CSV (default: the config's [sim].prices).")
@click.option("--asof", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Compute as of this date (default: the last date in the data).")
def weights(config_path: Path, prices_path: Path | None, asof: Any) -> None:
    """Print the strategy's target weights (after the risk step) as JSON."""
    from bot.weights_report import target_weights_report

    cfg = _load(config_path, logs_to_stderr=True)
    try:
        report = target_weights_report(cfg, prices_path or cfg.sim.prices,
                                       asof.date() if asof else None)
    except (AllocbotError, ValueError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(report, indent=2))


@main.command()
@_config_option
def status(config_path: Path) -> None:
    """Show the account, holdings vs targets with drift, and the last cycles."""
    from bot.status import render_status

    cfg = _load(config_path, logs_to_stderr=True)
    rt = _open(cfg, live=cfg.bot.mode == "live")
    try:
        render_status(rt)
    finally:
        rt.close()


@main.command()
@_config_option
@click.option("--prices", "prices_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Price CSV (default: the config's [sim].prices).")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First backtest day (default: [backtest].start, else after the warm-up).")
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last backtest day (default: [backtest].end, else the last data day).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("backtest"), show_default=True, help="Directory for the outputs.")
@click.option("--benchmark", default=None, metavar="STRATEGY",
              help="Benchmark strategy name or fixed preset (default: sixty_forty when the "
                   "universe has SPY and a bond ETF, else equal_weight).")
@click.option("--walk-forward", "walk_forward", default=None, metavar="TRAIN:TEST",
              help="Refit on TRAIN days, trade the next TEST days, repeat (e.g. 756:63).")
def backtest(config_path: Path, prices_path: Path | None, start: Any, end: Any,
             out_dir: Path, benchmark: str | None, walk_forward: str | None) -> None:
    """Replay the strategy over history with the daemon's own cycle; write the report."""
    import logging

    from bot.backtest import BacktestInputError
    from bot.backtest_setup import run_command
    from bot.walk_forward import parse_walk_forward

    cfg = _load(config_path, logs_to_stderr=True)
    level = cfg.backtest.log_level
    configure_logging(cfg.bot.log_format, level, sys.stderr)
    # filtered levels cost nothing per call (thousands of cycles log below the level), and
    # each module's logger is bound once, not on every call
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(
        getattr(logging, level.upper())), cache_logger_on_first_use=True)
    try:
        wf = parse_walk_forward(walk_forward) if walk_forward else None
        run_command(cfg, prices_path, start.date() if start else None,
                    end.date() if end else None, out_dir, benchmark, wf,
                    show_progress=sys.stdout.isatty())
    except (BacktestInputError, ConfigError, BrokerDataError, ValueError) as exc:
        _fail(str(exc))


@main.group()
def data() -> None:
    """Market data commands."""


@data.command("fetch")
@_config_option
@click.option("--symbols", required=True, help="Comma-separated symbols, e.g. SPY,TLT,GLD.")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
def data_fetch(config_path: Path, symbols: str, start: Any, end: Any, out: Path) -> None:
    """Download adjusted daily closes from Alpaca into the sample CSV shape."""
    from bot.data_fetch import fetch_to_csv

    cfg = _load(config_path, logs_to_stderr=True)
    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    try:
        rows = fetch_to_csv(cfg, names, start.date(), end.date() if end else date.today(),
                            out)
    except AllocbotError as exc:
        _fail(str(exc))
    click.echo(f"wrote {rows} rows x {len(names)} symbols to {out}")


if __name__ == "__main__":
    main()
