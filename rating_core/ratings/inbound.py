"""Events the platform pushes to us: case records that link calls to 工单 and units, and corrections.

Applied all or nothing, once per webhook-id. A case record may come before
the call it names (the platform's 工单 is often opened while the caller is
still on the line): it is kept and applied when the call arrives
(:func:`apply_pending_case`, called as each call is stored). A correction
(12345's 初核 marking a 差评 invalid) needs its rating to exist.

Bodies::

    {"type": "case.record", "region_code": "370300",
     "records": [{"linkedid" | "uniqueid": "…", "case_number": "…", "unit": "…"}]}
    {"type": "rating.correction", "region_code": "370300",
     "records": [{"call_uniqueid": "…", "valid": false, "reason": "…"}]}

Scoped to this deployment's region: when the deployment has a 行政区划代码 (``HOTLINE_EVAL_REGION_CODE``), an
event must name the same ``region_code`` (a record may name its own, which then counts): Asterisk's uniqueids
are unique to one PBX, not to a province, so another region's correction could otherwise match one of our
calls. Every string must fit its column (PostgreSQL refuses what does not), and the body is plain JSON: no NaN,
no NUL or unpaired surrogate in a string (PostgreSQL refuses both), nested no deeper than the bodies above.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rating_core.complaints.callback_tasks import close_task
from rating_core.outbox.outbox import emit
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.database import REGION_CODE
from rating_core.store.models import Call, CaseRecord, InboundEvent
from rating_core.store.rating_history import change_rating

MAX_RECORDS = 1000
ACTOR = "platform"
KINDS = ("case.record", "rating.correction")
# The longest text each field may hold: its column's size (rating_core.store.models).
FIELD_LENGTHS = {"linkedid": 64, "uniqueid": 64, "call_uniqueid": 64, "case_number": 128, "unit": 256,
                 "region_code": 32}
WEBHOOK_ID_LENGTH = 128  # inbound_events.webhook_id
CORRECTION_PREFIX = "平台初核无效："
REASON_LENGTH = 256 - len(CORRECTION_PREFIX)  # ratings.not_adopted_reason holds the prefix and the reason
MAX_DEPTH = 8  # the bodies above are 3 deep; room for a sender's extra fields, none for a recursion bomb


class InboundError(Refused):
    """The body cannot be applied; ``status`` is the HTTP answer (400 malformed, 422 names unknown calls or
    another region)."""

    reason = Reason.INVALID

    def __init__(self, message: str, status: int = 400, reason: Reason | None = None) -> None:
        super().__init__(message, reason or (Reason.NOT_FOUND if status == 422 else None))
        self.status = status


def parse_body(raw: bytes) -> Any:
    """The pushed body as JSON our columns can hold, or an InboundError saying what is wrong with it."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise InboundError(f"请求体嵌套过深（至多 {MAX_DEPTH} 层）") from None
    except ValueError:  # not UTF-8, not JSON, NaN or Infinity, an integer of thousands of digits
        raise InboundError("请求体不是合法的 JSON（须为 UTF-8 编码，不接受 NaN、Infinity）") from None
    _check_values(body)
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_values(body: Any) -> None:
    """Refuse a body nested past MAX_DEPTH, or with a string PostgreSQL cannot store (NUL, lone surrogates)."""
    level: list[Any] = [body]
    for depth in range(MAX_DEPTH + 1):
        below: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                below += [*value.keys(), *value.values()]
            elif isinstance(value, list):
                below += value
            elif isinstance(value, str) and not _storable(value):
                raise InboundError("请求体的字符串中含有空字符（NUL）或不成对的代理字符，无法保存")
        if not below:
            return
        if depth == MAX_DEPTH and any(isinstance(value, (dict, list)) for value in below):
            raise InboundError(f"请求体嵌套过深（至多 {MAX_DEPTH} 层）")
        level = below


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def apply_inbound(session: Session, webhook_id: str, body: Any, at: datetime) -> str:
    """Apply one pushed event in the caller's transaction, begun for it and committed by the caller after:
    ``applied``, ``pending`` or ``duplicate``.

    The webhook-id is claimed first, under its unique index: of simultaneous pushes with one id, the others
    wait for the first to commit and are then told ``duplicate`` (or, if it failed, go on in its place).
    """
    if not webhook_id or len(webhook_id) > WEBHOOK_ID_LENGTH:
        raise InboundError(f"webhook-id 须为 1 至 {WEBHOOK_ID_LENGTH} 个字符")
    if session.scalars(select(InboundEvent.id).where(InboundEvent.webhook_id == webhook_id)).first() is not None:
        return "duplicate"
    if not isinstance(body, dict) or not isinstance(body.get("records"), list) or not body["records"]:
        raise InboundError("请求体须为对象，且含非空列表 records")
    records = body["records"]
    if len(records) > MAX_RECORDS:
        raise InboundError(f"每个事件至多 {MAX_RECORDS} 条记录")
    kind = body.get("type")
    if kind not in KINDS:
        shown = repr(kind) if isinstance(kind, str) and len(kind) <= 48 else "（无法识别）"
        raise InboundError(f"未知的事件类型 {shown}（可用 {'、'.join(KINDS)}）")
    ours = session.info.get(REGION_CODE)
    for n, record in enumerate(records):
        if not isinstance(record, dict):
            raise InboundError(f"records[{n}] 须为对象")
        _check_region(body, record, n, ours)
    if not _claim(session, webhook_id, kind, body, at):
        return "duplicate"
    if kind == "case.record":
        outcomes = [_case_record(session, record, n, at) for n, record in enumerate(records)]
        return "applied" if all(outcomes) else "pending"
    for n, record in enumerate(records):
        _correction(session, record, n, at)
    return "applied"


