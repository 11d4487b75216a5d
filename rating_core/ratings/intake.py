"""How the store applies the IVR's call events (:mod:`rating_core.events.call_events`): calls started,
ratings given or refused, reasons, voice messages, progress, callback answers and ends.

A batch of events is applied in one transaction, its lookups loaded once
(``prepare_batch``); each event is idempotent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from rating_core.complaints.callback_tasks import close_task, load_calendar, note_script_ended, open_task, record_answer
from rating_core.events.call_events import (
    PROGRESS_ORDER,
    CallbackAnswered,
    CallbackCallEnded,
    CallEnded,
    CallEvent,
    CallStarted,
    ProgressMade,
    RatingGiven,
    ReasonGiven,
    VoiceMessageRecorded,
)
from rating_core.outbox.outbox import emit
from rating_core.ratings.batch_ratings import apply_batch_rule
from rating_core.ratings.inbound import apply_pending_case
from rating_core.ratings.supplementary import plan_reminder
from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.rulebook import Rules
from rating_core.store.batch_lookups import (
    BatchLookups,
    blocked_reason,
    install,
    load_blocked,
    load_busy_numbers,
    load_calls,
    load_case_keys,
    lookups,
    may_complete_a_batch,
    may_have_case_record,
)
from rating_core.store.models import Call, Rating, RatingChange
from rating_core.store.rating_history import change_rating


class UnknownCall(LookupError):
    """An event names a call the store has never seen."""


class RatingRefused(Refused):
    """One call, one rating: the rules refuse this channel's rating of a call already rated
    (lifecycle.second_rating)."""

    reason = Reason.ALREADY_DONE


def prepare_batch(session: Session, rules: Rules, events: Sequence[CallEvent]) -> None:
    """Load what ``events`` will read, in a few queries, before applying them in this transaction.

    Each query flushes what the session holds, so reading up front lets the whole batch leave in one
    flush; and only what the batch's events will read is loaded, since small batches are the common case.
    """
    named = {event.uniqueid for event in events}
    rerated = {event.uniqueid for event in events
               if isinstance(event, (RatingGiven, ReasonGiven, VoiceMessageRecorded))}
    calls = load_calls(session, named - rerated, rerated)
    _known_calls(session).update(calls)
    found = BatchLookups(absent=named - calls.keys())
    started = [event for event in events if isinstance(event, CallStarted) and event.uniqueid not in calls]
    found.case_keys = load_case_keys(session, {event.uniqueid for event in started}
                                     | {event.linkedid for event in started if event.linkedid})
    number_of = {uniqueid: call.caller_number for uniqueid, call in calls.items()}
    number_of |= {event.uniqueid: event.caller_number for event in started}
    ratings = [event for event in events if isinstance(event, RatingGiven)]
    rated = {event.uniqueid for event in ratings}
    unrated_ends = {event.uniqueid for event in events if isinstance(event, CallEnded) and event.uniqueid not in rated
                    and (event.uniqueid not in calls or calls[event.uniqueid].rating is None)}
    # New ratings check the malicious-rater list, and so do an unrated call's SMS and a 差评's task.
    found.blocked = load_blocked(session, {number for uniqueid in rated | unrated_ends
                                           if (number := number_of.get(uniqueid))})
    found.busy_numbers = load_busy_numbers(
        session, rules, Counter(number for event in ratings if (number := number_of.get(event.uniqueid))),
        min((event.at for event in ratings), default=None),
    )
    install(session, found)
    if unrated_ends or any(rules.level(event.level).negative for event in ratings):
        load_calendar(session)  # an unrated call's SMS, a 差评's deadlines: read once for the batch


def apply_event(session: Session, rules: Rules, event: CallEvent) -> None:
    """Apply one event inside the caller's transaction. Idempotent."""
    if isinstance(event, CallStarted):
        _start_call(session, event)
        return
    if isinstance(event, CallbackAnswered):
        record_answer(session, event.attempt_id, event.question, event.answer, event.key, event.uniqueid,
                      event.at, "system:callback-ivr")
        return
    if isinstance(event, CallbackCallEnded):
        note_script_ended(session, event.attempt_id, event.end_reason, event.progress, event.at)
        return
    call = _find_call(session, event.uniqueid)
    if isinstance(event, ProgressMade):
        _note_progress(call, event.progress, event.menu_plays)
    elif isinstance(event, RatingGiven):
        _give_rating(session, rules, call, event)
    elif isinstance(event, ReasonGiven):
        _update_rating(session, call, event.at, event.source, reason_tags=list(event.tags), reason_text=event.text)
        _advance(call, "reason")
    elif isinstance(event, VoiceMessageRecorded):
        _update_rating(
            session, call, event.at, event.source,
            voice_message_file=event.path, voice_message_seconds=event.seconds,
        )
        # A new message (a rating given again) waits for its own transcript.
        rating = call.rating
        assert rating is not None  # _update_rating refused a call without one
        rating.voice_transcript = rating.voice_transcript_confidence = rating.voice_transcript_status = None
        rating.voice_transcript_at = None
        _advance(call, "voice_message")
    elif isinstance(event, CallEnded):
        _note_progress(call, event.progress, event.menu_plays)
        if call.ended_at is None:
            # Every end writes the same columns, so a batch's ends go out as one executemany.
            flag_modified(call, "progress")
            flag_modified(call, "menu_plays")
            call.ended_at = event.at
            call.end_reason = event.end_reason
            if event.end_reason == "completed":
                _advance(call, "completed")
            plan_reminder(session, rules, call, event.at)  # 补充评价: only if it ended unrated


