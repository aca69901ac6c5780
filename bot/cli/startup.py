"""What every command does first: find the config, load it, configure logging, and turn
bad input into one line on stderr with exit code 2 (nothing sent)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import structlog

from bot.errors import EXIT_BAD_INPUT, AllocbotError, ConfigError, exit_code_for
from bot.logs import configure_logging

if TYPE_CHECKING:
    from bot.config import Config
    from bot.engine.runtime import Runtime

log = structlog.get_logger("allocbot.cli")
F = TypeVar("F", bound=Callable[..., Any])


def config_option(func: F) -> F:
    """``--config PATH`` (default ``./config.toml`` or ``$ALLOCBOT_CONFIG``)."""
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        default=lambda: os.environ.get("ALLOCBOT_CONFIG", "config.toml"), show_default=True,
        help="TOML config file (or set ALLOCBOT_CONFIG).",
    )(func)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Log ``startup_failed`` and print one line on stderr, then exit with ``code``."""
    log.error("startup_failed", error=message)
    click.echo(f"allocbot: error: {message}", err=True)
    sys.exit(code)


def fail_on(exc: AllocbotError) -> NoReturn:
    """Exit for one of our own errors, with the code its class stands for."""
    fail(str(exc), exit_code_for(exc))


def load(config_path: Path, logs_to_stderr: bool = False) -> Config:
    """Load config and configure logging from it; bad config exits 2 with one message."""
    from bot.config import load_config  # pydantic, numpy, pandas: not for --help

    stream = sys.stderr if logs_to_stderr else sys.stdout
    configure_logging("json", "info", stream)
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        fail(f"invalid config {config_path}: {exc}")
    configure_logging(cfg.bot.log_format, cfg.bot.log_level, stream)
    _pin_blas()
    return cfg


def _pin_blas() -> None:
    """One BLAS thread per process unless ``ALLOCBOT_BLAS_THREADS`` says otherwise: on a
    small host a multi-threaded BLAS stalls the optimizers whenever another process (a
    backtest, a sweep worker) competes for the cores (``strategies/blas.py``)."""
    from strategies.blas import pin_blas_threads

    try:
        pin_blas_threads()
    except ConfigError as exc:
        fail(str(exc))


def open_runtime(cfg: Config, live: bool) -> Runtime:
    """The broker, journal and cycle context for ``cfg``; startup errors exit cleanly."""
    from bot.engine.runtime import open_runtime as _open

    try:
        return _open(cfg, live_flag=live)
    except AllocbotError as exc:
        fail_on(exc)
