"""The callback queue at a centre's volume: search, filters, paging; and who may act on a task (issue 20)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from rating_core.complaints.assignment import AssignmentError, assign, claim, release
from rating_core.complaints.task_search import PAGE_SIZE, Assigned, Scope, TaskQuery, find_tasks
from rating_core.complaints.task_states import TaskState
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.store.models import AuditEntry, CallbackTask, TaskEvent
from web.accounts import create_user
from web_pages import form_keys, signed_in, token

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime.now(timezone.utc)


def complain(store: RatingStore, n: int, *, number: str | None = None, agent: str = "1024", case: str | None = None,
             hotline: str = "12345", at: datetime | None = None) -> int:
    """A 差评 (and so its callback task); the task's id."""
    uid = f"1796000000.{n}"
    at = at or NOW - timedelta(hours=1)
    store.apply([CallStarted(uniqueid=uid, hotline=hotline, at=at, caller_number=number or f"1390000{n:04d}",
                             agent_id=agent, case_number=case or f"GD2026{n:06d}"),
                 RatingGiven(uid, "very_dissatisfied", "dtmf", at)])
    with store.sessions() as session:
        return session.scalars(select(CallbackTask.id).order_by(CallbackTask.id.desc())).first() or 0


def search(store: RatingStore, agent_id: str | None = None, **asked: object) -> list[int]:
    with store.sessions() as session:
        page = find_tasks(session, TaskQuery(**asked), agent_id=agent_id, now=NOW, zone=ZONE)  # type: ignore[arg-type]
        return [task.id for task in page.tasks]


def test_search_finds_a_task_by_number_case_task_and_agent(store: RatingStore) -> None:
    mine = complain(store, 1, number="13812345678", case="GD20261201007", agent="3003")
    other = complain(store, 2, number="13900001111")
    assert search(store, text="13812345678") == [mine]
    assert search(store, text="2345") == [mine]  # part of the number
    assert search(store, text="138-1234-5678") == [mine]  # as people write it
    assert search(store, text="GD20261201007") == [mine]
    assert search(store, text=f"#{other}") == [other]
    assert search(store, text="3003") == [mine]  # the 工号 whose call was rated
    assert search(store, text="nothing-like-it") == []
    assert search(store, text="100%") == []  # LIKE's wildcards are only characters here


def test_filters_narrow_and_closed_tasks_are_found_the_same_way(store: RatingStore) -> None:
    old = complain(store, 1, at=NOW - timedelta(days=40))
    korean = complain(store, 2, hotline="12345-ko")
    closed = complain(store, 3)
    with store.sessions.begin() as session:
        session.execute(update(CallbackTask).where(CallbackTask.id == closed).values(state=TaskState.CLOSED))
        session.execute(update(CallbackTask).where(CallbackTask.id == old)
                        .values(escalated_at=NOW - timedelta(days=1), verify_by=NOW - timedelta(days=2)))
    assert closed not in search(store) and search(store, scope=Scope.CLOSED) == [closed]
    assert sorted(search(store, scope=Scope.ALL)) == [old, korean, closed]
    assert search(store, hotline="12345-ko") == [korean]
    assert search(store, escalated=True) == [old] and search(store, overdue=True) == [old]
    today = NOW.astimezone(ZONE).date()
    assert search(store, since=today - timedelta(days=1)) == [korean]
    assert search(store, until=today - timedelta(days=30)) == [old]
    assert search(store, state=TaskState.PENDING) == search(store)


def test_pages_of_fifty_soonest_deadline_first(store: RatingStore) -> None:
    for n in range(PAGE_SIZE * 2 + 3):
        complain(store, n, at=NOW - timedelta(minutes=n))
    with store.sessions() as session:
        first = find_tasks(session, TaskQuery(), agent_id=None, now=NOW, zone=ZONE)
        last = find_tasks(session, TaskQuery(page=99), agent_id=None, now=NOW, zone=ZONE)
    assert (first.total, first.pages, len(first.tasks), last.page, len(last.tasks)) == (103, 3, 50, 3, 3)
    deadlines = [task.verify_by for task in first.tasks]
    assert deadlines == sorted(deadlines)


