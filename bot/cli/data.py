"""``allocbot data fetch``: adjusted daily closes from Alpaca into the sample CSV shape."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.cli.startup import config_option, fail_on, load
from bot.errors import AllocbotError, ConfigError

if TYPE_CHECKING:
    from bot.config import Config


def fetch_to_csv(cfg: Config, symbols: tuple[str, ...], start: date, end: date, out: Path) -> int:
    """Download closes for ``symbols`` between ``start`` and ``end``; return the row count."""
    from bot.engine.runtime import build_alpaca_broker
    from brokers.alpaca.broker import fetch_daily_closes

    if not symbols:
        raise ConfigError("--symbols: give at least one symbol")
    if end < start:
        raise ConfigError(f"--end {end} is before --start {start}")
    broker = build_alpaca_broker(cfg)
    frame = fetch_daily_closes(broker, list(symbols), start, end)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index_label="date", date_format="%Y-%m-%d", float_format="%.6f")
    return len(frame)


@click.group()
def data() -> None:
    """Market data commands."""


@data.command("fetch")
@config_option
@click.option("--symbols", required=True, help="Comma-separated symbols, e.g. SPY,TLT,GLD.")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
def data_fetch(config_path: Path, symbols: str, start: Any, end: Any, out: Path) -> None:
    """Download adjusted daily closes from Alpaca into the sample CSV shape."""
    cfg = load(config_path, logs_to_stderr=True)
    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    try:
        rows = fetch_to_csv(cfg, names, start.date(), end.date() if end else date.today(), out)
    except AllocbotError as exc:
        fail_on(exc)
    click.echo(f"wrote {rows} rows x {len(names)} symbols to {out}")
