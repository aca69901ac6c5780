"""When a strategy recomputes its targets (pure): the signal schedule.

The frequency at which a strategy *recomputes* its targets and the frequency at which the
bot *checks drift* are different things: momentum recomputed every day under daily drift
checks turns over ~11× a year, monthly ~2.5× (issue measurements on the sample market).
Between two signal days the cycle keeps the last signal's weights (from the journal) and
still applies the risk step and the drift bands on every wake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

SignalFrequency = Literal["daily", "weekly", "monthly", "quarterly"]
SIGNAL_FREQUENCIES: tuple[str, ...] = ("daily", "weekly", "monthly", "quarterly")


@dataclass(frozen=True, slots=True)
class SignalSchedule:
    """A calendar frequency, or every N sessions (exactly one)."""

    frequency: SignalFrequency | None = "daily"
    every_sessions: int | None = None

    def __post_init__(self) -> None:
        if (self.frequency is None) == (self.every_sessions is None):
            raise ValueError("signal schedule: give exactly one of frequency or every_sessions")
        if self.frequency is not None and self.frequency not in SIGNAL_FREQUENCIES:
            raise ValueError(f"signal frequency must be one of {SIGNAL_FREQUENCIES}, "
                             f"got {self.frequency!r}")
        if self.every_sessions is not None and self.every_sessions < 1:
            raise ValueError(f"every_sessions must be ≥ 1, got {self.every_sessions}")

    def describe(self) -> str:
        return self.frequency or f"every {self.every_sessions} sessions"


def _period(day: date, frequency: SignalFrequency) -> tuple[int, int]:
    if frequency == "weekly":
        iso = day.isocalendar()
        return iso.year, iso.week
    if frequency == "monthly":
        return day.year, day.month
    if frequency == "quarterly":
        return day.year, (day.month - 1) // 3
    return day.year, day.toordinal()


def is_signal_day(asof: date, last_signal: date | None, schedule: SignalSchedule,
                  sessions_since_last: int) -> bool:
    """True when the strategy must recompute on ``asof``: no signal yet; the first session
    of a new week/month/quarter (as bt's ``RunMonthly``: the first day the bot runs in the
    new period); or ``every_sessions`` sessions after the last signal
    (``sessions_since_last`` counts the sessions in (last_signal, asof]). A second cycle on
    the signal day itself reuses that day's targets."""
    if last_signal is None:
        return True
    if asof <= last_signal:
        return False
    if schedule.every_sessions is not None:
        return sessions_since_last >= schedule.every_sessions
    assert schedule.frequency is not None
    return _period(asof, schedule.frequency) != _period(last_signal, schedule.frequency)


EVERY_DAY = SignalSchedule("daily")  # recompute on every cycle (static strategies, tests)
