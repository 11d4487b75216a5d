"""The web tool over HTTP (Flask's test client, CSRF on): roles, CSRF, forms, masking, audit (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re
import subprocess
import wave
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from rating_core.store.models import AuditEntry, CallbackAttempt, CallbackTask, TaskEvent
from web_pages import form_keys, signed_in, token


def text(response) -> str:
    return response.data.decode()


def audit_actions(site) -> list[tuple[str, str, str | None]]:
    with site.store.sessions() as session:
        return [(e.username, e.action, e.target) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def task(site) -> CallbackTask:
    with site.store.sessions() as session:
        found = session.get(CallbackTask, site.task_id)
        found.history, found.attempts  # load while open
        return found


def test_every_route_states_its_roles(web_site) -> None:
    open_routes = {"static", "auth.login", "index", "metrics.healthz", "metrics.readyz"}
    unguarded = [endpoint for endpoint, view in web_site.app.view_functions.items()
                 if endpoint not in open_routes and not hasattr(view, "required_roles")
                 and not hasattr(view, "machine_auth") and not hasattr(view, "link_auth")]
    assert unguarded == []


@pytest.mark.parametrize(
    ("username", "path", "status"),
    [
        ("agent", "/agent/", 200), ("boss", "/agent/", 200), ("unit", "/agent/", 403), ("admin", "/agent/", 403),
        ("agent", "/admin/audit", 403), ("boss", "/admin/audit", 403), ("admin", "/admin/audit", 200),
        ("admin", "/admin/users", 200), ("unit", "/admin/users", 403),
        ("unit", "/unit/", 200), ("agent", "/unit/", 403),
        ("agent", "/agent/tasks/1", 200), ("rated", "/agent/tasks/1", 403), ("unit", "/agent/tasks/1", 403),
        ("agent", "/agent/tasks/999", 404),
    ],
)
def test_roles_reach_only_their_pages(web_site, username: str, path: str, status: int) -> None:
    response = signed_in(web_site, username).get(path)
    assert response.status_code == status
    if status == 403:
        assert "无权访问" in text(response) or "非当事人" in text(response)


def test_signed_out_users_are_sent_to_the_login_page(web_site) -> None:
    response = web_site.app.test_client().get("/agent/tasks/1")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    # htmx and form posts get a plain 401 rather than a redirect.
    assert web_site.app.test_client().post("/agent/tasks/1/reveal",
                                           headers={"HX-Request": "true"}).status_code in (400, 401)


def test_a_wrong_password_is_refused_and_not_audited_one_by_one(web_site) -> None:
    client = web_site.app.test_client()
    response = client.post("/login", data={"username": "agent", "password": "wrong-password!",
                                           "csrf_token": token(client.get("/login").data)})
    assert response.status_code == 401 and "用户名或密码错误" in text(response)
    # Failures are counted, not logged one by one: only a lock is audited (tests/test_sign_in_security.py).
    assert audit_actions(web_site) == []


def test_login_never_redirects_off_site(web_site) -> None:
    client = web_site.app.test_client()
    response = client.post("/login?next=//evil.example/x", data={
        "username": "agent", "password": web_site.password, "csrf_token": token(client.get("/login").data)})
    assert response.headers["Location"] == "/agent/"


def test_the_queue_lists_by_deadline_with_masked_numbers(web_site) -> None:
    page = text(signed_in(web_site, "agent").get("/agent/"))
    assert "138****5678" in page and "13812345678" not in page
    assert "推诿扯皮/多次跑腿" in page and "非常不满意" in page and "剩余" in page
    # The rated agent does not see a 差评 of their own call at all.
    assert 'data-task="1"' not in text(signed_in(web_site, "rated").get("/agent/"))


@pytest.mark.parametrize("forged", [None, "forged-token"])
def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(web_site, forged) -> None:
    client = signed_in(web_site, "agent")
    data = {"verdict": "explained", "note": "已解释"} | ({"csrf_token": forged} if forged else {})
    response = client.post("/agent/tasks/1/verdict", data=data)
    assert response.status_code == 400 and "CSRF" in text(response)
    assert task(web_site).verdict is None


def test_htmx_requests_need_the_csrf_header(web_site) -> None:
    client = signed_in(web_site, "agent")
    page = client.get("/agent/tasks/1")
    header_token = re.search(r'"X-CSRFToken": "([^"]+)"', text(page)).group(1)
    assert client.post("/agent/tasks/1/reveal", headers={"HX-Request": "true"}).status_code == 400
    response = client.post("/agent/tasks/1/reveal", headers={"HX-Request": "true", "X-CSRFToken": header_token})
    assert response.status_code == 200 and "13812345678" in text(response)
    assert ("agent", "reveal_number", "task:1") in audit_actions(web_site)


def post_verdict(client: FlaskClient, **data: str):
    page = client.get("/agent/tasks/1")
    return client.post("/agent/tasks/1/verdict", data={**form_keys(page.data), **data})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"note": "已核实"}, "请选择核实结论"),
        ({"verdict": "explained"}, "请填写核实情况说明"),
        ({"verdict": "made_up", "note": "x"}, "Not a valid choice"),
        ({"verdict": "explained", "note": "已解释", "rectify_by": "2026-12-01"}, "只有“限期整改”才能填写整改期限"),
        ({"verdict": "deadline_fix", "note": "台账", "rectify_by": "2030-01-01"}, "不超过15天"),
        ({"verdict": "deadline_fix", "note": "台账", "rectify_by": "not-a-date"}, "Not a valid date value"),
    ],
)
def test_missing_or_contradictory_verdicts_are_refused_and_nothing_is_saved(web_site, data, message) -> None:
    response = post_verdict(signed_in(web_site, "agent"), **data)
    assert response.status_code == 400 and message in text(response)
    found = task(web_site)
    assert (found.state, found.verdict, found.rectify_by) == ("contacted", None, None)
    assert [e.kind for e in found.history if e.kind == "verified"] == []


def test_a_verdict_is_saved_and_script_in_the_note_stays_text(web_site) -> None:
    client = signed_in(web_site, "agent")
    response = post_verdict(client, verdict="immediate_fix", note='<script>alert("x")</script>已当场办理')
    assert response.status_code == 302
    found = task(web_site)
    assert (found.state, found.verdict) == ("rectified", "immediate_fix")
    with web_site.store.sessions() as session:
        event = session.scalars(select(TaskEvent).where(TaskEvent.kind == "verified")).one()
        assert event.actor == "agent:2001"
    page = text(client.get("/agent/tasks/1"))
    assert '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;已当场办理' in page and "<script>alert" not in page


def test_click_to_call_queues_an_attempt_that_rings_the_agent(web_site) -> None:
    client = signed_in(web_site, "agent")
    assert post_verdict(client, verdict="explained", note="已解释政策").status_code == 302
    page = client.get("/agent/tasks/1")
    response = client.post("/agent/tasks/1/call", data={"csrf_token": token(page.data)})
    assert response.status_code == 302
    assert "已发起呼叫：请接听您的分机" in client.get(response.location).data.decode()  # agent-first mode
    with web_site.store.sessions() as session:
        attempt = session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id.desc())).first()
        assert (attempt.status, attempt.purpose) == ("queued", "satisfaction")
        assert session.get(CallbackTask, 1).assigned_agent == "2001"


def test_the_voice_message_plays_for_agents_and_every_play_is_audited(web_site) -> None:
    response = signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    assert response.status_code == 200 and response.data[:4] == b"RIFF"
    assert response.mimetype in ("audio/wav", "audio/x-wav")
    assert ("agent", "play_recording", "task:1:voice") in audit_actions(web_site)


def test_a_recording_outside_the_allowed_folders_is_never_served(web_site, tmp_path) -> None:
    secret = tmp_path / "elsewhere.wav"
    secret.write_bytes(web_site.voice_file.read_bytes())
    with web_site.store.sessions.begin() as session:
        session.get(CallbackTask, 1).rating.voice_message_file = str(web_site.voice_file.parent / ".." / ".." /
                                                                       ".." / "elsewhere.wav")
    assert signed_in(web_site, "agent").get("/agent/tasks/1/voice").status_code == 404
    assert [a for a in audit_actions(web_site) if a[1] == "play_recording"] == []


def test_unit_users_see_their_units_差评_with_the_appeal_deadline(web_site) -> None:
    page = text(signed_in(web_site, "unit").get("/unit/"))
    assert "#1" in page and "申诉截止" in page and "138" not in page


def test_the_audit_page_shows_who_did_what(web_site) -> None:
    signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    page = text(signed_in(web_site, "admin").get("/admin/audit?action=play_recording"))
    assert "播放录音" in page and "task:1:voice" in page and "agent" in page


def reask_answered(site) -> None:
    """After a verdict, the dialer's agent-first re-ask call was answered (the agent spoke to the citizen)."""
    from datetime import datetime, timezone

    from rating_core.complaints.callback_tasks import claim_attempt, record_outcome, request_attempt

    policy = site.store.rules.callback
    now = datetime.now(timezone.utc)
    with site.store.sessions.begin() as session:
        attempt = request_attempt(session, policy, site.task_id, now, "agent:2001", agent="2001").attempt_id
        claim_attempt(session, attempt, now, "PJSIP/2001")
        record_outcome(session, policy, attempt, "answered", now, "dialer")


