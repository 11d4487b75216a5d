"""The demo's last step: the web tool on the demo's store, with sign-ins for each role.

Passwords are made fresh on every run and printed (the demo's store is a local
SQLite file); the server listens on 127.0.0.1 only, until Ctrl-C.
"""

from __future__ import annotations

import secrets

import click
import waitress
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from rating_core.ratings.store import RatingStore
from rating_core.rules.settings import Settings
from rating_core.store.models import WebUser
from web import create_app
from web.accounts import create_user

# username: (role, name, 工号 or unit); 工号 2001 is not among the simulated callers' agents (1000–1039).
DEMO_USERS = {
    "demo-agent": ("agent", "回访坐席（演示）", "2001"),
    "demo-boss": ("supervisor", "质检主管（演示）", None),
    "demo-admin": ("admin", "管理员（演示）", None),
    "demo-unit": ("unit", "市人社局（演示）", "市人社局"),
}


def demo_logins(store: RatingStore) -> dict[str, str]:
    """Create or reset the demo users; their new passwords by username."""
    passwords = {}
    with store.sessions.begin() as session:
        for username, (role, name, extra) in DEMO_USERS.items():
            password = secrets.token_urlsafe(9)
            user = session.scalars(select(WebUser).where(WebUser.username == username)).one_or_none()
            if user is None:
                create_user(session, username, password, role, name,
                            agent_id=extra if role == "agent" else None, unit=extra if role == "unit" else None)
            else:
                user.password_hash = generate_password_hash(password)
            passwords[username] = password
    return passwords


def serve_web(store: RatingStore, port: int, settings: Settings) -> None:
    passwords = demo_logins(store)
    app = create_app(store, {"DEMO": True, "SESSION_COOKIE_SECURE": False}, settings)
    click.echo(f"\n9. the web tool: http://127.0.0.1:{port}/  (Ctrl-C stops the demo; the SMS links above open here)")
    for username, (role, name, _extra) in DEMO_USERS.items():
        click.echo(f"   {name:<12} {username:<11} 密码 {passwords[username]}")
    waitress.serve(app, host="127.0.0.1", port=port, threads=4, _quiet=True)
