"""The audit trail: who revealed which number, played which recording, signed in or failed to."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import request
from flask_login import current_user
from sqlalchemy.orm import Session

from rating_core.store.models import AuditEntry

# What an entry's target ("task:1:voice") is, as the audit page names it.
_TARGETS = {"task": "回访任务 #{}", "attempt": "第 {} 号呼叫", "endpoint": "推送地址 #{}"}
_TARGET_PARTS = {"voice": "的留言录音", "recording": "的通话录音"}


def target_name(target: str | None) -> str:
    """``task:1:voice`` → 回访任务 #1 的留言录音, ``endpoint:3`` → 推送地址 #3; anything else as it is."""
    if not target:
        return ""
    kind, _, rest = target.partition(":")
    number, _, part = rest.partition(":")
    if kind not in _TARGETS or not number.isdigit() or (part and part not in _TARGET_PARTS):
        return target
    return _TARGETS[kind].format(number) + (" " + _TARGET_PARTS[part] if part else "")


def audit(session: Session, action: str, target: str | None = None, *, username: str | None = None,
          **detail: object) -> None:
    """Add an entry to the caller's transaction: the action and its audit entry commit together."""
    signed_in = current_user.is_authenticated
    session.add(AuditEntry(
        at=datetime.now(timezone.utc),
        username=username or (current_user.username if signed_in else "-"),
        role=current_user.role if signed_in else None,
        action=action, target=target, detail={k: v for k, v in detail.items() if v is not None},
        remote_addr=request.remote_addr,
    ))
