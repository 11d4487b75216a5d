"""Supervisors' rulings on ratings: 申诉复核, the malicious-rater list, batch flags
(routes on the supervisor blueprint)."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timezone
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from rating_core.complaints.appeal_states import AppealDecision
from rating_core.complaints.appeals import FINDINGS as APPEAL_FINDINGS
from rating_core.complaints.appeals import Listed, block_number, decide_appeal, unblock_number
from rating_core.ratings.batch_ratings import lift_batch_flag
from rating_core.rules.privacy import mask_phone
from rating_core.store.models import Appeal, AppealEvidence, BlockedNumber, CallbackTask, Rating
from web.audit import audited
from web.changes import commit_or_flash
from web.context import db
from web.roles import role_required
from web.supervision import bp

_ENTRY_ID = re.compile(r"[0-9a-f]{32}")


@bp.get("/appeals")
@role_required("supervisor")
def appeals() -> Any:
    """Appeals under review first, by their review deadline; then the decided ones."""
    rows = db().scalars(
        select(Appeal).options(joinedload(Appeal.task).joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(Appeal.decision.is_not(None), Appeal.review_by)
    ).all()
    # Each appeal's evidence files (申诉证明材料), served by unit.evidence to supervisors and the unit only.
    evidence: dict[int, list[AppealEvidence]] = {}
    for item in db().scalars(select(AppealEvidence).where(AppealEvidence.appeal_id.in_([a.id for a in rows]))
                             .order_by(AppealEvidence.id)):
        evidence.setdefault(item.appeal_id, []).append(item)
    return render_template("supervisor/appeals.html", appeals=rows, findings=APPEAL_FINDINGS, evidence=evidence)


@bp.post("/appeals/<int:appeal_id>/decide")
@role_required("supervisor")
def decide(appeal_id: int) -> Any:
    form = request.form
    decided = commit_or_flash(audited(lambda session: decide_appeal(
        session, appeal_id, form.get("decision") == AppealDecision.UPHELD, form.get("finding") or None,
        form.get("note", ""), datetime.now(timezone.utc), f"supervisor:{current_user.username}",
        block_number=form.get("block") == "1",
    ), "appeal_decided", f"appeal:{appeal_id}", decision=form.get("decision"), finding=form.get("finding") or None,
        note=form.get("note", "").strip()[:500], listed=form.get("block") == "1"))
    if decided is not None:
        listed = f"；号码已加入恶意评价名单，{_stopped(decided.listed)}" if decided.listed else ""
        flash(f"复核结论已保存{listed}", "info")
    return redirect(url_for("supervisor.appeals"))


def _stopped(listed: Listed) -> str:
    """What a listing did to the number's callbacks, so the supervisor sees the list took effect."""
    if not listed.stopped:
        return "该号码没有待呼叫的回访任务"
    return f"已停止该号码 {len(listed.stopped)} 个待呼叫的回访任务（改为不回访）"


@bp.get("/blocked")
@role_required("supervisor")
def blocked() -> Any:
    entries = db().scalars(select(BlockedNumber).order_by(BlockedNumber.added_at.desc())).all()
    # The page shows masked numbers only, and removal posts each entry's opaque id: no full number, nor anything
    # it could be decoded from, is in the page or its forms.
    ids = {entry.number: _entry_id(entry.number) for entry in entries}
    return render_template("supervisor/blocked.html", entries=entries, ids=ids)


def _entry_id(number: str) -> str:
    """A list entry's id in the page: a keyed hash of its number.

    The list's key is the number itself, so the page cannot name a row by it;
    the hash names it without revealing it (without the secret key, not even
    by trying every number). It changes when the key is rotated: a page opened
    before that no longer removes anything, and says so.
    """
    key = hashlib.sha256(b"blocked-number-id\0" + str(current_app.config["SECRET_KEY"]).encode()).digest()
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:32]


def _listed_number(entry_id: str) -> str | None:
    """The number of the list entry whose id is ``entry_id``, if it is still on the list.

    The list is kept by hand (hundreds of numbers, not millions): hashing each
    entry to find the one is cheap and needs no column of its own.
    """
    numbers = db().scalars(select(BlockedNumber.number)).all()
    return next((number for number in numbers if hmac.compare_digest(_entry_id(number), entry_id)), None)


@bp.post("/blocked")
@role_required("supervisor")
def add_blocked() -> Any:
    added = commit_or_flash(audited(lambda session: block_number(
        session, request.form.get("number", ""), request.form.get("reason", ""), datetime.now(timezone.utc),
        f"supervisor:{current_user.username}",
    ), "number_blocked", f"number:{mask_phone(request.form.get('number', '').strip())}",
        reason=request.form.get("reason", "").strip()[:500]))
    if added is not None:
        flash(f"已加入恶意评价名单：此后该号码的评价不予采纳、不回访；{_stopped(added)}", "info")
    return redirect(url_for("supervisor.blocked"))


@bp.post("/blocked/remove")
@role_required("supervisor")
def remove_blocked() -> Any:
    given = request.form.get("token", "")
    number = _listed_number(given) if _ENTRY_ID.fullmatch(given) else None
    if number is None:
        abort(400, description="无效的号码标识：名单中没有这条记录（可能已被移出），请刷新页面后重试")
    if commit_or_flash(audited(lambda session: unblock_number(session, number), "number_unblocked",
                               f"number:{mask_phone(number)}")) is not None:
        flash("已移出恶意评价名单：此后该号码的评价照常采纳；已停止的回访任务不会自动恢复", "info")
    return redirect(url_for("supervisor.blocked"))


@bp.get("/batches")
@role_required("supervisor")
def batches() -> Any:
    """Ratings the batch rule counts once with an earlier one from the same number (newest first)."""
    rows = db().scalars(
        select(Rating).options(joinedload(Rating.call)).where(Rating.batch_of_id.is_not(None))
        .order_by(Rating.rated_at.desc()).limit(500)
    ).all()
    return render_template("supervisor/batches.html", ratings=rows)


@bp.post("/batches/<int:rating_id>/lift")
@role_required("supervisor")
def lift_batch(rating_id: int) -> Any:
    lifted = commit_or_flash(audited(lambda session: lift_batch_flag(
        session, rating_id, datetime.now(timezone.utc), f"supervisor:{current_user.username}"),
        "batch_lifted", f"rating:{rating_id}"))
    if lifted is not None:
        flash("已改为单独计入主动评价", "info")
    return redirect(url_for("supervisor.batches"))
