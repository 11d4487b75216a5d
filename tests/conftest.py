"""Shared fixtures: the rules, a migrated store on SQLite and on a real PostgreSQL, a running IVR."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

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

# Under pytest-xdist (`make test` runs `-n auto`) each worker is a process of its own, "gw0", "gw1", …: it has a
# PostgreSQL database, Redis databases and fresh_postgres_database names of its own. "" without xdist.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") else 0


def worker_database(name: str) -> str:
    """``name`` for this worker: ``name_gw1`` under xdist, ``name`` itself without it."""
    return f"{name}_{WORKER}" if WORKER else name


def worker_redis_url(purpose: int) -> str:
    """A Redis database of this worker's own on the suite's Redis (tests/services.sh; $TEST_REDIS_URL names
    another), for ``purpose`` 0 (the RQ tests, which empty theirs) or 1 (the real-PBX services): databases 15 and
    14 for the first worker, 13 and 12 for the next, … Without xdist $TEST_REDIS_URL is the RQ tests' as given."""
    given = os.environ.get("TEST_REDIS_URL")
    if given and not WORKER and purpose == 0:
        return given
    server = urlsplit(given or "redis://127.0.0.1:6379/15")
    db = 15 - 2 * WORKER_INDEX - purpose
    if db < 0:
        pytest.fail(f"worker {WORKER}: Redis has 16 databases, enough for 8 workers (run with -n 8 or fewer)")
    return urlunsplit((server.scheme, server.netloc, f"/{db}", "", ""))


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules()


