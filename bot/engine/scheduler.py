"""The daemon: APScheduler 3.x ``BlockingScheduler`` waking the cycle on its schedule.

Explicit exchange time zone, a real misfire grace (APScheduler's default is 1 s), one
instance at a time, missed and failed runs logged as our own events. SIGTERM, SIGINT and
SIGHUP (the terminal or SSH session closed) let the running cycle finish, then the
scheduler stops and the process exits 0; a SIGHUP ignored from the start (``nohup``) stays
ignored.

Under systemd (``Type=notify``) it reports READY once the scheduler runs, STOPPING on the
way out, and pings the watchdog from a scheduler job (its own executor thread, so a long
cycle does not delay it) only while the schedule is kept: no cycle overdue beyond the
misfire grace, none running longer than ``CYCLE_STALL_SECS``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import ScheduleSection
from bot.engine import systemd_notify

log = structlog.get_logger("allocbot.scheduler")
JOB_ID = "rebalance_cycle"
WATCHDOG_JOB_ID = "systemd_watchdog"
CYCLE_STALL_SECS = 900.0  # a cycle running longer than this is stuck: stop the watchdog pings
# The signals that stop the daemon gracefully. SIGHUP's default action killed it mid-cycle
# (exit 129: the cycle left `running`, an order working, no line said why) when the
# terminal or SSH session it ran in closed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def schedule_kept(now: datetime, next_run: datetime | None, running_secs: float | None,
                  grace_secs: float, stall_secs: float = CYCLE_STALL_SECS) -> bool:
    """Whether the watchdog may be pinged: the running cycle (if any) is not stuck, and
    with none running the next wake is not overdue beyond the misfire grace."""
    if running_secs is not None:
        return running_secs <= stall_secs
    return next_run is None or now - next_run <= timedelta(seconds=grace_secs)


def build_trigger(schedule: ScheduleSection) -> BaseTrigger:
    """Cron fields are minute hour day month day_of_week (names only), in ``timezone``;
    ``at`` is an offset from each NYSE session's open or close (``SessionTrigger``)."""
    tz = ZoneInfo(schedule.timezone)
    if schedule.at is not None:
        from bot.engine.session_trigger import SessionTrigger

        return SessionTrigger.parse(schedule.at)
    if schedule.cron is not None:
        minute, hour, day, month, dow = schedule.cron.split()
        return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=dow.lower(), timezone=tz)
    assert schedule.interval_secs is not None
    return IntervalTrigger(seconds=schedule.interval_secs, timezone=tz)


