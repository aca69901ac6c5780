"""Is the bot doing its job? One verdict from the read-only journal and the schedule, for
``allocbot health`` (Docker ``HEALTHCHECK``, systemd timers, a load balancer's probe).

Healthy when the last successful cycle (finished, or skipped because the market was
closed: ``bot.monitoring.outcomes.is_success``; a skip because a guard blocked the plan or
an earlier order is still open traded nothing and is no success) is recent enough for the
schedule:

* cron: it finished at or after the trigger's latest fire time F with F + misfire grace ≤ now
  (the run that should have completed by now);
* interval: it finished within ``interval_secs + misfire_grace_secs`` of now;

and trading is not halted by the drawdown kill switch, and the venue is not refusing every
order: the latest ``[alerts].failure_streak`` cycles that sent orders had every one of them
rejected (a restricted account, no buying power, a symbol no longer tradable). Such a cycle
finishes, so it counts as a success, yet the bot trades nothing. Cycles that sent no order
(nothing drifted, a skip, a failure, a ``dry_run`` cycle) are passed over; one with a fill
or a partial fill, or an order that was not rejected, ends the streak. The verdict names
the dry_run cycles since the streak: an operator who switched to dry_run to investigate
sees why the probe still fails (nothing has shown the venue accepts orders again).

A failing streak alone is reported but not fatal until the schedule's deadline passes (a
transient venue outage retries); so is a refusal streak shorter than ``failure_streak``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import Any

from bot.config import Config, ScheduleSection
from bot.engine.instance_lock import read_lock_holder
from bot.engine.journal import Journal
from bot.engine.statuses import HALT_KEY, CycleStatus, IntentStatus
from bot.monitoring.status_report import REARM_COMMAND, CycleRow, cycle_row, last_success_cycle

DRY_RUN = "dry_run"  # a cycle's summary "mode" when its orders were planned, none sent
CYCLES_SCANNED = 500  # the latest cycles, for the failing, skipping and refused streaks
_REASON_CHARS = 160  # a venue's rejection reason as quoted (the verdict is one line)
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
        cycles = journal.recent_cycles(CYCLES_SCANNED)
        rows = [cycle_row(c) for c in cycles]
        success = last_success_cycle(journal)
        refused = _refused(journal, cycles, cfg.alerts.failure_streak)
    finally:
        journal.close()
    holder = read_lock_holder(cfg.bot.state_dir)
    daemon = "" if holder is not None and holder.alive else " (no daemon running)"
    if halted:
        return HealthVerdict(False, f"trading halted: {halted}; review, then run "
                                    f"'{REARM_COMMAND}'{daemon}")
    return _verdict(rows, None if success is None else success["finished_at"], cfg.schedule,
                    now, daemon, refused)


@dataclass(frozen=True, slots=True)
class _Refused:
    """The latest cycles that sent orders and had every one rejected, in a row: how many,
    and what the text says of them (empty when none)."""

    cycles: int
    fatal: bool  # at least ``[alerts].failure_streak`` of them
    text: str


def _refused(journal: Journal, cycles: list[dict[str, Any]], needed: int) -> _Refused:
    """The refusal streak of ``cycles`` (newest first, as ``recent_cycles`` gives them),
    with the newest refused cycle's last rejection reason the journal holds, and the
    dry_run cycles since it (they send nothing, so they neither end nor extend it)."""
    count, newest, dry_since = 0, None, 0
    for cycle in cycles:
        figures = cycle["summary"]
        submitted = figures.get("orders_submitted") or 0
        if submitted <= 0:  # nothing sent: says nothing about the venue
            if newest is None and figures.get("mode") == DRY_RUN:
                dry_since += 1
            continue
        if ((figures.get("orders_rejected") or 0) < submitted or figures.get("orders_filled")
                or figures.get("orders_partially_filled")):
            break
        count += 1
        newest = newest or cycle["cycle_id"]
    if newest is None:
        return _Refused(0, False, "")
    which = "the last trading cycle" if count == 1 else f"the last {count} trading cycles"
    text = f"every order of {which} was rejected{_latest_rejection(journal, newest)}"
    return _Refused(count, count >= needed, text + _dry_run_since(dry_since))


def _latest_rejection(journal: Journal, cycle_id: str) -> str:
    """`` (latest: SYMBOL side: reason)``: the cycle's last rejection the journal holds."""
    rejected = journal.intents(cycle_id=cycle_id, statuses=[IntentStatus.REJECTED])
    latest = next((i for i in reversed(rejected) if i.reason), rejected[-1] if rejected else None)
    if latest is None:
        return ""
    reason = " ".join((latest.reason or "no reason given").split())
    if len(reason) > _REASON_CHARS:
        reason = reason[:_REASON_CHARS - 1] + "…"
    return f" (latest: {latest.symbol} {latest.side.value}: {reason})"


def _dry_run_since(cycles: int) -> str:
    """Why the refusal still stands when the cycles since it were dry_run (an operator who
    switched to dry_run to investigate): they sent nothing, so nothing has shown the venue
    accepts orders again."""
    if not cycles:
        return ""
    since = "the cycle since was" if cycles == 1 else f"the {cycles} cycles since were"
    return (f"; {since} dry_run and sent no order, so this stands until a paper or live "
            "cycle sends an order the venue does not reject")


def _verdict(rows: list[CycleRow], last_success: str | None, schedule: ScheduleSection,
             now: datetime, daemon: str, refused: _Refused) -> HealthVerdict:
    if not rows:
        return HealthVerdict(False, f"no cycle yet{daemon}")
    streak = next((i for i, r in enumerate(rows) if r.status != CycleStatus.FAILED), len(rows))
    failing = (f"; last {streak} cycle{'s' if streak > 1 else ''} failed "
               f"(latest: {rows[0].error})" if streak else "") + _skipping(rows)
    # what else is wrong, said after the verdict's own reason
    trouble = failing + (f"; {refused.text}" if refused.cycles else "")
    if last_success is None:
        return HealthVerdict(False, f"no successful cycle yet{trouble}{daemon}")
    finished = datetime.fromisoformat(last_success)
    due = success_due_after(schedule, now)
    if finished < due:
        return HealthVerdict(False, f"last success at {_short(finished)}, expected one since "
                                    f"{_short(due)}{trouble}{daemon}")
    # a refused cycle finished (a success, so recent enough), yet traded nothing
    if refused.fatal:
        return HealthVerdict(False, f"orders refused: {refused.text}{failing}{daemon}")
    return HealthVerdict(True, f"ok: last success at {_short(finished)}{trouble}{daemon}")


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
