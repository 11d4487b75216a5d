"""Verification, rectification and the automated callback (SQLite and PostgreSQL).

The store's rules first (verdicts, deadlines, the re-ask), then the FastAGI
script ``callback-verify`` driven over real TCP by the simulated Asterisk
channel, as the dialer's Originate would start it.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.service import IvrService
from rating_core.complaints.callback_tasks import (
    TaskRuleError,
    claim_attempt,
    mark_rectified,
    record_answer,
    record_outcome,
    record_verdict,
    request_attempt,
    sweep,
)
from rating_core.events.call_events import CallbackAnswered, CallStarted, RatingGiven, from_record, to_record
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from rating_core.store.models import CallbackAnswer, CallbackAttempt, CallbackTask, Rating, TaskEvent
from simulators.asterisk_agi import (
    Caller,
    CallResult,
    HangUp,
    Press,
    Silence,
    SimulatedChannel,
    run_agi_process,
    run_call,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday, in the morning window
_ids = iter(range(10**6))


def rate(store: RatingStore, number: str = "13800000000", hotline: str = "12345") -> int:
    uid = f"1795316400.{next(_ids)}"
    store.apply([
        CallStarted(uniqueid=uid, hotline=hotline, at=T0, caller_number=number, agent_id="1024"),
        RatingGiven(uid, "very_dissatisfied", "dtmf", T0 + timedelta(seconds=5)),
    ])
    with store.sessions() as session:
        return session.scalars(select(CallbackTask.id).order_by(CallbackTask.id.desc())).first()


def dial(store: RatingStore, rules: Rules, task_id: int, now: datetime) -> int:
    """Request and claim the next attempt, as the RQ job and the dialer do; the call is now ringing."""
    with store.sessions.begin() as session:
        decision = request_attempt(session, rules.callback, task_id, now, "system:rq")
        assert decision.attempt_id is not None, decision
        assert claim_attempt(session, decision.attempt_id, now, "Local/13800000000@callback-out")
        return decision.attempt_id


def end_attempt(store: RatingStore, rules: Rules, attempt_id: int, outcome: str, at: datetime) -> None:
    with store.sessions.begin() as session:
        record_outcome(session, rules.callback, attempt_id, outcome, at, "dialer")


def contacted(store: RatingStore, rules: Rules) -> int:
    task_id = rate(store)
    attempt_id = dial(store, rules, task_id, T0 + timedelta(minutes=1))
    end_attempt(store, rules, attempt_id, "answered", T0 + timedelta(minutes=3))
    return task_id


def task(store: RatingStore, task_id: int) -> CallbackTask:
    with store.sessions() as session:
        found = session.get(CallbackTask, task_id)
        found.history, found.attempts, found.answers, found.rating.changes  # load while open
        return found


def verdict(store: RatingStore, rules: Rules, task_id: int, kind: str, at: datetime, note: str = "已核实",
            rectify_by: datetime | None = None) -> None:
    with store.sessions.begin() as session:
        record_verdict(session, rules.callback, task_id, kind, at, "agent:2001", note, rectify_by)


# -- the store's rules ------------------------------------------------------------


def test_an_immediate_fix_goes_to_the_re_ask_and_satisfaction_closes_the_task(store, rules) -> None:
    task_id = contacted(store, rules)
    at = T0 + timedelta(hours=2)
    verdict(store, rules, task_id, "immediate_fix", at, "已协调窗口当场办理")
    found = task(store, task_id)
    assert (found.state, found.verdict, found.verified_at, found.rectified_at) == ("rectified", "immediate_fix", at, at)
    assert found.next_attempt_at == at  # 11:30 on a Friday is inside the calling window
    reask = dial(store, rules, task_id, at)
    with store.sessions() as session:
        assert session.get(CallbackAttempt, reask).purpose == "satisfaction"
    with store.sessions.begin() as session:
        record_answer(session, reask, "satisfied", True, "1", "cb.1", at + timedelta(seconds=40), "system:callback-ivr")
    found = task(store, task_id)
    assert (found.state, found.citizen_satisfied) == ("closed", True)
    assert "整改满意" in found.state_reason
    end_attempt(store, rules, reask, "answered", at + timedelta(minutes=1))
    assert task(store, task_id).state == "closed"  # the call's end does not reopen it


def test_a_deadline_fix_gets_the_policy_limit_or_an_earlier_date(store, rules) -> None:
    first, second = contacted(store, rules), contacted(store, rules)
    at = T0 + timedelta(hours=3)
    verdict(store, rules, first, "deadline_fix", at, "涉及多部门，建立台账")
    assert task(store, first).rectify_by == at + timedelta(days=15)
    assert task(store, first).state == "rectifying"
    verdict(store, rules, second, "deadline_fix", at, "三日内整改", rectify_by=at + timedelta(days=3))
    assert task(store, second).rectify_by == at + timedelta(days=3)


def test_a_deadline_past_the_limit_is_refused_and_nothing_is_saved(store, rules) -> None:
    task_id = contacted(store, rules)
    with pytest.raises(TaskRuleError, match="不超过15天"):
        verdict(store, rules, task_id, "deadline_fix", T0 + timedelta(hours=3), "x",
                rectify_by=T0 + timedelta(days=30))
    found = task(store, task_id)
    assert (found.state, found.verdict, found.rectify_by) == ("contacted", None, None)


@pytest.mark.parametrize(
    ("kind", "note", "rectify_by", "message"),
    [
        ("no_such_verdict", "x", None, "未知的核实结论"),
        ("explained", "   ", None, "请填写核实情况说明"),
        ("explained", "已解释", T0 + timedelta(days=2), "只有“限期整改”"),
    ],
)
def test_contradictory_or_missing_verdicts_are_refused(store, rules, kind, note, rectify_by, message) -> None:
    task_id = contacted(store, rules)
    with pytest.raises(TaskRuleError, match=message):
        verdict(store, rules, task_id, kind, T0 + timedelta(hours=1), note, rectify_by)
    assert task(store, task_id).state == "contacted"


def test_no_verdict_before_contact(store, rules) -> None:
    task_id = rate(store)
    with pytest.raises(TaskRuleError, match="任务当前状态为“待回访”，不能填写核实结论"):
        verdict(store, rules, task_id, "explained", T0 + timedelta(hours=1))


def test_a_late_rectification_is_escalated_then_reported(store, rules) -> None:
    task_id = contacted(store, rules)
    at = T0 + timedelta(hours=3)
    verdict(store, rules, task_id, "deadline_fix", at, "建立台账", rectify_by=at + timedelta(days=2))
    with store.sessions.begin() as session:
        assert sweep(session, rules.callback, at + timedelta(days=2, minutes=1)).escalated == 1
    assert "整改期限" in task(store, task_id).escalation_reason
    done = datetime(2026, 11, 23, 10, 0, tzinfo=CST)  # Monday morning
    with store.sessions.begin() as session:
        mark_rectified(session, rules.callback, task_id, done, "unit:市人社局", "已补办")
    found = task(store, task_id)
    assert (found.state, found.next_attempt_at) == ("rectified", done)
    reported = next(e for e in found.history if e.kind == "rectification_reported")
    assert reported.detail["late"] is True and reported.actor == "unit:市人社局"
    with pytest.raises(TaskRuleError, match="任务当前状态为“待回访满意度”，不在整改中"):
        with store.sessions.begin() as session:
            mark_rectified(session, rules.callback, task_id, done, "unit:市人社局", "again")


def test_a_wrong_or_malicious_rating_is_not_adopted(store, rules) -> None:
    task_id = contacted(store, rules)
    verdict(store, rules, task_id, "not_adopted", T0 + timedelta(hours=1), "市民确认误按")
    found = task(store, task_id)
    assert found.state == "closed"
    rating = found.rating
    assert rating.is_adopted is False and "市民确认误按" in rating.not_adopted_reason
    assert rating.changes[-1].source == "agent:2001" and rating.changes[-1].changes["is_adopted"] == [True, False]


def test_re_ask_retries_return_to_rectified_and_have_their_own_budget(store, rules) -> None:
    policy = rules.callback
    task_id = contacted(store, rules)
    at = T0 + timedelta(hours=2)
    verdict(store, rules, task_id, "explained", at, "已解释政策依据")
    for _ in range(policy.max_attempts - 1):
        attempt = dial(store, rules, task_id, task(store, task_id).next_attempt_at)
        end_attempt(store, rules, attempt, "no_answer", task(store, task_id).next_attempt_at or at)
        assert task(store, task_id).state == "rectified"
    attempt = dial(store, rules, task_id, task(store, task_id).next_attempt_at)
    end_attempt(store, rules, attempt, "busy", task(store, task_id).next_attempt_at or at)
    found = task(store, task_id)
    assert found.state == "exhausted" and found.attempts_made == 1 + policy.max_attempts
    assert found.escalation_reason == f"整改后回访已拨打{policy.max_attempts}次仍未接通"


def test_answers_are_stored_once_and_a_stranger_goes_to_a_supervisor(store, rules) -> None:
    task_id = rate(store)
    attempt = dial(store, rules, task_id, T0 + timedelta(minutes=1))
    for _ in range(2):  # a journal replayed applies the same answer again
        with store.sessions.begin() as session:
            record_answer(session, attempt, "identity", False, "2", "cb.9", T0 + timedelta(minutes=2),
                          "system:callback-ivr")
    found = task(store, task_id)
    assert [(a.question, a.answer, a.key) for a in found.answers] == [("identity", False, "2")]
    assert found.escalation_reason == "接听人不是评价人本人，需人工核实"
    with pytest.raises(TaskRuleError, match="未知的回访问题"):
        with store.sessions.begin() as session:
            record_answer(session, attempt, "favourite_colour", True, "1", "cb.9", T0, "x")


def test_an_answer_survives_the_spool_as_it_was_given() -> None:
    event = CallbackAnswered("cb.1", 7, "resolved", False, "2", T0)
    assert from_record(to_record(event)) == event


# -- the automated callback over FastAGI -------------------------------------------


async def callback(ivr: IvrService, task_id: int | str, attempt_id: int | str, *reactions,
                   hotline: str = "12345") -> CallResult:
    caller = Caller(list(reactions), callerid="12345", variables={"CALLBACK_HOTLINE": hotline})
    return await run_call("127.0.0.1", ivr.server.port, caller, uniqueid=f"1795400000.{next(_ids)}",
                          script=f"callback-verify?task={task_id}&attempt={attempt_id}")


def sent(result: CallResult) -> list[str]:
    return [" ".join(words) for words in result.channel.commands]


def answers(store: RatingStore, task_id: int) -> list[tuple[str, bool]]:
    return [(a.question, a.answer) for a in task(store, task_id).answers]


def script_end(store: RatingStore, task_id: int) -> dict:
    with store.sessions() as session:
        return session.scalars(select(TaskEvent.detail).where(
            TaskEvent.task_id == task_id, TaskEvent.kind == "script_ended")).one()


async def test_a_korean_callback_says_the_date_in_korean(ivr: IvrService, rules) -> None:
    """12345-ko's callback speaks 십일월 이십일 from its own folder, not the Mandarin 十一月二十日."""
    task_id = rate(ivr.store, hotline="12345-ko")
    attempt = dial(ivr.store, rules, task_id, T0 + timedelta(minutes=1))
    result = await callback(ivr, task_id, attempt, Press("1"), Press("1"), Press("1"), hotline="12345-ko")
    assert result.closed_by_server and not result.error
    assert sent(result)[1:5] == [
        "STREAM FILE hotline-eval/12345-ko/verify_greeting ",
        "STREAM FILE hotline-eval/dates-ko/month_11 ",
        "STREAM FILE hotline-eval/dates-ko/day_20 ",
        "STREAM FILE hotline-eval/12345-ko/verify_rated ",
    ]


