"""Entries in the audit trail, from whichever part acts: the web tool, the command line, a scheduled pass.

The web tool adds the signed-in user and the request's address (``web/audit.py``); a command run on the
server names the operating-system account that ran it, ``cli:<user>``, so that a full number taken out
on the command line is as traceable as one revealed on a page.
"""

from __future__ import annotations

import getpass
from datetime import datetime, timezone

from sqlalchemy.orm import Session

from rating_core.store.models import AuditEntry

# The columns' sizes (models.AuditEntry): a longer name would be refused by PostgreSQL, the entry lost.
_USERNAME_SIZE, _TARGET_SIZE, _ADDRESS_SIZE = 64, 128, 64


def add_entry(session: Session, action: str, *, username: str, role: str | None = None, target: str | None = None,
              remote_addr: str | None = None, detail: dict[str, object] | None = None,
              at: datetime | None = None) -> AuditEntry:
    """Add an entry to the session's transaction, so that the action and its entry commit together;
    detail items that are None are left out."""
    entry = AuditEntry(
        at=at or datetime.now(timezone.utc), username=username[:_USERNAME_SIZE], role=role, action=action,
        target=target[:_TARGET_SIZE] if target else target,
        detail={key: value for key, value in (detail or {}).items() if value is not None},
        remote_addr=remote_addr[:_ADDRESS_SIZE] if remote_addr else remote_addr,
    )
    session.add(entry)
    return entry


def command_line_user() -> str:
    """``cli:`` and the operating-system account running this command; ``cli:?`` where it has none
    (a container's user id with no name)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:?"
