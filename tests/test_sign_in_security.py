"""Attacks on signing in and on sessions, as the security review ran them: password guessing (per account and
per address), a cookie replayed after sign-out or a password change, usernames told apart by how long a
wrong password takes, a CSRF token or session planted before sign-in, redirects off the site after sign-in,
an admin reaching past the README's role table, and the role table itself pinned route by route.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from conftest import worker_redis_url
from rating_core.store.models import AuditEntry, WebUser
from web.sign_in_throttle import PER_ACCOUNT, PER_ADDRESS, SignInThrottle
from web_pages import csrf, signed_in, token

WRONG = "not-the-password-1"


def redis_throttle(site: Any, **limits: str) -> None:
    """The site's failed sign-ins counted in this worker's Redis, under a prefix of this test's own."""
    site.app.extensions["sign_in_throttle"] = SignInThrottle(
        worker_redis_url(1), key_prefix=f"test-sign-in-{uuid.uuid4().hex}", **limits)


def attempt(client: FlaskClient, username: str, password: str, path: str = "/login") -> Any:
    return client.post(path, data={"username": username, "password": password, "csrf_token": csrf(client, "/login")})


def audited(site: Any, action: str) -> list[AuditEntry]:
    with site.store.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def all_audited(site: Any) -> list[str]:
    with site.store.sessions() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


# -- password guessing --------------------------------------------------------------------------------


def test_the_app_counts_failures_in_redis_with_the_stated_limits(web_site, monkeypatch) -> None:
    from web import create_app

    assert (PER_ACCOUNT, PER_ADDRESS) == ("5 per 15 minutes", "30 per 15 minutes")
    made: list[str] = []
    monkeypatch.setattr("web.auth.SignInThrottle", lambda storage: made.append(storage) or SignInThrottle("memory://"))
    create_app(web_site.store, {"SECRET_KEY": "x" * 32, "SIGN_IN_STORAGE": "redis://cache.example:6379/3"})
    create_app(web_site.store, {"SECRET_KEY": "x" * 32, "DEMO": True})
    assert made == ["redis://cache.example:6379/3", "memory://"]


def test_a_redis_on_a_unix_socket_counts_the_failures_too(tmp_path) -> None:
    """REDIS_URL as redis-py spells a socket (unix://…), which the limits library names otherwise."""
    import shutil
    import subprocess

    from redis import Redis

    from waiting import HANG, wait_until

    socket_path = tmp_path / "redis.sock"
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", "0", "--save", "",
                               "--unixsocket", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        asyncio.run(wait_until(socket_path.exists, HANG))
        throttle = SignInThrottle(f"unix://{socket_path}?db=0", per_account="2/15minutes")
        assert throttle.failed("zhang", "10.0.0.9") is None
        lock = throttle.failed("zhang", "10.0.0.9")
        assert lock is not None and lock.scope == "account"
        assert Redis(unix_socket_path=str(socket_path)).dbsize() > 0  # counted there, not in memory
    finally:
        server.terminate()
        server.wait(timeout=HANG)


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(web_site) -> None:
    redis_throttle(web_site)
    guesser = web_site.app.test_client()
    answers = [attempt(guesser, "agent", f"{WRONG}{n}") for n in range(5)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 401, 429]
    assert "用户名或密码错误" in answers[0].get_data(as_text=True)
    locked = answers[-1].get_data(as_text=True)
    assert "该账号登录失败次数过多" in locked and "分钟后再试" in locked
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 15 * 60
    # The right password, from anywhere, does not open the lock; nor do more guesses.
    owner = web_site.app.test_client()
    right = attempt(owner, "agent", web_site.password)
    assert right.status_code == 429 and "分钟后再试" in right.get_data(as_text=True)
    assert owner.get("/agent/").status_code == 302  # not signed in
    assert [attempt(guesser, "agent", f"{WRONG}{n}").status_code for n in range(20)] == [429] * 20
    # One audit entry for the lock, none for each try: 25 failures do not flood the log.
    locks = audited(web_site, "login_locked")
    assert [(e.username, e.detail["scope"]) for e in locks] == [("agent", "account")]
    assert all_audited(web_site) == ["login_locked"]
    # Other accounts are not locked by it.
    assert attempt(web_site.app.test_client(), "boss", web_site.password).status_code == 302


