"""What a batch of call events will read, loaded up front in a handful of queries.

The IVR's events reach the store in batches (group commit). Applied one by
one, each event would query what it needs (its call and rating, the
malicious-rater list, a case record that came first, the number's other
ratings), and each query first flushes the session: some four flushes and
eleven statements per call, which at a few hundred calls a second is all the
CPU there is. Loaded up front, a batch asks a handful of queries, and what it
adds leaves in one flush, as multi-row statements.

The lookups only ever answer "no need to look": whatever they do not cover,
the event still queries for itself, so a batch applied without them is only
slower, never different.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from rating_core.models import BlockedNumber, CallbackTask, Call, CaseRecord, Rating
from rating_core.rules import Rules
from rating_core.working_days import WorkingCalendar

if TYPE_CHECKING:
    from rating_core.call_events import CallStarted, RatingGiven

_KEY = "batch_lookups"


@dataclass
class BatchLookups:
    """What one transaction's batch was found to hold; kept in ``session.info`` for that transaction only."""

    absent: set[str] = field(default_factory=set)  # uniqueids the batch names that were not stored
    blocked: dict[str, BlockedNumber | None] = field(default_factory=dict)  # by caller number
    case_keys: set[str] = field(default_factory=set)  # uniqueids and linkedids an unapplied case record names
    # Numbers the batch rule may have to look at: rated (actively) shortly before the batch, or more than once in it.
    busy_numbers: set[str] = field(default_factory=set)
    calendar: WorkingCalendar | None = None  # read once for the batch (callback_tasks.load_calendar)


def load_batch_lookups(session: Session, rules: Rules, named: set[str], rerated: set[str],
                       started: Sequence[CallStarted], ratings: Sequence[RatingGiven]) -> dict[str, Call]:
    """Load what a batch will read into ``session``; return the stored calls it names, by uniqueid.

    ``named`` are the uniqueids of all its events, ``rerated`` those of events that change a rating;
    ``started`` and ``ratings`` are its CallStarted and RatingGiven.
    """
    # A call's rating, to know it has one; for a change, also its history and task (the outbox payload).
    plain = select(Call).where(Call.uniqueid.in_(named - rerated)).options(selectinload(Call.rating))
    full = select(Call).where(Call.uniqueid.in_(rerated)).options(
        selectinload(Call.rating).selectinload(Rating.changes),
        selectinload(Call.rating).selectinload(Rating.callback_task).selectinload(CallbackTask.attempts),
    )
    stored = {call.uniqueid: call for query, wanted in ((plain, named - rerated), (full, rerated)) if wanted
              for call in session.scalars(query)}
    found = BatchLookups(absent=named - stored.keys())
    started = [event for event in started if event.uniqueid not in stored]
    number_of = {call.uniqueid: call.caller_number for call in stored.values()}
    number_of |= {event.uniqueid: event.caller_number for event in started}

    numbers = {number for number in number_of.values() if number}
    found.blocked = dict.fromkeys(numbers)
    found.blocked |= {row.number: row for row in session.scalars(
        select(BlockedNumber).where(BlockedNumber.number.in_(numbers)))}

    keys = {event.uniqueid for event in started} | {event.linkedid for event in started if event.linkedid}
    if keys:
        found.case_keys = {key for row in session.execute(
            select(CaseRecord.uniqueid, CaseRecord.linkedid).where(
                CaseRecord.applied_at.is_(None), or_(CaseRecord.uniqueid.in_(keys), CaseRecord.linkedid.in_(keys)))
        ) for key in row if key in keys}

    rule = rules.lifecycle.batch
    if ratings and rule.enabled:
        per_number = Counter(number_of.get(event.uniqueid) for event in ratings)
        per_number.pop(None, None)
        since = min(event.at for event in ratings) - rule.within.as_timedelta()
        found.busy_numbers = {number for number, count in per_number.items() if count > 1}
        found.busy_numbers |= set(session.scalars(
            select(Call.caller_number).join(Rating, Rating.call_id == Call.id).where(
                Call.caller_number.in_(per_number), Rating.is_active.is_(True), Rating.batch_exempt.is_(False),
                Rating.rated_at >= since,
            ).distinct()
        ))
    session.info[_KEY] = found
    return stored


def lookups(session: Session) -> BatchLookups | None:
    """The lookups of the batch this session's transaction applies, if it was loaded."""
    return session.info.get(_KEY)


def blocked_number(session: Session, number: str) -> BlockedNumber | None:
    """The malicious-rater list's entry for ``number``, if any."""
    loaded = lookups(session)
    if loaded is not None and number in loaded.blocked:
        return loaded.blocked[number]
    return session.get(BlockedNumber, number)


def may_have_case_record(session: Session, uniqueid: str, linkedid: str | None) -> bool:
    loaded = lookups(session)
    return loaded is None or uniqueid in loaded.case_keys or (linkedid is not None and linkedid in loaded.case_keys)


def may_complete_a_batch(session: Session, rules: Rules, number: str | None) -> bool:
    """Whether a rating just created from ``number`` could make its ratings a batch (淄博's rule).

    With one rating in the window it cannot, unless the rule counts even one as a batch.
    """
    loaded = lookups(session)
    return (loaded is None or rules.lifecycle.batch.more_than < 1 or number is None
            or number in loaded.busy_numbers)
