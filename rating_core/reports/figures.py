"""Seed 003's table from the store, per hotline, unit, team or agent and period.

What each of the ten counts counts is defined once, in
:mod:`rating_core.reports.figure_counts`; here they become conditional sums grouped
by the dimension, one aggregate query per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Select, case, func, select
from sqlalchemy.orm import Session

from rating_core.reports.figure_adjustments import history, in_force
from rating_core.reports.figure_counts import conditions
from rating_core.reports.scoring import COUNT_NAMES, Scheme, ScoringRules, UnitCounts, UnitScore, rounded, score_units
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import Call, CallbackTask, FigureAdjustment, Rating

# What a table row can stand for, and the column that names it.
DIMENSIONS = {
    "hotline": ("热线", Call.hotline),
    "unit": ("承办单位", Call.unit),
    "queue": ("班组/队列", Call.queue),
    "agent": ("坐席工号", Call.agent_id),
}
UNNAMED = "（未填写）"
MAX_PERIOD_DAYS = 366
# The years a period may fall in: the calendar's edges (year 1, year 9999) overflow once the local midnight is
# turned into UTC or a day is added, and no hotline has calls outside these.
FIRST_YEAR, LAST_YEAR = 1970, 2999


class PeriodError(Refused):
    """A period that cannot be read; the message says what is accepted (zh-CN)."""

    reason = Reason.INVALID


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime
    end: datetime  # exclusive
    zone: ZoneInfo | None = None  # set when the bounds are local midnights (whole days)


def parse_period(text: str, zone: ZoneInfo) -> Period:
    """``2026Q4`` (a quarter, the 淄博 table's unit), ``2026-11`` (a month) or ``2026-11-01..2026-11-15``."""
    text = text.strip()
    shown = text if len(text) <= 40 else f"{text[:40]}…"  # the period as the messages quote it
    try:
        if match := re.fullmatch(r"([0-9]{4})Q([1-4])", text):
            year, quarter = int(match[1]), int(match[2])
            first = date(year, 3 * quarter - 2, 1)
            last = date(year + (quarter == 4), 1 if quarter == 4 else 3 * quarter + 1, 1)
        elif match := re.fullmatch(r"([0-9]{4})-([0-9]{2})", text):
            year, month = int(match[1]), int(match[2])
            first = date(year, month, 1)
            last = date(year + (month == 12), 1 if month == 12 else month + 1, 1)
        elif match := re.fullmatch(r"([0-9]{4}-[0-9]{2}-[0-9]{2})\.\.([0-9]{4}-[0-9]{2}-[0-9]{2})", text):
            first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2]) + timedelta(days=1)
            if last <= first:
                raise PeriodError(f"时段 {shown} 的结束日期早于开始日期")
        else:
            raise PeriodError(f"无法识别的时段“{shown}”：可写 2026Q4、2026-11 或 2026-11-01..2026-11-15")
    except PeriodError:
        raise
    except ValueError:  # date() refused a month or a day: say so in the supervisor's words, not Python's
        raise PeriodError(f"时段 {shown} 中的日期不存在：月份须为 01–12，日须在当月天数之内",
                          Reason.NOT_FOUND) from None
    except OverflowError:  # the day after 9999-12-31
        raise PeriodError(f"时段 {shown} 须在 {FIRST_YEAR} 年至 {LAST_YEAR} 年之间") from None
    if first < date(FIRST_YEAR, 1, 1) or last > date(LAST_YEAR + 1, 1, 1):  # last is the day after
        raise PeriodError(f"时段 {shown} 须在 {FIRST_YEAR} 年至 {LAST_YEAR} 年之间")
    if (last - first).days > MAX_PERIOD_DAYS:
        raise PeriodError(f"时段 {shown} 超过一年，请分段查看")
    start = datetime.combine(first, time(0), zone).astimezone(timezone.utc)
    end = datetime.combine(last, time(0), zone).astimezone(timezone.utc)
    return Period(text, start, end, zone)


def current_quarter(now: datetime, zone: ZoneInfo) -> str:
    local = now.astimezone(zone)
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"


def count_columns() -> list[Any]:
    """The ten counts as SQL aggregates over calls ⟕ ratings ⟕ callback tasks."""
    return [func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer).label(code)
            for code, condition in conditions().items()]


def counts_query(group_by: list[Any], start: datetime, end: datetime, hotline: str | None = None) -> Select[Any]:
    query = (
        select(*group_by, *count_columns())
        .select_from(Call)
        .outerjoin(Rating, Rating.call_id == Call.id)
        .outerjoin(CallbackTask, CallbackTask.rating_id == Rating.id)
        .where(Call.started_at >= start, Call.started_at < end)
        .group_by(*group_by)
    )
    return query.where(Call.hotline == hotline) if hotline else query


def unit_counts(session: Session, period: Period, by: str, hotline: str | None = None) -> list[UnitCounts]:
    """The counts of every unit of ``by`` with calls in ``period``, read from the calls themselves."""
    column = func.coalesce(DIMENSIONS[by][1], "")  # no value and an empty one are the same unnamed unit
    query = counts_query([column.label("name")], period.start, period.end, hotline).order_by(column)
    return [UnitCounts(row.name or UNNAMED, {name: int(getattr(row, name)) for name in COUNT_NAMES})
            for row in session.execute(query)]