async def test_solved_and_satisfied_closes_the_task(ivr: IvrService, rules) -> None:
    store = ivr.store
    task_id = rate(store)
    attempt = dial(store, rules, task_id, T0 + timedelta(minutes=1))
    result = await callback(ivr, task_id, attempt, Press("1"), Press("1"), Press("1"))
    assert result.closed_by_server and not result.error and not result.channel.violations
    assert sent(result) == [
        "ANSWER",
        "STREAM FILE hotline-eval/12345/verify_greeting ",
        "STREAM FILE hotline-eval/dates/month_11 ",  # rated on 20 November
        "STREAM FILE hotline-eval/dates/day_20 ",
        "STREAM FILE hotline-eval/12345/verify_rated ",
        "GET DATA hotline-eval/12345/verify_identity 6000 1",
        "GET DATA hotline-eval/12345/verify_resolved 6000 1",
        "GET DATA hotline-eval/12345/verify_satisfaction 6000 1",
        "STREAM FILE hotline-eval/12345/verify_thanks ",
        "HANGUP",
    ]
    assert answers(store, task_id) == [("identity", True), ("resolved", True), ("satisfied", True)]
    found = task(store, task_id)
    assert (found.state, found.citizen_resolved, found.citizen_satisfied) == ("closed", True, True)
    assert script_end(store, task_id) == {"attempt": 1, "end_reason": "completed", "progress": "satisfied"}


