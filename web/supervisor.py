"""Supervisors: seed 003's table per period and dimension, with chart, trend, adjustments, Excel; overdue work."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeSerializer
from flask_login import current_user
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload, selectinload

from rating_core.callback_tasks import OPEN_STATES
from rating_core.figure_rollups import refresh, rolled_up_counts
from rating_core.figures import DIMENSIONS, Period, PeriodError, current_quarter, figures_table, parse_period
from rating_core.figures_xlsx import write_report
from rating_core.appeals import FINDINGS as APPEAL_FINDINGS
from rating_core.appeals import AppealError, block_number, decide_appeal, unblock_number
from rating_core.models import Appeal, BlockedNumber, Call, CallbackTask, FigureAdjustment, QualityItem, QualitySample, \
    Rating
from rating_core.quality import STRATA, QualityError, draw_sample, score_item
from rating_core.scoring import ScoringError, load_scoring_rules, rounded
from web import db, store
from web.recordings import serve_recording
from web.roles import role_required

bp = Blueprint("supervisor", __name__, url_prefix="/supervisor")

FIGURE_ROLES = ("supervisor", "admin")
MAX_ADJUSTMENT = Decimal(20)


def _zone() -> ZoneInfo:
    return ZoneInfo(store().rules.callback.timezone)


def _choices() -> dict[str, str]:
    """The table's period, dimension, scheme and hotline from the query string (400 in Chinese when wrong)."""
    scoring = load_scoring_rules()
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
    scores = figures_table(session, period, chosen["by"], chosen["scheme"], load_scoring_rules(),
                           chosen["hotline"] or None, counts=rolled_up_counts)
    return period, scores


@bp.get("/figures")
@role_required(*FIGURE_ROLES)
def figures() -> Any:
    chosen = _choices()
    period, scores = _table(chosen)
    scoring = load_scoring_rules()
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
    """好评率 and 差评 per week (per day for a period of a fortnight or less)."""
    step = timedelta(days=1) if period.end - period.start <= timedelta(days=15) else timedelta(days=7)
    labels, good, negative = [], [], []
    start = period.start
    while start < period.end and len(labels) < 60:
        end = min(start + step, period.end)
        units = rolled_up_counts(db(), Period("", start, end, _zone()), "hotline", hotline)
        m = sum(unit.counts["M"] for unit in units)
        t = sum(unit.counts["T"] for unit in units)
        labels.append(start.astimezone(_zone()).strftime("%m-%d"))
        good.append(round(100 * (1 - t / m), 2) if m else None)
        negative.append(sum(unit.counts["D"] for unit in units))
        start = end
    return {"labels": labels, "good_rate": good, "negative": negative}


@bp.get("/figures.xlsx")
@role_required(*FIGURE_ROLES)
def figures_xlsx() -> Any:
    chosen = _choices()
    _period, scores = _table(chosen)
    scoring = load_scoring_rules()
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


# -- 申诉复核 and the malicious-rater list ---------------------------------------------------------


@bp.get("/appeals")
@role_required(*FIGURE_ROLES)
def appeals() -> Any:
    """Appeals under review first, by their review deadline; then the decided ones."""
    rows = db().scalars(
        select(Appeal).options(joinedload(Appeal.task).joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(Appeal.decision.is_not(None), Appeal.review_by)
    ).all()
    return render_template("supervisor/appeals.html", appeals=rows, findings=APPEAL_FINDINGS)


@bp.post("/appeals/<int:appeal_id>/decide")
@role_required("supervisor")
def decide(appeal_id: int) -> Any:
    form = request.form
    session = db()
    try:
        decide_appeal(session, appeal_id, form.get("decision") == "upheld", form.get("finding") or None,
                      form.get("note", ""), datetime.now(timezone.utc), f"supervisor:{current_user.username}",
                      block_number=form.get("block") == "1")
    except AppealError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("supervisor.appeals"))
    session.commit()
    flash("复核结论已保存", "info")
    return redirect(url_for("supervisor.appeals"))


