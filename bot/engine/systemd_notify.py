"""sd_notify(3) in a few lines: READY/WATCHDOG/STOPPING/STATUS datagrams to systemd.

One datagram per call on an AF_UNIX SOCK_DGRAM socket to ``$NOTIFY_SOCKET`` (a leading
``@`` means the abstract namespace); nothing happens when the variable is unset (not
under systemd, or ``Type=`` other than notify). The watchdog period comes from
``$WATCHDOG_USEC``, and only for the process ``$WATCHDOG_PID`` names: children inherit
the variables but their pings are ignored (``NotifyAccess=main``). A failed send is
logged and never fatal, and a send never blocks longer than ``SEND_TIMEOUT_SECS``.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("allocbot.systemd")
READY = "READY=1"
WATCHDOG = "WATCHDOG=1"
STOPPING = "STOPPING=1"
SEND_TIMEOUT_SECS = 1.0


def notify(*messages: str) -> bool:
    """Send ``messages`` (newline-joined) to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_SECS)  # a stalled reader must never freeze the bot
            sock.connect(address)
            sock.sendall("\n".join(messages).encode())
    except OSError as exc:
        log.warning("systemd_notify_failed", error=str(exc), messages=list(messages))
        return False
    return True


def status(text: str) -> bool:
    """A one-line ``STATUS=`` shown by ``systemctl status``."""
    return notify("STATUS=" + text.replace("\n", " "))


def watchdog_ping_interval_secs() -> float | None:
    """Half of ``WatchdogSec=`` (sd_watchdog_enabled(3)), or None when no watchdog is set
    for this very process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2
