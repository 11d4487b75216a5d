"""Events the platform pushes to us: case records that link calls to 工单 and units, and corrections.

Applied all or nothing, once per webhook-id. A case record may come before
the call it names (the platform's 工单 is often opened while the caller is
still on the line): it is kept and applied when the call arrives
(:func:`apply_pending_case`, called as each call is stored). A correction
(12345's 初核 marking a 差评 invalid) needs its rating to exist.

Bodies::

    {"type": "case.record", "records": [{"linkedid" | "uniqueid": "…", "case_number": "…", "unit": "…"}]}
    {"type": "rating.correction", "records": [{"call_uniqueid": "…", "valid": false, "reason": "…"}]}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from rating_core.complaints.callback_tasks import close_task
from rating_core.outbox.outbox import emit
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import Call, CaseRecord, InboundEvent
from rating_core.store.rating_history import change_rating

MAX_RECORDS = 1000
ACTOR = "platform"


class InboundError(Refused):
    """The body cannot be applied; ``status`` is the HTTP answer (400 malformed, 422 names unknown calls)."""

    reason = Reason.INVALID

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, Reason.NOT_FOUND if status == 422 else None)
        self.status = status


def apply_inbound(session: Session, webhook_id: str, body: Any, at: datetime) -> str:
    """Apply one pushed event in the caller's transaction: ``applied``, ``pending`` or ``duplicate``."""
    if session.scalars(select(InboundEvent.id).where(InboundEvent.webhook_id == webhook_id)).first() is not None:
        return "duplicate"
    if not isinstance(body, dict) or not isinstance(body.get("records"), list) or not body["records"]:
        raise InboundError("body must be an object with a non-empty list `records`")
    records = body["records"]
    if len(records) > MAX_RECORDS:
        raise InboundError(f"at most {MAX_RECORDS} records per event")
    kind = body.get("type")
    if kind == "case.record":
        outcomes = [_case_record(session, record, n, at) for n, record in enumerate(records)]
        result = "applied" if all(outcomes) else "pending"
    elif kind == "rating.correction":
        for n, record in enumerate(records):
            _correction(session, record, n, at)
        result = "applied"
    else:
        raise InboundError(f"unknown event type {kind!r} (case.record, rating.correction)")
    session.add(InboundEvent(webhook_id=webhook_id, type=kind, payload=body, received_at=at))
    return result


def _text(record: dict[str, Any], name: str, n: int, *, required: bool = True) -> str | None:
    value = record.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InboundError(f"records[{n}].{name} must be a non-empty string of at most 256 characters")
    return value.strip()


def _case_record(session: Session, record: Any, n: int, at: datetime) -> bool:
    """Store the record and apply it to the calls it names; False if none has arrived yet."""
    if not isinstance(record, dict):
        raise InboundError(f"records[{n}] must be an object")
    linkedid, uniqueid = _text(record, "linkedid", n, required=False), _text(record, "uniqueid", n, required=False)
    if not linkedid and not uniqueid:
        raise InboundError(f"records[{n}] needs a linkedid or a uniqueid")
    case = CaseRecord(linkedid=linkedid, uniqueid=uniqueid, case_number=_text(record, "case_number", n) or "",
                      unit=_text(record, "unit", n, required=False), received_at=at)
    session.add(case)
    return _apply_case(session, case, at)


def _apply_case(session: Session, case: CaseRecord, at: datetime) -> bool:
    names = [Call.linkedid == case.linkedid] if case.linkedid else []
    names += [Call.uniqueid == case.uniqueid] if case.uniqueid else []
    calls = session.scalars(select(Call).where(or_(*names))).all()
    for call in calls:
        call.case_number = case.case_number
        if case.unit:
            call.unit = case.unit
        if call.rating is not None:
            emit(session, "rating.updated", call.rating, at, source=ACTOR, fields=["case_number", "unit"])
    if calls:
        case.applied_at = at
    return bool(calls)


def apply_pending_case(session: Session, call: Call, at: datetime) -> None:
    """A call has just been stored: apply a case record that came before it."""
    names = [CaseRecord.uniqueid == call.uniqueid] + ([CaseRecord.linkedid == call.linkedid] if call.linkedid else [])
    case = session.scalars(
        select(CaseRecord).where(CaseRecord.applied_at.is_(None), or_(*names)).order_by(CaseRecord.id.desc())
    ).first()
    if case is not None:
        call.case_number = case.case_number
        call.unit = case.unit or call.unit
        case.applied_at = at


def _correction(session: Session, record: Any, n: int, at: datetime) -> None:
    if not isinstance(record, dict):
        raise InboundError(f"records[{n}] must be an object")
    uniqueid = _text(record, "call_uniqueid", n)
    if record.get("valid") is not False:
        raise InboundError(f"records[{n}].valid must be false (a correction marks a rating invalid)")
    reason = _text(record, "reason", n)
    call = session.scalars(select(Call).where(Call.uniqueid == uniqueid)).one_or_none()
    if call is None or call.rating is None:
        raise InboundError(f"records[{n}]: no rating for call {uniqueid!r} yet; send it again later", status=422)
    rating = call.rating
    if change_rating(rating, at, ACTOR, is_adopted=False, not_adopted_reason=f"平台初核无效：{reason}"[:256]):
        if rating.callback_task is not None:
            close_task(session, rating.callback_task, at, ACTOR, "平台初核：无效差评")
        emit(session, "rating.updated", rating, at, source=ACTOR, fields=["is_adopted"])