def test_an_agent_sees_theirs_and_nobodys_never_their_own_calls(store: RatingStore) -> None:
    nobodys = complain(store, 1)
    theirs = complain(store, 2)
    someone_elses = complain(store, 3)
    own_call = complain(store, 4, agent="2001")
    with store.sessions.begin() as session:
        claim(session, theirs, "2001", NOW, "agent:2001")
        claim(session, someone_elses, "2002", NOW, "agent:2002")
    assert sorted(search(store, "2001")) == [nobodys, theirs]
    assert search(store, "2001", assigned=Assigned.MINE) == [theirs]
    assert search(store, "2001", assigned=Assigned.NOBODY) == [nobodys]
    assert own_call in search(store) and someone_elses in search(store)  # a supervisor sees every task


def test_claim_release_and_hand_over(store: RatingStore) -> None:
    task_id = complain(store, 1)
    with store.sessions.begin() as session:
        claim(session, task_id, "2001", NOW, "agent:2001")
    with store.sessions.begin() as session, pytest.raises(AssignmentError, match="已由坐席 2001 认领"):
        claim(session, task_id, "2002", NOW, "agent:2002")
    with store.sessions.begin() as session, pytest.raises(AssignmentError, match="只能退回本人认领的任务"):
        release(session, task_id, "2002", NOW, "agent:2002")
    with store.sessions.begin() as session:
        release(session, task_id, "2001", NOW, "agent:2001")
        claim(session, task_id, "2002", NOW, "agent:2002")
    with store.sessions.begin() as session:
        assign(session, [task_id], "2003", NOW, "supervisor:boss")
    with store.sessions.begin() as session, pytest.raises(AssignmentError, match="非当事人"):
        assign(session, [task_id], "1024", NOW, "supervisor:boss")  # the agent whose call was rated
    with store.sessions() as session:
        assert session.get(CallbackTask, task_id).assigned_agent == "2003"  # type: ignore[union-attr]
        kinds = session.scalars(select(TaskEvent.kind).where(TaskEvent.task_id == task_id)
                                .order_by(TaskEvent.id)).all()
    assert kinds[-4:] == ["claimed", "released", "claimed", "assigned"]


# -- the web tool ---------------------------------------------------------------------------------


def second_agent(site) -> None:
    with site.store.sessions.begin() as session:
        create_user(session, "other", site.password, "agent", "王五", agent_id="2002")


def test_the_queue_searches_pages_and_keeps_its_filters_in_the_url(web_site) -> None:
    for n in range(PAGE_SIZE + 5):
        complain(web_site.store, n + 10, number=f"1370000{n:04d}", agent="3003")
    boss = signed_in(web_site, "boss")
    page = boss.get("/agent/?q=13812345678").data.decode()
    table = page[page.index('<table id="queue">'):page.index("</table>")]
    assert 'data-task="1"' in table and "138****5678" in table and "13812345678" not in table  # shown masked
    page = boss.get("/agent/?q=1370000&hotline=12345&scope=open").data.decode()
    assert "共 55 件" in page and page.count('data-task="') == PAGE_SIZE
    following = re.search(r'<a rel="next" href="([^"]+)"', page)
    assert following and "q=1370000" in following[1] and "hotline=12345" in following[1]
    assert boss.get(following[1].replace("&amp;", "&")).data.decode().count('data-task="') == 5
    refused = boss.get("/agent/?since=yesterday")
    assert refused.status_code == 400 and "日期格式不正确" in refused.data.decode()
    assert boss.get("/agent/?state=verified").status_code == 400


