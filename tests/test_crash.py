"""Nothing a caller was thanked for is lost: the FastAGI server killed under load, for real.

``hotline-eval agi`` runs as a process of its own, on SQLite and on PostgreSQL, with simulated callers
over TCP. It is killed with SIGKILL at a random moment (its store process with it), started again on the
same journal folder, and then stopped as a service manager stops it. Then, for every call whose caller
heard the prompt after the rating (the reason menu or the thanks), the store has that rating; for every
caller who heard the voice message's invitation, the reason too; every 差评 has its callback task;
every call the server began has its end. The same with only the store process killed, with a private
PostgreSQL stopped and started again under the server, and with ``db replay-spool`` run by hand during
the load.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from conftest import POSTGRES_URL, fresh_postgres_database
from rating_core.events.journal import streams
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import DEFAULT_RULES_FILE, parse_rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from rating_core.store.models import Call, Rating
from real_pbx import ROOT, Service
from simulators.asterisk_agi import run_call
from simulators.callers import SimulatedCall, plan_calls
from waiting import HANG

MAX_CALLS = 20_000  # planned; the load stops long before
AT_ONCE = 60
TIME_SCALE = 0.01  # prompts at 1/100 of their length: a call lasts a fraction of a second, the load seconds


def keys_only_rules() -> dict[str, Any]:
    """The shipped rules, speech off (no models to load), for the two key-only hotlines."""
    document = copy.deepcopy(yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8")))
    for section in document["hotlines"].values():
        section["speech"] = {"language": None}
    return document


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server(Service):
    """``hotline-eval agi`` on a port of its own, its journal in ``home/spool``."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.port = free_port()
        super().__init__(home, database_url, keys_only_rules(),
                         ["agi", "--listen", f"127.0.0.1:{self.port}", "--audiosocket", f"127.0.0.1:{free_port()}"],
                         name="fastagi", ready="FastAGI server listening")

    @property
    def journal(self) -> Path:
        return self.home / "spool"

    def store_process(self) -> int:
        """The pid of the server's store process (its child that is not multiprocessing's tracker)."""
        assert self.process is not None
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if parent == self.process.pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                return int(stat.parent.name)
        raise AssertionError("the server has no store process")


class Load:
    """Callers, a few dozen at once, until :meth:`stop` (a call the dead server refuses is let be)."""

    def __init__(self, server: Server, seed: int) -> None:
        self.calls = plan_calls(parse_rules(keys_only_rules()), MAX_CALLS, seed, hotlines=["12345", "12333"])
        self._stopped = asyncio.Event()
        self._task = asyncio.create_task(self._play(server))

    @property
    def placed(self) -> list[SimulatedCall]:
        return [call for call in self.calls if call.result is not None]

    async def until(self, calls: int) -> None:
        """Wait until ``calls`` more calls have been played (so the load is well under way)."""
        target = len(self.placed) + calls
        while len(self.placed) < target and not self._task.done():
            await asyncio.sleep(0.01)

    async def stop(self) -> list[SimulatedCall]:
        self._stopped.set()
        await self._task
        return self.placed

    async def _play(self, server: Server) -> None:
        gate = asyncio.Semaphore(AT_ONCE)

        async def one(call: SimulatedCall) -> None:
            async with gate:
                if not self._stopped.is_set():
                    await play(server, call)

        await asyncio.gather(*(one(call) for call in self.calls))


async def play(server: Server, call: SimulatedCall) -> None:
    call.result = await run_call("127.0.0.1", server.port, call.caller, uniqueid=call.uniqueid,
                                 script=f"postcall?hotline={call.expected.hotline}", time_scale=TIME_SCALE,
                                 timeout=HANG)


def heard(call: SimulatedCall, *prompts: str) -> bool:
    """Whether the server sent the caller one of these prompts (so it had read what came before)."""
    assert call.result is not None
    return any(f"/{prompt} " in " ".join(words) + " " for words in call.result.channel.commands for prompt in prompts)


def check(store: RatingStore, calls: list[SimulatedCall]) -> dict[str, int]:
    """Every rating a caller was thanked for is stored, with its reason and its task; every call has its end."""
    with store.sessions() as session:
        stored = {c.uniqueid: c for c in session.scalars(
            select(Call).options(selectinload(Call.rating).selectinload(Rating.callback_task)))}
        seen = {"thanked": 0, "stored": len(stored), "crash_ended": 0}
        for call in calls:
            row = stored.get(call.uniqueid)
            if heard(call, "tag_menu", "thanks", "thanks_negative", "voice_invite"):
                seen["thanked"] += 1
                assert row is not None and row.rating is not None, f"{call.uniqueid}: thanked, not stored"
                assert row.rating.level == call.expected.level, call.uniqueid
                if heard(call, "voice_invite") and call.expected.tags:
                    assert tuple(row.rating.reason_tags) == call.expected.tags, call.uniqueid
            if row is None:
                continue
            assert row.ended_at is not None, f"{call.uniqueid}: stored without its end ({row.progress})"
            seen["crash_ended"] += row.end_reason == "server_crash"
            if row.rating is not None and row.rating.is_negative:
                assert row.rating.callback_task is not None, f"{call.uniqueid}: a 差评 without its task"
    return seen


