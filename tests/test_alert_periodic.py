"""The alert thread's periodic checks (the schedule watchdog, the daily summary) run on
their own period only: delivering their alert must not run them again. With
``[alerts] rate_limit_secs = 0`` it did, and the daemon sent the watchdog's "no successful
cycle within the schedule" alert in a tight loop (3,115 in ~50 s in an operator trial)."""

from __future__ import annotations

import time
from datetime import datetime

from bot.monitoring.alerts import Alert, AlertKind, RateLimiter, Severity
from bot.monitoring.sender import AlertSender
from tests.monitoring_support import AlertReceiver

WATCHDOG = Alert(AlertKind.NO_RECENT_SUCCESS, Severity.FAILURE,
                 "no successful cycle within the schedule",
                 "a successful cycle was due since 2026-12-02 15:00:00 UTC")


def test_no_rate_limit_sends_the_watchdog_alert_once_a_period_not_in_a_loop():
    checks: list[datetime] = []

    def watchdog(now: datetime) -> list[Alert]:  # overdue at every check, as in the trial
        checks.append(now)
        return [WATCHDOG]

    with AlertReceiver() as receiver:
        # a period of 0.25 s watched for 0.85 s: the bounds below are in periods (three
        # checks, one alert each, and one spare), the loop they catch sends thousands
        sender = AlertSender([receiver.url], RateLimiter(0), timeout_secs=5,
                             periodic=watchdog, period_secs=0.25)
        sender.start()
        try:
            time.sleep(0.85)  # checks due at 0.25, 0.5 and 0.75 s
        finally:
            sender.close(timeout_secs=5)
        received = list(receiver.bodies)
    assert 1 <= len(received) <= 4, f"{len(received)} watchdog alerts in 0.85 s"
    assert len(checks) <= 4, f"the watchdog ran {len(checks)} times in 0.85 s"
    assert all(body["title"] == "allocbot: no successful cycle within the schedule"
               for body in received)
