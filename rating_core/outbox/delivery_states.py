"""A webhook delivery's statuses (one event to one endpoint), the moves between them as a table, and the one
check every move passes.

::

    (new, at fan-out) ──▶ pending ──2xx──▶ delivered
                             │  ▲
                             │  └──retried with backoff (stays pending; a 410 disables the endpoint instead)
                             ├──past the retry window──▶ dead
                             ├──the endpoint's profile cannot express it──▶ held ──checked again──▶ pending
                             └──its body is the one last sent──▶ unchanged
    any status ──replayed──▶ pending (attempts from nought, the same webhook-id)

A held delivery was never sent: it waits (and the rating's later events wait behind it) until the rating,
the settings or the profile are fixed, and is never dropped. An unchanged one was not sent because the
platform already has its body: a voice message adds nothing a profile without a voice field carries.

Made and moved by ``delivery.webhooks``; replayed by
:func:`rating_core.outbox.webhook_endpoints.replay`, from the CLI or the admin's page.
"""

from __future__ import annotations

from enum import StrEnum

from rating_core.rules.state_moves import IllegalMove


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    HELD = "held"
    UNCHANGED = "unchanged"


# As the admin's page heads its columns.
DELIVERY_STATUS_NAMES = {DeliveryStatus.PENDING: "待推送", DeliveryStatus.DELIVERED: "已送达",
                         DeliveryStatus.DEAD: "失败", DeliveryStatus.HELD: "暂缓（格式不符）",
                         DeliveryStatus.UNCHANGED: "内容未变未重发"}
FIRST_DELIVERY_STATUSES = frozenset({DeliveryStatus.PENDING})
DELIVERY_MOVES: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    # pending to pending: a replay of an event starts its waiting delivery over too.
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.DEAD, DeliveryStatus.PENDING,
                                       DeliveryStatus.HELD, DeliveryStatus.UNCHANGED}),
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.DEAD: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.HELD: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.UNCHANGED: frozenset({DeliveryStatus.PENDING}),
}


def delivery_move(current: str | None, to: str) -> DeliveryStatus:
    """The status a delivery moves to, if it may move there from ``current`` (None: it is being fanned out)."""
    target = DeliveryStatus(to)
    allowed = FIRST_DELIVERY_STATUSES if current is None else DELIVERY_MOVES[DeliveryStatus(current)]
    if target not in allowed:
        start = "新建" if current is None else DELIVERY_STATUS_NAMES[DeliveryStatus(current)]
        raise IllegalMove(f"推送不能从“{start}”改为“{DELIVERY_STATUS_NAMES[target]}”")
    return target
