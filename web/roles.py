"""The web tool's roles and what each may do; every route states its roles with :func:`role_required`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import abort
from flask_login import current_user

ROLES = {
    "agent": "回访坐席",
    "supervisor": "质检主管",
    "admin": "系统管理员",
    "unit": "承办单位",
}
# Who may reveal a citizen's full number (always audited); nobody sees it unasked. Not admins: they run the
# tool (users, audit log, webhooks, figures) and have no case to call back, so no need for a citizen's number.
REVEAL_NUMBER = frozenset({"agent", "supervisor"})
# Who may listen to voice messages and call recordings (always audited); not admins, for the same reason.
PLAY_RECORDINGS = frozenset({"agent", "supervisor"})
# Who may read the figures (统计通报 and its Excel 通报表); 加减分 and every other supervisor decision is
# the supervisors' alone.
READ_FIGURES = frozenset({"supervisor", "admin"})
# Where each role lands after signing in.
HOME = {"agent": "agent.queue", "supervisor": "agent.queue", "admin": "admin.audit", "unit": "unit.home"}

F = TypeVar("F", bound=Callable[..., Any])


def role_required(*roles: str) -> Callable[[F], F]:
    """Signed in with one of ``roles``, or 401/403 (the error pages say so in Chinese)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                abort(401)
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        guarded.required_roles = frozenset(roles)  # type: ignore[attr-defined]  # read by the route audit
        return cast(F, guarded)

    return decorate
