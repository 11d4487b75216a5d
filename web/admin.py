"""Admins: the audit trail (who revealed numbers, played recordings, signed in) and the user list."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import select

from rating_core.models import AuditEntry, WebUser
from web import db
from web.roles import ROLES, role_required

bp = Blueprint("admin", __name__, url_prefix="/admin")

AUDIT_ACTIONS = {"reveal_number": "查看完整号码", "play_recording": "播放录音", "login": "登录",
                 "login_failed": "登录失败"}


@bp.get("/audit")
@role_required("admin")
def audit() -> Any:
    action = request.args.get("action") or None
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(500)
    if action in AUDIT_ACTIONS:
        query = query.where(AuditEntry.action == action)
    return render_template("admin/audit.html", entries=db().scalars(query).all(), actions=AUDIT_ACTIONS,
                           chosen=action)


@bp.get("/users")
@role_required("admin")
def users() -> Any:
    return render_template("admin/users.html", users=db().scalars(select(WebUser).order_by(WebUser.id)).all(),
                           roles=ROLES)