def test_a_supervisor_assigns_in_bulk_and_comes_back_to_the_same_page(web_site) -> None:
    second_agent(web_site)
    ids = [complain(web_site.store, n, agent="3003") for n in (10, 11, 12)]
    boss = signed_in(web_site, "boss")
    page = boss.get("/agent/?assigned=nobody").data
    done = boss.post("/agent/assign", data={"csrf_token": token(page), "task": [str(i) for i in ids[:2]],
                                            "agent": "2002", "back": "assigned=nobody"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/agent/?assigned=nobody")
    with web_site.store.sessions() as session:
        owners = dict(session.execute(select(CallbackTask.id, CallbackTask.assigned_agent)
                                      .where(CallbackTask.id.in_(ids))).tuples().all())
    assert owners == {ids[0]: "2002", ids[1]: "2002", ids[2]: None}
    with web_site.store.sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "tasks_assigned")).one()
    assert (entry.username, entry.detail) == ("boss", {"tasks": ids[:2], "agent": "2002"})
    unknown = boss.post("/agent/assign", data={"csrf_token": token(page), "task": [str(ids[2])], "agent": "9999"})
    assert unknown.status_code == 400 and "没有工号为 9999 的在岗坐席" in unknown.data.decode()


def test_acting_on_a_task_claims_it(web_site) -> None:
    agent = signed_in(web_site, "agent")
    page = agent.get(f"/agent/tasks/{web_site.task_id}").data
    assert "尚无人认领" in page.decode()
    agent.post(f"/agent/tasks/{web_site.task_id}/reveal", data={"csrf_token": token(page)},
               headers={"HX-Request": "true"})
    with web_site.store.sessions() as session:
        assert session.get(CallbackTask, web_site.task_id).assigned_agent == "2001"  # type: ignore[union-attr]
    assert "由坐席 2001 认领" in agent.get(f"/agent/tasks/{web_site.task_id}").data.decode()


def test_a_second_agent_is_refused_on_a_claimed_task_on_every_route(web_site) -> None:
    """Every agent route that names a task or its attempt, tried by an agent who does not have it."""
    second_agent(web_site)
    with web_site.store.sessions.begin() as session:
        claim(session, web_site.task_id, "2001", NOW, "agent:2001")
        attempt_id = session.get(CallbackTask, web_site.task_id).attempts[0].id  # type: ignore[union-attr]
    other = signed_in(web_site, "other")
    csrf_token = token(other.get("/agent/").data)
    tried = []
    for rule in web_site.app.url_map.iter_rules():
        if not rule.endpoint.startswith("agent.") or not ({"task_id", "attempt_id"} & set(rule.arguments)):
            continue
        path = rule.build({"task_id": web_site.task_id, "attempt_id": attempt_id}, append_unknown=False)[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            answer = other.open(path, method=method, data={"csrf_token": csrf_token, "agent": "2002",
                                                           "verdict": "explained", "note": "x"})
            tried.append((method, path, answer.status_code))
    assert len(tried) >= 12
    assert [t for t in tried if t[2] not in (403,)] == []  # supervisors' routes are 403 for an agent too
    with web_site.store.sessions() as session:
        task = session.get(CallbackTask, web_site.task_id)
        assert task is not None and task.assigned_agent == "2001" and task.verdict is None


def test_a_save_from_a_page_someone_else_changed_meanwhile_is_refused_and_keeps_the_text(web_site) -> None:
    """Two people on one task: the second to save is shown the first one's change, and keeps what they typed."""
    agent, boss = signed_in(web_site, "agent"), signed_in(web_site, "boss")
    path = f"/agent/tasks/{web_site.task_id}"
    agents_page, boss_page = agent.get(path).data, boss.get(path).data
    saved = agent.post(f"{path}/verdict", data={**form_keys(agents_page), "verdict": "explained",
                                                "note": "已向市民解释政策"})
    assert saved.status_code == 302
    late = boss.post(f"{path}/verdict", data={**form_keys(boss_page), "verdict": "immediate_fix",
                                              "note": "主管核实：窗口推诿属实"})
    page = late.data.decode()
    assert late.status_code == 409
    assert "提交前，坐席 agent用户（2001）已于" in page and "填写核实结论" in page and "您填写的内容已保留" in page
    assert "主管核实：窗口推诿属实" in page  # the boss's text, still in the form
    assert "已向市民解释政策" in page  # the agent's verdict, now on the page
    with web_site.store.sessions() as session:
        task = session.get(CallbackTask, web_site.task_id)
        assert task is not None and (task.verdict, task.verdict_note) == ("explained", "已向市民解释政策")
    assert 'id="verdict-form"' not in page  # the task has moved on: no form to save the stale verdict again
