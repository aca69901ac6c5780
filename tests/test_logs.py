"""Logging: JSON lines, UTC timestamps, secrets redacted everywhere a line can come from."""

from __future__ import annotations

import io
import json
import logging

import structlog

from bot.logs import configure_logging

KEY_ID = "PKTESTKEYID123456"
SECRET = "sEcReT/abcdefghijklmnop"


def _configured(monkeypatch) -> io.StringIO:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    return stream


def test_logs_secret_values_are_redacted_in_structlog_events(monkeypatch):
    stream = _configured(monkeypatch)
    structlog.get_logger("t").info("request_sent", url=f"https://x/?k={KEY_ID}",
                                   headers={"APCA-API-SECRET-KEY": SECRET}, note=[SECRET])
    text = stream.getvalue()
    assert KEY_ID not in text and SECRET not in text
    event = json.loads(text.splitlines()[-1])
    assert event["event"] == "request_sent"
    assert event["timestamp"].endswith("Z")
    assert event["level"] == "info"


def test_logs_secret_values_are_redacted_in_stdlib_and_tracebacks(monkeypatch):
    stream = _configured(monkeypatch)
    logging.getLogger("apscheduler.scheduler").error("job failed with key %s", KEY_ID)
    try:
        api_key = SECRET  # noqa: F841 — a local that dict_tracebacks would have leaked
        raise RuntimeError(f"401 for key {KEY_ID}")
    except RuntimeError:
        structlog.get_logger("t").exception("cycle_crashed")
    text = stream.getvalue()
    assert KEY_ID not in text and SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["logger"] == "apscheduler.scheduler"
    assert "Traceback" in lines[-1]["exception"]


def test_logs_fields_named_like_secrets_are_masked(monkeypatch):
    stream = _configured(monkeypatch)
    structlog.get_logger("t").info("x", api_key="whatever-value", password="hunter22")
    event = json.loads(stream.getvalue().splitlines()[-1])
    assert event["api_key"] == "***" and event["password"] == "***"