def test_a_success_clears_the_accounts_count(web_site) -> None:
    redis_throttle(web_site)
    for _ in range(2):
        guesser = web_site.app.test_client()
        assert [attempt(guesser, "agent", WRONG).status_code for _ in range(4)] == [401] * 4
        assert attempt(web_site.app.test_client(), "agent", web_site.password).status_code == 302
    assert audited(web_site, "login_locked") == []


def test_many_accounts_guessed_from_one_address_lock_the_address(web_site) -> None:
    redis_throttle(web_site, per_address="6 per 15 minutes")
    here = web_site.app.test_client()
    answers = [attempt(here, f"nobody{n}", WRONG).status_code for n in range(6)]
    assert answers == [401] * 5 + [429]
    refused = attempt(here, "boss", web_site.password)
    assert refused.status_code == 429 and "本机地址登录失败次数过多" in refused.get_data(as_text=True)
    elsewhere = web_site.app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert attempt(elsewhere, "boss", web_site.password).status_code == 302
    locks = audited(web_site, "login_locked")
    assert [(e.username, e.detail["scope"], e.remote_addr) for e in locks] == [("nobody5", "address", "127.0.0.1")]


def test_with_redis_down_sign_in_still_works_and_the_outage_is_logged(web_site, caplog) -> None:
    web_site.app.extensions["sign_in_throttle"] = SignInThrottle("redis://127.0.0.1:1/0")
    client = web_site.app.test_client()
    with caplog.at_level(logging.ERROR, logger="web.sign_in_throttle"):
        assert attempt(client, "agent", WRONG).status_code == 401
        assert attempt(client, "agent", web_site.password).status_code == 302
    assert "sign-in throttling unavailable" in caplog.text
    assert client.get("/agent/").status_code == 200


# -- sessions that end --------------------------------------------------------------------------------


def replay(site: Any, cookie: str) -> FlaskClient:
    """A second browser holding a copy of someone's session cookie."""
    thief = site.app.test_client()
    thief.set_cookie("session", cookie)
    return thief


def session_cookie(client: FlaskClient) -> str:
    found = client.get_cookie("session")
    assert found is not None
    return found.value


def test_a_cookie_captured_before_sign_out_opens_nothing_after(web_site) -> None:
    agent = signed_in(web_site, "agent")
    captured = session_cookie(agent)
    assert replay(web_site, captured).get("/agent/").status_code == 200  # the copy works while signed in
    assert agent.post("/logout", data={"csrf_token": csrf(agent, "/agent/")}).status_code == 302
    for path in ("/agent/", "/agent/tasks/1"):
        answer = replay(web_site, captured).get(path)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    assert replay(web_site, captured).post("/agent/tasks/1/reveal", headers={"HX-Request": "true"}).status_code in (
        400, 401)
    assert "logout" in all_audited(web_site)
    # Signing in again works, with a session of its own.
    assert signed_in(web_site, "agent").get("/agent/").status_code == 200


