"""Shared fixtures: the rules, a migrated store on SQLite and on a real PostgreSQL, a running IVR."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import Engine, text

from ivr.service import IvrService, running_ivr
from rating_core.database import make_engine
from rating_core.migrate import upgrade
from rating_core.rules import Rules, load_rules
from rating_core.spool import Spool
from rating_core.store import RatingStore

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/hotline_eval_test")


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules()


def _postgres_engine() -> Engine:
    engine = make_engine(POSTGRES_URL, pool_size=5)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL required but unreachable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable ({exc}); `make test` starts it")
    with engine.begin() as conn:
        # A clean schema per test: drop whatever the last test left, then migrate from nothing.
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        engine = _postgres_engine()
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine, rules: Rules) -> RatingStore:
    return RatingStore(engine, rules)


@pytest.fixture
def spool(tmp_path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
async def ivr(store: RatingStore, spool: Spool) -> AsyncIterator[IvrService]:
    async with running_ivr(store, spool, "127.0.0.1", 0) as service:
        yield service