def _known_calls(session: Session) -> dict[str, Call]:
    """Calls met in this transaction by uniqueid: a batch holds a call's events together."""
    known: dict[str, Call] = session.info.setdefault("calls_by_uniqueid", {})
    return known


def _lookup_call(session: Session, uniqueid: str) -> Call | None:
    """The call with this uniqueid, if stored; looked up once per transaction."""
    call = _known_calls(session).get(uniqueid)
    batch = lookups(session)
    if call is None and batch is not None and uniqueid in batch.absent:
        return None  # the batch's lookups found it not stored
    if call is None or call not in session:  # not met yet, or gone with a rolled-back savepoint
        call = session.scalars(select(Call).where(Call.uniqueid == uniqueid)).one_or_none()
        if call is not None:
            _known_calls(session)[uniqueid] = call
    return call


def _find_call(session: Session, uniqueid: str) -> Call:
    """The call an event is about."""
    call = _lookup_call(session, uniqueid)
    if call is None:
        raise UnknownCall(f"no call with uniqueid {uniqueid!r}")
    return call


def _start_call(session: Session, event: CallStarted) -> None:
    if _lookup_call(session, event.uniqueid) is not None:
        return  # started before: events are idempotent
    call = Call(
        uniqueid=event.uniqueid,
        linkedid=event.linkedid,
        hotline=event.hotline,
        caller_number=event.caller_number,
        agent_id=event.agent_id,
        queue=event.queue,
        case_number=event.case_number,
        unit=event.unit,
        channel=event.channel,
        recording_file=event.recording_file,
        started_at=event.at,
        progress="connected",
        menu_plays=0,
        variables=dict(event.variables),
        rating=None,  # known to be empty: no query for it when the rating comes
    )
    session.add(call)
    _known_calls(session)[event.uniqueid] = call
    if may_have_case_record(session, call.uniqueid, call.linkedid):
        apply_pending_case(session, call, event.at)  # the platform's 工单 may have come first


def _note_progress(call: Call, progress: str | None, menu_plays: int | None) -> None:
    if progress is not None:
        _advance(call, progress)
    if menu_plays is not None:
        call.menu_plays = max(call.menu_plays, menu_plays)


def _advance(call: Call, progress: str) -> None:
    if PROGRESS_ORDER.index(progress) > PROGRESS_ORDER.index(call.progress):
        call.progress = progress


def _give_rating(session: Session, rules: Rules, call: Call, event: RatingGiven) -> None:
    level = rules.level(event.level)
    values = {
        "level": level.code,
        "stars": level.stars,
        "is_negative": level.negative,
        "channel": event.channel,
        "is_active": event.channel != "default",
    }
    rating = call.rating
    if event.heard is not None or (rating is not None and rating.heard_text is not None):
        values |= {"heard_text": event.heard, "heard_confidence": event.confidence}  # set, or cleared by a key
    if rating is None:
        why_blocked = blocked_reason(session, call.caller_number)
        if why_blocked is not None:  # the malicious-rater list: stored, never adopted
            values |= {"is_adopted": False, "not_adopted_reason": why_blocked}
        first = RatingChange(changed_at=event.at, source=event.source,
                             changes={k: [None, v] for k, v in values.items()})
        # Built with its collections, so nothing is lazily loaded for a row that cannot have any yet, and
        # with its defaults, which the rules below read before any flush would set them.
        rating = Rating(call=call, rated_at=event.at, updated_at=event.at, reason_tags=[], changes=[first],
                        callback_task=None, batch_of_id=None, **({"is_adopted": True, "batch_exempt": False} | values))
        session.add(rating)
        created = changed = True
    else:
        if rules.lifecycle.second(event.channel, rating.channel) == "refuse":
            raise RatingRefused(f"call {call.uniqueid!r} is already rated ({rating.channel}); "
                                f"a {event.channel} rating of it is refused by the rules")
        created = False
        changed = _update_rating(session, call, event.at, event.source, announce=False, **values)
    if not created or may_complete_a_batch(session, rules, call.caller_number):
        apply_batch_rule(session, rules, rating, event.at)
    _advance(call, "rated")
    # The callback task rides in the same transaction: no 差评 without its task.
    actor = f"system:{event.source}"
    if rating.is_negative:
        open_task(session, rules.callback, rating, event.at, actor)
    elif rating.callback_task is not None:
        close_task(session, rating.callback_task, event.at, actor, "评价已改为非差评")
    if created:
        emit(session, "rating.defaulted" if event.channel == "default" else "rating.created", rating, event.at)
    elif changed:
        emit(session, "rating.updated", rating, event.at, source=event.source, fields=sorted(values))


def _update_rating(session: Session, call: Call, at: datetime, source: str, *, announce: bool = True,
                   **values: Any) -> bool:
    """Change the call's rating; with ``announce``, tell the platforms (the outbox) if anything moved."""
    rating = call.rating
    if rating is None:
        raise UnknownCall(f"call {call.uniqueid!r} has no rating to update")
    changed = change_rating(rating, at, source, **values)
    if changed and announce:
        emit(session, "rating.updated", rating, at, source=source, fields=sorted(values))
    return changed
