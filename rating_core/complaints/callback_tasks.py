"""The callback loop's rules: when a 差评 becomes a task, when it is dialled, what an outcome does.

Everything here runs inside a caller's transaction and only touches the
store, so the RQ jobs, the dialer, the CLI and the web tool all move a task
the same way, and every move leaves a :class:`TaskEvent` saying who made it.

The states and the moves between them are :mod:`rating_core.complaints.task_states`.

An automated callback may close a task at once: the citizen confirms it is
them, says the problem is solved and is satisfied with how it was handled.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rating_core.complaints.task_states import (
    OPEN_TASK_STATES,
    AttemptStatus,
    TaskState,
    attempts_moving_to,
    task_move,
    task_state_name,
)
from rating_core.outbox.outbox import emit
from rating_core.rules.callback_policy import FINAL_OUTCOMES, QUESTIONS, VERDICTS, CallbackPolicy
from rating_core.rules.local_time import local_time
from rating_core.rules.number_hash import is_hashed
from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.working_days import WorkingCalendar, add_duration, next_calling_time
from rating_core.store.batch_lookups import blocked_reason, lookups
from rating_core.store.database import rows_changed
from rating_core.store.models import (
    CalendarOverride,
    CallbackAnswer,
    CallbackAttempt,
    CallbackTask,
    Rating,
    Rectification,
    TaskEvent,
)
from rating_core.store.rating_history import change_rating

log = logging.getLogger(__name__)

OPEN_STATES = OPEN_TASK_STATES
# A state the dialer picks tasks from, and the purpose of the call it places.
DIALLABLE_STATES: dict[str, str] = {TaskState.PENDING: "verify", TaskState.RECTIFIED: "satisfaction"}
# Where a verification may be entered: after contact, or by other means once calling has failed.
VERIFIABLE_STATES = (TaskState.CONTACTED, TaskState.EXHAUSTED)


class TaskRuleError(Refused):
    """A move the callback rules do not allow; the message is for the person who tried it (zh-CN)."""

    reason = Reason.WRONG_STATE




def load_calendar(session: Session) -> WorkingCalendar:
    batch = lookups(session)
    if batch is not None and batch.calendar is not None:
        return batch.calendar  # once per batch of call events, not once per 差评
    calendar = WorkingCalendar({row.day: row.is_working_day for row in session.scalars(select(CalendarOverride))})
    if batch is not None:
        batch.calendar = calendar
    return calendar


# Who works a task is not what its forms edit: claiming or handing it over leaves open pages' forms valid.
UNVERSIONED_KINDS = frozenset({"claimed", "released", "assigned", "unassigned"})


def note_event(session: Session, task: CallbackTask, at: datetime, actor: str, kind: str,
          to_state: str | None = None, **detail: object) -> None:
    """Put what happened on the task's history; with ``to_state``, the one place a task changes state, and
    only along an arrow of the state machine (:func:`~rating_core.complaints.task_states.task_move`)."""
    from_state = task.state
    if to_state is not None:
        task.state = task_move(None if kind == "created" else from_state, to_state)
    task.updated_at = at
    if kind not in UNVERSIONED_KINDS:
        task.version = (task.version or 0) + 1
    session.add(TaskEvent(task=task, at=at, actor=actor, kind=kind, from_state=from_state,
                          to_state=to_state, detail={k: v for k, v in detail.items() if v is not None}))


def _compute_deadlines(task: CallbackTask, rated_at: datetime, policy: CallbackPolicy,
                       calendar: WorkingCalendar) -> None:
    tz = ZoneInfo(policy.timezone)
    task.verify_by = add_duration(task.created_at, policy.verify_within, calendar, tz)
    lead = policy.escalate_before_deadline
    lead_delta = (add_duration(task.verify_by, lead, calendar, tz) - task.verify_by)
    task.escalate_at = max(task.created_at, task.verify_by - lead_delta)
    task.appeal_file_by = add_duration(rated_at, policy.appeal_file_within, calendar, tz)
    task.deadline_note = calendar.note()
    task.policy_version = policy.version


def next_slot(after: datetime, policy: CallbackPolicy, calendar: WorkingCalendar) -> datetime | None:
    return next_calling_time(
        after, policy.calling_windows, calendar, ZoneInfo(policy.timezone),
        working_days_only=policy.calling_days == "working_days",
    )


def open_task(session: Session, policy: CallbackPolicy, rating: Rating, at: datetime, actor: str) -> CallbackTask:
    """Create the callback task of a 差评 (in the rating's own transaction). Idempotent."""
    if rating.callback_task is not None:
        return rating.callback_task
    call = rating.call
    calendar = load_calendar(session)
    task = CallbackTask(
        rating=rating, hotline=call.hotline, number=call.caller_number, mode=policy.mode,
        state=TaskState.PENDING, created_at=at, updated_at=at, attempts_made=0, attempts=[],
    )
    _compute_deadlines(task, rating.rated_at, policy, calendar)
    session.add(task)
    reason = _why_not_dialled(session, policy, rating, task.number)
    if reason is not None:
        task.state_reason = reason[:256]  # a quoted reason may be as long as the column itself
        note_event(session, task, at, actor, "created", "not_dialled", reason=reason)
        log.info("callback task for call %s not dialled: %s", call.uniqueid, reason)
    else:
        task.next_attempt_at = next_slot(at, policy, calendar)
        note_event(session, task, at, actor, "created", TaskState.PENDING, verify_by=task.verify_by.isoformat())
    return task


def _why_not_dialled(session: Session, policy: CallbackPolicy, rating: Rating, number: str | None) -> str | None:
    if not rating.is_adopted:
        return f"评价未采纳：{rating.not_adopted_reason or '未说明'}"
    if not number:
        return "无来电号码，无法回访"
    if is_hashed(number):  # a task reopened (恢复采纳) after the number's retention: there is no one to call
        return "来电号码已按保存期限脱敏，无法回访"
    blocked = blocked_reason(session, number)
    if blocked is not None:
        return blocked
    if not policy.dialer.valid_number(number):
        return f"号码格式错误：{number!r}"
    return None


def close_task(session: Session, task: CallbackTask, at: datetime, actor: str, reason: str) -> None:
    if task.state in ("closed", "not_dialled"):
        return
    task.state_reason = reason
    task.next_attempt_at = None
    note_event(session, task, at, actor, "closed", "closed", reason=reason)


@dataclass(frozen=True)
class AttemptRequest:
    """What :func:`request_attempt` decided: an attempt to place, or why not (``reason`` for a program,
    ``message`` for a person) and when to look again."""

    attempt_id: int | None
    reason: Reason | None = None
    message: str | None = None
    retry_at: datetime | None = None


def request_attempt(session: Session, policy: CallbackPolicy, task_id: int, now: datetime,
                    actor: str, agent: str | None = None) -> AttemptRequest:
    """Queue the next dial of a task for the dialer, if the policy allows it now."""
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None:
        return AttemptRequest(None, Reason.NOT_FOUND, f"回访任务 {task_id} 不存在")
    purpose = DIALLABLE_STATES.get(task.state)
    if purpose is None:
        return AttemptRequest(None, Reason.WRONG_STATE, "该任务当前不在待呼叫状态")
    if _attempts_for(task, purpose) >= policy.max_attempts:
        exhaust(session, task, now, actor, purpose=purpose)
        return AttemptRequest(None, Reason.USED_UP, "呼叫次数已用完")
    calendar = load_calendar(session)
    slot = next_slot(now, policy, calendar)
    if slot != now:
        task.next_attempt_at = slot
        return AttemptRequest(None, Reason.NOT_NOW, "当前不在呼叫时段", retry_at=slot)
    seq = task.attempts_made + 1
    token = uuid.uuid4().hex[:12]
    attempt = CallbackAttempt(
        task=task, seq=seq, purpose=purpose, status=AttemptStatus.QUEUED, requested_at=now,
        # Letters, digits and dashes only: valid as RQ job ids, AMI ActionIDs and Asterisk uniqueids.
        channel_id=f"cb-{task.id}-{seq}-{token}", action_id=f"cb-{task.id}-{seq}-{token}-a",
    )
    session.add(attempt)
    task.attempts_made = seq
    task.next_attempt_at = None
    if agent:
        task.assigned_agent = agent
    note_event(session, task, now, actor, "attempt_requested", "dialing", attempt=seq, purpose=purpose)
    session.flush()
    return AttemptRequest(attempt.id)


def claim_attempt(session: Session, attempt_id: int, now: datetime, dial_string: str) -> bool:
    """Move a queued attempt to ``originating``; False if someone else already did.

    The one conditional UPDATE is the guarantee that an attempt is sent to
    Asterisk at most once, however many dialers or restarts there are.
    """
    result = session.execute(
        update(CallbackAttempt)
        .where(CallbackAttempt.id == attempt_id, CallbackAttempt.status == AttemptStatus.QUEUED)
        .values(status=AttemptStatus.ORIGINATING, originated_at=now, dial_string=dial_string)
    )
    return rows_changed(result) == 1


def release_attempt(session: Session, attempt_id: int) -> bool:
    """Undo :func:`claim_attempt` for an Originate that never left the dialer; False if the attempt moved on.

    Nothing reached Asterisk, so nothing happened to the citizen: the attempt
    is queued again as it was, costs no try and sets no retry wait, and the
    next free line dials it. Only an attempt still ``originating`` goes back,
    so one already ended or followed elsewhere is left as it is.
    """
    result = session.execute(
        update(CallbackAttempt)
        .where(CallbackAttempt.id == attempt_id, CallbackAttempt.status == AttemptStatus.ORIGINATING)
        .values(status=AttemptStatus.QUEUED, originated_at=None, dial_string=None)
    )
    return rows_changed(result) == 1


def record_outcome(session: Session, policy: CallbackPolicy, attempt_id: int, outcome: str, at: datetime,
                   actor: str, *, reason_code: int | None = None, cause: int | None = None,
                   cause_text: str | None = None, detail: str | None = None,
                   recording_file: str | None = None) -> None:
    """An attempt ended: store how, and decide the task's next step by the policy. Idempotent."""
    attempt = session.get(CallbackAttempt, attempt_id, with_for_update=True)
    if attempt is None or attempt.status == AttemptStatus.ENDED:
        return
    attempt.status = AttemptStatus.ENDED
    attempt.ended_at = at
    attempt.outcome = outcome
    attempt.originate_reason = reason_code
    attempt.hangup_cause = cause
    attempt.hangup_cause_text = cause_text
    attempt.detail = detail[:512] if detail else None
    attempt.recording_file = recording_file
    task = attempt.task
    note_event(session, task, at, actor, "attempt_ended", attempt=attempt.seq, outcome=outcome, reason=reason_code,
          cause=cause, detail=detail)
    emit(session, "callback.attempt", task.rating, at, attempt=attempt.seq, purpose=attempt.purpose, outcome=outcome,
         hangup_cause=cause)
    if task.state != "dialing":
        return  # closed or reassigned meanwhile; the attempt is still on record
    if outcome == "answered":
        note_event(session, task, at, actor, "contacted", "contacted", attempt=attempt.seq)
    elif outcome in FINAL_OUTCOMES or _attempts_for(task, attempt.purpose) >= policy.max_attempts:
        exhaust(session, task, at, actor, last_outcome=outcome, purpose=attempt.purpose)
    else:
        spacing = timedelta(minutes=policy.retry_after_minutes[outcome])
        task.next_attempt_at = next_slot(at + spacing, policy, load_calendar(session))
        back_to = next(state for state, purpose in DIALLABLE_STATES.items() if purpose == attempt.purpose)
        note_event(session, task, at, actor, "retry_scheduled", back_to,
              outcome=outcome, next_attempt_at=task.next_attempt_at.isoformat() if task.next_attempt_at else None)


def _attempts_for(task: CallbackTask, purpose: str) -> int:
    return sum(1 for attempt in task.attempts if attempt.purpose == purpose)


def note_answered(session: Session, attempt_id: int, at: datetime) -> None:
    session.execute(
        update(CallbackAttempt)
        .where(CallbackAttempt.id == attempt_id,
               CallbackAttempt.status.in_(attempts_moving_to(AttemptStatus.ANSWERED)))
        .values(status=AttemptStatus.ANSWERED, answered_at=at)
    )


def exhaust(session: Session, task: CallbackTask, at: datetime, actor: str, last_outcome: str | None = None,
            purpose: str = "verify") -> None:
    task.next_attempt_at = None
    made = _attempts_for(task, purpose)
    stage = "整改后回访" if purpose == "satisfaction" else "回访"
    reason = "号码无效，无法接通" if last_outcome == "invalid_number" else f"{stage}已拨打{made}次仍未接通"
    note_event(session, task, at, actor, "exhausted", "exhausted", last_outcome=last_outcome)
    escalate(session, task, at, actor, reason)


def escalate(session: Session, task: CallbackTask, at: datetime, actor: str, reason: str) -> bool:
    """Hand a task to a supervisor (once); the task stays open."""
    if task.escalated_at is not None:
        return False
    task.escalated_at = at
    task.escalation_reason = reason
    note_event(session, task, at, actor, "escalated", reason=reason)
    return True


def recompute_deadlines(session: Session, policy: CallbackPolicy, now: datetime, actor: str,
                        *, stale_only: bool = False) -> int:
    """Recompute open tasks' deadlines: after a policy change (stale_only) or a calendar override (all)."""
    calendar = load_calendar(session)
    query = select(CallbackTask).where(CallbackTask.state.in_(OPEN_STATES))
    if stale_only:
        query = query.where(CallbackTask.policy_version != policy.version)
    count = 0
    for task in session.scalars(query):
        before, escalate_before = task.verify_by, task.escalate_at
        _compute_deadlines(task, task.rating.rated_at, policy, calendar)
        if task.verify_by < before and any(event.kind == "deadline_extended" for event in task.history):
            # A supervisor's extension stands: a new calendar or policy never takes back the time they gave.
            task.verify_by, task.escalate_at = before, escalate_before
        if task.verify_by != before or stale_only:
            note_event(session, task, now, actor, "deadlines_recomputed", old_verify_by=before.isoformat(),
                  verify_by=task.verify_by.isoformat())
            count += 1
    return count


@dataclass(frozen=True)
class SweepResult:
    # (task id, the attempt it is due for): one RQ job per pair.
    due: list[tuple[int, int]]
    escalated: int
    recomputed: int


def sweep(session: Session, policy: CallbackPolicy, now: datetime, actor: str = "system:sweep",
          limit: int = 1000) -> SweepResult:
    """One pass over the store: recompute stale deadlines, escalate what is near, list what is due."""
    recomputed = recompute_deadlines(session, policy, now, actor, stale_only=True)
    escalated = 0
    near = session.scalars(
        select(CallbackTask).where(
            CallbackTask.state.in_((TaskState.PENDING, TaskState.DIALING)),
            CallbackTask.escalated_at.is_(None),
            CallbackTask.escalate_at <= now,
        )
    )
    for task in near:
        overdue = task.verify_by <= now
        escalated += escalate(session, task, now, actor, "已超过核实期限" if overdue else "临近核实期限仍未回访")
    late_fixes = session.scalars(
        select(CallbackTask).where(
            CallbackTask.state == "rectifying", CallbackTask.escalated_at.is_(None), CallbackTask.rectify_by <= now,
        )
    )
    for task in late_fixes:
        escalated += escalate(session, task, now, actor, "已超过整改期限仍未完成整改")
    due = [(task_id, made + 1) for task_id, made in session.execute(
        select(CallbackTask.id, CallbackTask.attempts_made)
        .where(CallbackTask.state.in_(DIALLABLE_STATES), CallbackTask.next_attempt_at <= now)
        .order_by(CallbackTask.verify_by, CallbackTask.id)
        .limit(limit)
    )]
    return SweepResult(due=due, escalated=escalated, recomputed=recomputed)


# -- verification, rectification and the citizen's answers -----------------------


def record_verdict(session: Session, policy: CallbackPolicy, task_id: int, verdict: str, at: datetime, actor: str,
                   note: str, rectify_by: datetime | None = None, *, done: str | None = None,
                   actor_name: str | None = None) -> CallbackTask:
    """Enter the verification's outcome (SPEC §3.3) and move the task on.

    立行立改 and 解释说明 lead straight to the re-asked satisfaction, and what
    was done or explained (``done``, or the note when the verifier wrote it
    all there) becomes the task's :class:`Rectification`; 限期整改 sets a
    rectification deadline (the policy's limit, or an earlier one the verifier
    gives) and its record waits for :func:`mark_rectified`; 误评/恶意评价 marks
    the rating not adopted and closes the task.
    """
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None:
        raise TaskRuleError(f"回访任务 {task_id} 不存在", Reason.NOT_FOUND)
    if verdict not in VERDICTS:
        raise TaskRuleError(f"未知的核实结论：{verdict!r}", Reason.INVALID)
    if task.state not in VERIFIABLE_STATES:
        raise TaskRuleError(f"任务当前状态为“{task_state_name(task.state)}”，不能填写核实结论")
    if not note.strip():
        raise TaskRuleError("请填写核实情况说明", Reason.INVALID)
    if rectify_by is not None and verdict != "deadline_fix":
        raise TaskRuleError("只有“限期整改”才能填写整改期限")
    if done and done.strip() and verdict not in ("immediate_fix", "explained"):
        raise TaskRuleError("整改措施或解释说明内容只在“立行立改”“解释说明”时填写；限期整改请在整改完成后填写整改情况")
    task.verdict, task.verdict_note, task.verified_at = verdict, note.strip(), at
    _start_handling_anew(task)
    if verdict == "deadline_fix":
        zone = ZoneInfo(policy.timezone)
        limit = add_duration(at, policy.rectify_within, load_calendar(session), zone)
        if rectify_by is not None and rectify_by.astimezone(zone).date() == limit.astimezone(zone).date():
            # A day picked on a form means that day's end; on the limit's own day, the limit comes first.
            rectify_by = min(rectify_by, limit)
        if rectify_by is not None and not at < rectify_by <= limit:
            raise TaskRuleError(f"整改期限须在现在至{local_time(limit, ZoneInfo(policy.timezone))}之间"
                                f"（不超过{policy.rectify_within.describe()}）", Reason.INVALID)
        task.rectify_by = rectify_by or limit
        note_event(session, task, at, actor, "verified", "rectifying", verdict=verdict,
                   rectify_by=task.rectify_by.isoformat())
        emit(session, "complaint.verified", task.rating, at, verdict=verdict)
    elif verdict == "not_adopted":
        change_rating(task.rating, at, actor, is_adopted=False,
                      not_adopted_reason=f"{VERDICTS[verdict]}：{note.strip()}"[:256])
        note_event(session, task, at, actor, "verified", verdict=verdict)
        close_task(session, task, at, actor, VERDICTS[verdict])
        emit(session, "complaint.verified", task.rating, at, verdict=verdict)
    else:
        note_event(session, task, at, actor, "verified", verdict=verdict)
        emit(session, "complaint.verified", task.rating, at, verdict=verdict)
        rectification = Rectification(kind=verdict, what=(done or "").strip() or note.strip(), actor=actor,
                                      actor_name=actor_name, at=at)
        _ready_for_reask(session, policy, task, rectification)  # then complaint.rectified
    return task


def mark_rectified(session: Session, policy: CallbackPolicy, task_id: int, at: datetime, actor: str,
                   note: str, *, actor_name: str | None = None) -> CallbackTask:
    """The unit reports the 限期整改 done: what was done is recorded, and the citizen is called back to
    re-ask satisfaction."""
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None:
        raise TaskRuleError(f"回访任务 {task_id} 不存在", Reason.NOT_FOUND)
    if task.state != "rectifying":
        raise TaskRuleError(f"任务当前状态为“{task_state_name(task.state)}”，不在整改中")
    if not note.strip():
        raise TaskRuleError("请填写整改情况", Reason.INVALID)
    late = task.rectify_by is not None and at > task.rectify_by
    note_event(session, task, at, actor, "rectification_reported", note=note.strip(), late=late)
    _ready_for_reask(session, policy, task, Rectification(kind="deadline_fix", what=note.strip(), actor=actor,
                                                          actor_name=actor_name, at=at, late=late))
    return task


def _start_handling_anew(task: CallbackTask) -> None:
    """A verdict (or a re-adoption) starts the handling over: what the citizen said before, and a
    rectification done before, are about a handling that is no longer the task's (they stay on record)."""
    task.rectified_at = None
    task.citizen_resolved = None
    task.citizen_satisfied = None


def _speaks_to_current_handling(task: CallbackTask, attempt: CallbackAttempt, at: datetime) -> bool:
    """Whether an answer is about the task's handling as it stands, not one a verdict or rectification has
    since superseded (an answer the IVR's journal delivers late keeps the time it was given).

    After a rectification only the re-ask counts (a satisfaction call at or after it); before one, any
    answer given since the latest verdict.
    """
    if task.rectified_at is not None:
        return attempt.purpose == "satisfaction" and at >= task.rectified_at
    return task.verified_at is None or at >= task.verified_at


def _ready_for_reask(session: Session, policy: CallbackPolicy, task: CallbackTask,
                     rectification: Rectification) -> None:
    """The handling is done: keep its record and queue the re-ask of the citizen's satisfaction."""
    at, actor = rectification.at, rectification.actor
    rectification.task = task
    session.add(rectification)
    task.rectified_at = at
    # An answer given before this rectification is not the answer to the re-ask about it.
    task.citizen_satisfied = None
    task.next_attempt_at = next_slot(at, policy, load_calendar(session))
    note_event(session, task, at, actor, "rectified", "rectified",
          next_attempt_at=task.next_attempt_at.isoformat() if task.next_attempt_at else None)
    emit(session, "complaint.rectified", task.rating, at)


def record_answer(session: Session, attempt_id: int, question: str, answer: bool, key: str, uniqueid: str,
                  at: datetime, actor: str) -> None:
    """Store one answer from a callback and act on it at once (a hang-up later loses nothing). Idempotent.

    Not the person who rated, or not satisfied: a supervisor takes over. Problem
    solved and satisfied: the loop is closed (整改满意).
    """
    if question not in QUESTIONS:
        raise TaskRuleError(f"未知的回访问题：{question!r}", Reason.INVALID)
    attempt = session.get(CallbackAttempt, attempt_id)
    if attempt is None:
        raise TaskRuleError(f"回访记录 {attempt_id} 不存在", Reason.NOT_FOUND)
    already = session.scalars(select(CallbackAnswer.id).where(
        CallbackAnswer.attempt_id == attempt_id, CallbackAnswer.question == question)).first()
    if already is not None:
        return
    task = attempt.task
    session.add(CallbackAnswer(task=task, attempt_id=attempt_id, question=question, answer=answer, key=key,
                               uniqueid=uniqueid, at=at))
    note_event(session, task, at, actor, "answer", attempt=attempt.seq, question=question, answer=answer)
    if not _speaks_to_current_handling(task, attempt, at):
        return  # kept on record; it answers a handling since superseded
    # What the citizen said stands even when the task was settled meanwhile (a 满意 that closed it may reach
    # the store before the 已解决 keyed just before it); only the moves it would make are left out.
    settled = task.state in (TaskState.CLOSED, TaskState.NOT_DIALLED)
    if question == "resolved":
        task.citizen_resolved = answer
    elif question == "satisfied":
        task.citizen_satisfied = answer
    if settled:
        return
    if question == "identity" and not answer:
        escalate(session, task, at, actor, "接听人不是评价人本人，需人工核实")
    elif question == "resolved" and not answer:
        task.state_reason = "市民表示问题未解决，待核实处理"
    elif question == "satisfied":
        emit(session, "complaint.satisfaction", task.rating, at, satisfied=answer)
        if answer:
            close_task(session, task, at, actor, "市民对处理结果满意（整改满意）")
        else:
            escalate(session, task, at, actor, "市民对处理结果不满意")


def note_script_ended(session: Session, attempt_id: int, end_reason: str, progress: str | None, at: datetime) -> None:
    """How far the automated callback got, on the task's record (the dialer records the call's outcome)."""
    attempt = session.get(CallbackAttempt, attempt_id)
    if attempt is None:
        raise TaskRuleError(f"回访记录 {attempt_id} 不存在", Reason.NOT_FOUND)
    already = session.scalars(select(TaskEvent.id).where(
        TaskEvent.task_id == attempt.task_id, TaskEvent.kind == "script_ended",
        TaskEvent.detail["attempt"].as_integer() == attempt.seq)).first()
    if already is None:
        note_event(session, attempt.task, at, "system:callback-ivr", "script_ended", attempt=attempt.seq,
              end_reason=end_reason, progress=progress)


@dataclass(frozen=True)
class VerificationCall:
    """What the automated callback needs to know to speak to the citizen."""

    task_id: int
    attempt_id: int
    hotline: str
    purpose: str
    rated_at: datetime
    state: str


def verification_call(session: Session, task_id: int, attempt_id: int) -> VerificationCall | None:
    """The callback being answered, or None if the ids do not name one of this task's attempts."""
    attempt = session.get(CallbackAttempt, attempt_id)
    if attempt is None or attempt.task_id != task_id:
        return None
    task = attempt.task
    return VerificationCall(task.id, attempt.id, task.hotline, attempt.purpose, task.rating.rated_at, task.state)


def readopt(session: Session, policy: CallbackPolicy, task_id: int, at: datetime, actor: str,
            reason: str) -> CallbackTask:
    """Undo a non-adoption (a verdict, appeal, 初核 or list decision found wrong): the 差评 counts again
    and its callback task is open again, with the history kept."""
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None:
        raise TaskRuleError(f"回访任务 {task_id} 不存在", Reason.NOT_FOUND)
    rating = task.rating
    if rating.is_adopted:
        raise TaskRuleError("该评价已是采纳状态", Reason.ALREADY_DONE)
    if not reason.strip():
        raise TaskRuleError("请填写恢复采纳的理由", Reason.INVALID)
    change_rating(rating, at, actor, is_adopted=True, not_adopted_reason=None)
    if task.verdict == "not_adopted":
        task.verdict, task.verdict_note, task.verified_at = None, None, None
    _start_handling_anew(task)  # reopened: called and handled again from the start
    blocked = _why_not_dialled(session, policy, rating, task.number)
    if blocked is not None:
        task.state_reason = blocked
        note_event(session, task, at, actor, "readopted", "not_dialled", reason=reason.strip(), not_dialled=blocked)
    else:
        task.state_reason = None
        task.next_attempt_at = next_slot(at, policy, load_calendar(session))
        note_event(session, task, at, actor, "readopted", TaskState.PENDING, reason=reason.strip())
    emit(session, "rating.updated", rating, at, source=actor, fields=["is_adopted"])
    return task


# -- stopping a task whose number may no longer be called ------------------------

# The outcome of an attempt dropped before the dialer sent it: no call was made.
DROPPED_OUTCOME = "cancelled"


def drop_attempt(session: Session, attempt_id: int, at: datetime, why: str) -> bool:
    """End a queued attempt unsent, as its task may no longer be dialled; False if it already left the queue.

    The counterpart of :func:`claim_attempt`: the same one conditional UPDATE
    on ``queued``, so whichever commits first wins and an attempt is either
    sent by the dialer or dropped here, never both.
    """
    result = session.execute(
        update(CallbackAttempt)
        .where(CallbackAttempt.id == attempt_id, CallbackAttempt.status == AttemptStatus.QUEUED)
        .values(status=AttemptStatus.ENDED, ended_at=at, outcome=DROPPED_OUTCOME, detail=why[:512])
    )
    return rows_changed(result) == 1


def stop_dialling(session: Session, task: CallbackTask, at: datetime, actor: str, reason: str) -> bool:
    """Move a task to ``not_dialled`` for a reason found after it was opened; False if it was already settled.

    Its queued attempts are dropped unsent. A call already placed is left to
    finish, as hanging up on a citizen mid-sentence helps nobody: its outcome
    and answers are recorded but move nothing, since :func:`record_outcome`
    acts only on a task still ``dialing`` and :func:`record_answer` not on a
    ``not_dialled`` one. So the task never goes back to ``pending`` by itself.
    """
    if task.state in ("closed", "not_dialled"):
        return False
    dropped: list[int] = []
    live: list[int] = []
    for attempt in task.attempts:
        if attempt.status == "queued" and drop_attempt(session, attempt.id, at, f"未拨出：{reason}"):
            dropped.append(attempt.seq)
        elif attempt.status != "ended":
            live.append(attempt.seq)  # claimed by the dialer, possibly a moment ago in another transaction
    task.state_reason = reason[:256]
    task.next_attempt_at = None
    note_event(session, task, at, actor, "stopped", "not_dialled", reason=reason,
               dropped_attempts=dropped or None, live_attempts=live or None)
    return True


# -- a supervisor extends the verification deadline ------------------------------

# How far past the current deadline one extension may reach.
MAX_DEADLINE_EXTENSION = timedelta(days=30)


def extend_deadline(session: Session, policy: CallbackPolicy, task_id: int, new_verify_by: datetime, reason: str,
                    at: datetime, actor: str, *, max_extension: timedelta = MAX_DEADLINE_EXTENSION) -> CallbackTask:
    """Move an open task's 核实期限 later, with a reason: ``escalate_at`` moves with it (the same lead as
    :func:`_compute_deadlines`); an escalation already made, the state and everything else stay as they are."""
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None:
        raise TaskRuleError(f"回访任务 {task_id} 不存在", Reason.NOT_FOUND)
    if task.state not in OPEN_STATES:
        raise TaskRuleError(f"任务 #{task_id} 已结束，不能延长期限")
    reason = reason.strip()
    if not reason:
        raise TaskRuleError("请填写延长核实期限的理由", Reason.INVALID)
    if len(reason) > 500:
        raise TaskRuleError("理由不超过500字", Reason.INVALID)
    zone = ZoneInfo(policy.timezone)
    old = task.verify_by
    new_verify_by = new_verify_by.astimezone(ZoneInfo("UTC"))  # stored and noted as every deadline is, in UTC
    if new_verify_by <= at:
        raise TaskRuleError(f"新的核实期限须晚于现在（{local_time(at, zone)}）", Reason.INVALID)
    if new_verify_by <= old:
        raise TaskRuleError(f"新的核实期限须晚于原期限 {local_time(old, zone)}", Reason.INVALID)
    if new_verify_by > old + max_extension:
        raise TaskRuleError(f"一次最多延长{max_extension.days}天，新的核实期限不能晚于 "
                            f"{local_time(old + max_extension, zone)}", Reason.INVALID)
    calendar = load_calendar(session)
    lead_delta = add_duration(new_verify_by, policy.escalate_before_deadline, calendar, zone) - new_verify_by
    task.verify_by = new_verify_by
    task.escalate_at = max(task.created_at, new_verify_by - lead_delta)
    note_event(session, task, at, actor, "deadline_extended", old_verify_by=old.isoformat(),
               verify_by=new_verify_by.isoformat(), reason=reason)
    return task