@pytest.mark.parametrize("how", ["web.accounts", "hotline-eval users password", "hotline-eval users sign-out"])
def test_a_password_change_or_forced_sign_out_ends_every_open_session(web_site, monkeypatch, how: str) -> None:
    from hotline_eval.cli import main
    from web.accounts import set_password

    agent = signed_in(web_site, "agent")
    captured = session_cookie(agent)
    new_password = "a-new-password-42"
    if how == "web.accounts":
        with web_site.store.sessions.begin() as session:
            set_password(session, "agent", new_password)
    else:
        url = web_site.store.engine.url.render_as_string(hide_password=False)
        command = how.split()[1:] + ["agent"]
        done = CliRunner().invoke(main, command, env={"DATABASE_URL": url, "HOTLINE_EVAL_NEW_PASSWORD": new_password})
        assert done.exit_code == 0, done.output
        audited_as = "password_changed" if "password" in how else "signed_out"
        assert [e.target for e in audited(web_site, audited_as)] == ["user:agent"]
    for client in (agent, replay(web_site, captured)):
        assert client.get("/agent/").status_code == 302
    if how != "hotline-eval users sign-out":
        fresh = web_site.app.test_client()
        assert attempt(fresh, "agent", web_site.password).status_code == 401
        assert attempt(fresh, "agent", new_password).status_code == 302


def test_a_session_cookie_with_a_user_id_that_is_not_a_plain_number_opens_nothing(web_site) -> None:
    for user_id in ("²", "1" * 30, "-1"):
        client = web_site.app.test_client()
        with client.session_transaction() as planted:
            planted["_user_id"], planted["session_epoch"] = user_id, 0
        assert client.get("/agent/").status_code == 302


# -- the same time for unknown usernames -------------------------------------------------------------


def test_a_wrong_password_costs_one_hash_whether_or_not_the_user_exists(web_site, monkeypatch) -> None:
    from web.accounts import authenticate

    with web_site.store.sessions.begin() as session:
        session.scalars(select(WebUser).where(WebUser.username == "rated")).one().active = False
    hashes: list[int] = []
    real_scrypt = hashlib.scrypt

    def counted(*args: Any, **kwargs: Any) -> bytes:
        hashes.append(1)
        return real_scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    with web_site.store.sessions() as session:
        for username, password, signed in [("agent", WRONG, False), ("no-such-user", WRONG, False),
                                           ("rated", web_site.password, False), ("agent", web_site.password, True)]:
            hashes.clear()
            assert (authenticate(session, username, password) is not None) == signed
            assert len(hashes) == 1, username


# -- a new session at sign-in, and only local redirects after it ----------------------------------------


def test_sign_in_starts_a_new_session_with_a_new_csrf_token(web_site) -> None:
    client = web_site.app.test_client()
    before = csrf(client, "/login")
    with client.session_transaction() as planted:
        planted["planted"] = "by-an-attacker"
        planted_token = planted["csrf_token"]
    answer = client.post("/login", data={"username": "agent", "password": web_site.password, "csrf_token": before})
    assert answer.status_code == 302
    with client.session_transaction() as now:
        assert "planted" not in now and now.get("csrf_token") != planted_token
    # A token from before sign-in no longer passes; the page's new one does.
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    after = token(client.get("/agent/").data)
    assert after != before
    assert client.post("/logout", data={"csrf_token": after}).status_code == 302


@pytest.mark.parametrize("target", [
    "/agent/\r\nSet-Cookie: evil=1", "//evil.example/x", "/\\evil.example", "/\\/evil.example", "https://evil.example/",
    "http:/evil.example", "javascript:alert(1)", "evil.example", "/\tevil", "///evil.example", " /agent/",
])
def test_after_sign_in_next_never_leaves_the_site(web_site, target: str) -> None:
    client = web_site.app.test_client()
    answer = client.post("/login", query_string={"next": target}, data={
        "username": "agent", "password": web_site.password, "csrf_token": csrf(client, "/login")})
    assert answer.status_code == 302 and answer.headers["Location"] == "/agent/"


def test_after_sign_in_a_local_next_is_followed(web_site) -> None:
    client = web_site.app.test_client()
    sent_to_login = client.get("/agent/tasks/1?tab=history")
    assert sent_to_login.status_code == 302
    answer = client.post(sent_to_login.headers["Location"], data={
        "username": "agent", "password": web_site.password, "csrf_token": csrf(client, "/login")})
    assert answer.headers["Location"] == "/agent/tasks/1?tab=history"


