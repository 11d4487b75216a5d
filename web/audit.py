"""The audit trail: who revealed which number, played which recording, signed in or failed to."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import request
from flask_login import current_user
from sqlalchemy.orm import Session

from rating_core.store.models import AuditEntry


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
