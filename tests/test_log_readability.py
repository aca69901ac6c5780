"""Logs a person can read, and every event name documented in README's Events table."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import structlog

from bot.logs import configure_logging
from tests.conftest import REPO, run_cli

EMIT_PATTERN = re.compile(r'\.(?:debug|info|warning|error|exception|critical)\(\s*"([a-z][a-z0-9_]*)"')
ROW_PATTERN = re.compile(r"^\| `([a-z][a-z0-9_]*)` \|", re.M)


def emitted_event_names() -> set[str]:
    """Every ``log.<level>("name"`` in the shipped code (bot/, brokers/, strategies/)."""
    names: set[str] = set()
    for root in ("bot", "brokers", "strategies"):
        for path in (REPO / root).rglob("*.py"):
            names.update(EMIT_PATTERN.findall(path.read_text(encoding="utf-8")))
    return names


def documented_event_names() -> set[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Events\n", 1)[1].split("\n## ", 1)[0]
    return set(ROW_PATTERN.findall(section))


def test_events_every_emitted_name_is_documented_in_readme():
    emitted = emitted_event_names()
    assert {"cycle_crashed", "startup_failed", "orders_still_open", "cycle_finished"} <= emitted
    undocumented = sorted(emitted - documented_event_names())
    assert not undocumented, f"add a row to README 'Events' for: {undocumented}"


def test_events_table_lists_no_event_the_code_never_emits():
    stale = sorted(documented_event_names() - emitted_event_names())
    assert not stale, f"README 'Events' documents events nothing emits: {stale}"


def _render(log_format: str, **fields: object) -> str:
    stream = io.StringIO()
    configure_logging(log_format, "info", stream)  # type: ignore[arg-type]
    structlog.get_logger("t").info("order_filled", **fields)
    return stream.getvalue()


def test_logs_floats_rounded_money_to_cents_qty_to_9_decimals_ratios_to_6_digits():
    line = json.loads(_render("json", filled_avg_price=132.58861241999998,
                              var=0.006123456789123456, filled_qty=226.1234567891234,
                              cash_weight=0.000123456789,
                              orders=[{"notional": 1234.5678, "qty": 1.5}]))
    assert line["filled_avg_price"] == 132.59
    assert line["var"] == 0.00612346
    assert line["filled_qty"] == 226.123456789
    assert line["cash_weight"] == 0.000123457, "a weight named cash is not money"
    assert line["orders"] == [{"notional": 1234.57, "qty": 1.5}]


def test_logs_console_renders_numpy_numbers_as_plain_numbers():
    text = _render("console", commission=np.float64(0.0), count=np.int64(3),
                   weights={"SPY": np.float64(0.30000000001)})
    assert "np.float64" not in text and "np.int64" not in text
    assert "commission=0.0" in text and "count=3" in text and "'SPY': 0.3" in text


def test_startup_error_is_one_line_naming_the_key(write_config):
    path = write_config({"rebalance": {"drift_rel": -1.0}})
    proc = run_cli("once", "--config", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])  # not a terminal: the startup_failed event itself
    assert event["event"] == "startup_failed" and "[rebalance].drift_rel" in event["error"]
