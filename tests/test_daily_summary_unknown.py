"""The daily summary before any cycle has valued the account: "n/a" for what is not known,
never "nan", and no NaN kept in ``alert_windows.json`` (it made the next day's P&L nan)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import load_config
from bot.monitoring.alert_windows import WINDOWS_FILE
from bot.monitoring.service import start_monitoring
from tests.conftest import _process_state_restored

AFTER = datetime(2026, 3, 2, 21, 45, tzinfo=UTC)  # 16:45 New York, after daily_summary_at
ALERTS = {"daily_summary_at": "16:30", "watchdog": False, "urls": ["json://127.0.0.1:9/unused"]}


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in {WINDOWS_FILE}")

    return json.loads(text, parse_constant=refuse)


def _summaries(cfg: Any, days: list[tuple[datetime, float | None]]) -> list[str]:
    """The summary's body on each day, a (re)start of monitoring each time (the daemon's
    own wiring), with the account's equity then (None: no cycle has valued it)."""
    bodies = []
    with _process_state_restored():
        for when, equity in days:
            monitor = start_monitoring(cfg, io.StringIO())
            assert monitor is not None
            if equity is not None:
                monitor.state.absorb({"equity_after": equity, "drawdown": 0.0, "var": 0.01,
                                      "max_drift": 0.02})
            (summary,) = monitor.periodic_alerts(when)
            bodies.append(summary.body)
            monitor.close()
    return bodies


def test_summary_before_any_cycle_says_n_a_and_keeps_no_nan(write_config):
    cfg = load_config(write_config({"alerts": ALERTS}))
    first, second, third = _summaries(cfg, [(AFTER, None), (AFTER + timedelta(days=1), 1000.0),
                                            (AFTER + timedelta(days=2), 1100.0)])
    assert "nan" not in first.lower()
    assert first.splitlines() == ["equity: n/a (no cycle has valued the account yet)",
                                  "P&L: n/a", "drawdown: n/a", "max drift: n/a",
                                  "VaR: n/a vs limit 5.00%"]
    assert "nan" not in second.lower()
    assert second.splitlines()[:2] == ["equity: 1,000.00",
                                       "P&L: n/a (the last summary had no equity)"]
    assert third.splitlines()[1] == "P&L: +100.00 since the last summary"
    kept = _strict_json((cfg.bot.state_dir / WINDOWS_FILE).read_text(encoding="utf-8"))
    assert kept["daily_summary_sent"]["equity"] == 1100.0


def test_a_nan_kept_by_an_earlier_version_does_not_make_the_pnl_nan(write_config):
    cfg = load_config(write_config({"alerts": ALERTS}))
    cfg.bot.state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.bot.state_dir / WINDOWS_FILE).write_text(
        '{"daily_summary_sent": {"day": "2026-03-01", "equity": NaN, "net_transfers": 0.0}}\n',
        encoding="utf-8")
    (body,) = _summaries(cfg, [(AFTER, 1000.0)])
    assert "nan" not in body.lower()
    assert body.splitlines()[:2] == ["equity: 1,000.00", "P&L: n/a (the last summary had no equity)"]
    _strict_json((cfg.bot.state_dir / WINDOWS_FILE).read_text(encoding="utf-8"))