def test_the_agent_enters_the_re_asked_satisfaction_and_the_report_says_so(web_site) -> None:
    from docx import Document

    client = signed_in(web_site, "agent")
    assert client.get("/agent/tasks/1/report").status_code == 404
    assert post_verdict(client, verdict="explained", note="已向市民解释社保转移政策").status_code == 302
    page = client.get("/agent/tasks/1")
    # No satisfaction form on the page yet: posted anyway, from the task as it stands.
    refused = client.post("/agent/tasks/1/satisfaction", data={"satisfied": "yes", "csrf_token": token(page.data),
                                                               "version": str(task(web_site).version)})
    assert refused.status_code == 400 and "没有待录入满意度的回访通话" in text(refused)
    reask_answered(web_site)
    page = client.get("/agent/tasks/1")
    assert "录入回访满意度" in text(page)
    missing = client.post("/agent/tasks/1/satisfaction", data={**form_keys(page.data)})
    assert missing.status_code == 400 and "请选择市民的回答" in text(missing)
    done = client.post("/agent/tasks/1/satisfaction", data={"satisfied": "yes", **form_keys(page.data)})
    assert done.status_code == 302
    found = task(web_site)
    assert (found.state, found.citizen_satisfied) == ("closed", True)

    report = text(client.get("/agent/tasks/1/report"))
    assert "政务服务差评事项核查整改情况报告单" in report and "局行风办：" in report
    assert "收到“非常不满意”差评" in report and "agent用户同志（非当事人）" in report
    assert "缺乏法定依据" in report and "其对我们的解释说明表示理解和满意" in report and "坐席工号1024" in report
    word = client.get("/agent/tasks/1/report.docx")
    assert word.status_code == 200 and "attachment" in word.headers["Content-Disposition"]
    paragraphs = [p.text for p in Document(io.BytesIO(word.data)).paragraphs]
    assert paragraphs[0] == "政务服务差评事项核查整改情况报告单" and "二、整改情况" in paragraphs
    assert any("表示理解和满意" in p for p in paragraphs)


