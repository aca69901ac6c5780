"""``allocbot run`` (the daemon) and ``allocbot once`` (one cycle, then exit)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli.startup import config_option, fail_on, load, open_runtime
from bot.errors import EXIT_CYCLE_FAILED, AllocbotError

if TYPE_CHECKING:
    from bot.config import Config
    from bot.monitoring.service import Monitor
    from brokers.base import Broker


class _StopDuringStartup(BaseException):
    """SIGTERM, SIGINT or SIGHUP before the scheduler runs (the daemon installs its own
    handlers then): no cycle has started, so the start is abandoned and the process exits 0."""


def _stop_during_startup(signum: int, frame: object) -> None:
    raise _StopDuringStartup(signal.Signals(signum).name)


@click.command()
@config_option
@click.option("--max-cycles", type=click.IntRange(min=1), default=None,
              help="Stop after this many wakes (default: run until SIGTERM/Ctrl-C); "
                   "exit 1 if none of them finished.")
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def run(config_path: Path, max_cycles: int | None, live: bool) -> None:
    """Run the daemon on the configured schedule until stopped."""
    cfg = load(config_path)
    # a stop while starting (a venue outage can hold the start for the retry budget) ends
    # it cleanly, as a stop of the running daemon does: exit 0, not a silent SIGTERM death
    # (the scheduler's STOP_SIGNALS, named here: importing it loads APScheduler; a hangup
    # already ignored, as under nohup, stays ignored)
    before = {sig: signal.signal(sig, _stop_during_startup)
              for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
              if not (sig is signal.SIGHUP and signal.getsignal(sig) is signal.SIG_IGN)}
    try:
        _run_daemon(cfg, max_cycles, live)
    except _StopDuringStartup as stop:
        import structlog

        log = structlog.get_logger("allocbot.scheduler")
        log.info("shutdown_requested", signal=str(stop),
                 note="during startup: no cycle had started")
        log.info("daemon_stopped", cycles=0)
    finally:  # (an in-process caller gets its own handlers back)
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _run_daemon(cfg: Config, max_cycles: int | None, live: bool) -> None:
    """Start the daemon (monitoring, runtime, scheduler) and run it until it stops."""
    from bot.engine import cycle
    from bot.engine.scheduler import Daemon
    from bot.engine.statuses import CycleStatus

    monitor = _start_monitoring(cfg)
    ran = [0, 0]  # wakes that ran a cycle, and of them cycles that did not fail (a daemon
    # up for months must not keep a list of every status)
    ended: list[str] = []  # the wake that found the replay over (it runs no cycle)
    try:
        # a startup failure here still reaches the alert sender (monitor.close flushes it)
        rt = open_runtime(cfg, live, command="run")

        def wake() -> None:
            rt.broker.on_wake()
            detail = _replay_end(rt.broker)
            if detail is not None:
                ended.append(detail)
                daemon.finish("replay_ended", detail)
                return
            status = cycle.run(rt.context).status
            ran[0] += 1
            ran[1] += status is not CycleStatus.FAILED

        daemon = Daemon(cfg.schedule, wake, max_cycles=max_cycles)
        try:
            if monitor is not None:
                _serve(monitor)
            daemon.run()
        finally:
            rt.close()
    finally:
        if monitor is not None:
            monitor.close()
    # every wake counts, the ones a bug ended too (cycle_job_failed: no status)
    got_through = ran[1] > 0
    if max_cycles is not None and daemon.wakes > len(ended) and not got_through:
        import structlog

        structlog.get_logger("allocbot.cli").error("no_cycle_got_through", cycles=ran[0],
                  note="every cycle --max-cycles asked for failed (see cycle_failed): exit 1")
        sys.exit(EXIT_CYCLE_FAILED)


def _replay_end(broker: Broker) -> str | None:
    """Why the daemon should stop, in words: a replayed price file has no trading day after
    the clock's (its market is closed with no next open). None otherwise, and None when the
    venue's clock fails (an outage: one of our errors): the cycle asks the clock again as
    its first step, which fails it as any venue failure in a cycle does (``cycle_failed``,
    journaled, alerted) and leaves the daemon to retry at the next wake."""
    try:
        clock = broker.clock()
    except AllocbotError:  # the cycle's step 1 meets it again and records it
        return None
    if clock.is_open or clock.next_open is not None:
        return None
    return (f"no trading day after {clock.now.date()} in the price data; append rows to "
            "continue")


def _start_monitoring(cfg: Config) -> Monitor | None:
    """Metrics, alerts and the status page when configured (their libraries load only then)."""
    from bot.monitoring.settings import monitoring_configured

    if not monitoring_configured(cfg):
        return None
    from bot.monitoring.service import start_monitoring

    try:
        return start_monitoring(cfg)
    except AllocbotError as exc:
        fail_on(exc)


def _serve(monitor: Monitor) -> None:
    """Seed the gauges from the journal, then listen (the instance lock is held by now)."""
    try:
        monitor.seed_from_journal()
        monitor.serve()
    except AllocbotError as exc:
        fail_on(exc)


@click.command()
@config_option
@click.option("--live", is_flag=True, help='Confirm live trading (needs mode = "live" too).')
def once(config_path: Path, live: bool) -> None:
    """Run exactly one cycle now, then exit (1 if the cycle failed)."""
    from bot.engine import cycle
    from bot.engine.statuses import CycleStatus

    cfg = load(config_path)
    rt = open_runtime(cfg, live, command="once")
    try:
        rt.broker.on_wake()
        ended = _replay_end(rt.broker)
        if ended is not None:  # as the daemon stops there: no cycle, nothing journaled
            import structlog

            structlog.get_logger("allocbot.cli").warning(
                "replay_over", note=f"{ended}; no cycle was run (health turns unhealthy "
                                    "once one is due)")
            return
        result = cycle.run(rt.context)
    except AllocbotError as exc:  # the journal itself failed (disk full, file made read-only)
        fail_on(exc)
    finally:
        rt.close()
    sys.exit(EXIT_CYCLE_FAILED if result.status is CycleStatus.FAILED else 0)
