"""Supervisors: seed 003's table per period and dimension, with chart, trend, adjustments, Excel; overdue work."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, joinedload

from rating_core.complaints.assignment import AssignmentError, assign
from rating_core.complaints.callback_tasks import MAX_DEADLINE_EXTENSION, OPEN_STATES, TaskRuleError, extend_deadline
from rating_core.reports.figure_adjustments import AdjustmentError, add_entry, correct_entry, statuses, withdraw_entry
from rating_core.reports.figure_counts import COUNTS
from rating_core.reports.figure_rollups import daily_counts, refresh, rolled_up_counts
from rating_core.reports.figures import (
    DIMENSIONS,
    FiguresTable,
    Period,
    PeriodError,
    current_quarter,
    figures_table,
    has_unit,
    parse_period,
    trend_buckets,
)
from rating_core.reports.figures_xlsx import report_filename, write_report
from rating_core.reports.scoring import ScoringError, ScoringRules, describe, formula, load_scoring_rules, rounded
from rating_core.rules.local_time import local_time
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import CallbackTask, Rating, WebUser
from web.audit import audit
from web.changes import commit_or_flash
from web.context import db, store
from web.downloads import attachment
from web.roles import role_required
from web.supervision import FIGURE_ROLES, bp, zone


def _scoring() -> ScoringRules:
    """The scoring schemes, read once per process like the rules (a changed file needs a restart)."""
    if "hotline_scoring" not in current_app.extensions:
        current_app.extensions["hotline_scoring"] = load_scoring_rules(current_app.config["SCORING_FILE"])
    return current_app.extensions["hotline_scoring"]


class FigureQueryError(Refused):
    """A figures query that cannot be answered; the message is for the supervisor (zh-CN)."""

    reason = Reason.INVALID


def _period_text(values: Any) -> str:
    """The period the picker chose (季度, 月份 or 日期范围), as parse_period reads it; ``period`` as given
    when the picker was not used (links, the Excel export)."""
    kind = values.get("kind") or ""
    if kind == "quarter":
        year, quarter = values.get("year") or "", values.get("quarter") or ""
        if not (year.isascii() and year.isdigit() and quarter in ("1", "2", "3", "4")):
            raise FigureQueryError("请选择年份和季度")
        return f"{year}Q{quarter}"
    if kind == "month":
        if not values.get("month"):
            raise FigureQueryError("请选择月份")
        return values["month"]
    if kind == "range":
        first, last = values.get("from") or "", values.get("to") or ""
        if not first or not last:
            raise FigureQueryError("请填写开始和结束日期")
        return f"{first}..{last}"
    if kind:
        raise FigureQueryError(f"未知的时段类型“{kind}”")
    return values.get("period") or current_quarter(datetime.now(timezone.utc), zone())


def _choices() -> dict[str, str]:
    """The table's period, dimension, scheme and hotline from the query string (FigureQueryError when wrong)."""
    scoring = _scoring()
    by = request.values.get("by") or "hotline"
    if by not in DIMENSIONS:
        raise FigureQueryError(f"未知的统计维度“{by}”")
    schemes = scoring.schemes_for(by)
    chosen = {"period": _period_text(request.values), "by": by,
              "scheme": request.values.get("scheme") or schemes[0], "hotline": request.values.get("hotline") or ""}
    if chosen["scheme"] not in scoring.schemes:
        raise FigureQueryError(f"未知的计分规则“{chosen['scheme']}”")
    if chosen["scheme"] not in schemes:
        raise FigureQueryError(f"计分规则“{scoring.schemes[chosen['scheme']].name}”不适用于按"
                               f"{DIMENSIONS[by][0]}统计，请选：" + "、".join(scoring.schemes[k].name for k in schemes))
    if chosen["hotline"] and chosen["hotline"] not in store().rules.hotlines:
        raise FigureQueryError(f"未知的热线“{chosen['hotline']}”")
    try:
        # As read: the label 加减分 entries are filed under is the same however the period was typed.
        chosen["period"] = parse_period(chosen["period"], zone()).label
    except PeriodError as exc:
        raise FigureQueryError(str(exc)) from None
    return chosen


