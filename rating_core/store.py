"""The rating store as the rest of the system sees it: apply call events, replay the spool.

The IVR, the demo and the CLI all write through :class:`RatingStore`, so there
is one place that knows how an event becomes rows and how a spool is drained.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from rating_core.call_events import CallEvent, RatingRefused, UnknownCall, apply_event
from rating_core.callback_tasks import TaskRuleError, VerificationCall, verification_call
from rating_core.database import make_session_factory
from rating_core.rules import Rules
from rating_core.spool import Spool

log = logging.getLogger(__name__)


class RatingStore:
    def __init__(self, engine: Engine, rules: Rules) -> None:
        self.engine = engine
        self.rules = rules
        self.sessions: sessionmaker[Session] = make_session_factory(engine)

    def apply(self, events: Iterable[CallEvent]) -> None:
        """Apply events in one transaction (all or nothing)."""
        with self.sessions.begin() as session:
            for event in events:
                apply_event(session, self.rules, event)

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
