"""``allocbot data fetch``: adjusted daily closes from Alpaca into the sample CSV shape."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from bot.config import Config
from bot.errors import ConfigError
from bot.runtime import build_alpaca_broker


def fetch_to_csv(cfg: Config, symbols: tuple[str, ...], start: date, end: date, out: Path) -> int:
    """Download closes for ``symbols`` between ``start`` and ``end``; return the row count."""
    from brokers.alpaca import fetch_daily_closes

    if not symbols:
        raise ConfigError("--symbols: give at least one symbol")
    if end < start:
        raise ConfigError(f"--end {end} is before --start {start}")
    broker = build_alpaca_broker(cfg)
    frame = fetch_daily_closes(broker, list(symbols), start, end)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index_label="date", date_format="%Y-%m-%d", float_format="%.6f")
    return len(frame)
