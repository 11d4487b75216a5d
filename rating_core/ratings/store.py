"""The rating store as the rest of the system sees it: apply call events, replay the spool.

The IVR, the demo and the CLI all write through :class:`RatingStore`, so there
is one place that knows how an event becomes rows and how a spool is drained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from sqlalchemy import Engine, delete
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from rating_core.complaints.callback_tasks import TaskRuleError, VerificationCall, verification_call
from rating_core.events.call_events import CallbackCallEnded, CallEnded, CallEvent
from rating_core.events.journal import Entry, OpenCalls
from rating_core.outbox.outbox import held_events
from rating_core.ratings.intake import UnknownCall, apply_event, prepare_batch
from rating_core.rules.rulebook import Rules
from rating_core.store.database import make_session_factory
from rating_core.store.journal_positions import claim_position, move_position
from rating_core.store.models import JournalPosition

log = logging.getLogger(__name__)


def store_fault(exc: BaseException) -> bool:
    """Whether the database failed, not the event: anything the driver raises but a value it will not hold
    (DataError) or a broken constraint (IntegrityError) — unreachable, locked, read-only after a failover,
    a schema not upgraded — and the pool giving up. Then no event is refused; the journal waits."""
    if isinstance(exc, (DataError, IntegrityError)):
        return False
    return isinstance(exc, (DBAPIError, DisconnectionError, PendingRollbackError, PoolTimeout))


# How a call is ended when the server that had it open died: its journal, replayed, says it was open.
CRASH_END_REASON = "server_crash"
# Where an entry the store refuses goes (the stream, the entry, why): rating_core.events.dead_letters.
DeadLetterSink = Callable[[str, Entry, str], None]


def first_line(exc: BaseException) -> str:
    """An exception as one line of a log or a dead letter (the driver's own run over several)."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class StoreUnavailable(Exception):
    """The database could not take a batch at all (unreachable, locked, gone); the events are not at fault."""


class RatingStore:
    def __init__(self, engine: Engine, rules: Rules, *, region_code: str | None = None,
                 number_key: str | None = None) -> None:
        self.engine = engine
        self.rules = rules
        self.region_code = region_code
        self.number_key = number_key
        self.sessions: sessionmaker[Session] = make_session_factory(engine, region_code=region_code,
                                                                    number_key=number_key)

    def apply(self, events: Iterable[CallEvent]) -> None:
        """Apply events in one transaction (all or nothing)."""
        events = list(events)
        with self.sessions.begin() as session, held_events(session):
            prepare_batch(session, self.rules, events)
            for event in events:
                apply_event(session, self.rules, event)

    def apply_journaled(self, stream: str, entries: Sequence[Entry], dead_letter: DeadLetterSink,
                        refused_calls: set[str]) -> int:
        """Apply entries of one journal stream in one transaction, with the stream's new position; return
        how many were applied now (those at or before the stored position were applied before: skipped).

        If the transaction fails because of an entry, the entries are applied one by one, each with the
        position; one the store refuses (or could not read) is handed to ``dead_letter`` before the
        position passes it, its call joins ``refused_calls``, and the call's later events follow it
        there, so a call is never applied out of order and nothing behind it waits. A database that
        cannot be reached raises :class:`StoreUnavailable`, and the stream is read again from the
        stored position.
        """
        if not entries:
            return 0
        if not any(entry.uniqueid in refused_calls for entry in entries):
            try:
                return self._apply_entries(stream, entries)
            except Exception as exc:
                if store_fault(exc):
                    raise StoreUnavailable(first_line(exc)) from exc
                # an entry is at fault: find which, one at a time
        applied = 0
        for entry in entries:
            reason = entry.error
            if reason is None and entry.uniqueid in refused_calls:
                reason = "an earlier event of this call was refused"
            if reason is None:
                try:
                    applied += self._apply_entries(stream, [entry])
                    continue
                except Exception as exc:
                    if store_fault(exc):
                        raise StoreUnavailable(first_line(exc)) from exc
                    reason = first_line(exc)
            try:
                self._pass_refused(stream, entry, reason, dead_letter)
            except Exception as exc:
                if store_fault(exc):
                    raise StoreUnavailable(first_line(exc)) from exc
                raise
            if entry.uniqueid is not None:  # only once its dead letter is kept and passed
                refused_calls.add(entry.uniqueid)
        return applied

    def _apply_entries(self, stream: str, entries: Sequence[Entry]) -> int:
        with self.sessions.begin() as session, held_events(session):
            done = claim_position(session, stream)
            fresh = [entry for entry in entries if entry.position > done]
            if not fresh:
                return 0  # applied before (a replay after a crash, or a second replayer)
            if any(entry.event is None for entry in fresh):
                raise ValueError("an unreadable line")
            events = [entry.event for entry in fresh if entry.event is not None]
            prepare_batch(session, self.rules, events)
            for event in events:
                apply_event(session, self.rules, event)
            move_position(session, stream, fresh[-1].position)
            return len(events)

    def _pass_refused(self, stream: str, entry: Entry, reason: str, dead_letter: DeadLetterSink) -> None:
        """Keep a refused entry as a dead letter, then move the stream past it."""
        with self.sessions.begin() as session:
            if entry.position <= claim_position(session, stream):
                return  # another replayer got here first
            log.error("journal %s %d:%d: %s refused (%s); kept as a dead letter", stream, entry.position.segment,
                      entry.position.line, entry.event.kind if entry.event else "line", reason)
            dead_letter(stream, entry, reason)
            move_position(session, stream, entry.position)

    def end_crashed_calls(self, stream: str, open_calls: OpenCalls, at: datetime, refused_calls: set[str]) -> int:
        """End every call a crashed server had open (``server_crash``), so the lifecycle and the
        补充评价 SMS treat it as ended; a call that has its end already keeps it, and one with an event among
        the dead letters stays open (its rating may be there: it must not be defaulted). How many were ended."""
        ended = 0
        try:
            with self.sessions.begin() as session, held_events(session):
                for uniqueid in sorted(open_calls.evaluations - refused_calls):
                    ended += self._end_one(session, CallEnded(uniqueid, CRASH_END_REASON, at))
                for uniqueid, attempt_id in sorted(open_calls.callbacks.items()):
                    ended += self._end_one(session, CallbackCallEnded(uniqueid, attempt_id, CRASH_END_REASON, at))
        except Exception as exc:
            if store_fault(exc):
                raise StoreUnavailable(first_line(exc)) from exc
            raise
        return ended

    def _end_one(self, session: Session, event: CallEnded | CallbackCallEnded) -> int:
        try:
            with session.begin_nested():
                apply_event(session, self.rules, event)
        except (UnknownCall, TaskRuleError) as exc:
            log.error("journal: call %s cannot be ended after the crash: %s", event.uniqueid, exc)
            return 0
        return 1

    def forget_stream(self, stream: str) -> None:
        """The stream's files are gone: its position is no longer needed (tidiness only: a stream's name is
        never used again, so a row left by a database that failed here does no harm)."""
        try:
            with self.sessions.begin() as session:
                session.execute(delete(JournalPosition).where(JournalPosition.stream == stream))
        except Exception as exc:
            if not store_fault(exc):
                raise
            log.warning("journal %s: position not forgotten (%s)", stream, first_line(exc))

    def verification_call(self, task_id: int, attempt_id: int) -> VerificationCall | None:
        with self.sessions() as session:
            return verification_call(session, task_id, attempt_id)

