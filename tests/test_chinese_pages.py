"""Every page a person reads is in Chinese and in Beijing time: history kinds and actors, hangup causes, roles,
hotline names, call lengths and deadlines; a finished task says how long it took, a refusal says it once."""

from __future__ import annotations

import ast
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from rating_core.complaints.callback_tasks import claim_attempt, note_script_ended, record_outcome, request_attempt
from rating_core.complaints.hangup_causes import hangup_cause_name
from rating_core.complaints.task_history import SYSTEM_ACTOR_NAMES, TASK_EVENT_NAMES, actor_name
from rating_core.rules.local_time import deadline, seconds, span
from rating_core.store.models import Call, CallbackAttempt, CallbackTask
from web_pages import form_keys, signed_in

ROOT = Path(__file__).resolve().parent.parent
BEIJING = ZoneInfo("Asia/Shanghai")
RAW_CODES = ("system:rq", "system:ivr", "system:callback-ivr", "agent:2001", ">dialer<", "attempt_requested",
             "attempt_ended", "script_ended", "rectification_reported", "Normal Clearing", "12345-ko", ">admin<",
             ">agent<", ">supervisor<")


def text(response) -> str:
    return response.data.decode()


def history_section(page: str) -> str:
    return page[page.index('<table id="history">'):]


def without_forms(page: str) -> str:
    """What the page shows (not the form fields' values and names, which are codes by design)."""
    return re.sub(r"<(select|form)\b.*?</\1>", "", page, flags=re.S)


def a_whole_loop(site) -> None:
    """The web_site task through the real loop: an automated call that ended, a verdict with a rectification deadline,
    the rectification reported, the re-ask answered and the citizen satisfied (closed)."""
    policy = site.store.rules.callback
    now = datetime.now(timezone.utc)
    with site.store.sessions.begin() as session:
        attempt = session.scalars(select(CallbackAttempt)).one()
        attempt.hangup_cause, attempt.hangup_cause_text = 16, "Normal Clearing"
        note_script_ended(session, attempt.id, "completed", "resolved", now - timedelta(minutes=49))
    client = signed_in(site, "agent")
    page = client.get("/agent/tasks/1")
    done = client.post("/agent/tasks/1/verdict", data={**form_keys(page.data), "verdict": "deadline_fix",
                                                       "note": "已核实，限期整改"})
    assert done.status_code == 302, text(done)[:2000]
    page = client.get("/agent/tasks/1")
    done = client.post("/agent/tasks/1/rectified", data={**form_keys(page.data), "note": "已整改"})
    assert done.status_code == 302, text(done)[:2000]
    with site.store.sessions.begin() as session:
        reask = request_attempt(session, policy, site.task_id, now, "agent:2001", agent="2001").attempt_id
        claim_attempt(session, reask, now, "PJSIP/2001")
        record_outcome(session, policy, reask, "answered", now, "dialer", cause=16, cause_text="Normal Clearing")
    page = client.get("/agent/tasks/1")
    done = client.post("/agent/tasks/1/satisfaction", data={**form_keys(page.data), "satisfied": "yes"})
    assert done.status_code == 302, text(done)[:2000]


def test_a_task_from_the_real_loop_reads_in_chinese_and_beijing_time(web_site) -> None:
    a_whole_loop(web_site)
    with web_site.store.sessions() as session:
        task = session.get(CallbackTask, web_site.task_id)
        assert task is not None and task.state == "closed"
        kinds = {e.kind for e in task.history}
        first = task.history[0].at
    assert {"created", "attempt_requested", "attempt_ended", "contacted", "script_ended", "verified",
            "rectification_reported", "rectified", "answer", "closed"} <= kinds
    for user in ("agent", "boss"):
        page = text(signed_in(web_site, user).get("/agent/tasks/1"))
        shown = without_forms(page)
        for code in RAW_CODES:
            assert code not in shown, (user, code)
        history = history_section(page)
        for kind in kinds:
            assert TASK_EVENT_NAMES[kind] in history
        assert "系统（回访调度）" in history and "系统（外呼）" in history and "系统（评价语音）" in history
        assert "坐席 agent用户（2001）" in history and "系统（自动回访语音）" in history
        # Beijing time, whatever the machine's zone
        assert first.astimezone(BEIJING).strftime("%m-%d %H:%M:%S") in history
        assert "正常挂机" in page and "12345政务服务便民热线" in page
        assert "（1秒）" in page  # the voice message's length
        # closed: the deadlines say how long it took, never what is left
        deadlines = page[page.index("<h2>期限</h2>"):page.index("</section>", page.index("<h2>期限</h2>"))]
        assert "用时" in deadlines and "剩余" not in deadlines and "已超期" not in deadlines


def test_a_refused_deadline_is_said_once_in_beijing_time(web_site) -> None:
    client = signed_in(web_site, "agent")
    page = client.get("/agent/tasks/1")
    before = datetime.now(BEIJING)
    refused = client.post("/agent/tasks/1/verdict", data={**form_keys(page.data), "verdict": "deadline_fix",
                                                          "note": "台账", "rectify_by": "2030-01-01"})
    after = datetime.now(BEIJING)
    assert refused.status_code == 400
    page = text(refused)
    said = re.findall(r"整改期限须在现在至(\d{4})年(\d{1,2})月(\d{1,2})日 (\d\d:\d\d)之间", page)
    assert len(said) == 1, said
    # 15 calendar days (the rules' rectify_within) from now, in Beijing time
    assert said[0][3] in {(moment + timedelta(days=15)).strftime("%H:%M") for moment in (before, after)}
    assert page.count("不超过15天") == 1