# -- the README's role table ----------------------------------------------------------------------------

A, S, AD, U = "agent", "supervisor", "admin", "unit"
# Every route and the roles it admits, as the README's role table says; a new route is added here on purpose.
ROLE_TABLE = {
    "admin.add_webhook": {AD}, "admin.audit": {AD}, "admin.audit_csv": {AD}, "admin.replay_dead": {AD},
    "admin.users": {AD}, "admin.webhook_action": {AD}, "admin.webhooks": {AD},
    "agent.assign_task": {S}, "agent.assign_tasks": {S}, "agent.attempt_recording": {A, S}, "agent.call": {A},
    "agent.claim_task": {A}, "agent.queue": {A, S}, "agent.readopt_rating": {S}, "agent.rectified": {A, S},
    "agent.release_task": {A}, "agent.report": {A, S}, "agent.report_word": {A, S}, "agent.reveal": {A, S},
    "agent.satisfaction": {A, S}, "agent.task": {A, S}, "agent.verdict": {A, S}, "agent.voice": {A, S},
    "auth.logout": {A, S, AD, U},
    "supervisor.add_adjustment": {S}, "supervisor.add_blocked": {S}, "supervisor.appeals": {S},
    "supervisor.batches": {S}, "supervisor.blocked": {S}, "supervisor.correct_adjustment": {S},
    "supervisor.decide": {S}, "supervisor.figures": {S, AD}, "supervisor.figures_xlsx": {S, AD},
    "supervisor.lift_batch": {S}, "supervisor.new_sample": {S}, "supervisor.overdue": {S},
    "supervisor.overdue_assign": {S}, "supervisor.overdue_extend": {S}, "supervisor.quality": {S},
    "supervisor.quality_recording": {S}, "supervisor.quality_sample": {S}, "supervisor.remove_blocked": {S},
    "supervisor.score": {S}, "supervisor.withdraw_adjustment": {S},
    "unit.appeal": {U}, "unit.evidence": {U, S}, "unit.home": {U}, "unit.task": {U},
}
# Routes a role never decides: the sign-in page and the probes of liveness and readiness (they say only "ok" or
# which service failed), the platform's API (its own signatures and tokens), Prometheus' /metrics (a token or an
# address) and the citizen's 补充评价 link (its own signed token).
OPEN = {"static", "index", "auth.login", "metrics.healthz", "metrics.readyz"}
OWN_AUTHENTICATION = {"api.events", "api.inbound", "metrics.metrics", "rate.page"}


def test_every_route_admits_exactly_the_roles_of_the_readme(web_site) -> None:
    stated = {endpoint: set(view.required_roles) for endpoint, view in web_site.app.view_functions.items()
              if hasattr(view, "required_roles")}
    assert stated == ROLE_TABLE
    assert set(web_site.app.view_functions) - set(stated) == OPEN | OWN_AUTHENTICATION


@pytest.mark.parametrize(("path", "method"), [
    ("/agent/tasks/1/reveal", "post"), ("/agent/tasks/1/voice", "get"), ("/agent/", "get"),
    ("/agent/tasks/1", "get"), ("/supervisor/appeals", "get"), ("/supervisor/blocked", "get"),
    ("/supervisor/quality", "get"), ("/supervisor/overdue", "get"), ("/supervisor/batches", "get"),
    ("/supervisor/figures/adjustments", "post"),
])
def test_an_admin_neither_reveals_numbers_nor_plays_recordings_nor_reads_supervisor_decisions(
        web_site, path: str, method: str) -> None:
    admin = signed_in(web_site, "admin")
    answer = getattr(admin, method)(path, data={"csrf_token": csrf(admin, "/admin/users")})
    assert answer.status_code == 403 and "无权访问" in answer.get_data(as_text=True)
    assert audited(web_site, "reveal_number") == [] and audited(web_site, "play_recording") == []


