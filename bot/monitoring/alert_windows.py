"""The alerts' rate-limit windows, kept in the state dir so that a restart does not open
them again: a daemon in a crash loop (Docker's ``restart: unless-stopped`` retries about
once a minute for ever, systemd five times in ten minutes) sends one alert of a kind per
``[alerts].rate_limit_secs``, as one process would, not one per start.

One small JSON file, ``{kind: when its window was taken (UTC, ISO 8601)}`` and the last
daily summary's day and equity (so a restart neither sends it twice nor loses its P&L),
written atomically after each delivered alert and each summary. It is a convenience, never a reason to stop: a
missing, unreadable or unwritable file leaves the windows to the process (logged once).
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("allocbot.monitoring")
WINDOWS_FILE = "alert_windows.json"
# A window recorded further ahead of the clock than this (the clock was set back) is
# ignored rather than allowed to hold its kind silent until then.
CLOCK_SLACK = timedelta(minutes=5)
AFRESH = "alert rate limits start afresh at each start"
SUMMARY_KEY = "daily_summary_sent"  # {"day": ISO date, "equity": number or null, "net_transfers"}


class AlertWindows:
    """The delivered alerts' windows in ``state_dir`` (see module doc)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / WINDOWS_FILE
        self._taken: dict[str, datetime] = {}
        self._summary: dict[str, Any] | None = None  # the last daily summary's day, equity
        self._warned = False

    def load(self, now: datetime | None = None) -> dict[str, datetime]:
        """The windows on file (kind → when taken); {} when there is no usable file."""
        now = datetime.now(UTC) if now is None else now
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            if self._first_warning():
                log.warning("alert_windows_unreadable", path=str(self.path),
                            error=type(exc).__name__, note=AFRESH)
            return {}
        taken: dict[str, datetime] = {}
        if isinstance(raw, dict) and isinstance(raw.get(SUMMARY_KEY), dict):
            self._summary = raw[SUMMARY_KEY]
        for kind, stamp in (raw.items() if isinstance(raw, dict) else ()):
            try:
                at = datetime.fromisoformat(stamp)
            except (TypeError, ValueError):
                continue
            if at.tzinfo is not None and at <= now + CLOCK_SLACK:
                taken[str(kind)] = at
        self._taken = dict(taken)
        return taken

    def summary(self) -> tuple[date, float | None, float] | None:
        """The day (in the schedule's timezone), equity and net cash transfers of the last
        daily summary, as ``record_summary`` kept them (after ``load``); None when unknown
        (transfers 0.0 in a file from before they were kept: none were applied then)."""
        kept = self._summary or {}
        try:
            day = date.fromisoformat(kept["day"])
        except (KeyError, TypeError, ValueError):
            return None
        equity, moved = (kept.get(k) for k in ("equity", "net_transfers"))
        if isinstance(moved, bool) or not isinstance(moved, int | float):
            moved = 0.0
        if isinstance(equity, bool) or not isinstance(equity, int | float):
            return day, None, float(moved)
        return day, float(equity), float(moved)

    def record_summary(self, day: date, equity: float | None, net_transfers: float = 0.0) -> None:
        """Keep the daily summary's day, equity and the deposits less withdrawals applied
        by then: a restart neither sends that day's summary again nor loses the P&L since
        it (net of the money moved since)."""
        self._summary = {"day": day.isoformat(), "equity": equity, "net_transfers": net_transfers}
        self._save()

    def record(self, kind: str, taken_at: datetime) -> None:
        """Keep ``kind``'s window, taken at ``taken_at``, for the next start."""
        self._taken[str(kind)] = taken_at
        self._save()

    def _save(self) -> None:
        data: dict[str, Any] = {k: v.isoformat() for k, v in sorted(self._taken.items())}
        if self._summary is not None:
            data[SUMMARY_KEY] = self._summary
        # per process: a second start that fails (the lock is held) alerts and writes too;
        # each replace is then whole, the last one wins
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # (a first start failing)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # as state files
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(data, indent=1) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            if self._first_warning():
                log.warning("alert_windows_not_saved", path=str(self.path),
                            error=type(exc).__name__, note=AFRESH)
            with suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _first_warning(self) -> bool:
        """True once: a file that cannot be read or written is said so once a process."""
        first, self._warned = not self._warned, True
        return first
