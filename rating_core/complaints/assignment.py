"""Who works a callback task: claimed by an agent, released, handed over or assigned in bulk by a supervisor.

An agent acts only on a task that is theirs or nobody's; acting on nobody's
claims it (:func:`claim_for`), so two agents never work one 差评 unknowingly.
Every claim is one conditional UPDATE (``WHERE assigned_agent IS NULL OR
assigned_agent = me``): of two agents claiming at once, one gets it and the
other is told who has it. An agent is never given a 差评 of their own call
(非当事人). Each change goes on the task's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from rating_core.complaints.callback_tasks import note_event
from rating_core.complaints.task_states import OPEN_TASK_STATES
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.database import rows_changed
from rating_core.store.models import Call, CallbackTask, Rating


class AssignmentError(Refused):
    reason = Reason.NOT_ALLOWED


def _task(session: Session, task_id: int) -> CallbackTask:
    task = session.get(CallbackTask, task_id)
    if task is None:
        raise AssignmentError(f"回访任务 {task_id} 不存在", Reason.NOT_FOUND)
    return task


def _served_by(session: Session, task: CallbackTask) -> str | None:
    """The 工号 of the agent whose call the 差评 is about."""
    return session.scalar(select(Call.agent_id).join(Rating, Rating.call_id == Call.id)
                          .where(Rating.id == task.rating_id))


def may_act(task: CallbackTask, agent_id: str) -> bool:
    """Whether agent ``agent_id`` may act on ``task``: it is theirs, or nobody's yet."""
    return task.assigned_agent in (None, agent_id)


def claim(session: Session, task_id: int, agent_id: str, at: datetime, actor: str) -> CallbackTask:
    """Make the task agent ``agent_id``'s; refused when another agent has it or the call was their own."""
    task = _task(session, task_id)
    if task.assigned_agent == agent_id:
        return task
    if _served_by(session, task) == agent_id:
        raise AssignmentError("不得回访针对本人服务的差评（非当事人原则）")
    claimed = rows_changed(session.execute(
        update(CallbackTask).where(CallbackTask.id == task_id,
                                   or_(CallbackTask.assigned_agent.is_(None),
                                       CallbackTask.assigned_agent == agent_id))
        .values(assigned_agent=agent_id).execution_options(synchronize_session=False)))
    session.refresh(task, ["assigned_agent"])
    if not claimed:
        raise AssignmentError(f"该任务已由坐席 {task.assigned_agent} 认领", Reason.ALREADY_DONE)
    note_event(session, task, at, actor, "claimed", agent=agent_id)
    return task


def claim_for(session: Session, task: CallbackTask, agent_id: str, at: datetime, actor: str) -> None:
    """Before an agent's action on ``task``: claim it if it is nobody's; refuse if it is someone else's."""
    if task.assigned_agent != agent_id:
        claim(session, task.id, agent_id, at, actor)


def release(session: Session, task_id: int, agent_id: str, at: datetime, actor: str) -> CallbackTask:
    """Give the task back to the team; only the agent who has it can."""
    task = _task(session, task_id)
    if task.assigned_agent != agent_id:
        raise AssignmentError("只能退回本人认领的任务", Reason.WRONG_STATE)
    task.assigned_agent = None
    note_event(session, task, at, actor, "released", agent=agent_id)
    return task


def assign(session: Session, task_ids: Sequence[int], agent_id: str | None, at: datetime,
           actor: str) -> list[CallbackTask]:
    """A supervisor gives tasks to agent ``agent_id`` (None: back to the team), one task or many at once.

    All or nothing: a closed task or a 差评 of the agent's own call refuses the whole batch, naming it.
    """
    if not task_ids:
        raise AssignmentError("请先勾选要分配的任务", Reason.INVALID)
    tasks = []
    for task_id in dict.fromkeys(task_ids):
        task = _task(session, task_id)
        if task.state not in OPEN_TASK_STATES:
            raise AssignmentError(f"任务 #{task_id} 已结束，不能再分配", Reason.WRONG_STATE)
        if agent_id is not None and _served_by(session, task) == agent_id:
            raise AssignmentError(f"任务 #{task_id} 是坐席 {agent_id} 本人服务的差评，不能分配给其回访（非当事人原则）")
        tasks.append(task)
    for task in tasks:
        if task.assigned_agent != agent_id:
            before = task.assigned_agent
            task.assigned_agent = agent_id
            note_event(session, task, at, actor, "assigned" if agent_id else "unassigned",
                       agent=agent_id, previous=before)
    return tasks
