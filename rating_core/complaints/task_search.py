"""Finding callback tasks at a centre's volume: one query, filtered and paged in the database.

The agents' queue and the supervisors' search are the same question with
different answers allowed: an agent sees the tasks that are theirs or nobody's,
never a 差评 of their own call (非当事人); a supervisor sees every task. The
words typed into the search box are read as what they look like: ``#12`` or a
bare task number, a whole or partial phone number, a 工单号, an agent's 工号.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, union
from sqlalchemy.orm import Session, joinedload

from rating_core.complaints.task_states import OPEN_TASK_STATES, TaskState
from rating_core.store.models import Call, CallbackTask, Rating

PAGE_SIZE = 50
# Fewer digits than this match too many numbers to mean one caller.
MIN_NUMBER_DIGITS = 4


class Scope(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ALL = "all"


class Assigned(StrEnum):
    ANYONE = ""
    MINE = "mine"
    NOBODY = "nobody"


@dataclass(frozen=True)
class TaskQuery:
    """What a queue page asks for. ``since``/``until`` are Beijing dates of the task's creation, inclusive."""

    text: str = ""
    hotline: str | None = None
    state: TaskState | None = None
    scope: Scope = Scope.OPEN
    since: date | None = None
    until: date | None = None
    escalated: bool = False
    overdue: bool = False
    assigned: Assigned = Assigned.ANYONE
    page: int = 1


@dataclass(frozen=True)
class TaskPage:
    tasks: list[CallbackTask]
    total: int
    page: int
    pages: int


def _text_condition(text: str) -> ColumnElement[bool]:
    """What the search box's words match: a task number, a phone number or part of one, a 工单号, a 工号.

    Each reading is its own small query, united: one OR across the joined tables would make the database
    read every call (ten million of them at a provincial centre) instead of using an index for each.
    """
    words = text.strip()
    digits = re.sub(r"[\s\-]", "", words)
    if re.fullmatch(r"#[0-9]{1,9}", words):
        return CallbackTask.id == int(words[1:])
    # From the calls' indexes inward (call → rating → task), never from every task outward.
    calls = select(Call.id).where(or_(Call.case_number == words, Call.agent_id == words))
    readings: list[Select[tuple[int]]] = [
        select(CallbackTask.id).where(CallbackTask.rating_id.in_(select(Rating.id).where(Rating.call_id.in_(calls)))),
        select(CallbackTask.id).where(CallbackTask.assigned_agent == words),
    ]
    if re.fullmatch(r"[0-9]+", digits):  # ASCII: isdigit() is true of ² and ٣ too
        if len(digits) <= 9 and not digits.startswith("0"):  # a task number has no leading zero; a number's tail may
            readings.append(select(CallbackTask.id).where(CallbackTask.id == int(digits)))
        if len(digits) >= MIN_NUMBER_DIGITS:
            # The tasks' own copy of the number: a scan of the tasks, never of every call.
            readings.append(select(CallbackTask.id).where(CallbackTask.number.contains(digits, autoescape=True)))
    return CallbackTask.id.in_(union(*readings))


def find_tasks(session: Session, query: TaskQuery, *, agent_id: str | None, now: datetime,
               zone: ZoneInfo) -> TaskPage:
    """One page of the tasks ``query`` asks for, soonest deadline first; ``agent_id`` set: as that agent sees them."""
    conditions: list[ColumnElement[bool]] = []
    if agent_id is not None:
        # Mine and the team's unassigned ones, never a 差评 of my own calls (非当事人).
        conditions += [or_(CallbackTask.assigned_agent == agent_id, CallbackTask.assigned_agent.is_(None)),
                       or_(Call.agent_id.is_(None), Call.agent_id != agent_id)]
    if query.scope is Scope.OPEN:
        conditions.append(CallbackTask.state.in_(OPEN_TASK_STATES))
    elif query.scope is Scope.CLOSED:
        conditions.append(CallbackTask.state.not_in(OPEN_TASK_STATES))
    if query.text.strip():
        conditions.append(_text_condition(query.text))
    if query.hotline:
        conditions.append(CallbackTask.hotline == query.hotline)
    if query.state is not None:
        conditions.append(CallbackTask.state == query.state)
    if query.since is not None:
        conditions.append(CallbackTask.created_at >= datetime.combine(query.since, time(), zone))
    if query.until is not None:
        conditions.append(CallbackTask.created_at < datetime.combine(query.until + timedelta(days=1), time(), zone))
    if query.escalated:
        conditions.append(CallbackTask.escalated_at.is_not(None))
    if query.overdue:
        conditions.append(and_(CallbackTask.state.in_(OPEN_TASK_STATES), CallbackTask.verify_by <= now))
    if query.assigned is Assigned.MINE:
        conditions.append(CallbackTask.assigned_agent == agent_id if agent_id else false())
    elif query.assigned is Assigned.NOBODY:
        conditions.append(CallbackTask.assigned_agent.is_(None))
    base = (select(CallbackTask).join(CallbackTask.rating).join(Rating.call).where(*conditions))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, query.page), pages)
    tasks = list(session.scalars(
        base.options(joinedload(CallbackTask.rating).joinedload(Rating.call))
        .order_by(CallbackTask.verify_by, CallbackTask.id)
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    return TaskPage(tasks, total, page, pages)
