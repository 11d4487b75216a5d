"""The ten counts of seed 003's table, taken from the store, per hotline, unit, team or agent and period.

How each count is read from the store (SPEC §4):

    A  应评价数     calls sent to the evaluation
    M  总评价数     adopted ratings (active or default)
    P  主动评价数   those of M the caller gave (not the 7-day default), a batch once (淄博's rule)
    I  主动好评数   those of P that are not 差评
    D  差评总数     差评
    T  有效差评数   adopted 差评
    B  无效差评数   差评 not adopted (误评, 恶意, upheld appeal)
    N1 差评回复数   差评 whose caller was reached (an answered callback) or verified
    N2 差评整改数   差评 whose handling was finished (立行立改, 解释说明, or 限期整改 reported done)
    N3 整改满意数   差评 whose caller said the handling satisfied them (整改满意)

A rating not adopted (误评, 恶意, a number on the malicious-rater list) is
stored and shown but counts only where the table counts it: in D and B.

One aggregate query per request: conditional sums grouped by the dimension.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Select, and_, case, exists, func, select
from sqlalchemy.orm import Session

from rating_core.models import Call, CallbackAttempt, CallbackTask, FigureAdjustment, Rating
from rating_core.scoring import COUNT_NAMES, ScoringRules, UnitCounts, UnitScore, score_units

# What a table row can stand for, and the column that names it.
DIMENSIONS = {
    "hotline": ("热线", Call.hotline),
    "unit": ("承办单位", Call.unit),
    "queue": ("班组/队列", Call.queue),
    "agent": ("坐席工号", Call.agent_id),
}
UNNAMED = "（未填写）"


class PeriodError(ValueError):
    """A period that cannot be read; the message says what is accepted (zh-CN)."""


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime
    end: datetime  # exclusive
    zone: ZoneInfo | None = None  # set when the bounds are local midnights (whole days)


def parse_period(text: str, zone: ZoneInfo) -> Period:
    """``2026Q4`` (a quarter, the 淄博 table's unit), ``2026-11`` (a month) or ``2026-11-01..2026-11-15``."""
    text = text.strip()
    try:
        if match := re.fullmatch(r"(\d{4})Q([1-4])", text):
            year, quarter = int(match[1]), int(match[2])
            first = date(year, 3 * quarter - 2, 1)
            last = date(year + (quarter == 4), 1 if quarter == 4 else 3 * quarter + 1, 1)
        elif match := re.fullmatch(r"(\d{4})-(\d{2})", text):
            year, month = int(match[1]), int(match[2])
            first = date(year, month, 1)
            last = date(year + (month == 12), 1 if month == 12 else month + 1, 1)
        elif match := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", text):
            first, last = date.fromisoformat(match[1]), date.fromisoformat(match[2]) + timedelta(days=1)
            if last <= first:
                raise PeriodError(f"时段 {text} 的结束日期早于开始日期")
        else:
            raise PeriodError(f"无法识别的时段 {text!r}：可写 2026Q4、2026-11 或 2026-11-01..2026-11-15")
    except ValueError as exc:
        if isinstance(exc, PeriodError):
            raise
        raise PeriodError(f"无法识别的时段 {text!r}：{exc}") from None
    start = datetime.combine(first, time(0), zone).astimezone(timezone.utc)
    end = datetime.combine(last, time(0), zone).astimezone(timezone.utc)
    return Period(text, start, end, zone)


def current_quarter(now: datetime, zone: ZoneInfo) -> str:
    local = now.astimezone(zone)
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"


def _count(condition: object) -> object:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer)


def count_columns() -> list[Any]:
    """The ten counts as SQL aggregates over calls ⟕ ratings ⟕ callback tasks (see the module docstring)."""
    answered = exists().where(CallbackAttempt.task_id == CallbackTask.id, CallbackAttempt.outcome == "answered")
    negative = and_(Rating.id.is_not(None), Rating.is_negative.is_(True))
    adopted = and_(Rating.id.is_not(None), Rating.is_adopted.is_(True))
    counted_active = and_(adopted, Rating.is_active.is_(True), Rating.batch_of_id.is_(None))
    return [
        func.count(Call.id).label("A"),
        _count(adopted).label("M"),
        _count(counted_active).label("P"),
        _count(and_(counted_active, Rating.is_negative.is_(False))).label("I"),
        _count(negative).label("D"),
        _count(and_(negative, Rating.is_adopted.is_(True))).label("T"),
        _count(and_(negative, Rating.is_adopted.is_(False))).label("B"),
        _count(and_(negative, CallbackTask.id.is_not(None),
                    (CallbackTask.verified_at.is_not(None)) | answered)).label("N1"),
        _count(and_(negative, CallbackTask.rectified_at.is_not(None))).label("N2"),
        _count(and_(negative, CallbackTask.citizen_satisfied.is_(True))).label("N3"),
    ]


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
    column = DIMENSIONS[by][1]
    query = counts_query([column.label("name")], period.start, period.end, hotline).order_by(column)
    return [UnitCounts(row.name or UNNAMED, {name: int(getattr(row, name)) for name in COUNT_NAMES})
            for row in session.execute(query)]


def adjustments(session: Session, period: str, by: str) -> dict[str, Decimal]:
    """The net manual 加减分 entered for each unit of this table."""
    rows = session.execute(
        select(FigureAdjustment.name, func.sum(FigureAdjustment.points))
        .where(FigureAdjustment.period == period, FigureAdjustment.dimension == by)
        .group_by(FigureAdjustment.name)
    )
    return {name: Decimal(total) for name, total in rows}


Counter = Callable[[Session, Period, str, "str | None"], list[UnitCounts]]


def figures_table(session: Session, period: Period, by: str, scheme_key: str, rules: ScoringRules,
                  hotline: str | None = None, counts: Counter = unit_counts) -> list[UnitScore]:
    """Seed 003's table for one period and dimension: counts, adjustments, scores; best score first.

    ``counts`` reads the counts: from the calls (default) or from the daily rollups.
    """
    extra = adjustments(session, period.label, by)
    units = [replace(unit, adjustment=extra.get(unit.name, Decimal(0)))
             for unit in counts(session, period, by, hotline)]
    scores = score_units(units, rules.scheme(scheme_key), rules)
    return sorted(scores, key=lambda score: (-score.total, score.unit.name))
