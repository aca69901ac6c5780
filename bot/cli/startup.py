"""What every command does first: find the config, load it, configure logging, and turn
bad input into one line on stderr with exit code 2 (nothing sent)."""

from __future__ import annotations

import atexit
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

import click

from bot.errors import EXIT_BAD_INPUT, AllocbotError, ConfigError, InputDataError, exit_code_for
from bot.logs import configure_logging

if TYPE_CHECKING:
    from bot.config import Config
    from bot.engine.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])
_log_format: Literal["json", "console", "auto"] = "json"  # the config's, once loaded
_freeze_at_exit_registered = False


def config_option(func: F) -> F:
    """``--config PATH`` (default ``./config.toml`` or ``$ALLOCBOT_CONFIG``)."""
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        default=lambda: os.environ.get("ALLOCBOT_CONFIG", "config.toml"), show_default=True,
        help="TOML config file (or set ALLOCBOT_CONFIG).",
    )(func)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One line on stderr, then exit with ``code``: a sentence on a terminal, else the
    ``startup_failed`` event in the configured log format (journald, Docker, a pipe)."""
    if sys.stderr.isatty():
        click.echo(f"allocbot: error: {message}", err=True)
    else:
        import structlog

        configure_logging(_log_format, "info", sys.stderr)
        structlog.get_logger("allocbot.cli").error("startup_failed", error=message,
                                                   exit_code=code)
    sys.exit(code)


def fail_on(exc: AllocbotError) -> NoReturn:
    """Exit for one of our own errors, with the code its class stands for."""
    fail(str(exc), exit_code_for(exc))


def defer_garbage_collection() -> Callable[[], None]:
    """No cyclic collection while a command imports its modules and loads its config
    (``load`` turns it back on): the imports build ~10^5 long-lived objects that the
    collector would re-scan a few hundred times (~10 % of a short command's time).
    Returns the undo for when the command ends (a test runner keeps its process).

    At interpreter exit everything is frozen first: the shutdown's collections over
    pandas, pydantic and matplotlib otherwise cost more than a quick command itself
    (~0.1-0.3 s; Python does not promise to finalize objects alive at exit anyway)."""
    global _freeze_at_exit_registered
    if not _freeze_at_exit_registered:
        atexit.register(gc.freeze)
        _freeze_at_exit_registered = True
    was_enabled = gc.isenabled()
    gc.disable()

    def restore() -> None:
        gc.unfreeze()
        if was_enabled:
            gc.enable()

    return restore


def _resume_garbage_collection() -> None:
    """Move what start-up built out of every later collection (``gc.freeze``: a full
    collection then scans only what the command allocates, not pandas and pydantic), and
    collect again; a long-running daemon keeps collecting its own garbage."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def load(config_path: Path, logs_to_stderr: bool = False, check_strategy: bool = True,
         configure_logs: bool = True) -> Config:
    """Load config and configure logging from it; bad config exits 2 with one message.

    Read-only commands pass ``check_strategy=False`` (no strategy is built) and
    ``configure_logs=False`` (they log nothing; ``fail`` configures logging if it must).
    """
    global _log_format
    from bot.config import load_config  # pydantic: not for --help

    if check_strategy:
        _preset_blas_env()
    stream = sys.stderr if logs_to_stderr else sys.stdout
    if configure_logs:
        configure_logging("json", "info", stream)
    try:
        cfg = load_config(config_path, check_strategy=check_strategy)
    except (ConfigError, InputDataError) as exc:  # a file the config names, too: exit 2
        fail(f"invalid config {config_path}: {exc}")
    _log_format = cfg.bot.log_format
    if configure_logs:
        configure_logging(cfg.bot.log_format, cfg.bot.log_level, stream)
    if check_strategy:  # a command that computes: one BLAS thread (strategies/blas.py)
        _apply_process_policies()
    _resume_garbage_collection()
    return cfg


def _preset_blas_env() -> None:
    """Before numpy's first import, give OpenBLAS the thread count through its environment:
    it then starts that many threads instead of one per core that ``_apply_process_policies`` idles
    right after (numpy's import costs ~30 ms less CPU). Children inherit the same count."""
    from strategies.blas import blas_threads_from_env

    if "numpy" in sys.modules:
        return
    try:
        threads = blas_threads_from_env()
    except ConfigError:
        return  # _apply_process_policies reports it
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)


def _apply_process_policies() -> None:
    """One BLAS thread per process unless ``ALLOCBOT_BLAS_THREADS`` says otherwise: on a
    small host a multi-threaded BLAS stalls the optimizers whenever another process (a
    backtest, a sweep worker) competes for the cores (``strategies/blas.py``). Freed
    buffers stay in the heap (``ALLOCBOT_HEAP_RETAIN_MB``, ``strategies/heap_policy.py``):
    each optimizer call would otherwise fault its arrays back in after a cycle's other work."""
    from strategies.blas import pin_blas_threads
    from strategies.heap_policy import retain_freed_heap

    try:
        pin_blas_threads()
        retain_freed_heap()
    except ConfigError as exc:
        fail(str(exc))


def open_runtime(cfg: Config, live: bool, command: str = "run") -> Runtime:

    """The broker, journal and cycle context for ``cfg``; startup errors exit cleanly."""
    from bot.engine.runtime import open_runtime as _open

    try:
        return _open(cfg, live_flag=live, command=command)
    except AllocbotError as exc:
        fail_on(exc)


def open_read_only_runtime(cfg: Config) -> Runtime:
    """The journal and account opened read-only (never creates or writes state, takes no
    lock); unusable state exits 2 with one line naming the file."""
    from bot.engine.runtime import open_read_only_runtime as _open

    try:
        return _open(cfg)
    except AllocbotError as exc:
        fail_on(exc)
