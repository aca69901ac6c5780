"""``[schedule] at``: an APScheduler trigger on NYSE sessions (early closes, holidays)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import ScheduleSection
from bot.engine.scheduler import build_trigger
from bot.engine.session_trigger import SessionTrigger
from brokers.calendar import sessions_in_range

NY = ZoneInfo("America/New_York")


def fire_times(trigger: SessionTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Fire times in [start, end), stepping the trigger as APScheduler does."""
    out: list[datetime] = []
    previous, now = None, start
    for _ in range(100):  # bounded: a month has ≤ 23 sessions
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None or fire >= end:
            break
        out.append(fire)
        previous, now = fire, fire
    return out


def test_session_trigger_july_2024_early_close_and_holiday():
    fires = fire_times(SessionTrigger.parse("close-15min"), datetime(2024, 7, 1, tzinfo=NY),
                       datetime(2024, 8, 1, tzinfo=NY))
    days = [f.date() for f in fires]
    assert days == sessions_in_range(date(2024, 7, 1), date(2024, 7, 31))
    assert len(fires) == 22 and date(2024, 7, 4) not in days
    by_day = {f.date(): f.timetz().replace(tzinfo=None) for f in fires}
    assert by_day[date(2024, 7, 3)].isoformat() == "12:45:00"  # 13:00 early close
    assert by_day[date(2024, 7, 5)].isoformat() == "15:45:00"
    assert {by_day[d].isoformat() for d in days if d != date(2024, 7, 3)} == {"15:45:00"}
    assert all(f.tzinfo is not None and f.utcoffset() == timedelta(hours=-4) for f in fires)


def test_session_trigger_november_2024_day_after_thanksgiving_closes_early():
    fires = fire_times(SessionTrigger.parse("close-15min"), datetime(2024, 11, 1, tzinfo=NY),
                       datetime(2024, 12, 1, tzinfo=NY))
    by_day = {f.date(): f.strftime("%H:%M") for f in fires}
    assert date(2024, 11, 28) not in by_day  # Thanksgiving
    assert by_day[date(2024, 11, 29)] == "12:45"
    assert by_day[date(2024, 11, 27)] == "15:45"
    assert len(fires) == 20


def test_session_trigger_open_offset_fires_after_open_each_session():
    fires = fire_times(SessionTrigger.parse("open+30min"), datetime(2024, 7, 3, 10, 1, tzinfo=NY),
                       datetime(2024, 7, 9, tzinfo=NY))
    assert [f.strftime("%m-%d %H:%M") for f in fires] == ["07-05 10:00", "07-08 10:00"]


def test_session_trigger_never_fires_twice_for_one_session():
    trigger = SessionTrigger.parse("close")
    fire = trigger.get_next_fire_time(None, datetime(2024, 7, 3, 9, 0, tzinfo=NY))
    assert fire.strftime("%Y-%m-%d %H:%M") == "2024-07-03 13:00"
    again = trigger.get_next_fire_time(fire, fire)
    assert again.strftime("%Y-%m-%d %H:%M") == "2024-07-05 16:00"


def test_schedule_at_builds_session_trigger():
    trigger = build_trigger(ScheduleSection(at="close-15min"))
    assert isinstance(trigger, SessionTrigger) and str(trigger) == "session[close-15min]"


@pytest.mark.parametrize("at", ["close-15", "noon", "close+-5min", "open+15s", ""])
def test_schedule_at_bad_offset_rejected_naming_shape(at):
    with pytest.raises(ValueError, match="close-15min"):
        ScheduleSection(at=at)


def test_schedule_at_with_cron_rejected():
    with pytest.raises(ValueError, match="exactly one of cron, interval_secs or at"):
        ScheduleSection(at="close-15min", cron="45 15 * * mon-fri")
