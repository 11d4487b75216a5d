"""Signing in and out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_user, logout_user

from rating_core.store.models import WebUser
from web.accounts import SignedIn, authenticate
from web.audit import audit
from web.context import db, login_manager
from web.forms import ActionForm, LoginForm
from web.roles import HOME, role_required

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(user_id: str) -> SignedIn | None:
    user = db().get(WebUser, int(user_id)) if user_id.isdigit() else None
    return SignedIn(user) if user is not None and user.active else None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if form.validate_on_submit():
        session = db()
        user = authenticate(session, form.username.data or "", form.password.data or "")
        if user is None:
            audit(session, "login_failed", username=(form.username.data or "-")[:64])
            session.commit()
            flash("用户名或密码错误", "error")
            return render_template("login.html", form=form), 401
        login_user(SignedIn(user))
        audit(session, "login")
        session.commit()
        return redirect(_safe_next() or url_for(HOME[user.role]))
    return render_template("login.html", form=form)


def _safe_next() -> str | None:
    """Only a path on this site: never an open redirect."""
    target = request.args.get("next") or ""
    parts = urlsplit(target)
    return target if target.startswith("/") and not target.startswith("//") and not parts.netloc else None


@bp.post("/logout")
@role_required("agent", "supervisor", "admin", "unit")
def logout() -> Any:
    if ActionForm().validate_on_submit():
        logout_user()
        flash("已退出登录", "info")
    return redirect(url_for("auth.login"))