async def test_not_the_rater_apologises_and_escalates(ivr: IvrService, rules) -> None:
    task_id = rate(ivr.store)
    attempt = dial(ivr.store, rules, task_id, T0 + timedelta(minutes=1))
    result = await callback(ivr, task_id, attempt, Press("2"))
    assert sent(result)[-2:] == ["STREAM FILE hotline-eval/12345/verify_not_you ", "HANGUP"]
    assert answers(ivr.store, task_id) == [("identity", False)]
    assert task(ivr.store, task_id).escalation_reason == "接听人不是评价人本人，需人工核实"


async def test_unresolved_leaves_the_task_to_the_agents(ivr: IvrService, rules) -> None:
    task_id = rate(ivr.store)
    attempt = dial(ivr.store, rules, task_id, T0 + timedelta(minutes=1))
    result = await callback(ivr, task_id, attempt, Press("1"), Press("2"))
    assert "GET DATA hotline-eval/12345/verify_satisfaction 6000 1" not in sent(result)
    assert sent(result)[-2] == "STREAM FILE hotline-eval/12345/verify_followup "
    end_attempt(ivr.store, rules, attempt, "answered", T0 + timedelta(minutes=3))
    found = task(ivr.store, task_id)
    assert (found.state, found.citizen_resolved, found.escalated_at) == ("contacted", False, None)
    assert found.state_reason == "市民表示问题未解决，待核实处理"


