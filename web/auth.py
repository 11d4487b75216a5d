"""Signing in and out: throttled sign-in, a fresh session at sign-in, sessions that end at sign-out.

A session cookie is signed, not stored, so signing out cannot delete it: each one carries the user's session
epoch from the moment of sign-in, and every request compares it with the user's current one, which sign-out
and a password change raise. A cookie copied before then opens nothing after.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask.blueprints import BlueprintSetupState
from flask_login import current_user, login_user, logout_user

from rating_core.store.models import WebUser
from web.accounts import SignedIn, authenticate, end_sessions, warm_up
from web.audit import audit
from web.context import db, login_manager, sign_in_throttle
from web.forms import ActionForm, LoginForm
from web.roles import HOME, ROLES, role_required
from web.sign_in_throttle import Lock, SignInThrottle

bp = Blueprint("auth", __name__)

EPOCH = "session_epoch"  # the session key that holds the user's epoch at sign-in
# A path on this site and nothing else: one slash, then no second slash or backslash (which browsers read as
# //host), no control characters or spaces (no header injection).
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]*")
_MAX_USER_ID = 10**12  # a user id past this cannot be one of ours; int() of it must not reach the database


def _set_up(state: BlueprintSetupState) -> None:
    app = state.app
    # The demo runs in one process and may have no Redis: its counts of failed sign-ins stay in memory.
    storage = "memory://" if app.config.get("DEMO") else app.config["SIGN_IN_STORAGE"]
    app.extensions["sign_in_throttle"] = SignInThrottle(storage)
    warm_up()


bp.record_once(_set_up)


@login_manager.user_loader
def load_user(user_id: str) -> SignedIn | None:
    if not (user_id.isascii() and user_id.isdigit() and int(user_id) < _MAX_USER_ID):
        return None
    user = db().get(WebUser, int(user_id))
    if user is None or not user.active or session.get(EPOCH) != user.session_epoch:
        return None  # signed out since, or the password changed: the cookie no longer opens anything
    return SignedIn(user)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if not form.validate_on_submit():
        # A form sent with a field missing or too long says so under the field, as a 400.
        return render_template("login.html", form=form), 400 if form.is_submitted() else 200
    username, address = form.username.data or "", request.remote_addr or "-"
    throttle = sign_in_throttle()
    lock = throttle.lock(username, address)
    if lock is not None:  # refused before the password is even looked at: the right one does not open a lock
        return _locked(form, lock)
    database = db()
    user = authenticate(database, username, form.password.data or "")
    if user is None:
        # No audit entry per failure (a flood of them would bury the log); one per lock, when it begins.
        lock = throttle.failed(username, address)
        if lock is not None:
            audit(database, "login_locked", username=username, scope=lock.scope, minutes=lock.minutes,
                  address=address)
            database.commit()
            return _locked(form, lock)
        flash("用户名或密码错误", "error")
        return render_template("login.html", form=form), 401
    throttle.succeeded(username)
    # A new session: nothing from before sign-in survives into it (session fixation), the CSRF token included.
    session.clear()
    g.pop("csrf_token", None)
    login_user(SignedIn(user))
    session[EPOCH] = user.session_epoch
    audit(database, "login")
    database.commit()
    return redirect(_safe_next() or url_for(HOME[user.role]))


def _locked(form: LoginForm, lock: Lock) -> Any:
    flash(lock.message, "error")
    return render_template("login.html", form=form), 429, {"Retry-After": str(lock.minutes * 60)}


def _safe_next() -> str | None:
    """Only a path on this site: never an open redirect, never a header split."""
    target = request.args.get("next") or ""
    if not _LOCAL_PATH.fullmatch(target):
        return None
    parts = urlsplit(target)
    return target if not (parts.scheme or parts.netloc) else None


@bp.post("/logout")
@role_required(*ROLES)
def logout() -> Any:
    if ActionForm().validate_on_submit():
        database = db()
        end_sessions(database, int(current_user.id))
        audit(database, "logout")
        database.commit()
        logout_user()
        session.clear()
        flash("已退出登录", "info")
    return redirect(url_for("auth.login"))
