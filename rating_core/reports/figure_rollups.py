"""Daily rollups of seed 003's ten counts, so a quarter's table over millions of calls reads a few rows.

A day's rows are rebuilt from the calls whenever anything of that day may
have changed: a new call, a rating given, changed or not adopted, a callback
task moved on (its ``updated_at``). The refresh keeps a watermark; it costs a
few index lookups when nothing changed, so the figures page runs it before
every read and is never stale. A spool replayed days later brings old calls
the watermark cannot see: ``hotline-eval figures rollup --days N`` rebuilds
the last N days (run it nightly, or after a replay).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from rating_core.reports.figures import UNNAMED, Period, counts_query
from rating_core.reports.scoring import COUNT_NAMES, UnitCounts
from rating_core.store.models import Call, CallbackTask, FigureRollup, FigureRollupState, Rating

# Rollup column for each dimension of the table.
ROLLUP_COLUMNS = {"hotline": FigureRollup.hotline, "unit": FigureRollup.unit, "queue": FigureRollup.queue,
                  "agent": FigureRollup.agent}
# New calls are found by start time; this much slack covers a call written a little after it began.
NEW_CALL_SLACK = timedelta(hours=1)


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), zone)
    return (start.astimezone(timezone.utc),
            datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(timezone.utc))


def rebuild_days(session: Session, days: set[date], zone: ZoneInfo) -> None:
    """Replace the rollup rows of ``days`` with counts taken from the calls."""
    keys = [func.coalesce(column, "").label(name) for name, column in
            (("hotline", Call.hotline), ("unit", Call.unit), ("queue", Call.queue), ("agent", Call.agent_id))]
    for day in sorted(days):
        start, end = _day_bounds(day, zone)
        session.execute(delete(FigureRollup).where(FigureRollup.day == day))
        rows = [{"day": day, **row._mapping} for row in session.execute(counts_query(keys, start, end))]
        if rows:
            session.execute(insert(FigureRollup), rows)


def changed_days(session: Session, since: datetime, zone: ZoneInfo) -> set[date]:
    """Local days of the calls touched after ``since``: three index lookups, not one OR over a join."""
    queries = [
        select(Call.started_at).where(Call.started_at >= since - NEW_CALL_SLACK),
        select(Call.started_at).join(Rating, Rating.call_id == Call.id).where(Rating.updated_at > since),
        select(Call.started_at).join(Rating, Rating.call_id == Call.id)
        .join(CallbackTask, CallbackTask.rating_id == Rating.id).where(CallbackTask.updated_at > since),
    ]
    return {at.astimezone(zone).date() for query in queries for at in session.scalars(query.distinct())}


def refresh(session: Session, zone: ZoneInfo, now: datetime, *, days_back: int | None = None) -> int:
    """Bring the rollups up to date; the number of days rebuilt. Commit follows in the caller's transaction."""
    state = session.get(FigureRollupState, 1, with_for_update=True)
    if state is None:
        state = FigureRollupState(id=1, refreshed_to=None)
        session.add(state)
    if state.refreshed_to is None:
        first, last = session.execute(select(func.min(Call.started_at), func.max(Call.started_at))).one()
        days = set() if first is None else {
            first.astimezone(zone).date() + timedelta(days=n)
            for n in range((last.astimezone(zone).date() - first.astimezone(zone).date()).days + 1)
        }
    else:
        days = changed_days(session, state.refreshed_to, zone)
    if days_back is not None:
        today = now.astimezone(zone).date()
        days |= {today - timedelta(days=n) for n in range(days_back)}
    rebuild_days(session, days, zone)
    state.refreshed_to = now
    return len(days)


def rolled_up_counts(session: Session, period: Period, by: str, hotline: str | None = None) -> list[UnitCounts]:
    """Like :func:`rating_core.reports.figures.unit_counts`, from the rollups (periods are whole local days)."""
    if period.zone is None:
        raise ValueError("rolled-up counts need a period of whole local days (parse_period gives one)")
    first, end = period.start.astimezone(period.zone).date(), period.end.astimezone(period.zone).date()
    column = ROLLUP_COLUMNS[by]
    query = (
        select(column.label("name"), *(func.sum(getattr(FigureRollup, n)).label(n) for n in COUNT_NAMES))
        .where(FigureRollup.day >= first, FigureRollup.day < end)
        .group_by(column)
        .order_by(column)
    )
    if hotline:
        query = query.where(FigureRollup.hotline == hotline)
    return [UnitCounts(row.name or UNNAMED, {n: int(getattr(row, n)) for n in COUNT_NAMES})
            for row in session.execute(query)]


def daily_counts(session: Session, period: Period, hotline: str | None = None) -> dict[date, dict[str, int]]:
    """The ten counts per local day of ``period`` (days without calls absent), in one query."""
    if period.zone is None:
        raise ValueError("rolled-up counts need a period of whole local days (parse_period gives one)")
    first, end = period.start.astimezone(period.zone).date(), period.end.astimezone(period.zone).date()
    query = (
        select(FigureRollup.day, *(func.sum(getattr(FigureRollup, n)).label(n) for n in COUNT_NAMES))
        .where(FigureRollup.day >= first, FigureRollup.day < end)
        .group_by(FigureRollup.day)
    )
    if hotline:
        query = query.where(FigureRollup.hotline == hotline)
    return {row.day: {n: int(getattr(row, n)) for n in COUNT_NAMES} for row in session.execute(query)}
