"""Admins: the audit trail, the user list, and the webhook endpoints with their dead letters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from rating_core.outbox.delivery_states import DeliveryStatus
from rating_core.outbox.outbox import EVENT_TYPES
from rating_core.outbox.webhook_endpoints import add_endpoint, replay, rotate_secret
from rating_core.store.models import AuditEntry, WebhookDelivery, WebhookEndpoint, WebUser
from web.audit import audit as record_audit
from web.changes import commit_or_flash
from web.context import db
from web.roles import ROLES, role_required

bp = Blueprint("admin", __name__, url_prefix="/admin")

AUDIT_ACTIONS = {"reveal_number": "查看完整号码", "play_recording": "播放录音", "login": "登录",
                 "login_failed": "登录失败", "webhook_added": "添加推送地址", "webhook_rotate": "更换推送密钥",
                 "webhook_enable": "启用推送", "webhook_disable": "停用推送", "webhook_replay": "重新推送",
                 "adjustment_added": "录入加减分", "adjustment_withdrawn": "撤销加减分",
                 "adjustment_corrected": "更正加减分"}


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


# -- webhook endpoints and dead letters -------------------------------------------------------------


@bp.get("/webhooks")
@role_required("admin")
def webhooks() -> Any:
    session = db()
    endpoints = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
    counts = {(endpoint_id, status): n for endpoint_id, status, n in session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status))}
    dead = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.DEAD)
        .options(joinedload(WebhookDelivery.event), joinedload(WebhookDelivery.endpoint))
        .order_by(WebhookDelivery.id).limit(500)
    ).all()
    return render_template("admin/webhooks.html", endpoints=endpoints, counts=counts, dead=dead,
                           statuses=tuple(DeliveryStatus), event_types=EVENT_TYPES)


@bp.post("/webhooks")
@role_required("admin")
def add_webhook() -> Any:
    def add(session: Session) -> WebhookEndpoint:
        endpoint = add_endpoint(session, request.form.get("url", "").strip(), request.form.getlist("events"),
                                datetime.now(timezone.utc))
        record_audit(session, "webhook_added", f"endpoint:{endpoint.id}", url=endpoint.url)
        return endpoint

    endpoint = commit_or_flash(add)
    if endpoint is None:
        return redirect(url_for("admin.webhooks"))
    flash(f"已添加推送地址 {endpoint.url}；签名密钥（仅显示一次，请交给接收方）：{endpoint.secret}", "info")
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/<int:endpoint_id>/<action>")
@role_required("admin")
def webhook_action(endpoint_id: int, action: str) -> Any:
    session = db()
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or action not in ("enable", "disable", "rotate"):
        abort(404)
    now = datetime.now(timezone.utc)
    if action == "rotate":
        secret = rotate_secret(session, endpoint_id, now, timedelta(hours=24)).secret
        flash(f"新签名密钥（仅显示一次；旧密钥24小时内仍同时签名）：{secret}", "info")
    else:
        endpoint.active = action == "enable"
        endpoint.disabled_reason = None if endpoint.active else f"管理员停用 {now:%Y-%m-%d %H:%M}"
        flash("已启用" if endpoint.active else "已停用", "info")
    record_audit(session, f"webhook_{action}", f"endpoint:{endpoint_id}")
    session.commit()
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/replay")
@role_required("admin")
def replay_dead() -> Any:
    session = db()
    event_id = request.form.get("event_id") or None
    count = replay(session, event_id=event_id, dead=event_id is None, now=datetime.now(timezone.utc))
    record_audit(session, "webhook_replay", event_id or "dead", count=count)
    session.commit()
    flash(f"已重新排队 {count} 条推送", "info")
    return redirect(url_for("admin.webhooks"))
