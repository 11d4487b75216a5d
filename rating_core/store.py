"""The rating store as the rest of the system sees it: apply call events, replay the spool.

The IVR, the demo and the CLI all write through :class:`RatingStore`, so there
is one place that knows how an event becomes rows and how a spool is drained.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from rating_core.call_events import CallEvent, RatingRefused, UnknownCall, apply_event, prepare_batch
from rating_core.callback_tasks import TaskRuleError, VerificationCall, verification_call
from rating_core.database import make_session_factory
from rating_core.outbox import held_events
from rating_core.rules import Rules
from rating_core.spool import Spool

log = logging.getLogger(__name__)


# What a database that cannot be reached, or is locked, raises: no event is at fault, so none is refused.
_UNAVAILABLE = (OperationalError, InterfaceError)


class StoreUnavailable(Exception):
    """The database could not take a batch at all (unreachable, locked, gone); the events are not at fault."""


@dataclass(frozen=True)
class Rejected:
    """An event of a batch the store refused, by its position in the batch, and why."""

    index: int
    reason: str


class RatingStore:
    def __init__(self, engine: Engine, rules: Rules) -> None:
        self.engine = engine
        self.rules = rules
        self.sessions: sessionmaker[Session] = make_session_factory(engine)

    def apply(self, events: Iterable[CallEvent]) -> None:
        """Apply events in one transaction (all or nothing)."""
        events = list(events)
        with self.sessions.begin() as session, held_events(session):
            prepare_batch(session, self.rules, events)
            for event in events:
                apply_event(session, self.rules, event)

    def apply_batch(self, events: Sequence[CallEvent]) -> list[Rejected]:
        """Apply a batch from many calls in one transaction (group commit); return what was refused.

        If the transaction fails because of an event, the batch is applied again
        event by event, so one bad event does not fail its neighbours. Once an
        event of a call is refused, the call's later events are refused with it:
        wherever the caller of this puts them (the spool), they stay in order.
        A database that cannot be reached raises :class:`StoreUnavailable`.
        """
        reason = self._refusal(events)
        if reason is None:
            return []
        if len(events) == 1:
            return [Rejected(0, reason)]
        rejected: list[Rejected] = []
        refused_calls: set[str] = set()
        for index, event in enumerate(events):
            if event.uniqueid in refused_calls:
                rejected.append(Rejected(index, "an earlier event of this call was refused"))
                continue
            reason = self._refusal([event])
            if reason is not None:
                rejected.append(Rejected(index, reason))
                refused_calls.add(event.uniqueid)
        return rejected

    def _refusal(self, events: Sequence[CallEvent]) -> str | None:
        """Apply ``events`` in one transaction: None if written, else why the store refused them."""
        try:
            self.apply(events)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def apply_spooled(self, events: list[CallEvent]) -> None:
        """Apply one spool file's events; events of calls the store never saw are logged and dropped.

        A spool file holds whole call histories (a call that spooled once keeps
        spooling), so an orphan event means the file was damaged, and holding
        the rest of the file hostage to it would lose more than it saves.
        """
        with self.sessions.begin() as session:
            for event in events:
                try:
                    with session.begin_nested():
                        apply_event(session, self.rules, event)
                except (UnknownCall, TaskRuleError, RatingRefused) as exc:
                    log.error("spool: dropping %s event: %s", event.kind, exc)

    def verification_call(self, task_id: int, attempt_id: int) -> VerificationCall | None:
        with self.sessions() as session:
            return verification_call(session, task_id, attempt_id)

    def replay_spool(self, spool: Spool) -> int:
        return spool.replay(self.apply_spooled)