async def test_a_hang_up_keeps_the_answers_already_given(ivr: IvrService, rules) -> None:
    task_id = rate(ivr.store)
    attempt = dial(ivr.store, rules, task_id, T0 + timedelta(minutes=1))
    result = await callback(ivr, task_id, attempt, Press("1"), HangUp())
    assert result.closed_by_server
    assert answers(ivr.store, task_id) == [("identity", True)]
    assert script_end(ivr.store, task_id)["end_reason"] == "citizen_hangup"


async def test_silence_ends_politely_without_an_answer(ivr: IvrService, rules) -> None:
    task_id = rate(ivr.store)
    attempt = dial(ivr.store, rules, task_id, T0 + timedelta(minutes=1))
    result = await callback(ivr, task_id, attempt, Silence(), Silence())
    assert sent(result).count("GET DATA hotline-eval/12345/verify_identity 6000 1") == 2
    assert sent(result)[-2] == "STREAM FILE hotline-eval/12345/verify_followup "
    assert answers(ivr.store, task_id) == []
    assert script_end(ivr.store, task_id) == {"attempt": 1, "end_reason": "no_input", "progress": "introduced"}


async def test_the_re_ask_after_rectification_asks_only_satisfaction(ivr: IvrService, rules) -> None:
    task_id = contacted(ivr.store, rules)
    verdict(ivr.store, rules, task_id, "immediate_fix", T0 + timedelta(hours=1), "当场办结")
    attempt = dial(ivr.store, rules, task_id, T0 + timedelta(hours=1))
    result = await callback(ivr, task_id, attempt, Press("1"), Press("2"))
    commands = sent(result)
    assert "STREAM FILE hotline-eval/12345/verify_rectified " in commands
    assert "GET DATA hotline-eval/12345/verify_resolved 6000 1" not in commands
    found = task(ivr.store, task_id)
    assert found.citizen_satisfied is False and found.escalation_reason == "市民对处理结果不满意"


@pytest.mark.parametrize(("task_id", "attempt_id"), [(999, 999), ("abc", "1"), ("", "")])
async def test_an_unknown_callback_gets_an_apology_and_writes_nothing(ivr: IvrService, task_id, attempt_id,
                                                                      caplog) -> None:
    result = await callback(ivr, task_id, attempt_id, Press("1"), hotline="12333")
    assert result.closed_by_server and not result.channel.violations
    assert sent(result)[-3:] == ["ANSWER", "STREAM FILE hotline-eval/12333/verify_unavailable ", "HANGUP"]
    assert "GET DATA" not in " ".join(sent(result))
    with ivr.store.sessions() as session:
        assert session.scalars(select(CallbackAnswer)).all() == [] and session.scalars(select(Rating)).all() == []
    assert "callback" in caplog.text and ("no such task" in caplog.text or "no usable task" in caplog.text)