def _check_region(body: dict[str, Any], record: dict[str, Any], n: int, ours: str | None) -> None:
    """A record for another region (its own region_code, else the event's) is refused, the whole push with it."""
    if ours is None:
        return  # a deployment without a region code serves one region, whatever the platform says
    given = record.get("region_code", body.get("region_code"))
    if given is None:
        raise InboundError(f"records[{n}] 未注明 region_code；本系统只接收行政区划代码为 {ours} 的数据",
                           status=422, reason=Reason.NOT_ALLOWED)
    if given != ours:
        shown = repr(given) if isinstance(given, str) and len(given) <= FIELD_LENGTHS["region_code"] else "（无法识别）"
        raise InboundError(f"records[{n}] 属于行政区划 {shown}，本系统只接收 {ours} 的数据", status=422,
                           reason=Reason.NOT_ALLOWED)


def _claim(session: Session, webhook_id: str, kind: str, body: dict[str, Any], at: datetime) -> bool:
    """Keep the event under its webhook-id; False when another push with the id has committed meanwhile.

    The transaction's first write, so that losing the race rolls back nothing else. (Not a SAVEPOINT: SQLite's
    driver, outside a transaction it began itself, commits the savepoint's insert on RELEASE.)
    """
    session.add(InboundEvent(webhook_id=webhook_id, type=kind, payload=body, received_at=at))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False
    return True


def _text(record: dict[str, Any], name: str, n: int, *, required: bool = True,
          longest: int | None = None) -> str | None:
    value = record.get(name)
    if value is None and not required:
        return None
    longest = longest or FIELD_LENGTHS[name]
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > longest:
        raise InboundError(f"records[{n}].{name} 须为非空字符串，至多 {longest} 个字符")
    return value.strip()


def _case_record(session: Session, record: dict[str, Any], n: int, at: datetime) -> bool:
    """Store the record and apply it to the calls it names; False if none has arrived yet."""
    linkedid, uniqueid = _text(record, "linkedid", n, required=False), _text(record, "uniqueid", n, required=False)
    if not linkedid and not uniqueid:
        raise InboundError(f"records[{n}] 须有 linkedid 或 uniqueid")
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


def _correction(session: Session, record: dict[str, Any], n: int, at: datetime) -> None:
    uniqueid = _text(record, "call_uniqueid", n)
    if record.get("valid") is not False:
        raise InboundError(f"records[{n}].valid 须为 false（更正只能将评价标为无效）")
    reason = _text(record, "reason", n, longest=REASON_LENGTH)
    call = session.scalars(select(Call).where(Call.uniqueid == uniqueid)).one_or_none()
    if call is None or call.rating is None:
        raise InboundError(f"records[{n}]：尚无通话 {uniqueid!r} 的评价，请稍后重发", status=422)
    rating = call.rating
    if change_rating(rating, at, ACTOR, is_adopted=False, not_adopted_reason=f"{CORRECTION_PREFIX}{reason}"):
        if rating.callback_task is not None:
            close_task(session, rating.callback_task, at, ACTOR, "平台初核：无效差评")
        emit(session, "rating.updated", rating, at, source=ACTOR, fields=["is_adopted"])
