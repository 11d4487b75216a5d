"""Issue 20 point 6, the supervisors' lists: 超期与升级 with escalation times and actions, the audit log with
filters, paging and a CSV export holding every supervisor decision, the 质检抽听 rubric."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from rating_core.complaints.callback_tasks import TaskRuleError, extend_deadline, recompute_deadlines
from rating_core.reports.quality import RubricError, load_quality_rubric, score_by_rubric
from rating_core.store.models import AuditEntry, CallbackTask, QualityItem, TaskEvent
from web_pages import csrf, signed_in

BEIJING = ZoneInfo("Asia/Shanghai")


def text(response) -> str:
    return response.data.decode()


def audited(site, action: str) -> list[AuditEntry]:
    with site.store.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def overdue_task(site, *, escalated: bool = True) -> datetime:
    """Task 1 past its 核实期限 (and escalated); its escalation time."""
    at = datetime(2026, 12, 1, 2, 5, tzinfo=timezone.utc)  # 10:05 in Beijing
    with site.store.sessions.begin() as session:
        task = session.get(CallbackTask, site.task_id)
        task.verify_by = datetime.now(timezone.utc) - timedelta(hours=1)
        if escalated:
            task.escalated_at, task.escalation_reason = at, "已超过核实期限"
    return at


# -- 超期与升级 ------------------------------------------------------------------------------------


def test_the_overdue_list_shows_when_and_why_a_task_was_escalated(web_site) -> None:
    overdue_task(web_site)
    page = text(signed_in(web_site, "boss").get("/supervisor/overdue"))
    assert "升级时间" in page and "2026-12-01 10:05" in page and "已超过核实期限" in page
    assert "转交" in page and "延长期限" in page and 'name="csrf_token"' in page
    # admins run the tool, not the callbacks: the list is not theirs (README's role table)
    admin_page = signed_in(web_site, "admin").get("/supervisor/overdue")
    assert admin_page.status_code == 403 and "2026-12-01 10:05" not in text(admin_page)


def test_a_supervisor_reassigns_an_overdue_task(web_site) -> None:
    overdue_task(web_site)
    boss = signed_in(web_site, "boss")
    token = csrf(boss, "/supervisor/overdue")
    done = boss.post("/supervisor/overdue/1/assign", data={"agent": "2001", "csrf_token": token},
                     follow_redirects=True)
    assert done.status_code == 200 and "已将任务 #1 转交坐席 2001" in text(done)
    with web_site.store.sessions() as session:
        assert session.get(CallbackTask, 1).assigned_agent == "2001"
        kinds = session.scalars(select(TaskEvent.kind).where(TaskEvent.task_id == 1)).all()
    assert "assigned" in kinds
    [entry] = audited(web_site, "task_assigned")
    assert entry.target == "task:1" and entry.detail["agent"] == "2001" and entry.username == "boss"
    # the agent whose call was rated never gets it (非当事人); an unknown 工号 is refused; nothing is audited
    own = boss.post("/supervisor/overdue/1/assign", data={"agent": "1024", "csrf_token": token})
    assert own.status_code == 400 and "非当事人" in text(own)
    unknown = boss.post("/supervisor/overdue/1/assign", data={"agent": "9999", "csrf_token": token})
    assert unknown.status_code == 400 and "请选择一位在岗坐席" in text(unknown)
    assert len(audited(web_site, "task_assigned")) == 1
    agent = signed_in(web_site, "agent")
    assert agent.post("/supervisor/overdue/1/assign", data={"agent": "2001", "csrf_token": csrf(agent, "/agent/")}
                      ).status_code == 403
    assert boss.post("/supervisor/overdue/1/assign", data={"agent": "2001"}).status_code == 400  # no CSRF token


def _local(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M")


def test_a_supervisor_extends_the_deadline_with_a_reason(web_site) -> None:
    overdue_task(web_site)
    boss = signed_in(web_site, "boss")
    token = csrf(boss, "/supervisor/overdue")
    new = (datetime.now(timezone.utc) + timedelta(days=3)).replace(second=0, microsecond=0)
    done = boss.post("/supervisor/overdue/1/extend", follow_redirects=True,
                     data={"verify_by": _local(new), "reason": "市民出差，约定下周回访", "csrf_token": token})
    assert done.status_code == 200 and "核实期限已延长至" in text(done)
    with web_site.store.sessions() as session:
        task = session.get(CallbackTask, 1)
        assert task.verify_by == new and task.escalate_at <= new and task.escalate_at > new - timedelta(days=3)
        assert task.escalated_at is not None  # an escalation made stays
        event = session.scalars(select(TaskEvent).where(TaskEvent.kind == "deadline_extended")).one()
        assert event.detail["reason"] == "市民出差，约定下周回访" and event.detail["verify_by"] == new.isoformat()
    [entry] = audited(web_site, "deadline_extended")
    assert entry.target == "task:1" and entry.detail["reason"] == "市民出差，约定下周回访"
    assert entry.detail["verify_by"].startswith(f"{new.astimezone(BEIJING).year}年")


@pytest.mark.parametrize(("verify_by", "reason", "status", "message"), [
    ("past", "理由", 400, "须晚于"),
    ("soon", "  ", 400, "请填写延长核实期限的理由"),
    ("far", "理由", 400, "一次最多延长30天"),
    ("2026-13-45T10:00", "理由", 400, "请填写新的核实期限"),
])
def test_extensions_the_rules_refuse_say_why_in_chinese(web_site, verify_by, reason, status, message) -> None:
    overdue_task(web_site)
    now = datetime.now(timezone.utc)
    typed = {"past": _local(now - timedelta(days=1)), "soon": _local(now + timedelta(days=1)),
             "far": _local(now + timedelta(days=40))}.get(verify_by, verify_by)
    boss = signed_in(web_site, "boss")
    refused = boss.post("/supervisor/overdue/1/extend",
                        data={"verify_by": typed, "reason": reason, "csrf_token": csrf(boss, "/supervisor/overdue")})
    assert refused.status_code == status and message in text(refused)
    assert "UTC" not in text(refused) and audited(web_site, "deadline_extended") == []


def test_a_closed_task_is_not_extended(web_site) -> None:
    overdue_task(web_site)
    boss = signed_in(web_site, "boss")
    token = csrf(boss, "/supervisor/overdue")
    with web_site.store.sessions.begin() as session:
        session.get(CallbackTask, 1).state = "closed"
    refused = boss.post("/supervisor/overdue/1/extend", data={
        "verify_by": _local(datetime.now(timezone.utc) + timedelta(days=1)), "reason": "理由", "csrf_token": token})
    assert refused.status_code == 409 and "已结束" in text(refused)
    missing = boss.post("/supervisor/overdue/99/extend", data={
        "verify_by": _local(datetime.now(timezone.utc) + timedelta(days=1)), "reason": "理由", "csrf_token": token})
    assert missing.status_code == 404 and "不存在" in text(missing)


def test_extend_deadline_refuses_in_beijing_time(web_site) -> None:
    policy = web_site.store.rules.callback
    with web_site.store.sessions() as session:
        old = session.get(CallbackTask, 1).verify_by
        with pytest.raises(TaskRuleError, match=r"\d{4}年\d+月\d+日 \d{2}:\d{2}"):
            extend_deadline(session, policy, 1, old - timedelta(minutes=1), "理由", old - timedelta(days=5), "x")


def test_a_recomputation_never_takes_back_an_extension(web_site) -> None:
    """A calendar override recomputes every open task's deadline; a supervisor's extension stands."""
    policy = web_site.store.rules.callback
    now = datetime.now(timezone.utc)
    with web_site.store.sessions.begin() as session:
        extended_to = session.get(CallbackTask, 1).verify_by + timedelta(days=5)
        extend_deadline(session, policy, 1, extended_to, "市民外出，约定下周回访", now, "supervisor:boss")
    with web_site.store.sessions.begin() as session:
        recompute_deadlines(session, policy, now, "cli:calendar")
    with web_site.store.sessions() as session:
        assert session.get(CallbackTask, 1).verify_by == extended_to


# -- the audit log -------------------------------------------------------------------------------------


def _entries(site, rows: list[tuple[datetime, str, str, str | None]]) -> None:
    with site.store.sessions.begin() as session:
        for at, username, action, target in rows:
            session.add(AuditEntry(at=at, username=username, role="supervisor", action=action, target=target,
                                   detail={"reason": "=HYPERLINK(\"http://x\")"} if username == "=cmd" else {},
                                   remote_addr="127.0.0.1"))


def test_the_audit_log_filters_pages_and_exports(web_site) -> None:
    day = datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)  # 2026-12-01 00:30 in Beijing
    _entries(web_site, [(day - timedelta(hours=1), "boss", "number_blocked", "number:late-november")])
    _entries(web_site, [(day + timedelta(minutes=n), "boss", "number_blocked", f"number:139****{n:04d}")
                        for n in range(60)])
    _entries(web_site, [(day, "=cmd", "quality_scored", "quality:1")])
    admin = signed_in(web_site, "admin")
    first = text(admin.get("/admin/audit?action=number_blocked&user=boss"))
    assert "共 61 条" in first and "第 1 / 2 页" in first and "139****0059" in first and "139****0000" not in first
    assert "page=2" in first and "action=number_blocked" in first.split('rel="next"')[0].rsplit("<a", 1)[1]
    second = text(admin.get("/admin/audit?action=number_blocked&user=boss&page=2"))
    assert "139****0000" in second and "late-november" in second and "139****0059" not in second
    # Beijing dates: 2026-12-01 holds the 60 entries from 00:30 on, not the one of 23:30 the day before
    dated = text(admin.get("/admin/audit?action=number_blocked&from=2026-12-01&to=2026-12-01"))
    assert "共 60 条" in dated and "late-november" not in dated
    assert "共 1 条" in text(admin.get("/admin/audit?user=%3Dcmd"))
    assert "加入恶意评价名单" in first and '<option value="quality_scored">质检评分</option>' in first
    for bad in ("from=2026-02-30", "action=drop_tables", "page=0", "page=abc", "from=2026-12-02&to=2026-12-01"):
        refused = admin.get(f"/admin/audit?{bad}")
        assert refused.status_code == 400 and "Bad Request" not in text(refused), bad

    export = admin.get("/admin/audit.csv?from=2026-12-01&to=2026-12-01")
    assert export.status_code == 200 and export.mimetype == "text/csv" and export.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(export.data.decode("utf-8-sig"))))
    assert rows[0][0] == "时间（北京时间）" and len(rows) == 1 + 61  # the 60 and =cmd's, not November's
    assert rows[2][0] == "2026-12-01 01:29:00" and rows[2][3] == "加入恶意评价名单" and rows[2][4] == "number_blocked"
    injected = next(row for row in rows if "cmd" in row[1])
    assert injected[1] == "'=cmd" and not any(cell.startswith(("=", "+", "@")) for cell in injected)
    assert "audit.csv" in first and len(audited(web_site, "audit_exported")) == 1
    assert signed_in(web_site, "boss").get("/admin/audit.csv").status_code == 403


# -- every supervisor decision is in the log -----------------------------------------------------------------


def test_every_supervisor_decision_is_audited(web_site) -> None:
    boss = signed_in(web_site, "boss")
    token = csrf(boss, "/supervisor/blocked")
    boss.post("/supervisor/blocked", data={"number": "13912345678", "reason": "骚扰电话", "csrf_token": token})
    page = text(boss.get("/supervisor/blocked"))
    remove = re.search(r'name="token" value="([^"]+)"', page)[1]
    boss.post("/supervisor/blocked/remove", data={"token": remove, "csrf_token": token})

    unit = signed_in(web_site, "unit")
    unit.post("/unit/tasks/1/appeal", data={"reason": "非本单位职责", "csrf_token": csrf(unit, "/unit/")})
    boss.post("/supervisor/appeals/1/decide", data={"decision": "rejected", "note": "证据不足",
                                                    "csrf_token": token})

    [blocked] = audited(web_site, "number_blocked")
    assert blocked.target == "number:139****5678" and blocked.detail["reason"] == "骚扰电话"
    assert "13912345678" not in str(blocked.detail)
    assert [e.target for e in audited(web_site, "number_unblocked")] == ["number:139****5678"]
    [decided] = audited(web_site, "appeal_decided")
    assert decided.target == "appeal:1" and decided.detail["decision"] == "rejected"

    page = text(signed_in(web_site, "admin").get("/admin/audit"))
    for name in ("加入恶意评价名单", "移出恶意评价名单", "申诉复核决定", "号码 139****5678", "申诉 #1",
                 "理由：骚扰电话"):
        assert name in page, name


def test_a_refused_decision_leaves_no_audit_entry(web_site) -> None:
    boss = signed_in(web_site, "boss")
    token = csrf(boss, "/supervisor/blocked")
    boss.post("/supervisor/blocked", data={"number": "13912345678", "reason": "", "csrf_token": token})
    boss.post("/supervisor/appeals/7/decide", data={"decision": "rejected", "note": "x", "csrf_token": token})
    assert audited(web_site, "number_blocked") == [] and audited(web_site, "appeal_decided") == []


# -- 质检抽听: the rubric --------------------------------------------------------------------------------


def test_the_shipped_rubric_adds_up_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    rubric = load_quality_rubric()
    assert [(i.name, i.weight) for i in rubric.items] == [
        ("服务态度", 30), ("业务解答准确", 30), ("办理流程规范", 20), ("回访规范用语", 20)]
    wrong = tmp_path / "rubric.yaml"
    wrong.write_text("items:\n  - {code: a, name: 态度, weight: 60}\n  - {code: b, name: 准确, weight: 30}\n",
                     encoding="utf-8")
    with pytest.raises(RubricError, match="add up to 100, not 90"):
        load_quality_rubric(wrong)
    wrong.write_text("items:\n  - {code: a, name: 态度, weight: 50}\n  - {code: a, name: 准确, weight: 50}\n",
                     encoding="utf-8")
    with pytest.raises(RubricError, match="must differ"):
        load_quality_rubric(wrong)


def _drawn(site) -> tuple[object, str, int]:
    boss = signed_in(site, "boss")
    token = csrf(boss, "/supervisor/quality")
    now = datetime.now(timezone.utc).astimezone(BEIJING)
    page = text(boss.post("/supervisor/quality", follow_redirects=True, data={
        "period": f"{now.year}Q{(now.month - 1) // 3 + 1}", "strata": ["hotline"], "per_stratum": "1",
        "csrf_token": token}))
    return boss, page, int(re.search(r'data-item="(\d+)"', page)[1])


def test_the_total_is_the_sum_of_the_items_and_is_audited(web_site) -> None:
    boss, page, item_id = _drawn(web_site)
    assert "评分细则" in page and "服务态度" in page and 'name="part_attitude"' in page
    assert "随机种子" not in page.split("</h1>")[0] and "<title>质检抽样 #1" in page
    token = csrf(boss, "/supervisor/quality")
    url = f"/supervisor/quality/items/{item_id}/score"
    good = text(boss.post(url, follow_redirects=True, data={
        "part_attitude": "25", "part_accuracy": "28", "part_procedure": "15", "part_wording": "20",
        "comment": "未告知办理时限", "csrf_token": token}))
    assert "评分已保存" in good and '<strong class="score">88</strong>' in good and "服务态度 25/30" in good
    with web_site.store.sessions() as session:
        item = session.get(QualityItem, item_id)
        assert item.score == 88 and [p["score"] for p in item.item_scores] == [25, 28, 15, 20]
    over = text(boss.post(url, follow_redirects=True, data={
        "part_attitude": "31", "part_accuracy": "28", "part_procedure": "15", "part_wording": "20",
        "csrf_token": token}))
    assert "“服务态度”的得分须为0到30的整数" in over
    missing = text(boss.post(url, follow_redirects=True, data={"part_attitude": "20", "csrf_token": token}))
    assert "请为“业务解答准确”评分" in missing
    [drawn] = audited(web_site, "quality_sample_drawn")
    [scored] = audited(web_site, "quality_scored")
    assert drawn.target == "sample:1" and scored.target == f"quality:{item_id}" and scored.detail["total"] == 88
    assert scored.detail["parts"]["服务态度"] == 25


def test_score_by_rubric_computes_the_total(web_site) -> None:
    _boss, _page, item_id = _drawn(web_site)
    rubric = load_quality_rubric()
    with web_site.store.sessions.begin() as session:
        item = score_by_rubric(session, rubric, item_id, {"attitude": 30, "accuracy": "0", "procedure": 20,
                                                          "wording": 5}, "", "boss", datetime.now(timezone.utc))
        assert item.score == 55 and item.item_scores[3] == {"code": "wording", "name": "回访规范用语", "weight": 20,
                                                             "score": 5}
