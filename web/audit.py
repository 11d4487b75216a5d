"""The audit trail: who revealed which number, played which recording, signed in or failed to."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import request
from flask_login import current_user
from sqlalchemy.orm import Session

from rating_core.store.audit_log import add_entry

T = TypeVar("T")

# What an entry's target ("task:1:voice") is, as the audit page names it.
_TARGETS = {"task": "回访任务 #{}", "attempt": "第 {} 号呼叫", "endpoint": "推送地址 #{}", "appeal": "申诉 #{}",
            "rating": "评价 #{}", "sample": "质检抽样 #{}", "quality": "质检记录 #{}"}
_TARGET_PARTS = {"voice": "的留言录音", "recording": "的通话录音", "evidence": "的证明材料 #{}"}


def target_name(target: str | None) -> str:
    """``task:1:voice`` → 回访任务 #1 的留言录音, ``endpoint:3`` → 推送地址 #3; anything else as it is."""
    if not target:
        return ""
    kind, _, rest = target.partition(":")
    if kind == "number" and rest:
        return f"号码 {rest}"  # masked when written: the audit trail never holds a full number it did not need
    number, _, part = rest.partition(":")
    part, _, part_number = part.partition(":")  # appeal:3:evidence:7 → 申诉 #3 的证明材料 #7
    if kind not in _TARGETS or not number.isdigit() or (part and part not in _TARGET_PARTS):
        return target
    return _TARGETS[kind].format(number) + (" " + _TARGET_PARTS[part].format(part_number) if part else "")


def audit(session: Session, action: str, target: str | None = None, /, *, username: str | None = None,
          **detail: object) -> None:
    """Add an entry to the caller's transaction: the action and its audit entry commit together.

    ``session``, ``action`` and ``target`` are positional only, so that a detail may be named ``action``
    too (the audit export records its filters, one of which is the action chosen)."""
    signed_in = current_user.is_authenticated
    add_entry(session, action, username=username or (current_user.username if signed_in else "-"),
              role=current_user.role if signed_in else None, target=target, detail=detail,
              remote_addr=request.remote_addr)


def audited(change: Callable[[Session], T], action: str, target: str | None = None, /,
            **detail: object) -> Callable[[Session], T]:
    """``change`` followed by its audit entry, in the same transaction (for :func:`web.changes.commit_or_flash`):
    a refused change leaves no entry, a made one always has one."""
    def run(session: Session) -> T:
        result = change(session)
        audit(session, action, target, **detail)  # type: ignore[arg-type]  # ``username`` is never in detail
        return result

    return run


# The detail an entry keeps, as the audit page and its export name it; a key not here shows as it is.
DETAIL_NAMES = {
    "reason": "理由", "agent": "坐席", "previous": "原坐席", "tasks": "任务", "old_verify_by": "原核实期限",
    "verify_by": "新核实期限", "decision": "结论", "finding": "认定", "note": "意见", "listed": "加入名单",
    "total": "总分", "parts": "分项", "comment": "评语", "period": "时段", "dimension": "维度", "name": "对象",
    "points": "分值", "count": "条数", "url": "地址", "file": "文件", "number": "号码", "stopped": "停止的任务",
    "strata": "分层", "per_stratum": "每层", "items": "条数", "seed": "随机种子", "since": "起始时间",
    "format": "格式", "from": "开始日期", "to": "结束日期", "user": "用户", "action": "操作", "command": "命令",
    "files": "证明材料",
    # the retention pass's counts
    "voice_messages": "留言录音", "callback_recordings": "回访录音", "transcoded_copies": "转码副本",
    "evidence_files": "申诉证明材料", "calls": "来电", "callback_tasks": "回访任务", "sms_reminders": "短信提醒",
    "blocked_numbers": "恶意评价名单", "entries": "条目", "before": "早于",
}


def detail_text(detail: dict[str, object] | None) -> str:
    """``{"reason": "…", "agent": "2001"}`` → ``理由：…；坐席：2001``."""
    parts = []
    for key, value in (detail or {}).items():
        if isinstance(value, dict):
            value = "，".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            value = "、".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "是" if value else "否"
        parts.append(f"{DETAIL_NAMES.get(key, key)}：{value}")
    return "；".join(parts)
