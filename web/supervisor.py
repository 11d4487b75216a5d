"""Supervisors: seed 003's table per period and dimension, with chart, trend, adjustments, Excel; overdue work."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from rating_core.callback_tasks import OPEN_STATES
from rating_core.figure_rollups import daily_counts, refresh, rolled_up_counts
from rating_core.figures import DIMENSIONS, Period, PeriodError, current_quarter, figures_table, parse_period
from rating_core.figures_xlsx import write_report
from rating_core.models import CallbackTask, FigureAdjustment, Rating
from rating_core.scoring import ScoringError, ScoringRules, load_scoring_rules, rounded
from web import db, store
from web.roles import role_required

bp = Blueprint("supervisor", __name__, url_prefix="/supervisor")

FIGURE_ROLES = ("supervisor", "admin")
MAX_ADJUSTMENT = Decimal(20)


def _zone() -> ZoneInfo:
    return ZoneInfo(store().rules.callback.timezone)


def _scoring() -> ScoringRules:
    """The scoring schemes, read once per process like the rules (a changed file needs a restart)."""
    if "hotline_scoring" not in current_app.extensions:
        current_app.extensions["hotline_scoring"] = load_scoring_rules()
    return current_app.extensions["hotline_scoring"]


def _choices() -> dict[str, str]:
    """The table's period, dimension, scheme and hotline from the query string (400 in Chinese when wrong)."""
    scoring = _scoring()
    chosen = {
        "period": request.values.get("period") or current_quarter(datetime.now(timezone.utc), _zone()),
        "by": request.values.get("by") or "hotline",
        "scheme": request.values.get("scheme") or "zibo-district",
        "hotline": request.values.get("hotline") or "",
    }
    if chosen["by"] not in DIMENSIONS:
        abort(400, description=f"未知的统计维度 {chosen['by']!r}")
    if chosen["scheme"] not in scoring.schemes:
        abort(400, description=f"未知的计分规则 {chosen['scheme']!r}")
    if chosen["hotline"] and chosen["hotline"] not in store().rules.hotlines:
        abort(400, description=f"未知的热线 {chosen['hotline']!r}")
    try:
        parse_period(chosen["period"], _zone())
    except PeriodError as exc:
        abort(400, description=str(exc))
    return chosen


def _table(chosen: dict[str, str]) -> tuple[Period, list[Any]]:
    """The scored table, read from the daily rollups after bringing them up to date."""
    session = db()
    refresh(session, _zone(), datetime.now(timezone.utc))
    session.commit()
    period = parse_period(chosen["period"], _zone())
    scores = figures_table(session, period, chosen["by"], chosen["scheme"], _scoring(),
                           chosen["hotline"] or None, counts=rolled_up_counts)
    return period, scores


@bp.get("/figures")
@role_required(*FIGURE_ROLES)
def figures() -> Any:
    chosen = _choices()
    period, scores = _table(chosen)
    scoring = _scoring()
    chart = {
        "labels": [score.unit.name for score in scores],
        "scores": [float(rounded(score.total)) for score in scores],
        "trend": _trend(period, chosen["hotline"] or None),
    }
    adjustments = db().scalars(
        select(FigureAdjustment).where(FigureAdjustment.period == chosen["period"],
                                       FigureAdjustment.dimension == chosen["by"])
        .order_by(FigureAdjustment.id)
    ).all()
    return render_template("supervisor/figures.html", chosen=chosen, scores=scores, scoring=scoring,
                           scheme=scoring.schemes[chosen["scheme"]], dimensions=DIMENSIONS,
                           hotlines=store().rules.hotlines, chart=chart, adjustments=adjustments)


def _trend(period: Period, hotline: str | None) -> dict[str, list[Any]]:
    """好评率 and 差评 per week (per day for a period of a fortnight or less), from one query of daily counts."""
    days = daily_counts(db(), period, hotline)
    zone = _zone()
    step = 1 if period.end - period.start <= timedelta(days=15) else 7
    first, end = period.start.astimezone(zone).date(), period.end.astimezone(zone).date()
    labels, good, negative = [], [], []
    start = first
    while start < end and len(labels) < 60:
        bucket = [days[day] for n in range(step) if (day := start + timedelta(days=n)) < end and day in days]
        m, t = sum(c["M"] for c in bucket), sum(c["T"] for c in bucket)
        labels.append(start.strftime("%m-%d"))
        good.append(round(100 * (1 - t / m), 2) if m else None)
        negative.append(sum(c["D"] for c in bucket))
        start += timedelta(days=step)
    return {"labels": labels, "good_rate": good, "negative": negative}


@bp.get("/figures.xlsx")
@role_required(*FIGURE_ROLES)
def figures_xlsx() -> Any:
    chosen = _choices()
    _period, scores = _table(chosen)
    scoring = _scoring()
    scheme = scoring.schemes[chosen["scheme"]]
    heading = DIMENSIONS[chosen["by"]][0]
    title = f"{chosen['period']}各{heading}“好差评”评估通报表"
    data = write_report(scores, scheme, scoring, title, heading, datetime.now(_zone()))
    filename = f"haochaping-{chosen['period']}-{chosen['by']}.xlsx"
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.post("/figures/adjustments")
@role_required(*FIGURE_ROLES)
def add_adjustment() -> Any:
    chosen = _choices()
    name = (request.form.get("name") or "").strip()
    reason = (request.form.get("reason") or "").strip()
    try:
        points = Decimal(request.form.get("points") or "")
    except InvalidOperation:
        points = Decimal("NaN")
    problem = None
    if not name or len(name) > 256:
        problem = "请选择单位"
    elif not points.is_finite() or abs(points) > MAX_ADJUSTMENT or points != points.quantize(Decimal("0.01")):
        problem = f"加减分须为 −{MAX_ADJUSTMENT} 到 {MAX_ADJUSTMENT} 之间的数，至多两位小数"
    elif not reason or len(reason) > 1000:
        problem = "请填写加减分理由（不超过1000字）"
    if problem:
        flash(problem, "error")
    else:
        session = db()
        session.add(FigureAdjustment(period=chosen["period"], dimension=chosen["by"], name=name, points=points,
                                     reason=reason, entered_by=current_user.username,
                                     entered_at=datetime.now(timezone.utc)))
        session.commit()
        flash(f"已为 {name} 记入加减分 {points}", "info")
    return redirect(url_for("supervisor.figures", **chosen))


@bp.get("/overdue")
@role_required(*FIGURE_ROLES)
def overdue() -> Any:
    now = datetime.now(timezone.utc)
    tasks = db().scalars(
        select(CallbackTask)
        .where(CallbackTask.state.in_(OPEN_STATES),
               or_(CallbackTask.verify_by <= now, CallbackTask.escalated_at.is_not(None),
                   CallbackTask.rectify_by <= now))
        .options(joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(CallbackTask.verify_by)
    ).all()
    return render_template("supervisor/overdue.html", tasks=tasks)


@bp.errorhandler(ScoringError)
def scoring_broken(error: ScoringError) -> Any:
    return render_template("error.html", code=500, message="计分规则文件有误", detail=str(error)), 500


# Appeals, the malicious list and quality listening are supervisor pages too, in modules of their own
# whose routes join this blueprint when imported.
from web import supervisor_appeals, supervisor_quality  # noqa: E402

VIEW_MODULES = (supervisor_appeals, supervisor_quality)
