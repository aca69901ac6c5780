"""Commands on the bot's state: ``check-config``, ``rearm`` and ``state backup``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.cli.startup import config_option, fail, fail_on, load
from bot.errors import AllocbotError, StateError


@click.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the config (and every symbol it names against the universe and the price
    data) and print it resolved (defaults filled in) as JSON."""
    from bot.config import config_as_dict
    from bot.engine.preflight import check_config_references
    from bot.monitoring.settings import check_alert_urls

    cfg = load(config_path, logs_to_stderr=True)
    try:
        check_config_references(cfg)
        check_alert_urls(cfg)  # as the daemon's start refuses them (by position)
    except AllocbotError as exc:
        fail(f"invalid config {config_path}: {exc}")
    click.echo(json.dumps(config_as_dict(cfg), indent=2, default=str))


@click.command()
@config_option
def rearm(config_path: Path) -> None:
    """Re-arm trading after a drawdown halt (resets the equity peak)."""
    import structlog

    from bot.engine.instance_lock import InstanceLock
    from bot.engine.journal import Journal
    from bot.engine.statuses import HALT_KEY, PEAK_KEY

    cfg = load(config_path, logs_to_stderr=True)
    try:
        if not cfg.state_db.exists():  # a mistyped state_dir must not become a new account
            raise StateError(f"state file {cfg.state_db} does not exist: nothing to re-arm "
                             "(is [bot].state_dir the daemon's?)")
        with InstanceLock.acquire(cfg.bot.state_dir, "rearm"):
            journal = Journal(cfg.state_db)
            try:
                reason = journal.meta(HALT_KEY)
                if reason:  # not halted: the peak stays (resetting it loosens the switch)
                    journal.delete_meta(HALT_KEY)
                    journal.delete_meta(PEAK_KEY)
            finally:
                journal.close()
    except AllocbotError as exc:
        fail_on(exc)
    if not reason:
        click.echo("trading is not halted: nothing changed (the equity peak is kept)")
        return
    structlog.get_logger("allocbot.cli").warning("trading_rearmed", previous_halt=reason)
    click.echo(f"trading re-armed (was halted: {reason})")


@click.group("state")
def state() -> None:
    """Operate on the state file (journal and simulated account)."""


@state.command("backup")
@config_option
@click.argument("dest", type=click.Path(path_type=Path, dir_okay=False))
def backup(config_path: Path, dest: Path) -> None:
    """Copy the state file to DEST (a new file) with SQLite's online backup API.

    Safe while the daemon runs: the copy is one consistent snapshot and the live file is
    only read. Restore by stopping the bot and copying DEST over the state file.
    """
    from bot.engine.journal import Journal

    cfg = load(config_path, logs_to_stderr=True)
    try:
        journal = Journal.open_read_only(cfg.state_db)
        try:
            size = journal.backup_to(dest)
        finally:
            journal.close()
    except AllocbotError as exc:
        fail_on(exc)
    import structlog

    structlog.get_logger("allocbot.cli").info("state_backed_up", source=str(cfg.state_db),
                                              dest=str(dest), bytes=size)
    click.echo(f"backed up {cfg.state_db} to {dest} ({size:,} bytes)")
