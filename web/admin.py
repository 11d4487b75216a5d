"""Admins: the audit trail, the user list, and the webhook endpoints with their dead letters."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, joinedload

from rating_core.outbox.delivery_states import DeliveryStatus
from rating_core.outbox.outbox import EVENT_TYPES
from rating_core.outbox.profile import DEFAULT_PROFILE, load_profile, shipped_profiles
from rating_core.outbox.webhook_endpoints import EndpointError, add_endpoint, replay, rotate_secret
from rating_core.reports.cell_text import csv_text
from rating_core.store.models import AuditEntry, WebhookDelivery, WebhookEndpoint, WebUser
from web.audit import audit as record_audit
from web.audit import detail_text, target_name
from web.changes import commit_or_flash
from web.context import db, store
from web.downloads import attachment
from web.numbers import whole
from web.roles import ROLES, role_required

bp = Blueprint("admin", __name__, url_prefix="/admin")

AUDIT_ACTIONS = {"reveal_number": "查看完整号码", "play_recording": "播放录音", "login": "登录",
                 "login_failed": "登录失败", "login_locked": "登录锁定", "logout": "退出登录",
                 "password_changed": "修改密码", "signed_out": "结束全部会话", "webhook_added": "添加推送地址",
                 "webhook_rotate": "更换推送密钥",
                 "webhook_enable": "启用推送", "webhook_disable": "停用推送", "webhook_replay": "重新推送",
                 "adjustment_added": "录入加减分", "adjustment_withdrawn": "撤销加减分",
                 "adjustment_corrected": "更正加减分",
                 # supervisors' decisions
                 "number_blocked": "加入恶意评价名单", "number_unblocked": "移出恶意评价名单",
                 "appeal_decided": "申诉复核决定", "batch_lifted": "取消批量评价标记",
                 "rating_readopted": "恢复采纳", "task_assigned": "转交回访任务", "tasks_assigned": "批量分配回访任务",
                 "deadline_extended": "延长核实期限", "quality_sample_drawn": "抽取质检样本",
                 "quality_scored": "质检评分", "audit_exported": "导出审计日志",
                 "appeal_filed": "提出申诉", "download_evidence": "下载申诉材料",
                 "export_numbers": "命令行导出完整号码",
                 # the daily retention pass (rating_core.ratings.retention), by system:retention
                 "retention_purge": "按保存期限清理"}
AUDIT_PAGE_SIZE = 50
AUDIT_YEARS = (2000, 2099)  # the dates the audit filters accept


class AuditFilter:
    """The audit page's filters from the query string (北京 dates, a user name, an action); a 400 in Chinese
    when one cannot be read."""

    def __init__(self, values: Any, zone: ZoneInfo) -> None:
        self.first = self._date(values.get("from"), "开始日期")
        self.last = self._date(values.get("to"), "结束日期")
        if self.first and self.last and self.first > self.last:
            abort(400, description="开始日期不能晚于结束日期")
        self.user = (values.get("user") or "").strip()[:64]
        self.action = values.get("action") or ""
        if self.action and self.action not in AUDIT_ACTIONS:
            abort(400, description="未知的操作类型")
        self.zone = zone

    @staticmethod
    def _date(text: str | None, what: str) -> date | None:
        if not text:
            return None
        try:
            chosen = date.fromisoformat(text.strip())
        except ValueError:
            abort(400, description=f"{what}格式应为 年-月-日，如 2026-12-08")
        # Years 1 and 9999 parse, but their midnight in Beijing lies outside what a datetime holds in UTC.
        if not AUDIT_YEARS[0] <= chosen.year <= AUDIT_YEARS[1]:
            abort(400, description=f"{what}应在 {AUDIT_YEARS[0]} 年至 {AUDIT_YEARS[1]} 年之间")
        return chosen

    def args(self) -> dict[str, str]:
        """The filters as a query string keeps them (paging links, the export link)."""
        chosen = {"from": self.first.isoformat() if self.first else "",
                  "to": self.last.isoformat() if self.last else "", "user": self.user, "action": self.action}
        return {key: value for key, value in chosen.items() if value}

    def where(self, query: Select[Any]) -> Select[Any]:
        if self.first:
            query = query.where(AuditEntry.at >= datetime.combine(self.first, time(0), self.zone))
        if self.last:
            query = query.where(AuditEntry.at < datetime.combine(self.last + timedelta(days=1), time(0), self.zone))
        if self.user:
            query = query.where(AuditEntry.username == self.user)
        if self.action:
            query = query.where(AuditEntry.action == self.action)
        return query


def _zone() -> ZoneInfo:
    return ZoneInfo(store().rules.callback.timezone)


@bp.get("/audit")
@role_required("admin")
def audit() -> Any:
    chosen = AuditFilter(request.args, _zone())
    page = whole(request.args.get("page") or "1", most=1_000_000)
    if not page:  # not digits, past the bound, or 0
        abort(400, description="页码应为正整数")
    session = db()
    total = session.scalar(chosen.where(select(func.count()).select_from(AuditEntry))) or 0
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    entries = session.scalars(chosen.where(select(AuditEntry)).order_by(AuditEntry.id.desc())
                              .offset((page - 1) * AUDIT_PAGE_SIZE).limit(AUDIT_PAGE_SIZE)).all()
    users = session.scalars(select(WebUser.username).order_by(WebUser.username)).all()
    return render_template("admin/audit.html", entries=entries, actions=AUDIT_ACTIONS, chosen=chosen,
                           filters=chosen.args(), page=page, pages=pages, total=total, users=users,
                           detail_text=detail_text)


AUDIT_CSV_HEADER = ("时间（北京时间）", "用户", "角色", "操作", "操作代码", "对象", "对象代码", "详情", "来源地址")


@bp.get("/audit.csv")
@role_required("admin")
def audit_csv() -> Any:
    """The filtered entries, newest first, all of them (streamed): UTF-8 with a BOM, so Excel reads the Chinese."""
    zone = _zone()
    chosen = AuditFilter(request.args, zone)
    query = chosen.where(select(AuditEntry)).order_by(AuditEntry.id.desc()).execution_options(yield_per=500)
    session = db()

    def rows() -> Iterator[str]:
        """Read in a session of its own, closed when the last row is out (or the client goes away), so that
        no transaction outlives the download, however the response is closed."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(AUDIT_CSV_HEADER)
        with store().sessions() as reading:
            for n, entry in enumerate(reading.scalars(query), 1):
                writer.writerow([csv_text(value) for value in (
                    entry.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), entry.username,
                    ROLES.get(entry.role or "", entry.role or ""), AUDIT_ACTIONS.get(entry.action, entry.action),
                    entry.action, target_name(entry.target), entry.target or "", detail_text(entry.detail),
                    entry.remote_addr or "")])
                if n % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    record_audit(session, "audit_exported", None, **chosen.args())
    session.commit()
    stamp = datetime.now(zone).strftime("%Y%m%d-%H%M")
    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": attachment(f"审计日志-{stamp}.csv", f"audit-{stamp}.csv")})


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
    dead, held = (session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.status == status)
        .options(joinedload(WebhookDelivery.event), joinedload(WebhookDelivery.endpoint))
        .order_by(WebhookDelivery.id).limit(500)
    ).all() for status in (DeliveryStatus.DEAD, DeliveryStatus.HELD))
    profiles = {name: load_profile(name).title for name in shipped_profiles()}
    return render_template("admin/webhooks.html", endpoints=endpoints, counts=counts, dead=dead, held=held,
                           statuses=tuple(DeliveryStatus), event_types=EVENT_TYPES, profiles=profiles,
                           default_profile=DEFAULT_PROFILE)


@bp.post("/webhooks")
@role_required("admin")
def add_webhook() -> Any:
    def add(session: Session) -> WebhookEndpoint:
        profile = request.form.get("profile", "")
        if profile not in shipped_profiles():  # the form offers the shipped ones; a file's path is the CLI's
            raise EndpointError(f"请选择报文格式（{'、'.join(shipped_profiles())}）")
        endpoint = add_endpoint(session, request.form.get("url", "").strip(), request.form.getlist("events"),
                                datetime.now(timezone.utc), profile=profile)
        record_audit(session, "webhook_added", f"endpoint:{endpoint.id}", url=endpoint.url, profile=profile)
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
