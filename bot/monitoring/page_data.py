"""The figures the status page shows, gathered from the journal (read-only), the config and
the alert sender's recent list. Pure apart from the journal read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.config import Config
from bot.monitoring.journal_view import CycleRow, JournalView, read_journal
from bot.monitoring.observed import SUCCESS_STATUSES
from bot.monitoring.sender import AlertRecord

LAST_CYCLES_SHOWN = 12


@dataclass(frozen=True, slots=True)
class HoldingRow:
    """Weights as fractions of equity, as the last cycle saw them before its orders."""

    symbol: str
    weight: float
    target: float

    @property
    def drift(self) -> float:
        return self.weight - self.target


@dataclass(frozen=True, slots=True)
class PageData:
    mode: str
    strategy: str
    broker: str
    generated_at: datetime
    journal_found: bool
    halt_reason: str | None
    equity: float | None
    cash: float | None
    drawdown: float | None
    max_drawdown: float | None
    var: float | None
    var_limit: float | None
    max_drift: float | None
    last_success_at: str | None
    curve: tuple[tuple[str, float], ...]  # (as of, equity), oldest first
    holdings: tuple[HoldingRow, ...]
    cycles: tuple[CycleRow, ...]  # newest first
    alerts: tuple[AlertRecord, ...]  # newest first


def _number(row: CycleRow | None, key: str) -> float | None:
    value = row.summary.get(key) if row is not None else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _curve(view: JournalView) -> tuple[tuple[str, float], ...]:
    points = []
    for row in reversed(view.cycles):
        equity = _number(row, "equity_after")
        if equity is not None:
            points.append((row.asof or row.started_at[:10], equity))
    return tuple(points)


def _holdings(row: CycleRow | None) -> tuple[HoldingRow, ...]:
    if row is None:
        return ()
    weights = row.summary.get("weights_before", {})
    targets = row.summary.get("targets", {})
    symbols = sorted(set(weights) | set(targets))
    return tuple(HoldingRow(s, float(weights.get(s, 0.0)), float(targets.get(s, 0.0)))
                 for s in symbols)


def gather_page_data(cfg: Config, alerts: Sequence[AlertRecord],
                     db_path: Path | None = None) -> PageData:
    """Everything the page shows, read now (the journal is opened read-only per call)."""
    view = read_journal(db_path or cfg.state_db)
    empty = JournalView((), None, None)
    v = view or empty
    last = v.last_with("equity_after")
    success = next((c for c in v.cycles if c.status in SUCCESS_STATUSES), None)
    return PageData(
        mode=cfg.bot.mode, strategy=cfg.strategy.name, broker=cfg.broker.kind,
        generated_at=datetime.now(UTC), journal_found=view is not None,
        halt_reason=v.halt_reason,
        equity=_number(last, "equity_after"), cash=_number(last, "cash_after"),
        drawdown=_number(last, "drawdown"), max_drawdown=cfg.risk.max_drawdown,
        var=_number(last, "var"), var_limit=cfg.risk.max_var,
        max_drift=_number(last, "max_drift"),
        last_success_at=success.finished_at if success else None,
        curve=_curve(v), holdings=_holdings(v.last_with("targets")),
        cycles=v.cycles[:LAST_CYCLES_SHOWN], alerts=tuple(reversed(alerts)),
    )
