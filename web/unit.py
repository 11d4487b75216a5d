"""Rated units (承办单位): their 差评 with the appeal deadline, and filing an appeal (申诉)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from rating_core.complaints.appeals import file_appeal
from rating_core.store.models import Appeal, Call, CallbackTask, Rating
from web.changes import commit_or_flash
from web.context import db, store
from web.roles import role_required

bp = Blueprint("unit", __name__, url_prefix="/unit")


@bp.get("/")
@role_required("unit")
def home() -> Any:
    """The 差评 of the signed-in unit, newest first, with the deadline to appeal each."""
    tasks = db().scalars(
        select(CallbackTask).join(CallbackTask.rating).join(Rating.call)
        .where(Call.unit == current_user.unit, Rating.is_negative.is_(True))
        .options(joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(CallbackTask.appeal_file_by.desc())
    ).all()
    appeals = {a.task_id: a for a in db().scalars(select(Appeal).where(Appeal.unit == current_user.unit))}
    return render_template("unit/home.html", tasks=tasks, appeals=appeals, now=datetime.now(timezone.utc))


@bp.post("/tasks/<int:task_id>/appeal")
@role_required("unit")
def appeal(task_id: int) -> Any:
    filed = commit_or_flash(lambda session: file_appeal(
        session, store().rules.callback, task_id, current_user.unit or "", request.form.get("reason", ""),
        datetime.now(timezone.utc), f"unit:{current_user.username}",
    ))
    if filed is not None:
        flash("申诉已提交，复核结果将在期限内反馈", "info")
    return redirect(url_for("unit.home"))
