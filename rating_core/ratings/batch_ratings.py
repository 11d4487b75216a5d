"""淄博's batch rule: many active ratings from one number within a short time count once for 主动评价.

Seed 003: "多个办件为同一手机号码的，视为批量办件，主动评价只记一次". When a
rating makes its number's active ratings within ``lifecycle.batch.within``
more than ``more_than``, every one of them but the earliest joins the
earliest's batch (``batch_of_id``): stored and shown as given, not counted in
P and I. Each flag is a rating change with source ``rule:batch``; a
supervisor may lift one (``batch_exempt``), and the rule leaves it alone after.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.rulebook import Rules
from rating_core.store.models import Call, Rating
from rating_core.store.rating_history import change_rating

SOURCE = "rule:batch"


class BatchRuleError(Refused):
    """A change to a batch flag the rules do not allow; the message is for the supervisor (zh-CN)."""

    reason = Reason.WRONG_STATE


def apply_batch_rule(session: Session, rules: Rules, rating: Rating, at: datetime) -> int:
    """Flag the batch ``rating`` completes, if it completes one; how many ratings were newly flagged."""
    rule = rules.lifecycle.batch
    number = rating.call.caller_number
    if not (rule.enabled and rating.is_active and number) or rating.batch_exempt or rating.batch_of_id:
        return 0
    in_window = (
        Call.caller_number == number, Rating.is_active.is_(True), Rating.batch_exempt.is_(False),
        Rating.rated_at >= rating.rated_at - rule.within.as_timedelta(), Rating.rated_at <= rating.rated_at,
    )
    # Ids only, and no more than decide the question: a number that rates all day must not cost a load of all.
    first = session.scalars(
        select(Rating.id).join(Call, Call.id == Rating.call_id).where(*in_window)
        .order_by(Rating.rated_at, Rating.id).limit(rule.more_than + 1)
    ).all()
    if len(first) <= rule.more_than:
        return 0
    head = session.get_one(Rating, first[0])
    head_id = head.batch_of_id or head.id  # the earliest may itself be in an older batch: join that one
    unflagged = session.scalars(
        select(Rating).join(Call, Call.id == Rating.call_id)
        .where(*in_window, Rating.batch_of_id.is_(None), Rating.id != head.id)
    ).all()
    return sum(change_rating(peer, at, SOURCE, batch_of_id=head_id) for peer in unflagged)


def lift_batch_flag(session: Session, rating_id: int, at: datetime, actor: str) -> Rating:
    """A supervisor rules that this rating counts on its own; recorded, and the rule respects it from now on."""
    rating = session.get(Rating, rating_id, with_for_update=True)
    if rating is None:
        raise BatchRuleError("评价不存在", Reason.NOT_FOUND)
    if rating.batch_of_id is None:
        raise BatchRuleError("该评价未被计为批量评价")
    change_rating(rating, at, actor, batch_of_id=None, batch_exempt=True)
    return rating