def settled(server: Server) -> None:
    """Wait until the restarted server has taken over and applied every dead stream (its own stays)."""
    deadline = time.monotonic() + HANG
    while len(streams(server.journal)) > 1:
        assert time.monotonic() < deadline, f"dead streams never applied: {streams(server.journal)}"
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    else:
        yield fresh_postgres_database("hotline_eval_crash")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_server_killed_under_load_loses_nothing_a_caller_was_thanked_for(
    database: str, tmp_path: Path, seed: int
) -> None:
    server = Server(tmp_path / "home", database)
    server.start()
    try:
        load = Load(server, seed)
        await load.until(random.Random(seed).randrange(50, 400))  # a random point of the load
        await asyncio.to_thread(server.kill)
        killed_with = len(load.placed)
        await asyncio.to_thread(server.start)  # as systemd restarts it; the callers still dialling meet it
        await load.until(100)
        calls = await load.stop()
        await asyncio.to_thread(settled, server)
    finally:
        assert server.stop() == 0
    seen = checked(database, calls)
    assert seen["thanked"] > 0 and killed_with < len(calls)  # killed mid-load, not before it or after
    assert not streams(server.journal)  # the clean stop applied and deleted its own
    assert "taking over" in server.log()


def checked(database: str, calls: list[SimulatedCall]) -> dict[str, int]:
    store = RatingStore(make_engine(database), parse_rules(keys_only_rules()))
    try:
        return check(store, calls)
    finally:
        store.engine.dispose()


async def test_the_store_process_killed_under_load_loses_nothing(tmp_path: Path) -> None:
    database = fresh_postgres_database("hotline_eval_crash")
    server = Server(tmp_path / "home", database)
    server.start()
    try:
        load = Load(server, 7)
        await load.until(100)
        os.kill(server.store_process(), signal.SIGKILL)
        await load.until(200)
        calls = await load.stop()
    finally:
        assert server.stop() == 0
    seen = checked(database, calls)
    assert seen["stored"] == len(calls) and seen["crash_ended"] == 0  # the server lived: every call ended itself
    assert "store process died" in server.log() and not streams(server.journal)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, to stop and start under a running server."""

    def __init__(self, folder: Path) -> None:
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1]).parent
        self.data = folder / "data"
        self.port = free_port()
        folder.mkdir(parents=True)
        shutil.chown(folder, "postgres")
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])

    def _as_postgres(self, command: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=HANG)

    def start(self) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.data / "log"),
                           "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start"])

    def stop(self) -> None:
        """As a crash or a failover stops it: at once, connections cut."""
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    if shutil.which("runuser") is None or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL server binaries here")
    if POSTGRES_URL.startswith("sqlite"):  # pragma: no cover - the suite always has PostgreSQL
        pytest.skip("PostgreSQL tests are off")
    cluster = PrivatePostgres(Path(f"/tmp/hotline-eval-pg-{os.getpid()}-{tmp_path.name}"))
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(cluster.bin / "pg_ctl"), "-D", str(cluster.data),
                        "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(cluster.data.parent, ignore_errors=True)


async def test_the_database_stopped_and_started_under_load_loses_nothing(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    engine = make_engine(private_postgres.url)
    upgrade(engine)
    engine.dispose()
    server = Server(tmp_path / "home", private_postgres.url)
    server.start()
    try:
        load = Load(server, 11)
        await load.until(50)
        await asyncio.to_thread(private_postgres.stop)
        down = len(load.placed)
        await load.until(300)  # callers go on rating while it is down; the journal keeps it all
        await asyncio.to_thread(private_postgres.start)
        await load.until(100)
        calls = await load.stop()
    finally:
        assert server.stop() == 0
    seen = checked(private_postgres.url, calls)
    assert seen["stored"] == len(calls) and down < len(calls) - 300
    assert "the journal keeps every event until it is back" in server.log() and not streams(server.journal)


async def test_replay_spool_by_hand_during_load_leaves_the_live_journal_alone(tmp_path: Path) -> None:
    database = fresh_postgres_database("hotline_eval_crash")
    server = Server(tmp_path / "home", database)
    replays: list[str] = []

    def replay() -> None:
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "hotline-eval"), "db", "replay-spool"], env=server.env,
                              capture_output=True, text=True, timeout=HANG)
        replays.append(done.stdout + done.stderr)

    server.start()
    try:
        load = Load(server, 13)
        await load.until(20)
        for _ in range(3):
            await asyncio.to_thread(replay)
        calls = await load.stop()
    finally:
        assert server.stop() == 0
    seen = checked(database, calls)
    assert seen["stored"] == len(calls) and len(replays) == 3
    assert all("replayed 0 journal line(s)" in out for out in replays), replays
