"""Engine and session set-up: one URL (from :class:`rating_core.rules.settings.Settings`), one way to connect."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` changed: the result is a
    CursorResult, though the session's signature says only Result."""
    return cast(CursorResult[Any], result).rowcount


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the web tool read while the IVR writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


# The key of the deployment's 行政区划代码 in every session's ``info``: the outbox writes it into each payload,
# and an event is emitted from deep inside the rules, which are handed a session and nothing else.
REGION_CODE = "region_code"
# The key of the callers' numbers' keyed hash (``Settings.number_key``), for the same reason: the
# malicious-rater list is consulted deep inside the rules, and an entry past its retention is only a hash.
NUMBER_KEY = "number_key"


def make_session_factory(engine: Engine, *, region_code: str | None = None,
                         number_key: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, info={REGION_CODE: region_code, NUMBER_KEY: number_key})


def session_number_key(session: Session) -> str | None:
    """The number key this session's factory was given (None: numbers are compared as they are)."""
    key = session.info.get(NUMBER_KEY)
    return key if isinstance(key, str) and key else None
