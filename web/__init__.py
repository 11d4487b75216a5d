"""The web tool for callback agents, supervisors, admins and rated units (zh-CN, server-rendered).

``create_app()`` is the application factory (``flask --app web run`` finds
it); ``hotline-eval web`` serves it. It is the web tool's edge: the settings
it is given (else the environment's) become the app's config, which the views
read. One blueprint per role; every route
names the roles it admits, every form and htmx request carries a CSRF token,
and phone numbers are masked unless revealed (an audited action).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, g, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy.orm import Session
from werkzeug.middleware.proxy_fix import ProxyFix

from rating_core.outbox.render import deployment_context
from rating_core.ratings.store import RatingStore
from rating_core.rules.settings import Settings
from web import display, input_guard, metrics, security_headers
from web.context import csrf, login_manager
from web.ids import RecordId

ERRORS = {
    400: "请求有误",
    401: "请先登录",
    403: "您的角色无权访问此页面",
    404: "页面或记录不存在",
    405: "不支持的请求方式",
    409: "与他人的操作冲突",
    413: "上传的文件过大",
    415: "不支持的提交格式",
    500: "系统内部错误，请稍后重试；如仍出错，请联系系统管理员",
}


def create_app(store: RatingStore | None = None, config: dict[str, Any] | None = None,
               settings: Settings | None = None) -> Flask:
    settings = settings or Settings()
    app = Flask(__name__)
    # Before any route is added: every <int:…> is then a record id the database can hold (web/ids.py).
    app.url_map.converters["int"] = RecordId
    app.config.update(
        # Secrets only from the environment; without one the tool refuses to start (see below).
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.insecure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        RECORDING_ROOTS=None,  # None: the voice-message folders of the rules and Asterisk's monitor folder
        # Who the 核查整改情况报告单 is from (default: the hotline's name) and to.
        REPORT_ORGANISATION=settings.report_from,
        REPORT_ADDRESSEE=settings.report_to,
        # The platform's side of /api: its inbound signing secrets (current first) and pull tokens.
        INBOUND_SECRETS=settings.inbound_secrets,
        PULL_TOKENS=settings.pull_tokens,
        SCORING_FILE=settings.scoring_file,  # None: the shipped 淄博 schemes
        TRANSCODE_DIR=str(settings.home / "transcoded"),
        # 申诉证明材料, by random names (rating_core.complaints.appeal_evidence); a request of up to 5 files of
        # 10 MB each and the form, anything larger is refused whole with a 413 before it is read.
        EVIDENCE_DIR=str(settings.home / "evidence"),
        MAX_CONTENT_LENGTH=60 * 1024 * 1024,
        # Failed sign-ins are counted here, shared by every process of the tool (web.sign_in_throttle).
        SIGN_IN_STORAGE=settings.redis_url,
        # /metrics' readers (web/metrics.py), and the Redis /readyz asks.
        METRICS_TOKEN=settings.metrics_token,
        METRICS_FROM=settings.metrics_from,
        READINESS_REDIS_URL=settings.redis_url,
    )
    app.config.update(config or {})
    if not app.config["SECRET_KEY"]:
        if not app.config.get("DEMO"):
            raise RuntimeError("HOTLINE_EVAL_SECRET_KEY is not set: the web tool signs sessions with it")
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    if store is None:  # `flask --app web run`: the store the settings name
        from rating_core.rules.rulebook import load_rules
        from rating_core.store.database import make_engine

        store = RatingStore(make_engine(settings.database_url), load_rules(settings.rules_file),
                            region_code=settings.region_code, number_key=settings.number_key)
    app.extensions["hotline_store"] = store
    # The codes a profile's body may carry, for the pull API's ?profile= (as the delivery pass renders).
    app.extensions["hotline_render_context"] = deployment_context(store.rules, settings)
    if settings.proxies:
        # Behind a reverse proxy every request comes from the proxy: the audit log and the per-address sign-in
        # lock need the client's address, from the X-Forwarded-For the trusted proxies append to.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxies, x_proto=settings.proxies)  # type: ignore[method-assign]
    if app.config["RECORDING_ROOTS"] is None:
        roots = {profile.voice_message.directory for profile in store.rules.hotlines.values()}
        app.config["RECORDING_ROOTS"] = sorted(roots | {"/var/spool/asterisk/monitor"})

    csrf.init_app(app)
    login_manager.init_app(app)
    display.register(app, store.rules)
    input_guard.register(app)
    security_headers.register(app)

    from web import admin, agent, api, auth, rate, supervision, supervisor, supervisor_appeals, supervisor_quality, unit

    # The supervisors' pages are three modules whose routes join the one blueprint as they are imported.
    assert all(module.bp is supervision.bp for module in (supervisor, supervisor_appeals, supervisor_quality))

    app.register_blueprint(auth.bp)
    app.register_blueprint(agent.bp)
    app.register_blueprint(supervision.bp)
    app.register_blueprint(unit.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(rate.bp)
    metrics.register(app, store)

    @app.teardown_appcontext
    def close_session(_error: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()

    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError) -> tuple[str, int]:
        return render_template("error.html", code=400,
                               message="页面已过期或来源不明（CSRF 校验失败），请刷新后重试"), 400

    for code, message in ERRORS.items():
        app.register_error_handler(code, _error_page(code, message))

    @app.get("/")
    def index() -> Any:
        return redirect(url_for("auth.login"))

    return app


def _error_page(code: int, message: str) -> Any:
    def handle(error: Exception) -> Any:
        description = getattr(error, "description", None)
        # Only a description we wrote ourselves (abort(403, description=…)); werkzeug's are English.
        detail = description if description != getattr(type(error), "description", None) else None
        if request.path.startswith(input_guard.API_PREFIX):  # a program's request: JSON, as web/api.py answers
            return jsonify({"error": f"{message}：{detail}" if detail else message}), code
        if code == 401 and request.method == "GET" and not request.headers.get("HX-Request"):
            return redirect(url_for("auth.login", next=request.full_path))
        return render_template("error.html", code=code, message=message, detail=detail), code

    return handle

