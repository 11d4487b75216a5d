"""Engine and session set-up, and the database URL every process agrees on."""

from __future__ import annotations

import os
from pathlib import Path

from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_HOME = Path("var")


def home_dir() -> Path:
    """Where the embedded default keeps its files (SQLite database, spool)."""
    return Path(os.environ.get("HOTLINE_EVAL_HOME") or DEFAULT_HOME)


def database_url() -> str:
    """``$DATABASE_URL``, else a SQLite file under the home directory."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{home_dir() / 'hotline-eval.db'}"


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` changed: the result is a
    CursorResult, though the session's signature says only Result."""
    return cast(CursorResult[Any], result).rowcount


def make_engine(url: str | None = None, *, pool_size: int = 10) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the web tool read while the IVR writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