def test_an_appeal_too_late_gives_the_deadline_as_a_beijing_date(web_site) -> None:
    from rating_core.complaints.appeals import AppealError, file_appeal

    policy = web_site.store.rules.callback
    with web_site.store.sessions() as session:
        task = session.get(CallbackTask, web_site.task_id)
        assert task is not None
        last = task.appeal_file_by
        try:
            file_appeal(session, policy, task.id, "市人社局", "理由", last + timedelta(minutes=1), "unit:unit")
        except AppealError as exc:
            message = str(exc)
        else:
            raise AssertionError("a late appeal was accepted")
    assert deadline(last, BEIJING) in message and "UTC" not in message and re.search(r"\d{4}年", message)


def test_hotlines_show_their_names(web_site) -> None:
    with web_site.store.sessions.begin() as session:
        task = session.get(CallbackTask, web_site.task_id)
        assert task is not None
        task.hotline = "12345-ko"
        session.scalars(select(Call)).one().hotline = "12345-ko"
    client = signed_in(web_site, "boss")
    for path in ("/agent/", "/agent/tasks/1", "/supervisor/overdue"):
        page = without_forms(text(client.get(path)))
        assert "12345-ko" not in page, path
    assert "12345热线朝鲜语服务" in text(client.get("/agent/tasks/1"))


def test_audit_roles_and_targets_are_named(web_site) -> None:
    signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    page = text(signed_in(web_site, "admin").get("/admin/audit"))
    assert "<td>回访坐席</td>" in page and "<td>系统管理员</td>" in page
    assert "<td>agent</td>" not in page and "<td>admin</td>" not in page
    assert "回访任务 #1 的留言录音" in page and "agent用户（agent）" in page


def test_the_header_names_the_role_once(web_site) -> None:
    from web.accounts import create_user

    with web_site.store.sessions.begin() as session:
        create_user(session, "demo", web_site.password, "agent", "回访坐席（演示）", agent_id="3001")
    page = text(signed_in(web_site, "demo").get("/agent/"))
    assert "回访坐席（演示）" in page and "（回访坐席）" not in page
    assert "agent用户（回访坐席）" in text(signed_in(web_site, "agent").get("/agent/"))


# -- every code the code can write has a name ----------------------------------------------------------


def _sources() -> list[Path]:
    return [p for folder in ("rating_core", "callback", "web", "ivr", "delivery", "hotline_eval")
            for p in (ROOT / folder).rglob("*.py")]


def test_every_history_kind_the_code_writes_has_a_name() -> None:
    written: set[str] = set()
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            called = getattr(node, "func", None)
            if (isinstance(node, ast.Call) and getattr(called, "id", getattr(called, "attr", None)) == "note_event"
                    and len(node.args) >= 5):
                kind = node.args[4]
                values = [kind] if not isinstance(kind, ast.IfExp) else [kind.body, kind.orelse]
                for value in values:
                    assert isinstance(value, ast.Constant), f"{path}:{node.lineno}: a kind that is not a literal"
                    written.add(value.value)
    assert written, "found no note_event calls"
    assert written - TASK_EVENT_NAMES.keys() == set()


def test_every_actor_the_code_writes_has_a_name() -> None:
    actors: set[str] = set()
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(
                    r"(system|cli):[a-z:-]+", node.value):
                actors.add(node.value)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in ("ACTOR", "SOURCE"):
                        # a rating's event source reaches the task as system:<source> (rating_core/ratings/intake.py)
                        actors.add(node.value.value if target.id == "ACTOR" else f"system:{node.value.value}")
    actors |= {"system:ivr", "citizen"}  # CallEvent's default source; the citizen
    assert {"system:rq", "system:sweep", "dialer", "platform"} <= actors
    unnamed = {actor for actor in actors if actor not in SYSTEM_ACTOR_NAMES}
    assert unnamed == set()
    assert actor_name("agent:1024") == "坐席 1024" and actor_name("supervisor:alice") == "主管 alice"
    assert actor_name("supervisor:alice", {"alice": "王主管"}) == "主管 王主管"
    assert actor_name("agent:1024", {"1024": "张三"}) == "坐席 张三（1024）"
    assert actor_name("unit:renshe") == "承办单位 renshe" and actor_name("system:new-thing") == "系统"


def test_causes_lengths_and_deadlines_read_naturally() -> None:
    assert [hangup_cause_name(c) for c in (16, 17, 18, 19, 21, 1, 34, 38, 127)] == [
        "正常挂机", "用户忙", "无应答", "振铃无人接", "拒接", "空号", "无可用线路", "网络故障", "未知原因"]
    assert hangup_cause_name(None) == "" and hangup_cause_name(99) == "原因码 99"
    assert [seconds(v) for v in (8.33, 0.4, 60, 65, 3720)] == ["8秒", "0秒", "1分钟", "1分5秒", "1小时2分"]
    assert [span(s) for s in (30, 600, 3900, 2 * 86400 + 3600)] == ["不到1分钟", "10分钟", "1小时5分", "2天1小时"]
    midnight = datetime(2026, 12, 9, tzinfo=BEIJING)
    assert deadline(midnight, BEIJING) == "2026年12月8日"
    assert deadline(datetime(2026, 12, 8, 23, 59, tzinfo=BEIJING), BEIJING) == "2026年12月8日"
    assert deadline(datetime(2026, 12, 21, 2, 27, tzinfo=timezone.utc), BEIJING) == "2026年12月21日 10:27"
