"""The callback task's life in the store (SQLite and PostgreSQL): created with the 差评, dialled by policy."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from rating_core.complaints.callback_tasks import claim_attempt, note_event, record_outcome, request_attempt, sweep
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.store.models import BlockedNumber, CallbackAttempt, CallbackTask, TaskEvent

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday, inside the morning window


def rate(store: RatingStore, uid: str, level: str, number: str | None = "13800000000", at: datetime = T0) -> None:
    store.apply([
        CallStarted(uniqueid=uid, hotline="12345", at=at, caller_number=number, agent_id="1024"),
        RatingGiven(uid, level, "dtmf", at + timedelta(seconds=5)),
    ])


def only_task(store: RatingStore) -> CallbackTask:
    with store.sessions() as session:
        task = session.scalars(select(CallbackTask)).one()
        task.history, task.attempts  # load while the session is open
        return task


def test_a_negative_rating_gets_its_task_in_the_same_write(store: RatingStore) -> None:
    rate(store, "1.1", "dissatisfied")
    rate(store, "1.2", "satisfied")
    task = only_task(store)
    assert (task.state, task.number, task.mode) == ("pending", "13800000000", "agent_first")
    rated = T0 + timedelta(seconds=5)
    assert task.verify_by == rated + timedelta(hours=48)
    assert task.escalate_at == task.verify_by - timedelta(hours=8)
    # 2 working days from Friday 09:30: Friday's rest, then Monday; ends Tuesday 09:30.
    assert task.appeal_file_by == datetime(2026, 11, 24, 9, 30, 5, tzinfo=CST)
    assert task.next_attempt_at == rated
    assert [(e.kind, e.actor, e.to_state) for e in task.history] == [("created", "system:ivr", "pending")]


@pytest.mark.parametrize(
    ("number", "reason"),
    [(None, "无来电号码"), ("anonymous", "号码格式错误"), ("13900000000", "恶意评价名单")],
)
def test_tasks_that_are_never_dialled_say_why(store: RatingStore, number: str | None, reason: str) -> None:
    with store.sessions.begin() as session:
        session.add(BlockedNumber(number="13900000000", reason="多次恶意差评", added_by="admin", added_at=T0))
    rate(store, "2.1", "very_dissatisfied", number=number)
    task = only_task(store)
    assert task.state == "not_dialled" and reason in task.state_reason
    assert task.next_attempt_at is None


def test_changing_the_rating_to_good_closes_the_task(store: RatingStore) -> None:
    rate(store, "3.1", "dissatisfied")
    store.apply([RatingGiven("3.1", "satisfied", "dtmf", T0 + timedelta(minutes=1))])
    task = only_task(store)
    assert task.state == "closed" and task.state_reason == "评价已改为非差评"


def test_outside_calling_hours_the_request_waits_for_the_window(store: RatingStore, rules: Rules) -> None:
    rate(store, "4.1", "dissatisfied", at=datetime(2026, 11, 20, 19, 0, tzinfo=CST))
    task = only_task(store)
    assert task.next_attempt_at == datetime(2026, 11, 23, 8, 30, tzinfo=CST)  # Monday morning
    with store.sessions.begin() as session:
        decision = request_attempt(session, rules.callback, task.id, datetime(2026, 11, 21, 10, 0, tzinfo=CST), "t")
    assert decision.attempt_id is None and decision.retry_at == datetime(2026, 11, 23, 8, 30, tzinfo=CST)


def dial_once(store: RatingStore, rules: Rules, task_id: int, now: datetime, outcome: str) -> CallbackAttempt:
    with store.sessions.begin() as session:
        decision = request_attempt(session, rules.callback, task_id, now, "system:rq")
        assert decision.attempt_id is not None, decision
        assert claim_attempt(session, decision.attempt_id, now, "PJSIP/1024")
        assert not claim_attempt(session, decision.attempt_id, now, "PJSIP/1024"), "claimed twice"
        record_outcome(session, rules.callback, decision.attempt_id, outcome, now + timedelta(seconds=20), "dialer")
        return session.get(CallbackAttempt, decision.attempt_id)


def test_retries_follow_the_policy_then_escalate(store: RatingStore, rules: Rules) -> None:
    policy = rules.callback
    rate(store, "5.1", "dissatisfied")
    task_id = only_task(store).id
    now = T0 + timedelta(minutes=1)
    dial_once(store, rules, task_id, now, "busy")
    task = only_task(store)
    assert task.state == "pending"
    assert task.next_attempt_at == now + timedelta(seconds=20) + timedelta(minutes=policy.retry_after_minutes["busy"])
    for _ in range(policy.max_attempts - 1):
        dial_once(store, rules, task_id, only_task(store).next_attempt_at, "no_answer")
    task = only_task(store)
    assert task.state == "exhausted" and task.attempts_made == policy.max_attempts
    assert task.escalated_at is not None and "未接通" in task.escalation_reason
    with store.sessions.begin() as session:
        assert request_attempt(session, policy, task_id, now, "t").attempt_id is None


def test_an_answered_attempt_makes_contact(store: RatingStore, rules: Rules) -> None:
    rate(store, "6.1", "dissatisfied")
    attempt = dial_once(store, rules, only_task(store).id, T0 + timedelta(minutes=1), "answered")
    task = only_task(store)
    assert (attempt.outcome, task.state) == ("answered", "contacted")
    kinds = [e.kind for e in task.history]
    assert kinds == ["created", "attempt_requested", "attempt_ended", "contacted"]


def test_the_sweep_lists_due_tasks_escalates_near_deadlines_and_recomputes(store: RatingStore, rules: Rules) -> None:
    rate(store, "7.1", "dissatisfied")
    rate(store, "7.2", "very_dissatisfied", number="13700000000", at=T0 + timedelta(hours=1))
    with store.sessions.begin() as session:
        result = sweep(session, rules.callback, T0 + timedelta(minutes=5))
    assert [task_id for task_id, _seq in result.due] == [1] and result.escalated == 0
    late = T0 + timedelta(hours=41)  # within 8 h of the first task's 48 h
    with store.sessions.begin() as session:
        result = sweep(session, rules.callback, late)
    assert result.escalated == 1
    liaoning = rules.callback.model_copy(update={"verify_within": rules.callback.verify_within.model_copy(
        update={"amount": 1, "unit": "working_days"})})
    with store.sessions.begin() as session:
        result = sweep(session, liaoning, late)
        assert result.recomputed == 2
        first = session.get(CallbackTask, 1)
        # 1 working day from Friday 09:30:05 is Monday 09:30:05.
        assert first.verify_by == datetime(2026, 11, 23, 9, 30, 5, tzinfo=CST)
        assert session.scalars(select(TaskEvent.kind).where(TaskEvent.task_id == 1)).all()[-1] == "deadlines_recomputed"


# -- the state machine (rating_core/complaints/task_states.py) --------------------------------------


def test_a_task_moves_only_along_the_state_machine(store: RatingStore, rules: Rules) -> None:
    """A move the table has no arrow for is refused with a Chinese reason, and the task stays where it was."""
    from rating_core.complaints.task_states import IllegalMove, TaskState
    from rating_core.rules.refusals import Reason, Refused

    rate(store, "1796600000.1", "dissatisfied")
    with store.sessions.begin() as session:
        task = session.scalars(select(CallbackTask)).one()
        assert task.state == TaskState.PENDING
        with pytest.raises(IllegalMove, match="不能从“待回访”改为“限期整改中”") as refused:
            note_event(session, task, T0, "test", "verified", "rectifying")
        assert isinstance(refused.value, Refused) and refused.value.reason == Reason.WRONG_STATE
        assert task.state == TaskState.PENDING
        with pytest.raises(IllegalMove):
            note_event(session, task, T0, "test", "created", "rectified")  # born waiting for a call, or never


def test_every_state_has_a_name_and_every_arrow_lands_on_a_state() -> None:
    from rating_core.complaints.task_states import (
        ATTEMPT_MOVES,
        ATTEMPT_STATUS_NAMES,
        TASK_MOVES,
        TASK_STATE_NAMES,
        AttemptStatus,
        TaskState,
    )

    assert set(TASK_STATE_NAMES) == set(TASK_MOVES) == set(TaskState)
    assert set(ATTEMPT_STATUS_NAMES) == set(ATTEMPT_MOVES) == set(AttemptStatus)
    assert ATTEMPT_MOVES[AttemptStatus.ENDED] == frozenset()  # an ended attempt is history
    # Every open state can still end, and every state can be reached from where a task is born.
    reached, frontier = {TaskState.PENDING, TaskState.NOT_DIALLED}, [TaskState.PENDING]
    while frontier:
        for target in TASK_MOVES[frontier.pop()] - reached:
            reached.add(target)
            frontier.append(target)
    assert reached == set(TaskState)
    assert all(TaskState.CLOSED in TASK_MOVES[state] for state in TaskState if state not in
               (TaskState.CLOSED, TaskState.NOT_DIALLED))
