"""Why a rule refuses a move: one base class for every refusal, a reason a program reads, a message a person does.

A rule anywhere in the core (a callback task's move, an appeal, a 加减分
entry, a 补充评价 link, an inbound case record…) refuses by raising a subclass
of :class:`Refused`: its message says why to the person who tried (zh-CN), and
its :class:`Reason` says the same to a program (the platform's API, a script).
So a view catches this one class, whatever the rule, and never matches text.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """What kind of "no" a refusal is."""

    NOT_FOUND = "not_found"  # no such task, appeal, entry or link
    WRONG_STATE = "wrong_state"  # the record is not where this move starts
    INVALID = "invalid"  # a value missing, malformed or out of bounds
    TOO_LATE = "too_late"  # its window or deadline has passed
    ALREADY_DONE = "already_done"  # done before: a link used, a number listed, an appeal decided
    NOT_ALLOWED = "not_allowed"  # the rules forbid it in this case
    NOT_NOW = "not_now"  # outside the calling hours: later it may be
    USED_UP = "used_up"  # every attempt the policy allows has been made


# What each reason is, said to a person when no message of its own is at hand.
REASON_TEXTS = {
    Reason.NOT_FOUND: "要处理的记录不存在",
    Reason.WRONG_STATE: "当前状态下不能进行此操作",
    Reason.INVALID: "填写的内容有误",
    Reason.TOO_LATE: "已超过期限",
    Reason.ALREADY_DONE: "此操作已完成，无需重复",
    Reason.NOT_ALLOWED: "规则不允许此操作",
    Reason.NOT_NOW: "当前不在呼叫时段",
    Reason.USED_UP: "呼叫次数已用完",
}


class Refused(ValueError):
    """A move the rules do not allow. ``reason`` is the class's default unless the raise names another."""

    reason: Reason = Reason.NOT_ALLOWED

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
