"""申诉复核 and the malicious-rater list: the rules the web tool applies, kept with the store.

A rated unit may appeal a 差评 within ``appeal_file_within`` of the rating (2
working days); a supervisor decides within ``appeal_review_within`` of the
filing (5 working days). An upheld appeal marks the rating 误评 or 恶意, not
adopted, and closes its callback task; a 恶意 finding may also put the number
on the malicious-rater list, whose later ratings are stored but not adopted.

A number put on the list, by hand or by an appeal, is not called back from
then on: :func:`block_number` stops its open callback tasks at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating_core.complaints.appeal_states import AppealDecision, appeal_move
from rating_core.complaints.callback_tasks import close_task, load_calendar, note_event, stop_dialling
from rating_core.complaints.task_states import TaskState
from rating_core.outbox.outbox import emit
from rating_core.rules.callback_policy import CallbackPolicy
from rating_core.rules.local_time import deadline
from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.working_days import add_duration
from rating_core.store.batch_lookups import listed_entry, listed_reason
from rating_core.store.models import Appeal, BlockedNumber, CallbackTask
from rating_core.store.rating_history import change_rating

FINDINGS = {"misjudged": "误评", "malicious": "恶意评价"}
# The longest 申诉理由 a unit may write (characters); the unit's page says so and stops typing there.
APPEAL_REASON_MAX = 2000
# The task states a number's listing stops (see block_number for why these and not the others).
STOPPED_WHEN_LISTED = (TaskState.PENDING, TaskState.DIALING, TaskState.EXHAUSTED, TaskState.RECTIFIED)


class AppealError(Refused):
    """An appeal or decision the rules do not allow; the message is for the person who tried (zh-CN)."""

    reason = Reason.NOT_ALLOWED


@dataclass(frozen=True)
class Listed:
    """A number just put on the malicious-rater list, and the callback tasks that listing stopped."""

    entry: BlockedNumber
    stopped: tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    """A decided appeal, and the listing it made if the number was put on the list (None otherwise)."""

    appeal: Appeal
    listed: Listed | None = None


def file_appeal(session: Session, policy: CallbackPolicy, task_id: int, unit: str, reason: str, at: datetime,
                actor: str) -> Appeal:
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None or task.rating.call.unit != unit:
        raise AppealError("只能对本单位的差评提出申诉")
    if not task.rating.is_adopted:
        raise AppealError("该评价已不予采纳，无需申诉")
    if session.query(Appeal.id).filter(Appeal.task_id == task_id).first() is not None:
        raise AppealError("该差评已提出过申诉", Reason.ALREADY_DONE)
    if at > task.appeal_file_by:
        zone = ZoneInfo(policy.timezone)
        raise AppealError(f"已超过申诉期限（{deadline(task.appeal_file_by, zone)}，"
                          f"评价后{policy.appeal_file_within.describe()}内）", Reason.TOO_LATE)
    if not reason.strip():
        raise AppealError("请填写申诉理由", Reason.INVALID)
    if len(reason.strip()) > APPEAL_REASON_MAX:
        raise AppealError(f"申诉理由不能超过 {APPEAL_REASON_MAX} 字（现为 {len(reason.strip())} 字），"
                          "详细情况请作为证明材料上传", Reason.INVALID)
    review_by = add_duration(at, policy.appeal_review_within, load_calendar(session), ZoneInfo(policy.timezone))
    appeal = Appeal(task_id=task_id, unit=unit, reason=reason.strip(), filed_by=actor, filed_at=at,
                    review_by=review_by)
    session.add(appeal)
    task.appeal_review_by = review_by
    note_event(session, task, at, actor, "appeal_filed", review_by=review_by.isoformat())
    session.flush()
    return appeal


def decide_appeal(session: Session, appeal_id: int, upheld: bool, finding: str | None, note: str, at: datetime,
                  actor: str, *, block_number: bool = False) -> Decision:
    appeal = session.get(Appeal, appeal_id, with_for_update=True)
    if appeal is None:
        raise AppealError(f"申诉 {appeal_id} 不存在", Reason.NOT_FOUND)
    if appeal.decision is not None:
        raise AppealError("该申诉已复核")
    if not note.strip():
        raise AppealError("请填写复核意见", Reason.INVALID)
    if upheld and finding not in FINDINGS:
        raise AppealError("申诉成立时须认定为误评或恶意评价")
    if not upheld and (finding or block_number):
        raise AppealError("申诉不成立时不能认定误评、恶意或加入名单")
    if block_number and finding != "malicious":
        raise AppealError("只有恶意评价才能加入恶意评价名单")
    appeal.decision = appeal_move(appeal.decision, AppealDecision.UPHELD if upheld else AppealDecision.REJECTED)
    appeal.finding = finding if upheld else None
    appeal.decision_note, appeal.decided_by, appeal.decided_at = note.strip(), actor, at
    task = appeal.task
    note_event(session, task, at, actor, "appeal_decided", decision=appeal.decision, finding=appeal.finding,
          late=at > appeal.review_by)
    listed = None
    if upheld:
        assert finding is not None
        change_rating(task.rating, at, actor, is_adopted=False,
                      not_adopted_reason=f"申诉成立，认定为{FINDINGS[finding]}：{note.strip()}"[:256])
        close_task(session, task, at, actor, f"申诉成立（{FINDINGS[finding]}），评价不予采纳")
        if block_number and task.number and listed_entry(session, task.number) is None:
            listed = _put_on_list(session, task.number, f"申诉复核认定恶意评价（任务 {task.id}）", at, actor)
    emit(session, "appeal.decided", task.rating, at, decision=appeal.decision, finding=appeal.finding,
         note=appeal.decision_note)
    return Decision(appeal, listed)


def block_number(session: Session, number: str, reason: str, at: datetime, actor: str) -> Listed:
    """Put a number on the malicious-rater list by hand; it takes effect at once (:func:`_put_on_list`).

    A 差评 whose callback the listing stops before anyone verified it is no
    longer adopted (the list's reason on its history; 恢复采纳 undoes it, one
    by one); one already verified keeps what its verdict decided.
    """
    number = number.strip()
    if not number or not number.lstrip("+").isdigit() or len(number) > 20:
        raise AppealError("请填写正确的电话号码", Reason.INVALID)
    if not reason.strip():
        raise AppealError("请填写加入名单的理由", Reason.INVALID)
    if listed_entry(session, number) is not None:
        raise AppealError("该号码已在恶意评价名单中", Reason.ALREADY_DONE)
    return _put_on_list(session, number, reason.strip(), at, actor)


def _put_on_list(session: Session, number: str, reason: str, at: datetime, actor: str) -> Listed:
    """Add the entry and stop the number's callbacks: the one way onto the list, by hand or by an appeal.

    A listed number is not called back, so every task of it waiting for a
    call moves to ``not_dialled`` with the list's reason in its history:
    pending and dialing (a queued attempt is dropped unsent; a call already
    under way is left to finish but no longer moves the task), exhausted
    (escalated because the citizen was never reached: there is no one left to
    reach), and rectified (waiting for the re-asked satisfaction, a call).

    contacted and rectifying are left as they are: the citizen was reached and
    the 差评 is being verified or rectified, which is the unit's work, not a
    call, and the complaint may well be founded. When that work ends in a
    re-ask, the dialer finds the number listed and stops the task then
    (``callback.dialer``), so the number is still never called.
    """
    entry = BlockedNumber(number=number, reason=reason[:256], added_by=actor, added_at=at)
    session.add(entry)
    why = listed_reason(entry)
    tasks = session.scalars(
        select(CallbackTask).where(CallbackTask.number == number, CallbackTask.state.in_(STOPPED_WHEN_LISTED))
        .order_by(CallbackTask.id).with_for_update()
    ).all()
    stopped = tuple(task.id for task in tasks if stop_dialling(session, task, at, actor, why))
    for task in tasks:
        if task.id in stopped and task.verified_at is None and task.rating.is_adopted:
            # Never to be verified now, so never replied to or rectified: counted as an adopted 差评 it would
            # only lower its unit's 回复率 and 整改率 for a number the supervisor has just judged malicious.
            change_rating(task.rating, at, actor, is_adopted=False, not_adopted_reason=why[:256])
            emit(session, "rating.updated", task.rating, at, source=actor, fields=["is_adopted"])
    return Listed(entry, stopped)


def unblock_number(session: Session, number: str) -> BlockedNumber:
    """Take a number off the list; the entry that was removed.

    Only the number's later ratings are affected: tasks the listing stopped
    stay ``not_dialled``, since taking a number off the list says its new
    ratings count again, not that each stopped callback should now be made.
    Nothing here redials on its own, and no other move does either:
    ``callback_tasks.readopt`` reopens a task whose rating was not adopted,
    while a stopped task's 差评 still is. Calling one back after all would be
    a supervisor's action of its own, which the web tool does not offer yet.
    """
    entry = listed_entry(session, number)
    if entry is None:
        raise AppealError("该号码不在恶意评价名单中")
    session.delete(entry)
    return entry
