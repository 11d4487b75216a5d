"""申诉复核 and the malicious-rater list: the rules the web tool applies, kept with the store.

A rated unit may appeal a 差评 within ``appeal_file_within`` of the rating (2
working days); a supervisor decides within ``appeal_review_within`` of the
filing (5 working days). An upheld appeal marks the rating 误评 or 恶意, not
adopted, and closes its callback task; a 恶意 finding may also put the number
on the malicious-rater list, whose later ratings are stored but not adopted.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from rating_core.callback_policy import CallbackPolicy
from rating_core.callback_tasks import close_task, load_calendar, note_event
from rating_core.models import Appeal, BlockedNumber, CallbackTask
from rating_core.outbox import emit
from rating_core.rating_history import change_rating
from rating_core.working_days import add_duration

FINDINGS = {"misjudged": "误评", "malicious": "恶意评价"}


class AppealError(ValueError):
    """An appeal or decision the rules do not allow; the message is for the person who tried (zh-CN)."""


def file_appeal(session: Session, policy: CallbackPolicy, task_id: int, unit: str, reason: str, at: datetime,
                actor: str) -> Appeal:
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None or task.rating.call.unit != unit:
        raise AppealError("只能对本单位的差评提出申诉")
    if not task.rating.is_adopted:
        raise AppealError("该评价已不予采纳，无需申诉")
    if session.query(Appeal.id).filter(Appeal.task_id == task_id).first() is not None:
        raise AppealError("该差评已提出过申诉")
    if at > task.appeal_file_by:
        zone = ZoneInfo(policy.timezone)
        raise AppealError(f"已超过申诉期限（{task.appeal_file_by.astimezone(zone):%Y-%m-%d %H:%M}，"
                          f"评价后{policy.appeal_file_within.describe()}内）")
    if not reason.strip():
        raise AppealError("请填写申诉理由")
    review_by = add_duration(at, policy.appeal_review_within, load_calendar(session), ZoneInfo(policy.timezone))
    appeal = Appeal(task_id=task_id, unit=unit, reason=reason.strip(), filed_by=actor, filed_at=at,
                    review_by=review_by)
    session.add(appeal)
    task.appeal_review_by = review_by
    note_event(session, task, at, actor, "appeal_filed", review_by=review_by.isoformat())
    session.flush()
    return appeal


def decide_appeal(session: Session, appeal_id: int, upheld: bool, finding: str | None, note: str, at: datetime,
                  actor: str, *, block_number: bool = False) -> Appeal:
    appeal = session.get(Appeal, appeal_id, with_for_update=True)
    if appeal is None:
        raise AppealError(f"申诉 {appeal_id} 不存在")
    if appeal.decision is not None:
        raise AppealError("该申诉已复核")
    if not note.strip():
        raise AppealError("请填写复核意见")
    if upheld and finding not in FINDINGS:
        raise AppealError("申诉成立时须认定为误评或恶意评价")
    if not upheld and (finding or block_number):
        raise AppealError("申诉不成立时不能认定误评、恶意或加入名单")
    if block_number and finding != "malicious":
        raise AppealError("只有恶意评价才能加入恶意评价名单")
    appeal.decision = "upheld" if upheld else "rejected"
    appeal.finding = finding if upheld else None
    appeal.decision_note, appeal.decided_by, appeal.decided_at = note.strip(), actor, at
    task = appeal.task
    note_event(session, task, at, actor, "appeal_decided", decision=appeal.decision, finding=appeal.finding,
          late=at > appeal.review_by)
    if upheld:
        assert finding is not None
        change_rating(task.rating, at, actor, is_adopted=False,
                      not_adopted_reason=f"申诉成立，认定为{FINDINGS[finding]}：{note.strip()}"[:256])
        close_task(session, task, at, actor, f"申诉成立（{FINDINGS[finding]}），评价不予采纳")
        if block_number and task.number and session.get(BlockedNumber, task.number) is None:
            session.add(BlockedNumber(number=task.number, reason=f"申诉复核认定恶意评价（任务 {task.id}）",
                                      added_by=actor, added_at=at))
    emit(session, "appeal.decided", task.rating, at, decision=appeal.decision, finding=appeal.finding,
         note=appeal.decision_note)
    return appeal


def block_number(session: Session, number: str, reason: str, at: datetime, actor: str) -> BlockedNumber:
    number = number.strip()
    if not number or not number.lstrip("+").isdigit() or len(number) > 20:
        raise AppealError("请填写正确的电话号码")
    if not reason.strip():
        raise AppealError("请填写加入名单的理由")
    if session.get(BlockedNumber, number) is not None:
        raise AppealError("该号码已在恶意评价名单中")
    entry = BlockedNumber(number=number, reason=reason.strip()[:256], added_by=actor, added_at=at)
    session.add(entry)
    return entry


def unblock_number(session: Session, number: str) -> BlockedNumber:
    """Take a number off the list; the entry that was removed."""
    entry = session.get(BlockedNumber, number)
    if entry is None:
        raise AppealError("该号码不在恶意评价名单中")
    session.delete(entry)
    return entry
