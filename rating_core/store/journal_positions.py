"""How far each journal stream is in the store: read and moved inside the transaction that applies it.

The row is locked for the transaction (created first if new, so there is always a row to lock), so two
replayers of one stream — a server that took over a dead stream while the dead server's store process
finished its last batch — take turns, and the second skips what the first applied.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from rating_core.events.journal import Position
from rating_core.store.models import JournalPosition

POSITIONS = cast(Table, JournalPosition.__table__)


def claim_position(session: Session, stream: str) -> Position:
    """The stream's position, its row locked until the transaction ends (created first if new)."""
    found = _locked(session, stream)
    if found is None:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(insert(POSITIONS).values(stream=stream, segment=0, line=0,
                                                 updated_at=datetime.now(timezone.utc))
                        .on_conflict_do_nothing(index_elements=["stream"]))
        found = _locked(session, stream)
        assert found is not None
    return found


def _locked(session: Session, stream: str) -> Position | None:
    row = session.execute(
        select(POSITIONS.c.segment, POSITIONS.c.line).where(POSITIONS.c.stream == stream).with_for_update()
    ).one_or_none()
    return Position(row.segment, row.line) if row is not None else None


def move_position(session: Session, stream: str, position: Position) -> None:
    # On the table, not the mapped class: an ORM statement would flush the batch's rows early, and the
    # batch is to leave in one flush, at the commit.
    session.execute(
        update(POSITIONS).where(POSITIONS.c.stream == stream)
        .values(segment=position.segment, line=position.line, updated_at=datetime.now(timezone.utc))
    )
