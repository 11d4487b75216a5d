"""The outbox: each change the platforms must hear of becomes an event row in the change's own transaction.

A crash, a dead Redis or an unreachable platform can therefore lose nothing:
the delivery jobs (``delivery/webhooks.py``) read this table. The
payload is the rating as the platforms file it (schema:
``rating_core/outbox/webhook_payload.schema.json``), with the 差评's handling, and
what this event adds (``data``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from rating_core.store.database import REGION_CODE
from rating_core.store.models import Appeal, CallbackTask, OutboxEvent, Rating

SCHEMA_VERSION = "1.0"
EVENT_TYPES = {
    "rating.created": "评价产生",
    "rating.updated": "评价变更（含不予采纳）",
    "rating.defaulted": "超期默认评价",
    "complaint.verified": "差评核实",
    "complaint.rectified": "差评整改完成",
    "complaint.satisfaction": "整改满意度回访",
    "appeal.decided": "申诉复核结论",
    "callback.attempt": "回访呼叫结果",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def rating_payload(rating: Rating, region_code: str | None) -> dict[str, Any]:
    return {"rating": rating_section(rating, region_code), "complaint": _complaint(rating.callback_task)}


def rating_section(rating: Rating, region_code: str | None) -> dict[str, Any]:
    """The payload's ``rating``: the rating and the facts of its call."""
    call = rating.call
    return {
        "call_uniqueid": call.uniqueid,
        "linkedid": call.linkedid,
        "hotline": call.hotline,
        "case_number": call.case_number,
        "service_item": call.queue,
        "department": call.unit,
        "region_code": region_code,
        "evaluated_staff": call.agent_id,
        "channel": rating.channel,
        # A spoken rating: what the recogniser heard, so a platform can audit a machine-read 差评.
        "heard_text": rating.heard_text,
        "heard_confidence": rating.heard_confidence,
        "level": rating.level,
        "stars": rating.stars,
        "negative": rating.is_negative,
        "reason_codes": list(rating.reason_tags or []),
        "reason_text": rating.reason_text,
        "default_evaluation": rating.channel == "default",
        "valid": rating.is_adopted,
        "invalid_reason": rating.not_adopted_reason,
        "rated_at": _iso(rating.rated_at),
        "updated_at": _iso(rating.updated_at),
    }


def _complaint(task: CallbackTask | None) -> dict[str, Any] | None:
    """The payload's ``complaint``: the 差评's handling, None for a good rating."""
    if task is None:
        return None
    answered = any(attempt.outcome == "answered" for attempt in task.attempts)
    return {
        "task_id": task.id,
        "state": task.state,
        "verify_by": _iso(task.verify_by),
        "replied": answered or task.verified_at is not None,
        "verdict": task.verdict,
        "verdict_note": task.verdict_note,
        "verified_at": _iso(task.verified_at),
        "rectify_by": _iso(task.rectify_by),
        "rectified_at": _iso(task.rectified_at),
        "citizen_resolved": task.citizen_resolved,
        "citizen_satisfied": task.citizen_satisfied,
        # What was done (the newest 整改情况, as the 报告单 quotes it), on every event after it.
        "rectification": task.rectifications[-1].what if task.rectifications else None,
        # The appeal's outcome once decided, so every later event still says a rating was found malicious.
        "appeal": _appeal(task.appeal),
    }


def _appeal(appeal: Appeal | None) -> dict[str, Any] | None:
    if appeal is None or appeal.decision is None:
        return None
    return {"decision": appeal.decision, "finding": appeal.finding, "decided_at": _iso(appeal.decided_at)}


_HELD = "outbox_held"  # session.info key of the events held_events() holds


def emit(session: Session, event_type: str, rating: Rating, at: datetime, **data: Any) -> None:
    """Add an event for ``rating`` to the caller's transaction (at its end, inside :func:`held_events`)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown outbox event type {event_type!r}")
    held = session.info.get(_HELD)
    task = rating.callback_task
    if held is None and task is not None and task.id is None:
        session.flush()  # the payload names the new task by its id
    event_id = f"evt_{uuid.uuid4().hex}"
    event = OutboxEvent(
        event_id=event_id, type=event_type, rating=rating, created_at=at, fanned_out=False,
        payload={"schema_version": SCHEMA_VERSION, "id": event_id, "type": event_type, "occurred_at": _iso(at),
                 **rating_payload(rating, session.info.get(REGION_CODE)), "data": data},
    )
    if held is None:
        session.add(event)
    else:
        held.append((event, task))


@contextmanager
def held_events(session: Session) -> Iterator[None]:
    """Hold the events emitted inside, then add them in order, new tasks' ids filled in by one flush.

    Each event's payload is the rating as it stood when the event was emitted;
    only a task created in the same transaction has no id yet. Without this, a
    batch of call events would flush once per new 差评 to learn it.
    """
    held: list[tuple[OutboxEvent, CallbackTask | None]] = []
    session.info[_HELD] = held
    try:
        yield
    finally:
        del session.info[_HELD]
    if any(task is not None and task.id is None for _event, task in held):
        session.flush()
    for event, task in held:
        if task is not None and event.payload["complaint"]["task_id"] is None:
            event.payload["complaint"]["task_id"] = task.id
        session.add(event)
