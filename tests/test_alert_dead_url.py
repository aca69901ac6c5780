"""One alert URL that fails must not make the others get every alert: apprise's notify()
over several URLs is False when any one fails, and the sender took that as "not delivered"
(window given back, the alert retried to every URL). With the default hour's window, a
working receiver beside ``json://127.0.0.1:1/dead`` got 9 alerts in 30 s in an operator
trial. Each URL now has its own result: one that got the alert is not sent it again, the
rate limit holds for it, and only the failed URL is retried."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from bot.monitoring.alerts import Alert, AlertKind, RateLimiter, Severity
from bot.monitoring.sender import AlertSender
from tests.monitoring_support import AlertReceiver, flaky_receiver

HALTED = Alert(AlertKind.TRADING_HALTED, Severity.FAILURE, "trading halted",
               "reason: drawdown 21% over max_drawdown 20%")
BLOCKED = Alert(AlertKind.GUARD_BLOCKED, Severity.WARNING, "orders blocked by a guard",
                "guard: max_orders_per_cycle")


def _wait(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def _dead_url() -> Iterator[str]:
    """A loopback port bound but not listening: every connection is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"json://127.0.0.1:{sock.getsockname()[1]}/dead"
    finally:
        sock.close()




def _outcomes(sender: AlertSender) -> list[str]:
    return [r.outcome for r in sender.recent]


def test_a_dead_url_leaves_the_rate_limit_of_the_working_one_whole():
    windows: list[tuple[str, datetime]] = []
    with AlertReceiver() as good, _dead_url() as dead:
        # retry delays and the quiet wait after them half the 0.5/0.3/0.5 s they were: what
        # is checked is which URL gets what, in order, not how long the delays are
        sender = AlertSender([good.url, dead], RateLimiter(3600), timeout_secs=5,
                             retry_delays_secs=(0.25, 0.15),
                             delivered=lambda kind, at: windows.append((kind, at)))
        sender.start()
        try:
            sender.offer(HALTED)
            _wait(lambda: len(sender.recent) >= 1)
            for _ in range(5):  # the same kind again within the hour: rate limited
                sender.offer(HALTED)
            _wait(lambda: len(_outcomes(sender)) >= 4)  # the dead URL's two retries
            time.sleep(0.25)  # nothing more is due
        finally:
            sender.close(timeout_secs=10)
        received = list(good.bodies)
    assert len(received) == 1, f"the working URL got {len(received)} alerts"
    assert received[0]["title"] == "allocbot: trading halted"
    assert _outcomes(sender) == ["sent; failed at URL 2 of 2", "rate_limited",
                                 "failed at URL 2 of 2", "failed at URL 2 of 2"]
    assert sender.recent[1].count == 5
    assert [kind for kind, _ in windows] == ["trading_halted"]  # kept for the next start


def test_only_the_url_that_failed_is_sent_the_alert_again():
    with AlertReceiver() as good, flaky_receiver(failures=1) as (flaky, accepted):
        sender = AlertSender([good.url, flaky], RateLimiter(3600), timeout_secs=5,
                             retry_delays_secs=(0.1,))
        sender.start()
        try:
            sender.offer(BLOCKED)
            _wait(lambda: len(accepted) == 1 and len(sender.recent) == 2)
            time.sleep(0.2)  # nothing more is due (twice the retry delay)
        finally:
            sender.close(timeout_secs=10)
        received = list(good.bodies)
    assert len(received) == 1, f"the working URL got {len(received)} alerts"
    assert accepted[0]["title"] == "allocbot: orders blocked by a guard"
    assert _outcomes(sender) == ["sent; failed at URL 2 of 2", "sent to URL 2 of 2"]
