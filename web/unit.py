"""Rated units (承办单位): their 差评 page by page, each one's detail and appeal (申诉) with evidence files,
and the appeal's progress. A unit sees only its own 差评, never the citizen's number or recordings."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from rating_core.complaints.appeal_evidence import (
    ACCEPT_ATTRIBUTE,
    ACCEPTED_TEXT,
    MAX_FILE_BYTES,
    MAX_FILES,
    attach_evidence,
    check_evidence,
    discard,
    stored_path,
)
from rating_core.complaints.appeals import APPEAL_REASON_MAX, FINDINGS, file_appeal
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import Appeal, AppealEvidence, Call, CallbackTask, Rating
from web.audit import audit
from web.context import db, store
from web.downloads import attachment
from web.numbers import page_number
from web.roles import role_required

bp = Blueprint("unit", __name__, url_prefix="/unit")


PAGE_SIZE = 50
# The status a refused appeal's page is sent with, by why it was refused.
_REFUSAL_STATUS = {Reason.INVALID: 400, Reason.NOT_FOUND: 404, Reason.ALREADY_DONE: 409, Reason.WRONG_STATE: 409}


@bp.get("/")
@role_required("unit")
def home() -> Any:
    """The 差评 of the signed-in unit, newest first, 50 a page, with each one's appeal deadline and status."""
    asked = page_number(request.args.get("page"))
    own = (select(CallbackTask).join(CallbackTask.rating).join(Rating.call)
           .where(Call.unit == current_user.unit, Rating.is_negative.is_(True)))
    total = db().scalar(select(func.count()).select_from(own.subquery())) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, asked), pages)
    tasks = db().scalars(
        own.options(joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(Rating.rated_at.desc(), CallbackTask.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()
    appeals = {a.task_id: a for a in db().scalars(
        select(Appeal).where(Appeal.task_id.in_([task.id for task in tasks]), Appeal.unit == current_user.unit))}
    return render_template("unit/home.html", tasks=tasks, appeals=appeals, now=datetime.now(timezone.utc),
                           total=total, page=page, pages=pages)


def _own_task(task_id: int) -> CallbackTask:
    """One of the unit's 差评, or 404: another unit's task is not said to exist."""
    task = db().scalars(
        select(CallbackTask).where(CallbackTask.id == task_id)
        .options(joinedload(CallbackTask.rating).joinedload(Rating.call), selectinload(CallbackTask.rectifications))
    ).one_or_none()
    if task is None or not current_user.unit or task.rating.call.unit != current_user.unit \
            or not task.rating.is_negative:
        abort(404)
    return task


def _detail(task_id: int, *, error: str | None = None, reason: str = "", status: int = 200) -> Any:
    task = _own_task(task_id)
    appeal = db().scalars(select(Appeal).where(Appeal.task_id == task.id)).one_or_none()
    evidence = [] if appeal is None else db().scalars(
        select(AppealEvidence).where(AppealEvidence.appeal_id == appeal.id).order_by(AppealEvidence.id)).all()
    now = datetime.now(timezone.utc)
    may_appeal = appeal is None and task.rating.is_adopted and now <= task.appeal_file_by
    return render_template(
        "unit/task.html", task=task, rating=task.rating, call=task.rating.call, appeal=appeal, evidence=evidence,
        findings=FINDINGS, may_appeal=may_appeal, now=now, error=error, reason=reason,
        reason_max=APPEAL_REASON_MAX, max_files=MAX_FILES, max_megabytes=MAX_FILE_BYTES // (1024 * 1024),
        accepted=ACCEPTED_TEXT, accept=ACCEPT_ATTRIBUTE,
    ), status


@bp.get("/tasks/<int:task_id>")
@role_required("unit")
def task(task_id: int) -> Any:
    """A 差评 of the unit: the call, what the citizen said, the verdict and rectifications, the deadlines, the
    appeal's progress, and the appeal form while one may be filed."""
    return _detail(task_id)


@bp.post("/tasks/<int:task_id>/appeal")
@role_required("unit")
def appeal(task_id: int) -> Any:
    """File the appeal and its evidence files together: on any refusal nothing is saved and no file is left."""
    _own_task(task_id)
    reason = request.form.get("reason", "")
    uploads = [upload for upload in request.files.getlist("evidence") if upload.filename]
    now, actor = datetime.now(timezone.utc), f"unit:{current_user.username}"
    session = db()
    written: list[Path] = []
    try:
        # Read at most one byte past the limit: enough to know a file is too large.
        evidence = check_evidence([(upload.filename or "", upload.stream.read(MAX_FILE_BYTES + 1))
                                   for upload in uploads])
        filed = file_appeal(session, store().rules.callback, task_id, current_user.unit or "", reason, now, actor)
        attach_evidence(session, filed.id, evidence, Path(current_app.config["EVIDENCE_DIR"]), now, actor, written)
        audit(session, "appeal_filed", f"appeal:{filed.id}", files=len(evidence))
        session.commit()
    except Refused as exc:
        session.rollback()
        discard(written)
        return _detail(task_id, error=str(exc), reason=reason[:APPEAL_REASON_MAX * 2],
                       status=_REFUSAL_STATUS.get(exc.reason, 403))
    except IntegrityError:  # another appeal of the same 差评 committed first (appeals.task_id is unique)
        session.rollback()
        discard(written)
        return _detail(task_id, error="该差评已提出过申诉", status=409)
    except BaseException:
        session.rollback()
        discard(written)
        raise
    attached = f"，附证明材料 {len(evidence)} 个" if evidence else ""
    flash(f"申诉已提交{attached}，复核结果将在期限内反馈", "info")
    return redirect(url_for("unit.task", task_id=task_id))


@bp.get("/appeals/<int:appeal_id>/evidence/<int:evidence_id>")
@role_required("unit", "supervisor")
def evidence(appeal_id: int, evidence_id: int) -> Any:
    """An evidence file, to the unit that filed the appeal and to supervisors only; every download audited."""
    session = db()
    item = session.get(AppealEvidence, evidence_id)
    if item is None or item.appeal_id != appeal_id:
        abort(404)
    if current_user.role == "unit" and (not current_user.unit or item.appeal.unit != current_user.unit):
        abort(403, description="只能查看本单位申诉的证明材料")
    if item.purged_at is not None:
        abort(404, description="证明材料已按保存期限删除")
    path = stored_path(Path(current_app.config["EVIDENCE_DIR"]), item.stored_name)
    if path is None:
        current_app.logger.error("evidence %s of appeal %s: file %s missing", evidence_id, appeal_id,
                                 item.stored_name)
        abort(404, description="证明材料文件已不存在，请联系系统管理员")
    audit(session, "download_evidence", f"appeal:{appeal_id}:evidence:{evidence_id}", file=item.original_name,
          sha256=item.sha256)
    session.commit()
    extension = item.original_name.rpartition(".")[2].lower() if "." in item.original_name else "bin"
    response = send_file(path, mimetype=item.content_type, max_age=0)
    response.headers["Content-Disposition"] = attachment(item.original_name, f"evidence-{evidence_id}.{extension}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response
