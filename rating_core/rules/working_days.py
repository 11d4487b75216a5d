"""Working days on the official Chinese calendar, and the deadlines built on them.

``chinese-calendar`` knows the State Council's holidays and 调休 make-up
workdays, but only for years it has data for (it raises
``NotImplementedError`` beyond them). A deadline must still compute then: we
fall back to Monday–Friday, say so with a :class:`CalendarDataMissing`
warning, and let the overrides a supervisor enters (from the year's official
notice) win over both.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from rating_core.rules.callback_policy import CallingWindow, Duration

log = logging.getLogger(__name__)


class CalendarDataMissing(UserWarning):
    """No official holiday data for a year: weekdays were assumed."""


_LOGGED_YEARS: set[int] = set()


class WorkingCalendar:
    """Which days are working days: overrides first, then the official calendar, then weekdays."""

    def __init__(self, overrides: Mapping[date, bool] | None = None) -> None:
        self.overrides = dict(overrides or {})
        # Years we had to guess, so callers can show it next to a deadline.
        self.guessed_years: set[int] = set()

    def is_working_day(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year not in self.guessed_years:
                self.guessed_years.add(day.year)
                message = (
                    f"no official holiday data for {day.year}: treating Monday–Friday as working days; "
                    f"enter the year's holidays and 调休 days as calendar overrides"
                )
                if day.year not in _LOGGED_YEARS:  # once per process, not at every minute's sweep
                    _LOGGED_YEARS.add(day.year)
                    log.warning(message)
                warnings.warn(message, CalendarDataMissing, stacklevel=2)
            return day.weekday() < 5

    def note(self) -> str | None:
        """A line to store beside deadlines computed from guessed years."""
        if not self.guessed_years:
            return None
        years = "、".join(str(y) for y in sorted(self.guessed_years))
        return f"{years}年无官方节假日数据，按周一至周五计算（可在日历中补录）"


def add_duration(start: datetime, duration: Duration, calendar: WorkingCalendar, tz: ZoneInfo) -> datetime:
    """``start`` plus a legal time limit.

    Working days count only time that falls on working days, in the
    deployment's time zone: 1 working day from Friday 15:00 is Monday 15:00;
    from Saturday 10:00 it is the end of Monday.
    """
    if duration.unit == "minutes":
        return start + timedelta(minutes=duration.amount)
    if duration.unit == "hours":
        return start + timedelta(hours=duration.amount)
    if duration.unit == "days":
        return start + timedelta(days=duration.amount)
    local = start.astimezone(tz)
    remaining = timedelta(days=duration.amount)
    day = local.date()
    cursor = local
    while True:
        end_of_day = datetime.combine(day + timedelta(days=1), time(0), tz)
        if calendar.is_working_day(day):
            available = end_of_day - cursor
            if remaining <= available:
                return (cursor + remaining).astimezone(start.tzinfo)
            remaining -= available
        day += timedelta(days=1)
        cursor = end_of_day


def next_calling_time(
    after: datetime,
    windows: tuple[CallingWindow, ...],
    calendar: WorkingCalendar,
    tz: ZoneInfo,
    *,
    working_days_only: bool,
    horizon_days: int = 60,
) -> datetime | None:
    """The first moment at or after ``after`` inside a calling window, or None within the horizon."""
    local = after.astimezone(tz)
    ordered = sorted(windows, key=lambda w: w.start)
    for offset in range(horizon_days + 1):
        day = local.date() + timedelta(days=offset)
        if working_days_only and not calendar.is_working_day(day):
            continue
        for window in ordered:
            opens = datetime.combine(day, window.start, tz)
            closes = datetime.combine(day, window.end, tz)
            if local < closes:
                return max(local, opens).astimezone(after.tzinfo)
    return None


def in_calling_window(
    moment: datetime,
    windows: tuple[CallingWindow, ...],
    calendar: WorkingCalendar,
    tz: ZoneInfo,
    *,
    working_days_only: bool,
) -> bool:
    return next_calling_time(moment, windows, calendar, tz, working_days_only=working_days_only) == moment
