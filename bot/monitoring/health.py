"""Is the bot doing its job? One verdict from the read-only journal and the schedule, for
``allocbot health`` (Docker ``HEALTHCHECK``, systemd timers, a load balancer's probe).

Healthy when the last successful cycle (finished, or skipped because the market was
closed: ``bot.monitoring.outcomes.is_success``; a skip because a guard blocked the plan or
an earlier order is still open traded nothing and is no success) is recent enough for the
schedule:

* cron: it finished at or after the trigger's latest fire time F with F + misfire grace ≤ now
  (the run that should have completed by now);
* interval: it finished within ``interval_secs + misfire_grace_secs`` of now;

and trading is not halted by the drawdown kill switch. A failing streak alone is reported
but not fatal until the schedule's deadline passes (a transient venue outage retries).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import Any

from bot.config import Config, ScheduleSection
from bot.engine.instance_lock import read_lock_holder
from bot.engine.journal import Journal
from bot.engine.statuses import HALT_KEY, CycleStatus
from bot.monitoring.status_report import REARM_COMMAND, CycleRow, cycle_row, last_success_cycle

CYCLES_SCANNED = 500  # the latest cycles, for the failing and skipping streaks
_MAX_LOOKBACK = timedelta(days=800)  # a cron that fires less than every two years: none


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    """``healthy`` and one line saying why (the probe's output)."""

    healthy: bool
    reason: str


def assess_health(cfg: Config, now: datetime | None = None) -> HealthVerdict:
    """The verdict for the bot ``cfg`` describes; reads the journal without writing."""
    now = now or datetime.now(UTC)
    if not cfg.state_db.exists():
        return HealthVerdict(False, f"no cycle yet (no state file {cfg.state_db})")
    journal = Journal.open_read_only(cfg.state_db)
    try:
        halted = journal.meta(HALT_KEY)
        rows = [cycle_row(c) for c in journal.recent_cycles(CYCLES_SCANNED)]
        success = last_success_cycle(journal)
    finally:
        journal.close()
    holder = read_lock_holder(cfg.bot.state_dir)
    daemon = "" if holder is not None and holder.alive else " (no daemon running)"
    if halted:
        return HealthVerdict(False, f"trading halted: {halted}; review, then run "
                                    f"'{REARM_COMMAND}'{daemon}")
    return _verdict(rows, None if success is None else success["finished_at"], cfg.schedule,
                    now, daemon)


def _verdict(rows: list[CycleRow], last_success: str | None, schedule: ScheduleSection,
             now: datetime, daemon: str) -> HealthVerdict:
    if not rows:
        return HealthVerdict(False, f"no cycle yet{daemon}")
    streak = next((i for i, r in enumerate(rows) if r.status != CycleStatus.FAILED), len(rows))
    failing = (f"; last {streak} cycle{'s' if streak > 1 else ''} failed "
               f"(latest: {rows[0].error})" if streak else "") + _skipping(rows)
    if last_success is None:
        return HealthVerdict(False, f"no successful cycle yet{failing}{daemon}")
    finished = datetime.fromisoformat(last_success)
    due = success_due_after(schedule, now)
    if finished < due:
        return HealthVerdict(False, f"last success at {_short(finished)}, expected one since "
                                    f"{_short(due)}{failing}{daemon}")
    return HealthVerdict(True, f"ok: last success at {_short(finished)}{failing}{daemon}")


def _skipping(rows: list[CycleRow]) -> str:
    """``; last N cycles skipped (reasons)`` when the latest cycles are skips that are no
    success (a guard blocked the plan, an order is still open): the bot trades nothing."""
    skips = list(takewhile(lambda r: r.status == CycleStatus.SKIPPED and not r.succeeded, rows))
    if not skips:
        return ""
    reasons = ", ".join(sorted({r.note or "unknown" for r in skips}))
    return f"; last {len(skips)} cycle{'s' if len(skips) > 1 else ''} skipped ({reasons})"


def success_due_after(schedule: ScheduleSection, now: datetime) -> datetime:
    """The time the last success must be at or after for the bot to count as healthy."""
    grace = timedelta(seconds=schedule.misfire_grace_secs)
    if schedule.interval_secs is not None:
        return now - timedelta(seconds=schedule.interval_secs) - grace
    from bot.engine.scheduler import build_trigger

    fire = previous_fire_time(build_trigger(schedule), now - grace)
    return fire if fire is not None else now - _MAX_LOOKBACK


def previous_fire_time(trigger: Any, before: datetime) -> datetime | None:
    """The trigger's latest fire time ≤ ``before`` (APScheduler 3 only looks forward: search
    back in doubling windows, then step forward through the fires in the window)."""
    span = timedelta(hours=1)
    while span <= _MAX_LOOKBACK:
        fire = trigger.get_next_fire_time(None, before - span)
        if fire is not None and fire <= before:
            while True:
                following = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
                if following is None or following > before:
                    return fire
                fire = following
        span *= 2
    return None


def _short(moment: datetime) -> str:
    """UTC, to the second: what an operator compares with the logs."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
