"""申诉复核 and the malicious-rater list: the rules (SQLite and PostgreSQL) and the pages that apply them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from rating_core.complaints.appeals import AppealError, block_number, decide_appeal, file_appeal, unblock_number
from rating_core.complaints.callback_tasks import note_event, request_attempt, sweep
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.refusals import Reason
from rating_core.store.models import Appeal, BlockedNumber, CallbackAttempt, CallbackTask, Rating
from web_pages import csrf, signed_in, token

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday
_ids = iter(range(10**6))


def rate(store: RatingStore, number: str = "13800000000", unit: str = "市人社局") -> int:
    uid = f"1795316400.{next(_ids)}"
    store.apply([CallStarted(uniqueid=uid, hotline="12345", at=T0, caller_number=number, agent_id="1024", unit=unit),
                 RatingGiven(uid, "very_dissatisfied", "dtmf", T0)])
    with store.sessions() as session:
        return session.scalars(select(CallbackTask.id).order_by(CallbackTask.id.desc())).first()


def appeal(store: RatingStore, rules, task_id: int, at: datetime = T0 + timedelta(hours=3), unit: str = "市人社局",
           reason: str = "来电人所述事项不属本单位职责") -> int:
    with store.sessions.begin() as session:
        return file_appeal(session, rules.callback, task_id, unit, reason, at, "unit:rsj").id


def decide(store: RatingStore, appeal_id: int, upheld: bool, finding: str | None, note: str = "经核查属实",
           block: bool = False) -> None:
    with store.sessions.begin() as session:
        decide_appeal(session, appeal_id, upheld, finding, note, T0 + timedelta(days=1), "supervisor:boss",
                      block_number=block)


def test_an_appeal_in_time_gets_a_review_deadline_of_five_working_days(store, rules) -> None:
    task_id = rate(store)
    appeal(store, rules, task_id)
    with store.sessions() as session:
        task = session.get(CallbackTask, task_id)
        # Filed Friday 12:30; five working days: Mon … Fri, due the next Friday 12:30.
        assert task.appeal_review_by == datetime(2026, 11, 27, 12, 30, tzinfo=CST)
        assert task.history[-1].kind == "appeal_filed"


@pytest.mark.parametrize(
    ("at", "unit", "reason", "message"),
    [
        (T0 + timedelta(days=5), "市人社局", "理由", "已超过申诉期限"),  # the window closed Tuesday 09:30
        (T0 + timedelta(hours=1), "市医保局", "理由", "只能对本单位的差评提出申诉"),
        (T0 + timedelta(hours=1), "市人社局", "  ", "请填写申诉理由"),
    ],
)
def test_appeals_out_of_time_from_another_unit_or_without_reason_are_refused(store, rules, at, unit, reason,
                                                                              message) -> None:
    task_id = rate(store)
    with pytest.raises(AppealError, match=message):
        appeal(store, rules, task_id, at=at, unit=unit, reason=reason)
    with store.sessions() as session:
        assert (session.scalars(select(Appeal)).all() == []
                and session.get(CallbackTask, task_id).appeal_review_by is None)


def test_one_appeal_per_差评(store, rules) -> None:
    task_id = rate(store)
    appeal(store, rules, task_id)
    with pytest.raises(AppealError, match="已提出过申诉"):
        appeal(store, rules, task_id)


def test_an_upheld_appeal_makes_the_rating_not_adopted_and_closes_the_task(store, rules) -> None:
    task_id = rate(store)
    decide(store, appeal(store, rules, task_id), True, "misjudged", "录音显示市民误按")
    with store.sessions() as session:
        task = session.get(CallbackTask, task_id)
        assert task.state == "closed" and "误评" in task.state_reason
        assert task.rating.is_adopted is False and "申诉成立，认定为误评" in task.rating.not_adopted_reason
        assert task.rating.changes[-1].source == "supervisor:boss"


def test_a_malicious_finding_can_block_the_number_whose_later_ratings_are_not_adopted(store, rules) -> None:
    decide(store, appeal(store, rules, rate(store, number="13900000009")), True, "malicious", "多次辱骂", block=True)
    later = rate(store, number="13900000009")
    with store.sessions() as session:
        assert session.get(BlockedNumber, "13900000009") is not None
        task = session.get(CallbackTask, later)
        assert task.rating.is_adopted is False and "恶意评价名单" in task.rating.not_adopted_reason
        assert task.state == "not_dialled"


@pytest.mark.parametrize(
    ("upheld", "finding", "note", "block", "message"),
    [
        (True, None, "x", False, "须认定为误评或恶意评价"),
        (False, "misjudged", "x", False, "申诉不成立时不能认定"),
        (True, "misjudged", "x", True, "只有恶意评价才能加入"),
        (True, "malicious", " ", False, "请填写复核意见"),
    ],
)
def test_contradictory_decisions_are_refused_and_nothing_changes(store, rules, upheld, finding, note, block,
                                                                 message) -> None:
    task_id = rate(store)
    appeal_id = appeal(store, rules, task_id)
    with pytest.raises(AppealError, match=message):
        decide(store, appeal_id, upheld, finding, note, block)
    with store.sessions() as session:
        assert session.get(Appeal, appeal_id).decision is None
        assert session.get(CallbackTask, task_id).rating.is_adopted is True


def test_a_decision_is_final(store, rules) -> None:
    appeal_id = appeal(store, rules, rate(store))
    decide(store, appeal_id, False, None, "不属误评")
    with pytest.raises(AppealError, match="已复核"):
        decide(store, appeal_id, True, "misjudged")


def test_the_malicious_list_by_hand(store) -> None:
    with store.sessions.begin() as session:
        block_number(session, "13700000007", "骚扰", T0, "supervisor:boss")
    for number, reason, message in (("13700000007", "x", "已在恶意评价名单"), ("not-a-number", "x", "正确的电话号码"),
                                    ("13700000008", "", "理由")):
        with pytest.raises(AppealError, match=message), store.sessions.begin() as session:
            block_number(session, number, reason, T0, "supervisor:boss")
    with store.sessions.begin() as session:
        unblock_number(session, "13700000007")
    with pytest.raises(AppealError, match="不在"), store.sessions.begin() as session:
        unblock_number(session, "13700000007")


# -- the pages -------------------------------------------------------------------------------------

def test_a_unit_appeals_and_a_supervisor_upholds_it(web_site) -> None:
    unit = signed_in(web_site, "unit")
    done = unit.post("/unit/tasks/1/appeal", data={"reason": "非本单位职责", "csrf_token": csrf(unit, "/unit/")},
                     follow_redirects=True)
    assert "申诉已提交" in done.data.decode() and "复核中" in done.data.decode()
    again = unit.post("/unit/tasks/1/appeal", data={"reason": "再次申诉", "csrf_token": csrf(unit, "/unit/")},
                      follow_redirects=True)
    assert "该差评已提出过申诉" in again.data.decode()

    assert signed_in(web_site, "unit").get("/supervisor/appeals").status_code == 403
    agent = signed_in(web_site, "agent")
    assert agent.post("/supervisor/appeals/1/decide", data={"csrf_token": csrf(agent, "/agent/")}).status_code == 403

    boss = signed_in(web_site, "boss")
    page = boss.get("/supervisor/appeals").data.decode()
    assert 'data-appeal="1"' in page and "非本单位职责" in page
    done = boss.post("/supervisor/appeals/1/decide", follow_redirects=True, data={
        "decision": "upheld", "finding": "misjudged", "note": "确属误评",
        "csrf_token": csrf(boss, "/supervisor/appeals")})
    assert "复核结论已保存" in done.data.decode()
    with web_site.store.sessions() as session:
        rating = session.scalars(select(Rating)).one()
        assert rating.is_adopted is False and session.get(CallbackTask, 1).state == "closed"


def test_the_malicious_list_page_shows_masked_numbers_and_removes_by_token(web_site) -> None:
    boss = signed_in(web_site, "boss")
    boss.post("/supervisor/blocked", data={"number": "13912345678", "reason": "骚扰电话",
                                           "csrf_token": csrf(boss, "/supervisor/blocked")})
    page = boss.get("/supervisor/blocked").data.decode()
    assert "139****5678" in page and "13912345678" not in page
    forged = boss.post("/supervisor/blocked/remove", data={"token": "13912345678",
                                                           "csrf_token": csrf(boss, "/supervisor/blocked")})
    assert forged.status_code == 400 and "无效的号码标识" in forged.data.decode()
    token = re.search(r'name="token" value="([^"]+)"', page)[1]
    boss.post("/supervisor/blocked/remove", data={"token": token, "csrf_token": csrf(boss, "/supervisor/blocked")})
    with web_site.store.sessions() as session:
        assert session.scalars(select(BlockedNumber)).all() == []


# -- the list takes effect: a listed number's waiting callbacks stop (issue 18) ---------------------

def task_of(session, task_id: int) -> CallbackTask:
    return session.get(CallbackTask, task_id)


def move(store: RatingStore, task_id: int, state: str) -> None:
    """Put a task where the loop would have (straight there: the steps between are other tests' business),
    with an event on its history as a real move leaves."""
    with store.sessions.begin() as session:
        task = session.get(CallbackTask, task_id)
        if state in ("rectifying", "rectified"):
            task.verdict, task.verified_at = "explained", T0  # only a verified 差评 gets that far
        task.state = state
        note_event(session, task, T0, "test", "moved")


def test_listing_a_number_by_hand_stops_its_waiting_callbacks_with_the_reason_in_their_history(store, rules) -> None:
    pending, exhausted, contacted, rectifying = (rate(store, number="13700000001") for _ in range(4))
    dialing, rectified = rate(store, number="13700000001"), rate(store, number="13700000001")
    someone_else = rate(store, number="13800000002")
    move(store, exhausted, "exhausted")
    move(store, contacted, "contacted")
    move(store, rectifying, "rectifying")
    move(store, rectified, "rectified")
    with store.sessions.begin() as session:
        queued = request_attempt(session, rules.callback, dialing, T0, "system:rq").attempt_id
        assert queued is not None
    with store.sessions.begin() as session:
        listed = block_number(session, "13700000001", "多次骚扰", T0 + timedelta(hours=1), "supervisor:boss")
    assert listed.stopped == (pending, exhausted, dialing, rectified)
    reason = "号码在恶意评价名单中：多次骚扰"
    with store.sessions() as session:
        for task_id in listed.stopped:
            task = task_of(session, task_id)
            assert (task.state, task.state_reason, task.next_attempt_at) == ("not_dialled", reason, None)
            event = task.history[-1]
            assert (event.kind, event.to_state, event.actor, event.detail["reason"]) == (
                "stopped", "not_dialled", "supervisor:boss", reason)
            # Never to be verified now: not adopted, with the list's reason; one verified keeps its verdict's.
            assert task.rating.is_adopted is (task_id == rectified)
            if task_id != rectified:
                assert task.rating.not_adopted_reason == reason
        assert task_of(session, pending).history[-1].from_state == "pending"
        # The attempt queued for the dialer never leaves: dropped unsent, on the task's record.
        attempt = session.get(CallbackAttempt, queued)
        assert (attempt.status, attempt.outcome, attempt.originated_at) == ("ended", "cancelled", None)
        assert attempt.detail == f"未拨出：{reason}"
        assert task_of(session, dialing).history[-1].detail["dropped_attempts"] == [1]
        # The unit's own work goes on (the dialer stops a re-ask when it comes); other numbers are untouched.
        assert task_of(session, contacted).state == "contacted"
        assert task_of(session, rectifying).state == "rectifying"
        assert task_of(session, someone_else).state == "pending"
        assert task_of(session, someone_else).history[-1].kind == "created"


def test_an_upheld_appeal_that_lists_the_number_stops_its_other_callbacks(store, rules) -> None:
    appealed, other = rate(store, number="13900000019"), rate(store, number="13900000019")
    someone_else = rate(store, number="13800000003")
    decide(store, appeal(store, rules, appealed), True, "malicious", "多次辱骂", block=True)
    with store.sessions() as session:
        assert task_of(session, appealed).state == "closed"
        task = task_of(session, other)
        reason = f"号码在恶意评价名单中：申诉复核认定恶意评价（任务 {appealed}）"
        assert (task.state, task.state_reason) == ("not_dialled", reason)
        assert (task.history[-1].kind, task.history[-1].actor) == ("stopped", "supervisor:boss")
        assert task.rating.is_adopted is False and task.rating.not_adopted_reason == reason  # never to be verified
        assert task_of(session, someone_else).state == "pending"


def test_an_appeal_decision_reports_what_its_listing_stopped(store, rules) -> None:
    appealed, other = rate(store, number="13900000029"), rate(store, number="13900000029")
    first, second = appeal(store, rules, appealed), appeal(store, rules, other)
    later = T0 + timedelta(days=1)
    with store.sessions.begin() as session:
        decision = decide_appeal(session, first, True, "malicious", "恶意", later, "supervisor:boss", block_number=True)
        assert decision.listed is not None and decision.listed.stopped == (other,)
    with store.sessions.begin() as session:
        unlisted = decide_appeal(session, second, True, "misjudged", "误按", later, "supervisor:boss")
        assert unlisted.listed is None and unlisted.appeal.decision == "upheld"


def test_taking_a_number_off_the_list_does_not_redial_what_the_listing_stopped(store, rules) -> None:
    stopped = rate(store, number="13700000009")
    with store.sessions.begin() as session:
        block_number(session, "13700000009", "骚扰", T0, "supervisor:boss")
    with store.sessions.begin() as session:
        unblock_number(session, "13700000009")
    later = T0 + timedelta(hours=2)
    with store.sessions.begin() as session:
        assert stopped not in [task_id for task_id, _ in sweep(session, rules.callback, later).due]
        assert request_attempt(session, rules.callback, stopped, later, "system:rq").reason == Reason.WRONG_STATE
    with store.sessions() as session:
        task = task_of(session, stopped)
        assert task.state == "not_dialled" and task.attempts == [] and task.history[-1].kind == "stopped"
    assert (new := rate(store, number="13700000009")) != stopped
    with store.sessions() as session:
        assert task_of(session, new).state == "pending"  # the number's new 差评 are called back again


def test_the_list_page_says_how_many_callbacks_it_stopped(web_site) -> None:
    now = datetime.now(timezone.utc)
    web_site.store.apply([CallStarted(uniqueid="1795316400.77", hotline="12345", at=now, caller_number="13912345677"),
                          RatingGiven("1795316400.77", "very_dissatisfied", "dtmf", now)])
    boss = signed_in(web_site, "boss")
    page = boss.get("/supervisor/blocked").data.decode()
    assert "已停止的任务不会自动恢复回访" in page
    done = boss.post("/supervisor/blocked", follow_redirects=True, data={
        "number": "13912345677", "reason": "骚扰电话", "csrf_token": token(page)}).data.decode()
    assert "已加入恶意评价名单" in done and "已停止该号码 1 个待呼叫的回访任务" in done
    done = boss.post("/supervisor/blocked", follow_redirects=True, data={
        "number": "13912340000", "reason": "骚扰电话", "csrf_token": token(done)}).data.decode()
    assert "该号码没有待呼叫的回访任务" in done
    with web_site.store.sessions() as session:
        task = session.scalars(select(CallbackTask).where(CallbackTask.number == "13912345677")).one()
        assert task.state == "not_dialled" and task.history[-1].actor == "supervisor:boss"
    token_of = re.search(r'name="token" value="([^"]+)"', done)[1]
    removed = boss.post("/supervisor/blocked/remove", follow_redirects=True,
                        data={"token": token_of, "csrf_token": token(done)}).data.decode()
    assert "已停止的回访任务不会自动恢复" in removed


def test_the_appeal_page_says_what_listing_the_number_stopped(web_site) -> None:
    now = datetime.now(timezone.utc)
    # The same caller's second 差评, still waiting for its callback.
    web_site.store.apply([CallStarted(uniqueid="1795316400.78", hotline="12345", at=now, caller_number="13812345678"),
                          RatingGiven("1795316400.78", "very_dissatisfied", "dtmf", now)])
    unit = signed_in(web_site, "unit")
    unit.post("/unit/tasks/1/appeal", data={"reason": "恶意差评", "csrf_token": csrf(unit, "/unit/")})
    boss = signed_in(web_site, "boss")
    done = boss.post("/supervisor/appeals/1/decide", follow_redirects=True, data={
        "decision": "upheld", "finding": "malicious", "block": "1", "note": "多次辱骂",
        "csrf_token": csrf(boss, "/supervisor/appeals")}).data.decode()
    assert "复核结论已保存；号码已加入恶意评价名单，已停止该号码 1 个待呼叫的回访任务" in done
    with web_site.store.sessions() as session:
        assert session.get(CallbackTask, 2).state == "not_dialled"
