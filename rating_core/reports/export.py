"""Calls with their rating (or 未评价), and callback tasks, flattened for supervisors and for checking.

A caller's number leaves masked (``138****5678``) unless the caller of these functions asks for it in full,
which ``hotline-eval`` does only with ``--full-numbers`` and an audit entry. In a CSV every text field goes
through :func:`~rating_core.reports.cell_text.csv_text`: unit, queue, agent and tag names come from channel
variables and the platform's case records and must never run as formulas.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, joinedload

from rating_core.complaints.callback_tasks import OPEN_STATES
from rating_core.reports.cell_text import csv_text
from rating_core.rules.privacy import mask_phone
from rating_core.rules.rulebook import Rules
from rating_core.store.models import Call, CallbackTask, Rating

UNRATED = "未评价"

COLUMNS = (
    "uniqueid", "linkedid", "hotline", "caller_number", "agent_id", "queue", "case_number", "unit",
    "started_at", "ended_at", "progress", "end_reason", "menu_plays",
    "level", "level_name", "stars", "score", "is_negative", "channel", "heard_text", "heard_confidence", "is_active",
    "reason_tags", "reason_tag_names", "voice_message_file", "voice_message_seconds", "voice_transcript",
    "is_adopted", "not_adopted_reason", "rated_at", "updated_at", "changes",
)


def _chosen(query: Select[Any], since: datetime | None) -> Select[Any]:
    return query if since is None else query.where(Call.started_at >= since)


def export_count(session: Session, since: datetime | None = None) -> int:
    """How many calls :func:`export_rows` gives for ``since``: what an audit entry says was taken out."""
    return session.scalar(_chosen(select(func.count(Call.id)), since)) or 0


def export_rows(session: Session, rules: Rules, since: datetime | None = None, *,
                full_numbers: bool = False) -> Iterator[dict[str, Any]]:
    """Every call started at or after ``since``, oldest first; its caller's number masked unless ``full_numbers``."""
    query = _chosen(select(Call).options(joinedload(Call.rating)).order_by(Call.started_at, Call.id), since)
    for call in session.scalars(query).unique():
        yield _row(rules, call, full_numbers)


def _row(rules: Rules, call: Call, full_numbers: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uniqueid": call.uniqueid,
        "linkedid": call.linkedid,
        "hotline": call.hotline,
        "caller_number": call.caller_number if full_numbers else mask_phone(call.caller_number) or None,
        "agent_id": call.agent_id,
        "queue": call.queue,
        "case_number": call.case_number,
        "unit": call.unit,
        "started_at": call.started_at.isoformat(),
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "progress": call.progress,
        "end_reason": call.end_reason,
        "menu_plays": call.menu_plays,
    }
    rating = call.rating
    if rating is None:
        return row | {name: None for name in COLUMNS if name not in row} | {"level": None, "level_name": UNRATED}
    level = rules.level(rating.level)
    tag_names = _tag_names(rules, call.hotline, rating.reason_tags)
    return row | {
        "level": rating.level,
        "level_name": level.name,
        "stars": rating.stars,
        "score": level.score,
        "is_negative": rating.is_negative,
        "channel": rating.channel,
        "heard_text": rating.heard_text,
        "heard_confidence": rating.heard_confidence,
        "is_active": rating.is_active,
        "reason_tags": list(rating.reason_tags),
        "reason_tag_names": tag_names,
        "voice_message_file": rating.voice_message_file,
        "voice_message_seconds": rating.voice_message_seconds,
        "voice_transcript": rating.voice_transcript,
        "is_adopted": rating.is_adopted,
        "not_adopted_reason": rating.not_adopted_reason,
        "rated_at": rating.rated_at.isoformat(),
        "updated_at": rating.updated_at.isoformat(),
        "changes": len(rating.changes),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def callback_rows(session: Session, *, now: datetime, full_numbers: bool = False) -> Iterator[dict[str, Any]]:
    """Callback tasks with their deadlines, state, history and every attempt."""
    query = (
        select(CallbackTask)
        .options(joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(CallbackTask.verify_by, CallbackTask.id)
    )
    for task in session.scalars(query).unique():
        call = task.rating.call
        open_ = task.state in OPEN_STATES
        yield {
            "task_id": task.id,
            "uniqueid": call.uniqueid,
            "hotline": task.hotline,
            "number": task.number if full_numbers else mask_phone(task.number),
            "agent_id": call.agent_id,
            "level": task.rating.level,
            "mode": task.mode,
            "state": task.state,
            "state_reason": task.state_reason,
            "created_at": _iso(task.created_at),
            "verify_by": _iso(task.verify_by),
            "overdue": open_ and task.verify_by <= now,
            "escalated_at": _iso(task.escalated_at),
            "escalation_reason": task.escalation_reason,
            "appeal_file_by": _iso(task.appeal_file_by),
            "rectify_by": _iso(task.rectify_by),
            "appeal_review_by": _iso(task.appeal_review_by),
            "deadline_note": task.deadline_note,
            "verdict": task.verdict,
            "verdict_note": task.verdict_note,
            "verified_at": _iso(task.verified_at),
            "rectified_at": _iso(task.rectified_at),
            "citizen_resolved": task.citizen_resolved,
            "citizen_satisfied": task.citizen_satisfied,
            "next_attempt_at": _iso(task.next_attempt_at),
            "attempts_made": task.attempts_made,
            "attempts": [
                {
                    "seq": a.seq, "purpose": a.purpose, "status": a.status, "outcome": a.outcome,
                    "channel_id": a.channel_id,
                    "dial_string": a.dial_string if full_numbers else _masked_in(a.dial_string, task.number),
                    "requested_at": _iso(a.requested_at),
                    "originated_at": _iso(a.originated_at), "answered_at": _iso(a.answered_at),
                    "ended_at": _iso(a.ended_at), "originate_reason": a.originate_reason,
                    "hangup_cause": a.hangup_cause, "hangup_cause_text": a.hangup_cause_text,
                    "detail": a.detail, "recording_file": a.recording_file,
                }
                for a in task.attempts
            ],
            "answers": [
                {"attempt_id": a.attempt_id, "question": a.question, "answer": a.answer, "key": a.key,
                 "at": _iso(a.at)}
                for a in task.answers
            ],
            "history": [
                {"at": _iso(e.at), "actor": e.actor, "kind": e.kind, "from": e.from_state, "to": e.to_state,
                 "detail": e.detail}
                for e in task.history
            ],
        }


def _masked_in(text: str | None, number: str | None) -> str | None:
    """``text`` with ``number`` masked wherever it appears: a dial string is built from the citizen's number
    (``PJSIP/{number}@trunk``), and would give it away in full beside the masked ``number`` field."""
    return text.replace(number, mask_phone(number)) if text and number else text


def _tag_names(rules: Rules, hotline: str, codes: list[str]) -> list[str]:
    profile = rules.hotlines.get(hotline)
    names = {t.code: t.name for t in profile.tags} if profile else {}
    return [names.get(code, code) for code in codes]


def write_csv(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    """The rows as CSV, lists joined with ``|``; a field a spreadsheet would run is written as text."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    count = 0
    for row in rows:
        flat = {k: csv_text("|".join(v) if isinstance(v, list) else v) for k, v in row.items()}
        writer.writerow(flat)
        count += 1
    return count


def write_jsonl(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
