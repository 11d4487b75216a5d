"""Working-day deadlines on the official calendar, with 调休, overrides and years without data."""

from __future__ import annotations

import warnings
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from rating_core.rules.callback_policy import CallingWindow, Duration
from rating_core.rules.working_days import (
    CalendarDataMissing,
    WorkingCalendar,
    add_duration,
    in_calling_window,
    next_calling_time,
)

TZ = ZoneInfo("Asia/Shanghai")
ONE_WORKING_DAY = Duration(amount=1, unit="working_days")
WINDOWS = (CallingWindow(start="08:30", end="12:00"), CallingWindow(start="13:30", end="18:00"))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


def test_one_working_day_from_friday_afternoon_is_monday_afternoon() -> None:
    # 2026-11-20 is a Friday.
    assert add_duration(at(2026, 11, 20, 15, 0), ONE_WORKING_DAY, WorkingCalendar(), TZ) == at(2026, 11, 23, 15, 0)


def test_from_a_weekend_the_clock_starts_on_the_next_working_day() -> None:
    assert add_duration(at(2026, 11, 21, 10, 0), ONE_WORKING_DAY, WorkingCalendar(), TZ) == at(2026, 11, 24, 0, 0)


def test_national_day_holiday_is_skipped_and_the_tiaoxiu_saturday_counts() -> None:
    calendar = WorkingCalendar()
    assert not calendar.is_working_day(date(2026, 10, 5))      # 国庆 holiday, a Monday
    assert calendar.is_working_day(date(2026, 10, 10))         # 调休 make-up Saturday
    # 4 working days from Wednesday 30 September: the 30th, (1–7 off), the 8th, 9th and Saturday 10th.
    four = Duration(amount=4, unit="working_days")
    assert add_duration(at(2026, 9, 30, 0, 0), four, calendar, TZ) == at(2026, 10, 11, 0, 0)


def test_hours_are_calendar_hours() -> None:
    assert add_duration(at(2026, 11, 20, 15, 0), Duration(amount=48, unit="hours"), WorkingCalendar(), TZ) \
        == at(2026, 11, 22, 15, 0)


def test_a_year_without_data_falls_back_to_weekdays_and_says_so() -> None:
    calendar = WorkingCalendar()
    with pytest.warns(CalendarDataMissing, match="2027"):
        deadline = add_duration(at(2027, 1, 1, 9, 0), ONE_WORKING_DAY, calendar, TZ)  # a Friday
    assert deadline == at(2027, 1, 4, 9, 0)
    assert calendar.note() is not None and "2027" in calendar.note()


def test_an_override_wins_over_the_guess_and_over_the_official_calendar() -> None:
    # The 2027 元旦 holiday entered by hand: Friday 1 January is off; and a made-up working Sunday in 2026.
    calendar = WorkingCalendar({date(2027, 1, 1): False, date(2026, 11, 22): True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalendarDataMissing)
        assert add_duration(at(2027, 1, 1, 9, 0), ONE_WORKING_DAY, calendar, TZ) == at(2027, 1, 5, 0, 0)
    assert calendar.is_working_day(date(2026, 11, 22))


def test_calling_windows_on_working_days() -> None:
    calendar = WorkingCalendar()
    kwargs = {"working_days_only": True}
    assert next_calling_time(at(2026, 11, 20, 12, 30), WINDOWS, calendar, TZ, **kwargs) == at(2026, 11, 20, 13, 30)
    assert next_calling_time(at(2026, 11, 20, 18, 0), WINDOWS, calendar, TZ, **kwargs) == at(2026, 11, 23, 8, 30)
    assert in_calling_window(at(2026, 11, 20, 9, 0), WINDOWS, calendar, TZ, **kwargs)
    assert not in_calling_window(at(2026, 10, 5, 9, 0), WINDOWS, calendar, TZ, **kwargs)
    assert in_calling_window(at(2026, 10, 5, 9, 0), WINDOWS, calendar, TZ, working_days_only=False)


def test_a_missing_year_is_logged_once_per_process_not_at_every_sweep(caplog) -> None:
    import logging

    from rating_core.rules import working_days

    working_days._LOGGED_YEARS.discard(2031)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("ignore", CalendarDataMissing)
        for _ in range(3):  # each sweep builds a new calendar
            WorkingCalendar({}).is_working_day(date(2031, 3, 3))
    assert sum("no official holiday data for 2031" in r.getMessage() for r in caplog.records) == 1