async def test_an_attempt_of_another_task_is_refused(ivr: IvrService, rules) -> None:
    first, second = rate(ivr.store), rate(ivr.store)
    attempt = dial(ivr.store, rules, first, T0 + timedelta(minutes=1))
    result = await callback(ivr, second, attempt, Press("1"))
    assert "STREAM FILE hotline-eval/12345/verify_unavailable " in sent(result)
    assert answers(ivr.store, first) == answers(ivr.store, second) == []


def test_the_callback_also_runs_as_plain_agi(tmp_path, rules) -> None:
    """`hotline-eval-agi script=callback-verify task=… attempt=…`: stdin/stdout, one process per call."""
    db = tmp_path / "agi.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    store = RatingStore(engine, rules)
    task_id = rate(store)
    attempt_id = dial(store, rules, task_id, T0 + timedelta(minutes=1))
    args = ["script=callback-verify", f"task={task_id}", f"attempt={attempt_id}"]
    channel = SimulatedChannel(Caller([Press("1"), Press("1"), Press("1")]), "1795400001.1", "x")
    variables = {"agi_request": "/opt/hotline-eval/bin/hotline-eval-agi", "agi_channel": "PJSIP/trunk-0002",
                 "agi_uniqueid": "1795400001.1", "agi_callerid": "12345"}
    agi = str(Path(sys.executable).with_name("hotline-eval-agi"))
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{db}", HOTLINE_EVAL_HOME=str(tmp_path))
    code, stderr = run_agi_process([agi], channel, variables, args, env)
    assert code == 0, stderr
    assert channel.commands[-1] == ["HANGUP"] and not channel.violations
    assert answers(store, task_id) == [("identity", True), ("resolved", True), ("satisfied", True)]
    assert task(store, task_id).state == "closed"


def test_a_wrongly_rejected_差评_is_readopted_and_its_task_reopens(store, rules) -> None:
    from rating_core.complaints.callback_tasks import readopt

    task_id = contacted(store, rules)
    verdict(store, rules, task_id, "not_adopted", T0 + timedelta(hours=1), "误按")
    at = T0 + timedelta(hours=2)
    with pytest.raises(TaskRuleError, match="理由"), store.sessions.begin() as session:
        readopt(session, rules.callback, task_id, at, "supervisor:boss", " ")
    with store.sessions.begin() as session:
        readopt(session, rules.callback, task_id, at, "supervisor:boss", "复听录音，确为差评")
    found = task(store, task_id)
    assert (found.state, found.verdict, found.next_attempt_at) == ("pending", None, at)
    assert found.rating.is_adopted is True and found.rating.not_adopted_reason is None
    assert [e.kind for e in found.history][-1] == "readopted"
    assert found.rating.changes[-1].changes["is_adopted"] == [False, True]
    with pytest.raises(TaskRuleError, match="已是采纳"), store.sessions.begin() as session:
        readopt(session, rules.callback, task_id, at, "supervisor:boss", "again")


def test_the_last_day_a_deadline_may_fall_on_can_be_picked(store, rules) -> None:
    """A form picks a day (its end, 23:59 Beijing); the limit is an exact time within that day."""
    from zoneinfo import ZoneInfo

    from rating_core.complaints.callback_tasks import load_calendar
    from rating_core.rules.working_days import add_duration

    zone = ZoneInfo(rules.callback.timezone)
    task_id = contacted(store, rules)
    at = T0 + timedelta(hours=2)
    with store.sessions() as session:
        limit = add_duration(at, rules.callback.rectify_within, load_calendar(session), zone)
    end_of_day = datetime.combine(limit.astimezone(zone).date(), datetime.max.time(), zone).replace(microsecond=0)
    verdict(store, rules, task_id, "deadline_fix", at, rectify_by=end_of_day.astimezone(timezone.utc))
    assert task(store, task_id).rectify_by == limit
    later = contacted(store, rules)
    with pytest.raises(TaskRuleError, match="整改期限须在"):
        verdict(store, rules, later, "deadline_fix", at, rectify_by=end_of_day + timedelta(days=1))