def has_unit(session: Session, period: Period, by: str, name: str) -> bool:
    """Whether ``name`` is a unit of ``by`` with calls in ``period`` (a row of its table): one indexed lookup,
    not the table."""
    column = func.coalesce(DIMENSIONS[by][1], "")
    query = select(Call.id).where(column == ("" if name == UNNAMED else name),
                                  Call.started_at >= period.start, Call.started_at < period.end).limit(1)
    return session.scalar(query) is not None


Counter = Callable[[Session, Period, str, "str | None"], list[UnitCounts]]


@dataclass
class FiguresTable:
    """One period's table: the ranked units best first, the units listed apart and why, the 加减分."""

    ranked: list[UnitScore]
    apart: list[tuple[UnitScore, str]]
    in_force: dict[str, list[FigureAdjustment]]  # the entries that count, per unit
    history: list[FigureAdjustment]  # every entry of this table, withdrawn and corrected ones too
    min_ratings: int

    def places(self) -> list[int]:
        """The ranked units' places by 综合得分 as printed (two decimals): equal scores share a place and the
        next place skips (1, 1, 3), as the annex ranks."""
        found: list[int] = []
        for index, score in enumerate(self.ranked):
            same = index and rounded(score.total) == rounded(self.ranked[index - 1].total)
            found.append(found[-1] if same else index + 1)
        return found

    def reasons(self, name: str) -> str:
        """A unit's 加减分 entries in force as one line: "+1.50 创新突破；-2.00 数据不实"."""
        return "；".join(f"{entry.points:+.2f} {entry.reason}" for entry in self.in_force.get(name, []))


def why_apart(unit: UnitCounts, min_ratings: int, by: str) -> str | None:
    """Why a unit is not ranked, or None: it has no name, or too few adopted ratings to say much."""
    if unit.name == UNNAMED:
        return f"来电未记录{DIMENSIONS[by][0]}，无法归属"
    if unit.counts["M"] < min_ratings:
        return f"评价数 {unit.counts['M']} 条，少于 {min_ratings} 条，不参与排名"
    return None


def figures_table(session: Session, period: Period, by: str, scheme_key: str, rules: ScoringRules,
                  hotline: str | None = None, counts: Counter = unit_counts) -> FiguresTable:
    """Seed 003's table for one period and dimension: counts, 加减分, scores; best score first.

    Only named units with at least the scheme's ``min_ratings`` adopted ratings
    are ranked, and the ranked points (主动评价率's place) are shared among
    them alone. ``counts`` reads the counts: from the calls (default) or from
    the daily rollups.
    """
    return build_table(counts(session, period, by, hotline), history(session, period.label, by),
                       rules.scheme(scheme_key), rules, by)


def build_table(units: list[UnitCounts], entries: list[FigureAdjustment], scheme: Scheme, rules: ScoringRules,
                by: str) -> FiguresTable:
    """The table from counts and 加减分 entries already read: the part of :func:`figures_table` that needs
    no database."""
    counting = in_force(entries)
    units = [replace(unit, adjustment=sum((e.points for e in counting.get(unit.name, [])), Decimal(0)))
             for unit in units]
    why = {unit.name: why_apart(unit, scheme.min_ratings, by) for unit in units}
    ranked = [unit for unit in units if why[unit.name] is None]
    apart = [unit for unit in units if why[unit.name] is not None]
    scores = sorted(score_units(ranked, scheme, rules), key=lambda score: (-score.total, score.unit.name))
    apart_scores = [(score, why[score.unit.name] or "") for score in score_units(apart, scheme, rules)]
    return FiguresTable(scores, apart_scores, counting, entries, scheme.min_ratings)


@dataclass(frozen=True)
class Bucket:
    first: date
    last: date  # inclusive
    label: str


def trend_buckets(period: Period, today: date) -> list[Bucket]:
    """The trend's steps over ``period``: days for a month or less, calendar weeks (Monday to Sunday) up to
    four months, calendar months beyond; cut at the period's edges and never past ``today``."""
    if period.zone is None:
        raise ValueError("a trend needs a period of whole local days (parse_period gives one)")
    first = period.start.astimezone(period.zone).date()
    end = min(period.end.astimezone(period.zone).date(), today + timedelta(days=1))  # exclusive
    span = (period.end - period.start).days
    buckets = []
    start = first
    while start < end:
        if span <= 31:
            after = start + timedelta(days=1)
        elif span <= 122:
            after = start + timedelta(days=7 - start.weekday())
        else:
            after = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        last = min(after, end) - timedelta(days=1)
        if span <= 31:
            label = f"{start.month}月{start.day}日"
        elif span <= 122:
            label = f"{start.month}/{start.day}–{last.month}/{last.day}"
        else:
            label = f"{start.year}年{start.month}月"
        buckets.append(Bucket(start, last, label))
        start = after
    return buckets
