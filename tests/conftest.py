"""Shared fixtures: the rules, a migrated store on SQLite and on a real PostgreSQL, a running IVR."""

from __future__ import annotations

import json
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, text

from ivr.service import IvrService, running_ivr
from rating_core.events.call_events import CallEvent, to_record
from rating_core.events.journal import Journal, Position, parse
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules, load_rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from speech_audio import tone
from speech_models.recordings import write_recording

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


# Each store's journal in the tests: its stream, and the lines written so far.
_JOURNALS: weakref.WeakKeyDictionary[RatingStore, list[Any]] = weakref.WeakKeyDictionary()


def refused_in_one_batch(store: RatingStore, events: list[CallEvent]) -> list[int]:
    """Apply ``events`` as the next batch of the store's journal, as the server's store process does; the
    indexes in ``events`` of those the store refused (dead letters)."""
    stream, first = _JOURNALS.setdefault(store, [f"test-{uuid.uuid4().hex}", 1])
    _JOURNALS[store][1] = first + len(events)
    refused: list[int] = []
    entries = [parse(Position(1, first + n), json.dumps(to_record(event))) for n, event in enumerate(events)]
    store.apply_journaled(stream, entries,
                          lambda _stream, entry, _reason: refused.append(entry.position.line - first), set())
    return refused


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(tmp_path / "journal")


@pytest.fixture
async def ivr(store: RatingStore, journal: Journal) -> AsyncIterator[IvrService]:
    async with running_ivr(store, journal, "127.0.0.1", 0) as service:
        yield service


# -- the web tool -----------------------------------------------------------------------------

WEB_PASSWORD = "correct-horse-battery"
WEB_USERS = {  # username: (role, 工号, unit)
    "admin": ("admin", None, None),
    "agent": ("agent", "2001", None),
    "rated": ("agent", "1024", None),  # the agent whose call was rated: never calls it back
    "boss": ("supervisor", None, None),
    "unit": ("unit", None, "市人社局"),
}


@dataclass
class WebSite:
    app: Flask
    store: RatingStore
    task_id: int
    voice_file: Path
    password: str = WEB_PASSWORD  # every user's


@pytest.fixture
def web_site(engine: Engine, rules: Rules, tmp_path: Path) -> WebSite:
    """The web tool on a store with users and one contacted 差评 (with a real voice message)."""
    from datetime import datetime, timedelta, timezone
    from datetime import time as clock

    from rating_core.complaints.callback_tasks import claim_attempt, record_outcome, request_attempt
    from rating_core.events.call_events import CallStarted, RatingGiven, ReasonGiven, VoiceMessageRecorded
    from rating_core.rules.callback_policy import CallingWindow
    from web import create_app
    from web.accounts import create_user

    # Calling all day, every day: click-to-call must not depend on when the tests run.
    policy = rules.callback.model_copy(update={
        "calling_days": "every_day", "calling_windows": (CallingWindow(start=clock(0), end=clock(23, 59, 59)),)})
    store = RatingStore(engine, rules.model_copy(update={"callback": policy}))
    recordings = tmp_path / "recordings"
    voice = recordings / "12345" / "20261120" / "1795316400.1.wav"
    # 1 s of a 440 Hz tone, 8 kHz mono as Asterisk records
    write_recording(voice, tone(1.0, amplitude=8000))
    now = datetime.now(timezone.utc)
    uid = "1795316400.1"
    store.apply([
        CallStarted(uniqueid=uid, hotline="12345", at=now - timedelta(hours=2), caller_number="13812345678",
                    agent_id="1024", queue="社保咨询", case_number="GD20261120001", unit="市人社局",
                    recording_file=str(voice)),  # stands in for the service call's MixMonitor file
        RatingGiven(uid, "very_dissatisfied", "dtmf", now - timedelta(hours=2)),
        ReasonGiven(uid, ("buck_passing",), now - timedelta(hours=2)),
        VoiceMessageRecorded(uid, str(voice), 1.0, now - timedelta(hours=2)),
    ])
    with store.sessions.begin() as session:
        for username, (role, agent_id, unit) in WEB_USERS.items():
            create_user(session, username, WEB_PASSWORD, role, f"{username}用户", agent_id=agent_id, unit=unit)
        decision = request_attempt(session, policy, 1, now - timedelta(hours=1), "system:rq")
        assert decision.attempt_id is not None
        claim_attempt(session, decision.attempt_id, now - timedelta(hours=1), "PJSIP/2001")
        record_outcome(session, policy, decision.attempt_id, "answered", now - timedelta(minutes=50), "dialer")
    app = create_app(store, {"SECRET_KEY": "test-secret", "SESSION_COOKIE_SECURE": False,
                             "RECORDING_ROOTS": [str(recordings)], "TRANSCODE_DIR": str(tmp_path / "transcoded")})
    return WebSite(app, store, 1, voice)


# -- the real PBX -------------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of a ``test_pbx_*`` module runs calls on a real Asterisk: marked ``pbx`` (``-m pbx``)."""
    for item in items:
        if item.path.name.startswith("test_pbx_"):
            item.add_marker(pytest.mark.pbx)


@pytest.fixture(scope="session")
def asterisk_build() -> None:
    """Asterisk built (once per machine); REQUIRE_PBX turns "cannot be built here" into a failure."""
    from real_pbx import PbxUnavailable, ensure_built

    try:
        ensure_built()
    except PbxUnavailable as exc:
        if os.environ.get("REQUIRE_PBX"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def pbx(asterisk_build: None, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The suite's Asterisk: one for every test that does not restart it."""
    from real_pbx import running_pbx

    with running_pbx(tmp_path_factory.mktemp("pbx")) as running:
        yield running


def fresh_postgres_database(name: str) -> str:
    """A new, migrated database ``name`` on the test PostgreSQL server, for a process of its own."""
    from sqlalchemy.engine import make_url

    server = make_engine(POSTGRES_URL)
    try:
        with server.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL required for the real-PBX tests but unusable at {POSTGRES_URL}: {exc}")
    finally:
        server.dispose()
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url
