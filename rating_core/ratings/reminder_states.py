"""A 补充评价 SMS reminder's statuses, the moves between them as a table, and the one check every move passes.

::

    (new) ──▶ pending ──claimed──▶ sending ──accepted──▶ sent
                 ▲                    │
                 └──not sent: retry───┤ (or a sender that died, where the gateway drops a repeated request id)
                                      ├──may have gone──▶ unknown (never resent)
                                      └──refused, or every attempt used──▶ failed
    (new) or pending ──not to be sent (a landline, a listed number, rated meanwhile…)──▶ skipped

Planned by :mod:`rating_core.ratings.supplementary`, sent by ``delivery.sms``:
a row leaves pending only through one conditional UPDATE to sending, so two
senders never send one SMS. sent, unknown, failed and skipped are ends.
"""

from __future__ import annotations

from enum import StrEnum

from rating_core.rules.state_moves import IllegalMove


class ReminderStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    UNKNOWN = "unknown"
    FAILED = "failed"
    SKIPPED = "skipped"


# As a person reads them (no page lists reminders yet; a refused move says them).
REMINDER_STATUS_NAMES = {
    ReminderStatus.PENDING: "待发送", ReminderStatus.SENDING: "发送中", ReminderStatus.SENT: "已发送",
    ReminderStatus.UNKNOWN: "发送结果不明", ReminderStatus.FAILED: "发送失败", ReminderStatus.SKIPPED: "不发送",
}
# Where a reminder is born: waiting to be sent, or never to be.
FIRST_REMINDER_STATUSES = frozenset({ReminderStatus.PENDING, ReminderStatus.SKIPPED})
REMINDER_MOVES: dict[ReminderStatus, frozenset[ReminderStatus]] = {
    ReminderStatus.PENDING: frozenset({ReminderStatus.SENDING, ReminderStatus.SKIPPED}),
    ReminderStatus.SENDING: frozenset({ReminderStatus.SENT, ReminderStatus.PENDING, ReminderStatus.UNKNOWN,
                                       ReminderStatus.FAILED}),
    # One SMS per call: once it went, may have gone, or will not go, nothing moves it again.
    ReminderStatus.SENT: frozenset(),
    ReminderStatus.UNKNOWN: frozenset(),
    ReminderStatus.FAILED: frozenset(),
    ReminderStatus.SKIPPED: frozenset(),
}


def reminder_move(current: str | None, to: str) -> ReminderStatus:
    """The status a reminder moves to, if it may move there from ``current`` (None: the row is being planned)."""
    target = ReminderStatus(to)
    allowed = FIRST_REMINDER_STATUSES if current is None else REMINDER_MOVES[ReminderStatus(current)]
    if target not in allowed:
        start = "新建" if current is None else REMINDER_STATUS_NAMES[ReminderStatus(current)]
        raise IllegalMove(f"短信提醒不能从“{start}”改为“{REMINDER_STATUS_NAMES[target]}”")
    return target
