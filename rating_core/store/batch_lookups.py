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
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, joinedload

from rating_core.rules.number_hash import number_forms
from rating_core.rules.rulebook import Rules
from rating_core.rules.working_days import WorkingCalendar
from rating_core.store.database import session_number_key
from rating_core.store.models import BlockedNumber, Call, CallbackTask, CaseRecord, Rating

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


def load_calls(session: Session, plain: set[str], full: set[str]) -> dict[str, Call]:
    """The stored calls among these uniqueids, each with its rating; ``full`` ones also with the rating's
    history and task (what a change of the rating and its outbox payload read)."""
    # One-to-one in the same query (a join); collections in one query each, as they are lists.
    queries = (
        (plain, select(Call).where(Call.uniqueid.in_(plain)).options(joinedload(Call.rating))),
        (full, select(Call).where(Call.uniqueid.in_(full)).options(
            joinedload(Call.rating).selectinload(Rating.changes),
            joinedload(Call.rating).joinedload(Rating.callback_task).selectinload(CallbackTask.attempts),
        )),
    )
    return {call.uniqueid: call for wanted, query in queries if wanted for call in session.scalars(query)}


def load_case_keys(session: Session, keys: set[str]) -> set[str]:
    """Those of ``keys`` (uniqueids, linkedids) that a case record not yet applied names."""
    if not keys:
        return set()
    rows = session.execute(select(CaseRecord.uniqueid, CaseRecord.linkedid).where(
        CaseRecord.applied_at.is_(None), or_(CaseRecord.uniqueid.in_(keys), CaseRecord.linkedid.in_(keys))))
    return {key for row in rows for key in row if key in keys}


def load_blocked(session: Session, numbers: set[str]) -> dict[str, BlockedNumber | None]:
    """The malicious-rater list's entry for each number (None: not on it), listed as it is or, past its
    retention, as its keyed hash."""
    if not numbers:
        return {}
    key = session_number_key(session)
    forms = {number: number_forms(number, key) for number in numbers}
    listed = {row.number: row for row in session.scalars(
        select(BlockedNumber).where(BlockedNumber.number.in_({form for each in forms.values() for form in each})))}
    return {number: next((listed[form] for form in each if form in listed), None) for number, each in forms.items()}


def load_busy_numbers(session: Session, rules: Rules, rated: Counter[str], earliest: datetime | None) -> set[str]:
    """Numbers the batch rule must look at: rated more than once in the batch (``rated``, the earliest of
    its ratings at ``earliest``), or rated actively within the rule's window before it."""
    if not (rated and earliest and rules.lifecycle.batch.enabled):
        return set()
    since = earliest - rules.lifecycle.batch.within.as_timedelta()
    busy = {number for number, count in rated.items() if count > 1}
    return busy | set(session.scalars(
        select(Call.caller_number).join(Rating, Rating.call_id == Call.id).where(
            Call.caller_number.in_(rated), Rating.is_active.is_(True), Rating.batch_exempt.is_(False),
            Rating.rated_at >= since,
        ).distinct()
    ))


def install(session: Session, found: BatchLookups) -> None:
    """Make ``found`` the lookups of this session's transaction."""
    session.info[_KEY] = found


def lookups(session: Session) -> BatchLookups | None:
    """The lookups of the batch this session's transaction applies, if it was loaded."""
    return session.info.get(_KEY)


def blocked_reason(session: Session, number: str | None) -> str | None:
    """Why ``number`` is on the malicious-rater list, as the ratings, tasks and SMS that skip it say it
    (cut to their 256-character reason columns); None if it is not on it."""
    if not number:
        return None
    loaded = lookups(session)
    if loaded is not None and number in loaded.blocked:
        blocked = loaded.blocked[number]
    else:
        blocked = listed_entry(session, number)
    return None if blocked is None else listed_reason(blocked)


def listed_entry(session: Session, number: str) -> BlockedNumber | None:
    """The list's entry for ``number``: under the number itself, or under its keyed hash once the entry
    outlived the numbers' retention (rating_core.ratings.retention), so a listed number stays listed."""
    for form in number_forms(number, session_number_key(session)):
        entry = session.get(BlockedNumber, form)
        if entry is not None:
            return entry
    return None


def listed_reason(entry: BlockedNumber) -> str:
    """What a rating, task or SMS skipped for this list entry says, cut to their 256-character reason columns.

    One wording, whether the number was on the list when the rating came or was put there later
    (``appeals.block_number`` stopping its open tasks).
    """
    return f"号码在恶意评价名单中：{entry.reason}"[:256]


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