# -- the store: one migration per worker ----------------------------------------------------------
#
# Migrating from nothing before every test (16 migrations, on each database) was most of the suite's time.
# SQLite: one file is migrated per worker, and each test gets a byte-for-byte copy of it. PostgreSQL: the
# worker's database is migrated once; each test then starts on the same schema with every table emptied
# (TRUNCATE … RESTART IDENTITY, so ids start at 1 again), alembic_version kept. A test that changed the schema
# (a downgrade and an upgrade, DDL of its own) is seen by a fingerprint of the catalog and the next test gets
# the schema migrated from nothing again.


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, to be copied: this worker's, made once."""
    template = tmp_path_factory.getbasetemp() / "migrated-template.db"
    engine = make_engine(f"sqlite:///{template}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file itself
    engine.dispose()
    for leftover in ("-wal", "-shm"):
        Path(f"{template}{leftover}").unlink(missing_ok=True)
    return template


def _migrated_sqlite(template: Path, path: Path) -> Engine:
    shutil.copyfile(template, path)
    return make_engine(f"sqlite:///{path}")


# Objects of the schema that DDL makes anew or changes (a new oid, a column's number or type) but TRUNCATE and
# the rows a test writes leave alone.
_SCHEMA_FINGERPRINT = text("""
SELECT md5(coalesce(string_agg(item, ',' ORDER BY item), '')) FROM (
    SELECT concat_ws(':', 'rel', c.oid, c.relkind, c.relname) AS item
      FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(':', 'att', a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
                     a.attisdropped, a.atthasdef)
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
    UNION ALL
    SELECT concat_ws(':', 'con', oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(':', 'def', d.oid) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
     WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(':', 'trg', t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(':', 'fn', oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(':', 'type', oid) FROM pg_type WHERE typnamespace = 'public'::regnamespace
    UNION ALL
    SELECT concat_ws(':', 'enum', e.oid, e.enumlabel) FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
     WHERE t.typnamespace = 'public'::regnamespace
) AS schema_items
""")



class _PostgresStore:
    """This worker's PostgreSQL database: migrated once, emptied before each test that uses it."""

    def __init__(self) -> None:
        from sqlalchemy.engine import make_url

        self.url = make_url(POSTGRES_URL).set(database=worker_database(make_url(POSTGRES_URL).database or "")) \
            .render_as_string(hide_password=False)
        self.fingerprint: str | None = None  # of the schema as migrated from nothing
        self.emptying: list[str] = []  # the statements that empty every table
        if WORKER:
            _create_database(worker_database(_base_database()))

    def engine(self) -> Engine:
        engine = make_engine(self.url, pool_size=5)
        if self.fingerprint is not None:
            with engine.begin() as conn:
                if conn.execute(_SCHEMA_FINGERPRINT).scalar_one() == self.fingerprint:
                    # A session the last test left open would make TRUNCATE wait for ever: fail, naming it.
                    conn.execute(text("SET LOCAL lock_timeout = '60s'"))
                    for statement in self.emptying:
                        conn.execute(text(statement))
                    return engine
        self._migrate_from_nothing(engine)
        return engine

    def _migrate_from_nothing(self, engine: Engine) -> None:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade(engine)
        with engine.begin() as conn:
            tables = list(conn.scalars(text(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version' ORDER BY tablename")))
            seeded = [t for t in tables if conn.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {t})"))]
            if seeded:  # emptying them would not give the database a migration leaves
                pytest.fail(f"the migrations leave rows in {seeded}: tests/conftest.py empties every table "
                            "before each test and has to be taught to put those rows back")
            # Sequences no column owns are not restarted by TRUNCATE … RESTART IDENTITY: restarted by name.
            loose = list(conn.scalars(text(
                "SELECT quote_ident(s.relname) FROM pg_class s WHERE s.relkind = 'S' "
                "AND s.relnamespace = 'public'::regnamespace AND NOT EXISTS (SELECT 1 FROM pg_depend d "
                "WHERE d.objid = s.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))")))
            self.emptying = ([f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"] if tables else []) + [
                f"ALTER SEQUENCE {sequence} RESTART" for sequence in loose]
            self.fingerprint = conn.execute(_SCHEMA_FINGERPRINT).scalar_one()


_POSTGRES: list[_PostgresStore] = []  # this worker's, made by the first test that needs it


def _base_database() -> str:
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES_URL).database or ""


def _create_database(name: str, template: str | None = None) -> None:
    """Database ``name`` made anew on the server of TEST_POSTGRES_URL (dropped first when it exists)."""
    server = make_engine(POSTGRES_URL)
    try:
        with server.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    finally:
        server.dispose()


def _postgres_engine() -> Engine:
    if not _POSTGRES:
        server = make_engine(POSTGRES_URL)
        try:
            with server.connect():
                pass
        except Exception as exc:
            if os.environ.get("REQUIRE_POSTGRES"):
                pytest.fail(f"PostgreSQL required but unreachable at {POSTGRES_URL}: {exc}")
            pytest.skip(f"PostgreSQL unreachable ({exc}); `make test` starts it")
        finally:
            server.dispose()
        _POSTGRES.append(_PostgresStore())
    return _POSTGRES[0].engine()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = _migrated_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path / "store.db")
    else:
        engine = _postgres_engine()
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(_sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    engine = _migrated_sqlite(_sqlite_template, tmp_path / "store.db")
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
    # Failed sign-ins counted in this app's memory: a test's wrong passwords never lock another test out.
    app = create_app(store, {"SECRET_KEY": "test-secret", "SESSION_COOKIE_SECURE": False,
                             "RECORDING_ROOTS": [str(recordings)], "TRANSCODE_DIR": str(tmp_path / "transcoded"),
                             "EVIDENCE_DIR": str(tmp_path / "evidence"), "SIGN_IN_STORAGE": "memory://"})
    return WebSite(app, store, 1, voice)


# -- the real PBX -------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """One test run at a time per PostgreSQL and Redis: a second run on the same machine waits for the first.

    The runs share the test databases (each drops and recreates its workers' databases, and empties Redis
    databases by number), so two at once would pull them from under each other. The run's main process holds
    the lock; its xdist workers run under it.
    """
    if WORKER:
        return
    key = hashlib.sha256(f"{POSTGRES_URL} {os.environ.get('TEST_REDIS_URL', '')}".encode()).hexdigest()[:12]
    lock = open(Path(tempfile.gettempdir()) / f"hotline-eval-tests-{key}.lock", "w")  # held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another test run is using the test PostgreSQL and Redis; waiting for it to end …", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    config.stash[_RUN_LOCK] = lock


_RUN_LOCK = pytest.StashKey[Any]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of a ``test_pbx_*`` module runs calls on a real Asterisk: marked ``pbx`` (``-m pbx``)."""
    for item in items:
        if item.path.name.startswith("test_pbx_"):
            item.add_marker(pytest.mark.pbx)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n`` (``--dist load``, xdist's default): tests go to the workers one by one as they free up, but a
    real-PBX module goes whole to one worker, biggest first, so that its module fixture (an Asterisk's worth of
    calls placed once, read by every test of the module) is set up once. Each worker has its own Asterisk (free
    ports, its own folder), databases and Redis databases, so two modules may run at once. (``--dist loadgroup``
    with ``xdist_group`` marks would do it, but pytest 9.2 ignores the node ids xdist rewrites for it:
    pytest-xdist issue 1386.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WholePbxModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if Path(module).name.startswith("test_pbx_") else nodeid

    return WholePbxModules(config, log)


def unavailable(why: str) -> NoReturn:
    """A real part this host cannot give (Asterisk, the install test's Debian): a failure under REQUIRE_PBX
    (``make test``), a skip otherwise."""
    if os.environ.get("REQUIRE_PBX"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def asterisk_build() -> None:
    """Asterisk built (once per machine)."""
    from real_pbx import PbxUnavailable, ensure_built

    try:
        ensure_built()
    except PbxUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def pbx(asterisk_build: None, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The suite's Asterisk: one for every test that does not restart it."""
    from real_pbx import running_pbx

    with running_pbx(tmp_path_factory.mktemp("pbx")) as running:
        yield running


_TEMPLATES: list[str] = []  # this worker's migrated template database, once made


def fresh_postgres_database(name: str) -> str:
    """A new, migrated database ``name`` (``name_gw1`` under xdist) on the test PostgreSQL server, for a process
    of its own: a copy of this worker's template database, migrated from nothing once (``CREATE DATABASE …
    TEMPLATE`` copies the schema, the alembic_version and the sequences as the migrations left them)."""
    from sqlalchemy.engine import make_url

    name = worker_database(name)
    try:
        if not _TEMPLATES:
            template = worker_database(f"{_base_database()}_template")
            _create_database(template)
            engine = make_engine(make_url(POSTGRES_URL).set(database=template).render_as_string(hide_password=False))
            upgrade(engine)
            engine.dispose()  # a template takes no connections while it is copied
            _TEMPLATES.append(template)
        _create_database(name, template=_TEMPLATES[0])
    except Exception as exc:
        pytest.fail(f"PostgreSQL required for the real-PBX tests but unusable at {POSTGRES_URL}: {exc}")
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
