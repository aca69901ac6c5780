"""An APScheduler 3.x trigger that fires at an offset from each NYSE session's open or
close (``[schedule] at = "close-15min"``), from the XNYS calendar: early closes move the
fire time with the close (13:00 → 12:45), holidays have no session and so no fire.

A cron of ``45 15 * * mon-fri`` fires after a 13:00 early close and on holidays; this
does not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from apscheduler.triggers.base import BaseTrigger

from bot.config import SESSION_OFFSET_PATTERN
from brokers.base import EXCHANGE_TZ
from brokers.calendar import xnys_sessions

Anchor = Literal["open", "close"]
_LOOKAHEAD = timedelta(days=30)  # a table covering start..start+30 d holds the next session
_UNIT = {"min": timedelta(minutes=1), "h": timedelta(hours=1)}


class SessionTrigger(BaseTrigger):
    """Fires at session ``anchor`` (open or close) + ``offset`` on every NYSE session."""

    def __init__(self, anchor: Anchor, offset: timedelta) -> None:
        self.anchor: Anchor = anchor
        self.offset = offset

    @classmethod
    def parse(cls, text: str) -> SessionTrigger:
        """``"close-15min"``, ``"open+30min"``, ``"open+1h"`` or a bare ``"close"``."""
        match = SESSION_OFFSET_PATTERN.match(text.strip())
        if match is None:
            raise ValueError(f"schedule at {text!r}: expected e.g. 'close-15min' or 'open+30min'")
        anchor, sign, amount, unit = match.groups()
        offset = timedelta(0) if amount is None else int(amount) * _UNIT[unit]
        return cls("open" if anchor == "open" else "close", -offset if sign == "-" else offset)

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        """The first session's anchor + offset at or after ``now`` (strictly after the
        previous fire time), in New York time."""
        start = now
        if previous_fire_time is not None:
            start = max(now, previous_fire_time + timedelta(microseconds=1))
        first = start.astimezone(EXCHANGE_TZ).date() - timedelta(days=1)
        # the table covers at least first..first + 30 days: the next session is in it
        table = xnys_sessions(first, first + _LOOKAHEAD)
        times = table.closes if self.anchor == "close" else table.opens
        i = table.next_event_index(start - self.offset, closes=self.anchor == "close")
        return (times[i] + self.offset).astimezone(EXCHANGE_TZ) if i < len(times) else None

    def __str__(self) -> str:
        minutes = int(self.offset.total_seconds() // 60)
        return f"session[{self.anchor}{minutes:+d}min]" if minutes else f"session[{self.anchor}]"

    def __repr__(self) -> str:
        return f"<SessionTrigger (anchor={self.anchor!r}, offset={self.offset!r}, calendar='XNYS')>"
