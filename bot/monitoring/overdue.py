"""The schedule rule for "no successful cycle within the schedule": the latest fire time
whose misfire grace has passed must have a successful cycle at or after it.

Pure: the trigger, the times and the last success in, a reason (or None) out. The alert
watchdog uses it; ``allocbot health`` should apply the same rule.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

_CRON_SEARCH_HOURS = (1, 48, 216, 960)  # widening windows to find a cron's previous fire time


def previous_fire_time(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The trigger's last fire time at or before ``now`` (None when none within 40 days)."""
    if isinstance(trigger, IntervalTrigger):
        return now - trigger.interval
    for hours in _CRON_SEARCH_HOURS:
        fire = trigger.get_next_fire_time(None, now - timedelta(hours=hours))
        last = None
        while fire is not None and fire <= now:  # bounded: the window holds finitely many
            last = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if last is not None:
            return last
    return None


def success_overdue(trigger: BaseTrigger, grace_secs: float, now: datetime,
                    watching_since: datetime, last_success_at: datetime | None) -> str | None:
    """Why the last success is too old for the schedule, or None when it is recent enough.

    A fire time counts once its grace has passed and only if it came after
    ``watching_since`` (the daemon's start: a stopped daemon is not overdue for its past).
    """
    due = previous_fire_time(trigger, now - timedelta(seconds=grace_secs))
    if due is None or due < watching_since:
        return None
    if last_success_at is None:
        return f"no successful cycle yet; one was due at {due.isoformat(timespec='seconds')}"
    if last_success_at < due:
        return (f"last successful cycle at {last_success_at.isoformat(timespec='seconds')}; "
                f"one was due at {due.isoformat(timespec='seconds')} "
                f"(+{grace_secs:g} s grace)")
    return None
