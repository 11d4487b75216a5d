"""A callback task's states and an attempt's, the moves between them as tables, and the one check every move
passes, so that the whole callback loop (RQ jobs, the dialer, the web tool, the CLI) keeps to one machine.

A task::

    (new) ──▶ pending ──request──▶ dialing ──answered──▶ contacted ──verdict──▶ rectifying (限期整改)
                 ▲                    │                      │                      │ done
                 └──retry (policy)────┘                      └──立行立改/解释说明──▶ rectified
                                      └──attempts used up──▶ exhausted (escalated; may still be verified)
    rectified ──request──▶ dialing (the re-ask) ──▶ … ──satisfied──▶ closed
    any open state ──▶ closed (误评/恶意, an upheld appeal, the citizen satisfied)
    waiting for a call ──▶ not_dialled (the number listed); (new) ──▶ not_dialled (not adopted, no number)
    any state ──恢复采纳──▶ pending (or not_dialled, if its number still may not be called)

An attempt: queued ──claimed──▶ originating ──▶ (ringing) ──▶ answered ──▶ ended; the dialer puts an
originating attempt it never sent back to queued; a queued one may be dropped unsent (ended).
"""

from __future__ import annotations

from enum import StrEnum

# Every layer's state machine raises this one class, so it lives in rules/; callers may still import it from here.
from rating_core.rules.state_moves import IllegalMove


class TaskState(StrEnum):
    PENDING = "pending"
    DIALING = "dialing"
    CONTACTED = "contacted"
    RECTIFYING = "rectifying"
    RECTIFIED = "rectified"
    EXHAUSTED = "exhausted"
    CLOSED = "closed"
    NOT_DIALLED = "not_dialled"


# As the web tool names them.
TASK_STATE_NAMES = {
    TaskState.PENDING: "待回访", TaskState.DIALING: "呼叫中", TaskState.CONTACTED: "已接通待核实",
    TaskState.RECTIFYING: "限期整改中", TaskState.RECTIFIED: "待回访满意度", TaskState.EXHAUSTED: "未接通已升级",
    TaskState.CLOSED: "已办结", TaskState.NOT_DIALLED: "不回访",
}
OPEN_TASK_STATES = (TaskState.PENDING, TaskState.DIALING, TaskState.CONTACTED, TaskState.RECTIFYING,
                    TaskState.RECTIFIED, TaskState.EXHAUSTED)
# Where a task is born: waiting for its first call, or never to be called.
FIRST_TASK_STATES = frozenset({TaskState.PENDING, TaskState.NOT_DIALLED})
# From anywhere: an end (closed, or not dialled), or back to the start, as 恢复采纳 does with a 差评 whose
# non-adoption was wrong, wherever its task had got to.
_FROM_ANYWHERE = frozenset({TaskState.CLOSED, TaskState.NOT_DIALLED, TaskState.PENDING})
# Each state, and the states a task may move to from it.
TASK_MOVES: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.DIALING, TaskState.EXHAUSTED}) | _FROM_ANYWHERE,
    TaskState.DIALING: frozenset({TaskState.CONTACTED, TaskState.RECTIFIED, TaskState.EXHAUSTED}) | _FROM_ANYWHERE,
    TaskState.CONTACTED: frozenset({TaskState.RECTIFYING, TaskState.RECTIFIED}) | _FROM_ANYWHERE,
    TaskState.RECTIFYING: frozenset({TaskState.RECTIFIED}) | _FROM_ANYWHERE,
    TaskState.RECTIFIED: frozenset({TaskState.DIALING, TaskState.EXHAUSTED}) | _FROM_ANYWHERE,
    TaskState.EXHAUSTED: frozenset({TaskState.RECTIFYING, TaskState.RECTIFIED}) | _FROM_ANYWHERE,
    # Ended, a task only starts again (恢复采纳), or stays not dialled when its number still may not be.
    TaskState.CLOSED: frozenset({TaskState.PENDING, TaskState.NOT_DIALLED}),
    TaskState.NOT_DIALLED: frozenset({TaskState.PENDING, TaskState.NOT_DIALLED}),
}


class AttemptStatus(StrEnum):
    QUEUED = "queued"
    ORIGINATING = "originating"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


ATTEMPT_STATUS_NAMES = {
    AttemptStatus.QUEUED: "待拨出", AttemptStatus.ORIGINATING: "正在拨出", AttemptStatus.RINGING: "振铃中",
    AttemptStatus.ANSWERED: "已接通", AttemptStatus.ENDED: "已结束",
}
# Statuses while the dialer owns the attempt.
LIVE_ATTEMPT_STATUSES = (AttemptStatus.ORIGINATING, AttemptStatus.RINGING, AttemptStatus.ANSWERED)
ATTEMPT_MOVES: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.QUEUED: frozenset({AttemptStatus.ORIGINATING, AttemptStatus.ENDED}),
    AttemptStatus.ORIGINATING: frozenset({AttemptStatus.QUEUED, AttemptStatus.RINGING, AttemptStatus.ANSWERED,
                                          AttemptStatus.ENDED}),
    AttemptStatus.RINGING: frozenset({AttemptStatus.ANSWERED, AttemptStatus.ENDED}),
    AttemptStatus.ANSWERED: frozenset({AttemptStatus.ENDED}),
    AttemptStatus.ENDED: frozenset(),
}


def task_move(current: str | None, to: str) -> TaskState:
    """The state a task moves to, if it may move there from ``current`` (None: the task is being created)."""
    target = TaskState(to)
    allowed = FIRST_TASK_STATES if current is None else TASK_MOVES[TaskState(current)]
    if target not in allowed:
        raise IllegalMove(f"回访任务不能从“{task_state_name(current)}”改为“{TASK_STATE_NAMES[target]}”")
    return target


def attempts_moving_to(status: AttemptStatus) -> tuple[AttemptStatus, ...]:
    """The statuses an attempt may be in to move to ``status``: the WHERE of a conditional UPDATE."""
    return tuple(source for source, targets in ATTEMPT_MOVES.items() if status in targets)


def task_state_name(state: str | None) -> str:
    """A task's state as people read it (新建 before it has one)."""
    return "新建" if state is None else TASK_STATE_NAMES[TaskState(state)]
