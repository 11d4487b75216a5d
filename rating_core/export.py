"""Calls with their rating (or 未评价), flattened for supervisors and for checking."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from rating_core.models import Call
from rating_core.rules import Rules

UNRATED = "未评价"

COLUMNS = (
    "uniqueid", "linkedid", "hotline", "caller_number", "agent_id", "queue", "case_number", "unit",
    "started_at", "ended_at", "progress", "end_reason", "menu_plays",
    "level", "level_name", "stars", "score", "is_negative", "channel", "is_active",
    "reason_tags", "reason_tag_names", "voice_message_file", "voice_message_seconds",
    "is_adopted", "not_adopted_reason", "rated_at", "updated_at", "changes",
)


def export_rows(session: Session, rules: Rules, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    query = select(Call).options(joinedload(Call.rating)).order_by(Call.started_at, Call.id)
    if since is not None:
        query = query.where(Call.started_at >= since)
    for call in session.scalars(query).unique():
        yield _row(rules, call)


def _row(rules: Rules, call: Call) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uniqueid": call.uniqueid,
        "linkedid": call.linkedid,
        "hotline": call.hotline,
        "caller_number": call.caller_number,
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
        "is_active": rating.is_active,
        "reason_tags": list(rating.reason_tags),
        "reason_tag_names": tag_names,
        "voice_message_file": rating.voice_message_file,
        "voice_message_seconds": rating.voice_message_seconds,
        "is_adopted": rating.is_adopted,
        "not_adopted_reason": rating.not_adopted_reason,
        "rated_at": rating.rated_at.isoformat(),
        "updated_at": rating.updated_at.isoformat(),
        "changes": len(rating.changes),
    }


def _tag_names(rules: Rules, hotline: str, codes: list[str]) -> list[str]:
    profile = rules.hotlines.get(hotline)
    names = {t.code: t.name for t in profile.tags} if profile else {}
    return [names.get(code, code) for code in codes]


def write_csv(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    count = 0
    for row in rows:
        flat = {k: ("|".join(v) if isinstance(v, list) else v) for k, v in row.items()}
        writer.writerow(flat)
        count += 1
    return count


def write_jsonl(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