def _checked_choices() -> dict[str, str]:
    """:func:`_choices`, or a 400 page in Chinese for a request that is not the figures page itself."""
    try:
        return _choices()
    except FigureQueryError as exc:
        abort(400, description=str(exc))


def _table(chosen: dict[str, str]) -> tuple[Period, FiguresTable]:
    """The scored table, read from the daily rollups after bringing them up to date."""
    session = db()
    refresh(session, zone(), datetime.now(timezone.utc))
    session.commit()
    period = parse_period(chosen["period"], zone())
    table = figures_table(session, period, chosen["by"], chosen["scheme"], _scoring(),
                          chosen["hotline"] or None, counts=rolled_up_counts)
    return period, table


def _picker(chosen: dict[str, str]) -> dict[str, str]:
    """The picker's fields for the period shown, so the form opens on it."""
    text, today = chosen["period"], datetime.now(zone()).date()
    if match := re.fullmatch(r"(\d{4})Q([1-4])", text):
        return {"kind": "quarter", "year": match[1], "quarter": match[2]}
    if re.fullmatch(r"\d{4}-\d{2}", text):
        return {"kind": "month", "month": text, "year": str(today.year)}
    if match := re.fullmatch(r"(\S+)\.\.(\S+)", text):
        return {"kind": "range", "from": match[1], "to": match[2], "year": str(today.year)}
    return {"kind": "quarter", "year": str(today.year), "quarter": str((today.month - 1) // 3 + 1)}


@bp.get("/figures")
@role_required(*FIGURE_ROLES)
def figures() -> Any:
    scoring = _scoring()
    try:
        chosen = _choices()
    except FigureQueryError as exc:
        # The page again, with what was asked and why it cannot be shown, so the supervisor can correct it.
        by = request.values.get("by") or "hotline"
        by = by if by in DIMENSIONS else "hotline"
        asked = {"period": request.values.get("period") or "", "by": by, "scheme": scoring.schemes_for(by)[0],
                 "hotline": ""}
        picked = {key: request.values.get(key) or "" for key in ("kind", "year", "quarter", "month", "from", "to")}
        return render_template("supervisor/figures.html", error=str(exc), chosen=asked,
                               picker=picked if picked["kind"] else _picker(asked), **_page_data(asked)), 400
    period, table = _table(chosen)
    chart = {
        "labels": [score.unit.name for score in table.ranked],
        "scores": [float(rounded(score.total)) for score in table.ranked],
        "trend": _trend(period, chosen["hotline"] or None),
    }
    return render_template("supervisor/figures.html", chosen=chosen, picker=_picker(chosen), table=table,
                           chart=chart, entry_status=statuses(table.history), **_page_data(chosen))


def _page_data(chosen: dict[str, str]) -> dict[str, Any]:
    """What the page shows besides the table: the choices, the legend and the scheme's rule in words."""
    scoring = _scoring()
    scheme = scoring.schemes[chosen["scheme"]]
    return {"scoring": scoring, "scheme": scheme, "dimensions": DIMENSIONS,
            "schemes": scoring.schemes_for(chosen["by"]), "hotlines": store().rules.hotlines, "counts": COUNTS,
            "rate_names": {rate.code: rate.name for rate in scoring.rates},
            "formulas": {rate.code: formula(rate) for rate in scoring.rates},
            "scheme_rules": describe(scheme, scoring), "this_year": datetime.now(zone()).year}


def _trend(period: Period, hotline: str | None) -> dict[str, list[Any]]:
    """好评率 and 差评 per day, calendar week or month (trend_buckets), from one query of daily counts."""
    days = daily_counts(db(), period, hotline)
    labels, good, negative = [], [], []
    for bucket in trend_buckets(period, datetime.now(zone()).date()):
        held = [counts for day, counts in days.items() if bucket.first <= day <= bucket.last]
        m, t = sum(c["M"] for c in held), sum(c["T"] for c in held)
        labels.append(bucket.label)
        good.append(round(100 * (1 - t / m), 2) if m else None)
        negative.append(sum(c["D"] for c in held))
    return {"labels": labels, "good_rate": good, "negative": negative}


@bp.get("/figures.xlsx")
@role_required(*FIGURE_ROLES)
def figures_xlsx() -> Any:
    chosen = _checked_choices()
    _period, table = _table(chosen)
    scoring = _scoring()
    scheme = scoring.schemes[chosen["scheme"]]
    heading = DIMENSIONS[chosen["by"]][0]
    title = f"{chosen['period']}各{heading}“好差评”评估通报表"
    data = write_report(table, scheme, scoring, title, heading, datetime.now(zone()))
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": attachment(report_filename(chosen["period"], heading),
                                                               f"figures-{chosen['period']}-{chosen['by']}.xlsx")})