@bp.get("/blocked")
@role_required(*FIGURE_ROLES)
def blocked() -> Any:
    entries = db().scalars(select(BlockedNumber).order_by(BlockedNumber.added_at.desc())).all()
    # The page shows masked numbers only; removal posts an opaque signed token, not the number.
    tokens = {entry.number: _number_tokens().dumps(entry.number) for entry in entries}
    return render_template("supervisor/blocked.html", entries=entries, tokens=tokens)


def _number_tokens() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="blocked-number")


@bp.post("/blocked")
@role_required("supervisor")
def add_blocked() -> Any:
    session = db()
    try:
        block_number(session, request.form.get("number", ""), request.form.get("reason", ""),
                     datetime.now(timezone.utc), f"supervisor:{current_user.username}")
    except AppealError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("supervisor.blocked"))
    session.commit()
    flash("已加入恶意评价名单：此后该号码的评价不予采纳、不回访", "info")
    return redirect(url_for("supervisor.blocked"))


@bp.post("/blocked/remove")
@role_required("supervisor")
def remove_blocked() -> Any:
    session = db()
    try:
        unblock_number(session, _number_tokens().loads(request.form.get("token", "")))
    except BadSignature:
        abort(400, description="无效的号码标识")
    except AppealError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("supervisor.blocked"))
    session.commit()
    flash("已移出恶意评价名单", "info")
    return redirect(url_for("supervisor.blocked"))


# -- quality listening ------------------------------------------------------------------------------


@bp.get("/quality")
@role_required(*FIGURE_ROLES)
def quality() -> Any:
    samples = db().scalars(select(QualitySample).order_by(QualitySample.id.desc())).all()
    return render_template("supervisor/quality.html", samples=samples, strata=STRATA,
                           period=current_quarter(datetime.now(timezone.utc), _zone()))


@bp.post("/quality")
@role_required("supervisor")
def new_sample() -> Any:
    form = request.form
    session = db()
    try:
        period = parse_period(form.get("period", ""), _zone())
        per_stratum = int(form.get("per_stratum") or 0)
        sample = draw_sample(session, store().rules, period, tuple(form.getlist("strata")), per_stratum,
                             secrets.randbelow(2**31), current_user.username, datetime.now(timezone.utc))
    except (PeriodError, QualityError) as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("supervisor.quality"))
    except ValueError:
        session.rollback()
        flash("每层抽取数须为整数", "error")
        return redirect(url_for("supervisor.quality"))
    session.commit()
    flash(f"已抽取 {len(sample.items)} 条录音", "info")
    return redirect(url_for("supervisor.quality_sample", sample_id=sample.id))


@bp.get("/quality/<int:sample_id>")
@role_required(*FIGURE_ROLES)
def quality_sample(sample_id: int) -> Any:
    sample = db().scalars(
        select(QualitySample).where(QualitySample.id == sample_id)
        .options(selectinload(QualitySample.items).joinedload(QualityItem.call).joinedload(Call.rating))
    ).one_or_none()
    if sample is None:
        abort(404)
    return render_template("supervisor/quality_sample.html", sample=sample, strata=STRATA)


@bp.post("/quality/items/<int:item_id>/score")
@role_required("supervisor")
def score(item_id: int) -> Any:
    session = db()
    item = session.get(QualityItem, item_id)
    if item is None:
        abort(404)
    try:
        value = int(request.form.get("score", ""))
        score_item(session, item_id, value, request.form.get("comment", ""), current_user.username,
                   datetime.now(timezone.utc))
    except QualityError as exc:
        session.rollback()
        flash(str(exc), "error")
    except ValueError:
        session.rollback()
        flash("评分须为0到100的整数", "error")
    else:
        session.commit()
        flash("评分已保存", "info")
    return redirect(url_for("supervisor.quality_sample", sample_id=item.sample_id) + f"#item-{item_id}")


@bp.get("/quality/items/<int:item_id>/recording")
@role_required(*FIGURE_ROLES)
def quality_recording(item_id: int) -> Any:
    item = db().get(QualityItem, item_id)
    if item is None:
        abort(404)
    return serve_recording(item.call.recording_file, f"call:{item.call.uniqueid}:recording")