def use_gsm_voice_message(site) -> Path:
    """Asterisk's wav49: GSM 6.10 in a WAV container, which browsers cannot play."""
    gsm = site.voice_file.with_name("gsm-message.wav")
    subprocess.run(["sox", str(site.voice_file), "-e", "gsm-full-rate", str(gsm)], check=True)
    with site.store.sessions.begin() as session:
        session.get(CallbackTask, site.task_id).rating.voice_message_file = str(gsm)
    return gsm


def test_a_gsm_recording_is_served_as_pcm_and_the_original_kept(web_site) -> None:
    gsm = use_gsm_voice_message(web_site)
    original = gsm.read_bytes()
    client = signed_in(web_site, "agent")
    served = client.get("/agent/tasks/1/voice")
    assert served.status_code == 200
    with wave.open(io.BytesIO(served.data)) as wav:  # the wave module reads PCM only
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnframes()) == (8000, 2, 8000)
    assert gsm.read_bytes() == original
    assert client.get("/agent/tasks/1/voice").data == served.data  # from the cache the second time


def test_the_factory_alone_serves_from_the_environment_and_needs_a_secret(tmp_path, monkeypatch) -> None:
    """`flask --app web run` calls create_app() with nothing: the store and the secret come from the environment."""
    from rating_core.store.database import make_engine
    from rating_core.store.migrate import upgrade
    from web import create_app

    url = f"sqlite:///{tmp_path / 'env.db'}"
    upgrade(make_engine(url))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("HOTLINE_EVAL_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="HOTLINE_EVAL_SECRET_KEY"):
        create_app()
    monkeypatch.setenv("HOTLINE_EVAL_SECRET_KEY", "from-the-environment-Xk3vQ9pL2mZ7wR4t")
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True and app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.test_client().get("/login").status_code == 200


def test_a_supervisor_readopts_a_rejected_差评(web_site) -> None:
    agent = signed_in(web_site, "agent")
    assert post_verdict(agent, verdict="not_adopted", note="市民称误按").status_code == 302
    assert agent.post("/agent/tasks/1/readopt", data={"reason": "x", "csrf_token": token(
        agent.get("/agent/tasks/1").data)}).status_code == 403
    boss = signed_in(web_site, "boss")
    page = boss.get("/agent/tasks/1")
    assert "恢复采纳" in text(page)
    done = boss.post("/agent/tasks/1/readopt", follow_redirects=True,
                     data={"reason": "复听录音确为差评", "csrf_token": token(page.data)})
    assert "已恢复采纳" in text(done)
    with web_site.store.sessions() as session:
        found = session.get(CallbackTask, 1)
        assert found.state == "pending" and found.rating.is_adopted is True


def test_the_task_page_says_what_a_spoken_差评_was_heard_as(web_site) -> None:
    """A 差评 given by voice: the agent sees what the recogniser heard before calling back."""
    from datetime import datetime, timezone

    from rating_core.events.call_events import CallStarted, RatingGiven

    client = signed_in(web_site, "agent")
    assert "语音评价" not in text(client.get("/agent/tasks/1"))  # a keypress: nothing heard
    now = datetime.now(timezone.utc)
    web_site.store.apply([
        CallStarted(uniqueid="1795316499.1", hotline="12345-ko", at=now, caller_number="13812340001"),
        RatingGiven("1795316499.1", "very_dissatisfied", "speech", now, heard="매우 불만족", confidence=0.873),
    ])
    with web_site.store.sessions() as session:
        task_id = session.scalars(select(CallbackTask.id).order_by(CallbackTask.id.desc())).first()
    page = text(client.get(f"/agent/tasks/{task_id}"))
    assert "识别为“매우 불만족”（置信度 0.87）" in page


def test_the_task_page_shows_the_voice_message_in_words_once_transcribed(web_site) -> None:
    client = signed_in(web_site, "agent")
    assert "机器转写" not in text(client.get("/agent/tasks/1"))  # not transcribed yet: the player alone
    with web_site.store.sessions.begin() as session:
        rating = session.get(CallbackTask, 1).rating
        rating.voice_transcript, rating.voice_transcript_confidence = "<b>办事</b>太慢", 0.712
        rating.voice_transcript_status = "done"
    page = client.get("/agent/tasks/1").get_data(as_text=True)
    assert "机器转写：“&lt;b&gt;办事&lt;/b&gt;太慢”（置信度 0.71，仅供参考，以录音为准）" in page  # escaped, as text
    with web_site.store.sessions.begin() as session:
        session.get(CallbackTask, 1).rating.voice_transcript_status = "failed"
    assert "机器转写失败，请听录音" in text(client.get("/agent/tasks/1"))