def _points(text: str | None) -> Decimal:
    """The points typed in a form; NaN when they are no number, for check_entry to refuse in Chinese."""
    try:
        return Decimal(text or "")
    except InvalidOperation:
        return Decimal("NaN")  # refused by check_entry with the supervisor's message


def _after_adjustment(chosen: dict[str, str], change: Callable[[Session], str]) -> Any:
    """Run one change to the 加减分 (with its audit entry) in the request's transaction; flash what happened."""
    message = commit_or_flash(change)
    if message is not None:
        flash(message, "info")
    # url_for's own keywords include _external: bool, so a dict of query strings does not type-check.
    return redirect(url_for("supervisor.figures", **chosen))  # type: ignore[arg-type]


@bp.post("/figures/adjustments")
@role_required("supervisor")
def add_adjustment() -> Any:
    chosen = _checked_choices()
    name, reason = (request.form.get("name") or "").strip(), request.form.get("reason") or ""
    points = _points(request.form.get("points"))

    period = parse_period(chosen["period"], zone())

    def add(session: Session) -> str:
        if not has_unit(session, period, chosen["by"], name):
            raise AdjustmentError(f"“{name}”不在该时段的统计表中，请从列表中选择")
        entry = add_entry(session, chosen["period"], chosen["by"], name, points, reason,
                          datetime.now(timezone.utc), current_user.username)
        audit(session, "adjustment_added", str(entry.id), name=name, points=str(points), period=chosen["period"],
              dimension=chosen["by"])
        return f"已为 {name} 记入加减分 {points:+.2f}"

    return _after_adjustment(chosen, add)


@bp.post("/figures/adjustments/<int:entry_id>/withdraw")
@role_required("supervisor")
def withdraw_adjustment(entry_id: int) -> Any:
    chosen = _checked_choices()
    reason = request.form.get("reason") or ""

    def withdraw(session: Session) -> str:
        entry = withdraw_entry(session, entry_id, chosen["period"], chosen["by"], reason, datetime.now(timezone.utc),
                               current_user.username)
        audit(session, "adjustment_withdrawn", str(entry_id), name=entry.name, reason=reason.strip(),
              period=entry.period, dimension=entry.dimension)
        return f"已撤销 {entry.name} 的加减分 {entry.points:+.2f}"

    return _after_adjustment(chosen, withdraw)


@bp.post("/figures/adjustments/<int:entry_id>/correct")
@role_required("supervisor")
def correct_adjustment(entry_id: int) -> Any:
    chosen = _checked_choices()
    reason, points = request.form.get("reason") or "", _points(request.form.get("points"))

    def correct(session: Session) -> str:
        entry = correct_entry(session, entry_id, chosen["period"], chosen["by"], points, reason,
                              datetime.now(timezone.utc), current_user.username)
        audit(session, "adjustment_corrected", str(entry_id), name=entry.name, points=str(points),
              reason=reason.strip(), period=entry.period, dimension=entry.dimension)
        return f"已将 {entry.name} 的加减分更正为 {points:+.2f}"

    return _after_adjustment(chosen, correct)


