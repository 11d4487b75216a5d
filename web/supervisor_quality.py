"""Supervisors: quality listening (质检抽听) — drawing samples, listening, scoring
(routes on the supervisor blueprint)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from rating_core.reports.figures import current_quarter, parse_period
from rating_core.reports.quality import (
    STRATA,
    QualityRubric,
    RubricError,
    draw_sample,
    load_quality_rubric,
    score_by_rubric,
)
from rating_core.store.models import Call, QualityItem, QualitySample
from web.audit import audit
from web.changes import commit_or_flash, whole_number
from web.context import db, store
from web.recordings import serve_recording
from web.roles import role_required
from web.supervision import bp, zone


def _rubric() -> QualityRubric:
    """The 评分细则, read once per process (``QUALITY_RUBRIC_FILE``, else the shipped one)."""
    if "hotline_quality_rubric" not in current_app.extensions:
        current_app.extensions["hotline_quality_rubric"] = load_quality_rubric(
            current_app.config.get("QUALITY_RUBRIC_FILE"))
    rubric: QualityRubric = current_app.extensions["hotline_quality_rubric"]
    return rubric


@bp.get("/quality")
@role_required("supervisor")
def quality() -> Any:
    samples = db().scalars(select(QualitySample).order_by(QualitySample.id.desc())).all()
    return render_template("supervisor/quality.html", samples=samples, strata=STRATA,
                           period=current_quarter(datetime.now(timezone.utc), zone()))


@bp.post("/quality")
@role_required("supervisor")
def new_sample() -> Any:
    form = request.form

    def draw(session: Session) -> QualitySample:
        drawn = draw_sample(
            session, store().rules, parse_period(form.get("period", ""), zone()), tuple(form.getlist("strata")),
            whole_number(form.get("per_stratum"), "每层抽取数须为整数"), secrets.randbelow(2**31),
            current_user.username, datetime.now(timezone.utc),
        )
        audit(session, "quality_sample_drawn", f"sample:{drawn.id}", period=drawn.period, strata=drawn.strata,
              per_stratum=drawn.per_stratum, items=len(drawn.items), seed=drawn.seed)
        return drawn

    sample = commit_or_flash(draw)
    if sample is None:
        return redirect(url_for("supervisor.quality"))
    flash(f"已抽取 {len(sample.items)} 条录音", "info")
    return redirect(url_for("supervisor.quality_sample", sample_id=sample.id))


@bp.get("/quality/<int:sample_id>")
@role_required("supervisor")
def quality_sample(sample_id: int) -> Any:
    sample = db().scalars(
        select(QualitySample).where(QualitySample.id == sample_id)
        .options(selectinload(QualitySample.items).joinedload(QualityItem.call).joinedload(Call.rating))
    ).one_or_none()
    if sample is None:
        abort(404)
    return render_template("supervisor/quality_sample.html", sample=sample, strata=STRATA, rubric=_rubric())


@bp.post("/quality/items/<int:item_id>/score")
@role_required("supervisor")
def score(item_id: int) -> Any:
    item = db().get(QualityItem, item_id)
    if item is None:
        abort(404)
    form = request.form
    comment = form.get("comment", "")

    def scored_item(session: Session) -> QualityItem:
        now = datetime.now(timezone.utc)
        rubric = _rubric()
        # Item by item, always: a total alone would be a score nobody can check against the rubric.
        given = {entry.code: form.get(f"part_{entry.code}") for entry in rubric.items}
        done = score_by_rubric(session, rubric, item_id, given, comment, current_user.username, now)
        audit(session, "quality_scored", f"quality:{item_id}", total=done.score,
              parts={part["name"]: part["score"] for part in done.item_scores or []} or None,
              comment=done.comment)
        return done

    scored = commit_or_flash(scored_item)
    if scored is not None:
        flash("评分已保存", "info")
    return redirect(url_for("supervisor.quality_sample", sample_id=item.sample_id) + f"#item-{item_id}")


@bp.get("/quality/items/<int:item_id>/recording")
@role_required("supervisor")
def quality_recording(item_id: int) -> Any:
    item = db().get(QualityItem, item_id)
    if item is None:
        abort(404)
    return serve_recording(item.call.recording_file, f"call:{item.call.uniqueid}:recording")


@bp.errorhandler(RubricError)
def rubric_broken(error: RubricError) -> Any:
    return render_template("error.html", code=500, message="质检评分细则文件有误", detail=str(error)), 500
