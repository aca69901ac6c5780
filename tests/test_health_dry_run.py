"""``allocbot health`` after a refusal streak when the operator switches to dry_run: the
probe stays not ok (a dry_run cycle sends nothing, so nothing shows the venue accepts
orders again) and says why, where it gave the bare "orders refused" line with no hint."""

from __future__ import annotations

from pathlib import Path

from bot.config import load_config
from bot.monitoring.health import assess_health
from tests.conftest import json_lines, run_cli_in_process

SCHEDULE = {"schedule": {"interval_secs": 600}}
REFUSING_VENUE = {"faults": {"enabled": True, "reject_rate": 1.0}}  # every submit rejected
DRY_RUN = {"bot": {"mode": "dry_run"}}


def _finished_once(config: Path) -> dict:
    """Run one real cycle (``allocbot once``) and return its ``cycle_finished`` event."""
    once = run_cli_in_process("once", "--config", str(config))
    assert once.returncode == 0, once.stderr
    return next(e for e in json_lines(once.stdout) if e["event"] == "cycle_finished")


def test_health_names_the_dry_run_cycles_since_a_refusal_streak_and_stays_not_ok(
        write_config):
    refusing = write_config({**SCHEDULE, **REFUSING_VENUE}, name="refusing.toml")
    dry = write_config({**SCHEDULE, **DRY_RUN}, name="dry.toml")  # the same state dir
    for _ in range(3):  # [alerts].failure_streak
        finished = _finished_once(refusing)
        assert finished["orders_submitted"] == finished["orders_rejected"] > 0
    refused = "orders refused: every order of the last 3 trading cycles was rejected (latest: "
    before = assess_health(load_config(dry, check_strategy=False)).reason
    assert before.startswith(refused) and "dry_run" not in before, before

    for cycles, since in ((1, "the cycle since was"), (2, "the 2 cycles since were")):
        finished = _finished_once(dry)
        assert finished["mode"] == "dry_run" and finished["orders_planned"] > 0
        assert finished["orders_submitted"] == 0
        health = run_cli_in_process("health", "--config", str(dry))  # the HEALTHCHECK
        assert health.returncode == 1, (cycles, health.stdout)
        assert health.stderr.startswith(refused), health.stderr
        assert health.stderr.rstrip().endswith(
            f"; {since} dry_run and sent no order, so this stands until a paper or live cycle "
            "sends an order the venue does not reject (no daemon running)"), health.stderr

    plain = write_config(SCHEDULE, name="plain.toml")  # paper again, the venue accepts
    assert _finished_once(plain)["orders_filled"] > 0
    health = run_cli_in_process("health", "--config", str(plain))
    assert health.returncode == 0, health.stderr
    assert "rejected" not in health.stdout and "dry_run" not in health.stdout