def _overdue_page(error: str | None = None, status: int = 200) -> Any:
    """Open tasks past a deadline or escalated, with who may take them over; ``error`` when an action was refused."""
    session = db()
    now = datetime.now(timezone.utc)
    tasks = session.scalars(
        select(CallbackTask)
        .where(CallbackTask.state.in_(OPEN_STATES),
               or_(CallbackTask.verify_by <= now, CallbackTask.escalated_at.is_not(None),
                   CallbackTask.rectify_by <= now))
        .options(joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(CallbackTask.verify_by)
    ).all()
    agents = session.execute(select(WebUser.agent_id, WebUser.display_name)
                             .where(WebUser.role == "agent", WebUser.active.is_(True), WebUser.agent_id.is_not(None))
                             .order_by(WebUser.agent_id)).all()
    return render_template("supervisor/overdue.html", tasks=tasks, agents=agents, error=error,
                           max_days=MAX_DEADLINE_EXTENSION.days), status


@bp.get("/overdue")
@role_required("supervisor")
def overdue() -> Any:
    return _overdue_page()


_REFUSAL_STATUS = {Reason.NOT_FOUND: 404, Reason.WRONG_STATE: 409, Reason.ALREADY_DONE: 409}


def _overdue_action(change: Callable[[Session], str]) -> Any:
    """One action from the overdue page, with its audit entry, in one transaction: back to the list with what was
    done, or the list again with why not (a Chinese 4xx)."""
    session = db()
    try:
        done = change(session)
    except Refused as exc:
        session.rollback()
        return _overdue_page(str(exc), _REFUSAL_STATUS.get(exc.reason, 400))
    session.commit()
    flash(done, "info")
    return redirect(url_for("supervisor.overdue"))


def _local_deadline(text: str) -> datetime:
    """A deadline typed on the page, in Beijing time: ``2026-12-20T18:00`` (datetime-local), or a date alone,
    which means the end of that day."""
    text = text.strip().replace(" ", "T")
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            day = datetime.fromisoformat(text).date()
            return datetime.combine(day + timedelta(days=1), time(0), zone())
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?", text):
            return datetime.fromisoformat(text).replace(tzinfo=zone())
    except (ValueError, OverflowError):  # no such day, or the day after 9999-12-31
        pass
    raise TaskRuleError("请填写新的核实期限（年-月-日 时:分，北京时间）", Reason.INVALID)


@bp.post("/overdue/<int:task_id>/assign")
@role_required("supervisor")
def overdue_assign(task_id: int) -> Any:
    """转交: give an overdue or escalated task to an agent on duty."""
    agent_id = (request.form.get("agent") or "").strip()[:64]

    def reassign(session: Session) -> str:
        known = session.scalar(select(WebUser.id).where(WebUser.role == "agent", WebUser.agent_id == agent_id,
                                                        WebUser.active.is_(True)))
        if not agent_id or known is None:
            raise AssignmentError("请选择一位在岗坐席", Reason.INVALID)
        task = session.get(CallbackTask, task_id)
        before = task.assigned_agent if task is not None else None
        assign(session, [task_id], agent_id, datetime.now(timezone.utc), f"supervisor:{current_user.username}")
        audit(session, "task_assigned", f"task:{task_id}", agent=agent_id, previous=before)
        return f"已将任务 #{task_id} 转交坐席 {agent_id}"

    return _overdue_action(reassign)


@bp.post("/overdue/<int:task_id>/extend")
@role_required("supervisor")
def overdue_extend(task_id: int) -> Any:
    """延长核实期限, with the reason the history and the audit trail keep."""
    reason = request.form.get("reason") or ""

    def extend(session: Session) -> str:
        new_deadline = _local_deadline(request.form.get("verify_by") or "")
        old = session.scalar(select(CallbackTask.verify_by).where(CallbackTask.id == task_id))
        task = extend_deadline(session, store().rules.callback, task_id, new_deadline, reason,
                               datetime.now(timezone.utc), f"supervisor:{current_user.username}")
        audit(session, "deadline_extended", f"task:{task_id}", reason=reason.strip(),
              old_verify_by=local_time(old, zone()) if old else None, verify_by=local_time(task.verify_by, zone()))
        return f"任务 #{task_id} 的核实期限已延长至 {local_time(task.verify_by, zone())}"

    return _overdue_action(extend)


@bp.errorhandler(ScoringError)
def scoring_broken(error: ScoringError) -> Any:
    return render_template("error.html", code=500, message="计分规则文件有误", detail=str(error)), 500