def test_an_admin_reads_the_figures_audit_users_and_webhooks_and_the_menu_shows_only_those(web_site) -> None:
    admin = signed_in(web_site, "admin")
    for path in ("/admin/audit", "/admin/users", "/admin/webhooks", "/supervisor/figures"):
        assert admin.get(path).status_code == 200, path
    menu = admin.get("/admin/users").get_data(as_text=True).split("</header>")[0]
    assert all(name in menu for name in ("统计通报", "审计日志", "用户", "推送地址"))
    supervisors_only = ("回访队列", "超期与升级", "申诉复核", "恶意评价名单", "批量评价", "质检抽听")
    assert not any(name in menu for name in supervisors_only)
    boss_menu = signed_in(web_site, "boss").get("/agent/").get_data(as_text=True).split("</header>")[0]
    assert all(name in boss_menu for name in ("回访队列", "统计通报", "申诉复核", "恶意评价名单", "质检抽听"))


# -- bodies a page never sends ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "who"), [("/login", None), ("/logout", "agent"), ("/agent/tasks/1/verdict", "agent"),
                                           ("/agent/tasks/1/claim", "agent")])
def test_a_deeply_nested_json_body_to_a_page_form_is_a_400_not_a_500(web_site, path: str, who: str | None) -> None:
    client = signed_in(web_site, who) if who else web_site.app.test_client()
    page_token = csrf(client, "/agent/" if who else "/login")
    answer = client.post(path, data="[" * 10_000 + "]" * 10_000, content_type="application/json",
                         headers={"X-CSRFToken": page_token})
    assert 400 <= answer.status_code < 500 and "<html" in answer.get_data(as_text=True)


def test_an_overlong_or_empty_sign_in_form_is_a_400_in_chinese(web_site) -> None:
    client = web_site.app.test_client()
    for username, password, message in [("长" * 100_000, "x", "用户名不超过64个字符"), ("", "x", "请输入用户名"),
                                        ("agent", "", "请输入密码")]:
        answer = client.post("/login", data={"username": username, "password": password,
                                             "csrf_token": csrf(client, "/login")})
        assert answer.status_code == 400 and message in answer.get_data(as_text=True)


def test_a_nul_in_the_username_is_refused_not_a_database_error(web_site) -> None:
    answer = attempt(web_site.app.test_client(), "age\x00nt", web_site.password)
    assert answer.status_code == 400 and "空字符" in answer.get_data(as_text=True)  # web/input_guard.py
    assert signed_in(web_site, "admin").get("/admin/audit?user=a%00b").status_code == 400


@pytest.mark.parametrize("query", ["from=0001-01-01", "to=9999-12-31", "from=1999-12-31"])
def test_an_audit_filter_date_out_of_range_is_a_400_in_chinese(web_site, query: str) -> None:
    admin = signed_in(web_site, "admin")
    for path in ("/admin/audit", "/admin/audit.csv"):
        refused = admin.get(f"{path}?{query}")
        assert refused.status_code == 400 and "2000 年至 2099 年之间" in refused.get_data(as_text=True), path


def test_behind_a_trusted_proxy_the_clients_address_is_the_one_locked_and_audited(web_site) -> None:
    from rating_core.rules.settings import Settings
    from web import create_app

    settings = Settings(secret_key="proxy-test-secret-Hq3Zt8Wm1Xv6Lc9P", proxies=1)
    app = create_app(web_site.store, {"SIGN_IN_STORAGE": "memory://", "SESSION_COOKIE_SECURE": False}, settings)
    behind = app.test_client()
    behind.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.7"
    answers = [attempt(behind, "agent", WRONG).status_code for _ in range(5)]
    assert answers[-1] == 429
    assert [e.remote_addr for e in audited(web_site, "login_locked")] == ["203.0.113.7"]