class Daemon:
    """Runs ``wake`` on the schedule until stopped or ``max_cycles`` wakes have run."""

    def __init__(self, schedule: ScheduleSection, wake: Callable[[], Any],
                 max_cycles: int | None = None) -> None:
        self._schedule = schedule
        self._wake = wake
        self._max_cycles = max_cycles
        self._wakes = 0
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._notify_lock = threading.Lock()  # no WATCHDOG=1 may follow STOPPING=1
        self._stopper: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._watchdog_executor = ThreadPoolExecutor(max_workers=1)
        self._running_since: float | None = None  # monotonic start of the running cycle
        self._scheduler = BlockingScheduler(
            timezone=ZoneInfo(schedule.timezone),
            executors={"default": self._executor, "watchdog": self._watchdog_executor},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": schedule.misfire_grace_secs},
        )
        self._scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        self._scheduler.add_listener(self._on_overlap, EVENT_JOB_MAX_INSTANCES)
        self._scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)

    @property
    def wakes(self) -> int:
        return self._wakes

    def _job(self) -> None:
        if self._stopping.is_set():
            return
        self._running_since = time.monotonic()
        try:
            self._wake()
        finally:
            self._running_since = None
            with self._count_lock:
                self._wakes += 1
                done = self._max_cycles is not None and self._wakes >= self._max_cycles
            if done:
                log.info("daemon_stopping", reason="max_cycles", cycles=self._wakes,
                         note=f"--max-cycles {self._max_cycles} reached")
                self.stop(wait=False)

    def finish(self, reason: str, note: str) -> None:
        """Stop after the current wake (called from inside it): the work is done."""
        log.info("daemon_stopping", reason=reason, cycles=self._wakes + 1,  # (this one too)
                 note=note)
        self.stop(wait=False)

    def _on_started(self, event: SchedulerEvent) -> None:
        systemd_notify.notify(systemd_notify.READY, "STATUS=scheduler running")

    def _ping_watchdog(self) -> None:
        with self._notify_lock:  # a ping racing stop() must not land after STOPPING=1
            if self._stopping.is_set():
                return
            job = self._scheduler.get_job(JOB_ID)
            since = self._running_since
            running = None if since is None else time.monotonic() - since
            now = datetime.now(ZoneInfo(self._schedule.timezone))
            kept = schedule_kept(now, job.next_run_time if job else None, running,
                                 self._schedule.misfire_grace_secs)
            if kept:
                systemd_notify.notify(systemd_notify.WATCHDOG)
        if not kept:
            log.error("watchdog_withheld", running_secs=running,
                      next_run=job.next_run_time.isoformat() if job and job.next_run_time else None,
                      note="the schedule is not kept; systemd will restart the daemon")

    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("cycle_missed", scheduled_for=event.scheduled_run_time.isoformat(),
                        misfire_grace_secs=self._schedule.misfire_grace_secs)
        else:
            log.error("cycle_job_failed", error=repr(event.exception),
                      scheduled_for=event.scheduled_run_time.isoformat())

    def _on_overlap(self, event: JobSubmissionEvent) -> None:
        """A wake came while the previous cycle still ran: it is skipped (one cycle at a
        time), said in the bot's own event instead of APScheduler's sentence."""
        if event.job_id != JOB_ID:
            return
        log.warning("cycle_overlapped",
                    scheduled_for=[t.isoformat() for t in event.scheduled_run_times],
                    running_secs=(None if (since := self._running_since) is None
                                  else round(time.monotonic() - since, 3)),
                    note="the previous cycle is still running: this wake is skipped")

    def stop(self, wait: bool = True) -> None:
        with self._notify_lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            systemd_notify.notify(systemd_notify.STOPPING)
        try:
            self._scheduler.shutdown(wait=wait)
        except SchedulerNotRunningError as exc:  # already stopped (a second signal)
            log.debug("scheduler_shutdown_ignored", error=repr(exc))

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name,
                 note="letting the running cycle finish" if self._stopper is None
                 else "already stopping: the running cycle finishes first")
        if self._stopper is None:
            self._stopper = threading.Thread(target=self.stop, kwargs={"wait": True}, daemon=True)
            self._stopper.start()

    def run(self) -> None:
        """Block until stopped; install the ``STOP_SIGNALS`` handlers for a graceful stop
        (not SIGHUP's where it is ignored: ``nohup allocbot run`` is meant to outlive the
        terminal)."""
        tz = ZoneInfo(self._schedule.timezone)
        next_run = datetime.now(tz) if self._schedule.run_at_start else None
        kwargs: dict[str, Any] = {"next_run_time": next_run} if next_run else {}
        job = self._scheduler.add_job(self._job, build_trigger(self._schedule), id=JOB_ID,
                                      name="allocbot rebalance cycle", **kwargs)
        ping_secs = systemd_notify.watchdog_ping_interval_secs()
        if ping_secs is not None:
            self._scheduler.add_job(self._ping_watchdog, IntervalTrigger(seconds=ping_secs),
                                    id=WATCHDOG_JOB_ID, executor="watchdog",
                                    name="systemd watchdog ping", next_run_time=datetime.now(tz))
        for sig in STOP_SIGNALS:
            if sig is signal.SIGHUP and signal.getsignal(sig) is signal.SIG_IGN:
                continue
            signal.signal(sig, self._on_signal)
        started = {"timezone": self._schedule.timezone, "trigger": str(job.trigger),
                   "run_at_start": self._schedule.run_at_start,
                   "misfire_grace_secs": self._schedule.misfire_grace_secs,
                   "max_cycles": self._max_cycles}
        # logged once the scheduler runs: a SIGTERM sent on seeing this line must find a
        # running scheduler to shut down (before start(), shutdown() is refused and the
        # daemon would then run on)
        self._scheduler.add_listener(lambda _: log.info("daemon_started", **started),
                                     EVENT_SCHEDULER_STARTED)
        self._scheduler.start()
        # start() returns as soon as shutdown begins: wait for a running cycle to complete.
        if self._stopper is not None:
            self._stopper.join()
        self._executor.shutdown(wait=True)
        self._watchdog_executor.shutdown(wait=True)
        log.info("daemon_stopped", cycles=self._wakes)
