"""Web users: hashed passwords, creation (the CLI makes the first admin), and signing in."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from functools import cache

from flask_login import UserMixin
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import WebUser
from web.roles import ROLES

MIN_PASSWORD_LENGTH = 10


class AccountError(Refused):
    """A user that cannot be created as asked; the message is for the person asking (zh-CN)."""

    reason = Reason.INVALID


class SignedIn(UserMixin):
    """What Flask-Login keeps of a user for the request: no ORM object outlives its session."""

    def __init__(self, user: WebUser) -> None:
        self.id = str(user.id)
        self.username = user.username
        self.display_name = user.display_name
        self.role = user.role
        self.agent_id = user.agent_id
        self.unit = user.unit

    @property
    def role_name(self) -> str:
        return ROLES[self.role]


def create_user(session: Session, username: str, password: str, role: str, display_name: str, *,
                agent_id: str | None = None, unit: str | None = None) -> WebUser:
    if role not in ROLES:
        raise AccountError(f"未知角色 {role!r}（可选：{'、'.join(ROLES)}）")
    if not username.strip() or len(username) > 64:
        raise AccountError("用户名不能为空，且不超过64个字符")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"密码至少{MIN_PASSWORD_LENGTH}个字符")
    if role == "agent" and not agent_id:
        raise AccountError("回访坐席须填写工号")
    if role == "unit" and not unit:
        raise AccountError("承办单位用户须填写单位名称")
    if session.scalars(select(WebUser.id).where(WebUser.username == username)).first() is not None:
        raise AccountError(f"用户名 {username} 已存在")
    user = WebUser(username=username.strip(), display_name=display_name or username, role=role,
                   password_hash=generate_password_hash(password), agent_id=agent_id, unit=unit,
                   active=True, created_at=datetime.now(timezone.utc))
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, username: str, password: str) -> WebUser:
    """A new password, which signs the user out everywhere: a session opened with the old one may be someone
    else's."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"密码至少{MIN_PASSWORD_LENGTH}个字符")
    user = session.scalars(select(WebUser).where(WebUser.username == username)).one_or_none()
    if user is None:
        raise AccountError(f"用户名 {username} 不存在")
    user.password_hash = generate_password_hash(password)
    end_sessions(session, user.id)
    return user


def end_sessions(session: Session, user_id: int) -> None:
    """Every session the user has open, on any device, stops working at its next request (web.auth.load_user
    compares the epoch each session cookie carries with this one)."""
    session.execute(update(WebUser).where(WebUser.id == user_id)
                    .values(session_epoch=WebUser.session_epoch + 1).execution_options(synchronize_session="fetch"))


@cache
def _unknown_user_hash() -> str:
    """A hash of the same scheme and cost as every user's, of a password nobody knows, made once a process."""
    return generate_password_hash(secrets.token_urlsafe(32))


def warm_up() -> None:
    """Make the unknown user's hash now, at start, so that not even the first sign-in of a process hashes twice."""
    _unknown_user_hash()


def authenticate(session: Session, username: str, password: str) -> WebUser | None:
    """The user if the password is theirs. Exactly one password hash whether or not the user exists or is
    active, so the time an answer takes does not tell which usernames exist."""
    user = session.scalars(select(WebUser).where(WebUser.username == username)).one_or_none()
    matches = check_password_hash(user.password_hash if user is not None else _unknown_user_hash(), password)
    return user if user is not None and user.active and matches else None
