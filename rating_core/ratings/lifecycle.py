"""A rating's life after the call: a call left 未评价 becomes a default rating when its period is over.

四平 7.3: not rated within 7 days → 基本满意, flagged as a default (channel
``default``): never 主动评价, never a 差评, so it opens no callback. The
rating is dated when the period ended, not when the pass ran, so running
the pass late, twice or from two places gives the same store.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating_core.complaints.callback_tasks import load_calendar
from rating_core.events.call_events import RatingGiven
from rating_core.ratings.intake import apply_event
from rating_core.rules.rulebook import Rules
from rating_core.rules.working_days import add_duration
from rating_core.store.models import Call, Rating

SOURCE = "lifecycle"


def default_unrated(session: Session, rules: Rules, now: datetime, limit: int = 5000) -> int:
    """Give the default rating to every call whose period has passed; how many were given."""
    policy = rules.lifecycle.default_rating
    if not policy.enabled:
        return 0
    # Working days are never fewer calendar days, so this bound only ever lets too many through to the exact check.
    after = policy.after
    earliest_due = now - (timedelta(days=after.amount) if after.unit == "working_days" else after.as_timedelta())
    calls = session.scalars(
        select(Call).outerjoin(Rating, Rating.call_id == Call.id)
        # Only ended calls: one without its end may still have its rating in a journal (a crashed server's,
        # not yet replayed, which ends it as server_crash) or among the dead letters.
        .where(Rating.id.is_(None), Call.ended_at.is_not(None), Call.started_at <= earliest_due,
               Call.hotline.in_(list(rules.hotlines)))
        .order_by(Call.id).limit(limit)
    ).all()
    calendar, zone = load_calendar(session), ZoneInfo(rules.callback.timezone)
    given = 0
    for call in calls:
        due = add_duration(call.started_at, policy.after, calendar, zone)
        if due <= now:
            apply_event(session, rules, RatingGiven(call.uniqueid, policy.level, "default", due, source=SOURCE))
            given += 1
    return given
