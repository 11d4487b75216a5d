"""What every view reaches for during a request: the store, the request's database session, and the Flask
extensions the app factory sets up (logins, CSRF, the sign-in throttle).

Apart from ``web/__init__.py`` so that the blueprints import these without importing the factory that
imports them.
"""

from __future__ import annotations

from flask import current_app, g
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from rating_core.ratings.store import RatingStore
from web.sign_in_throttle import SignInThrottle

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "请先登录"


def store() -> RatingStore:
    return current_app.extensions["hotline_store"]


def db() -> Session:
    """The request's session (closed at teardown); commit explicitly, one transaction per action."""
    if "db_session" not in g:
        g.db_session = store().sessions()
    return g.db_session


def sign_in_throttle() -> SignInThrottle:
    """The app's count of failed sign-ins (web.auth sets it up)."""
    return current_app.extensions["sign_in_throttle"]
