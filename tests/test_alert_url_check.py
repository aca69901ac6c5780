"""An alert URL apprise cannot parse is refused where the config is checked: by
``allocbot check-config`` and at the daemon's start (exit 2, naming the key and the URL's
position, never the URL: it may hold a token). It used to pass both silently and show up
only as ``alert_url_invalid`` when the first alert was sent, possibly months later."""

from __future__ import annotations

import json

from tests.conftest import json_lines, run_cli

TOKEN = "SECRETTOKENabcdef123456"
GOOD = "json://127.0.0.1:9/hook"
TYPO = f"json//127.0.0.1:9/{TOKEN}"  # the colon forgotten: apprise logs it whole


def _error(stderr: str) -> str:
    (line,) = stderr.strip().splitlines()  # one line, the startup_failed event (no terminal)
    event = json.loads(line)
    assert event["event"] == "startup_failed" and event["exit_code"] == 2
    return str(event["error"])


def test_check_config_fails_naming_the_key_and_position_of_an_unparseable_url(write_config):
    path = write_config({"alerts": {"urls": [GOOD, TYPO]}})
    proc = run_cli("check-config", "--config", str(path))
    assert proc.returncode == 2
    error = _error(proc.stderr)
    assert "[alerts].urls" in error and "URL 2 of 2" in error
    assert TOKEN not in proc.stdout + proc.stderr


def test_check_config_names_the_environment_variable_when_its_urls_are_in_force(write_config):
    path = write_config({"alerts": {"urls": [GOOD]}})  # the environment's win
    proc = run_cli("check-config", "--config", str(path),
                   env={"ALLOCBOT_ALERT_URLS": f"notaurl-{TOKEN} {GOOD}"})
    assert proc.returncode == 2
    error = _error(proc.stderr)
    assert "ALLOCBOT_ALERT_URLS" in error and "URL 1 of 2" in error
    assert TOKEN not in proc.stdout + proc.stderr


def test_daemon_refuses_to_start_with_an_unparseable_alert_url(write_config):
    path = write_config({"alerts": {"urls": [GOOD, TYPO]}})
    proc = run_cli("run", "--config", str(path), "--max-cycles", "1", timeout=60)
    assert proc.returncode == 2
    error = _error(proc.stderr)
    assert "[alerts].urls" in error and "URL 2 of 2" in error
    events = json_lines(proc.stdout)
    assert [(e["event"], e["position"], e["count"]) for e in events
            if e["event"] == "alert_url_invalid"] == [("alert_url_invalid", 2, 2)]
    assert not any(e["event"] in ("daemon_started", "cycle_started") for e in events)
    assert TOKEN not in proc.stdout + proc.stderr
