"""More than one of everything, tried: two FastAGI servers and two workers on one PostgreSQL and one Redis.

Two ``hotline-eval agi`` processes (each on its own ``--listen`` port, with its own journal folder) take
simulated calls spread over both, as Asterisk spreads them with ``hagi://`` and DNS SRV or with the sample
dialplan's fallback (ivr/asterisk/extensions.conf): call *n* goes to server *n* mod 2, and a call whose
server refuses the connection is sent to the other one, as ``AGI()`` ends with ``AGISTATUS=FAILURE`` and
the dialplan (or the next SRV record) tries the other server. Mid-load one server is killed with SIGKILL (its
store process with it) and started again on the same journal folder, as systemd restarts it. A call in
progress on the killed server is lost as a call (Asterisk's ``AGI()`` returns, the caller is gone); what
its caller was acknowledged for is not: the restarted server takes over its dead journal stream.

Then, with ``hotline-eval callbacks run-due`` (what ``rq cron`` runs every minute) enqueueing the 差评's
callback requests, two ``hotline-eval worker`` processes serve the one queue. What it shows:

* every rating acknowledged to its caller (the caller heard the prompt after the rating: the reason menu,
  the thanks or the voice message's invitation, as tests/test_crash.py defines it) is stored, once, with
  the level given: one call row and one rating per uniqueid whichever server took it, and the calls come
  from two Asterisk hosts whose uniqueids differ only by their ``systemname`` prefix (``pbx-a-…``,
  ``pbx-b-…``, asterisk.conf), so that two calls with the same number are two calls;
* every 差评 has exactly one callback task;
* each task's request job ran once, on one of the two workers (each worker's log names the jobs it ran;
  each task has exactly one attempt), and both workers took jobs.

PostgreSQL only: SQLite has one writer at a time, so two servers' store processes and two workers on one
SQLite file would only take turns at its lock; scaling out means a database server.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import fresh_postgres_database, worker_redis_url
from rating_core.events.journal import streams
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import parse_rules
from rating_core.store.database import make_engine
from rating_core.store.models import Call, CallbackAttempt, CallbackTask, Rating
from real_pbx import ROOT, FastAgi, PbxCall, Robot, Service, pbx_rules, running, running_pbx, variant
from real_pbx import free_port as pbx_free_port
from simulators.asterisk_agi import Caller, CallResult, Press, run_call
from simulators.callers import SimulatedCall, plan_calls
from test_crash import TIME_SCALE, Server, heard, keys_only_rules
from waiting import HANG, wait_until

pytestmark = pytest.mark.postgres

AT_ONCE = 40  # callers on the line at once, over both servers
MAX_CALLS = 20_000  # planned; the load stops long before
ACKNOWLEDGING = ("tag_menu", "thanks", "thanks_negative", "voice_invite")
JOB_OK = re.compile(r"Job OK.*\((callback-request-\d+-\d+)\)")


def scale_out_rules() -> dict[str, Any]:
    """The key-only rules, calling back around the clock (the workers' jobs must dial whenever the test runs)."""
    document = keys_only_rules()
    document["callback"] |= {"calling_days": "every_day", "calling_windows": [{"start": "00:00", "end": "23:59:59"}]}
    return document


class ScaleOutServer(Server):
    """test_crash's server (its own ports and spool), on the scale-out rules."""

    def __init__(self, home: Path, database_url: str) -> None:
        super().__init__(home, database_url)
        self.rules_file.write_text(yaml.safe_dump(scale_out_rules(), allow_unicode=True), encoding="utf-8")


class Worker(Service):
    """``hotline-eval worker``: the RQ worker of the callback and transcript queues."""

    def __init__(self, home: Path, database_url: str) -> None:
        super().__init__(home, database_url, scale_out_rules(), ["worker"], name="worker", ready="Listening on")

    def jobs_run(self) -> list[str]:
        """The ids of the jobs this worker finished, one per time it ran one, from its log."""
        return [match.group(1) for match in map(JOB_OK.search, self.log().splitlines()) if match]


class SpreadLoad:
    """Callers a few dozen at once, spread over the servers, until :meth:`stop`.

    Call *n* goes to server *n* mod 2; refused there (nothing listening: the server is down), it goes to the
    other, as the dialplan's fallback does on ``AGISTATUS=FAILURE``. A call cut off mid-way is not sent again:
    Asterisk's ``AGI()`` returns ``SUCCESS`` when the server closes on it (res_agi.c: "Program terminated").
    """

    def __init__(self, servers: list[ScaleOutServer], seed: int) -> None:
        self.calls = plan_calls(parse_rules(scale_out_rules()), MAX_CALLS, seed, hotlines=["12345", "12333"])
        # From two Asterisk hosts whose channel counters run alike, each with its systemname (asterisk.conf):
        # calls 2k and 2k+1 have the same number, "pbx-a-" and "pbx-b-" before it.
        started = int(time.time())
        for n, call in enumerate(self.calls):
            call.uniqueid = f"pbx-{'ab'[n % 2]}-{started}.{n // 2}"
        self.servers = servers
        self.taken_by: dict[str, int] = {}  # uniqueid: the index of the server that answered it
        self.resent = 0
        self._stopped = asyncio.Event()
        self._task = asyncio.create_task(self._play())

    @property
    def placed(self) -> list[SimulatedCall]:
        return [call for call in self.calls if call.result is not None]

    async def until(self, calls: int) -> None:
        """Wait until ``calls`` more calls have been played (so the load is well under way)."""
        target = len(self.placed) + calls
        await wait_until(lambda: len(self.placed) >= target or self._task.done(), HANG,
                         explain=lambda: f"{len(self.placed)} of {target} calls played")

    async def stop(self) -> list[SimulatedCall]:
        self._stopped.set()
        await self._task
        return self.placed

    async def _play(self) -> None:
        gate = asyncio.Semaphore(AT_ONCE)

        async def one(n: int, call: SimulatedCall) -> None:
            async with gate:
                if self._stopped.is_set():
                    return
                first = n % len(self.servers)
                for index in (first, 1 - first):
                    call.result = await self._dial(self.servers[index], call)
                    if call.result.channel.commands or not call.result.error:
                        self.taken_by[call.uniqueid] = index
                        return
                    self.resent += index == first  # refused: the fallback tries the other server

        await asyncio.gather(*(one(n, call) for n, call in enumerate(self.calls)))

    @staticmethod
    async def _dial(server: ScaleOutServer, call: SimulatedCall) -> CallResult:
        return await run_call("127.0.0.1", server.port, call.caller, uniqueid=call.uniqueid,
                              script=f"postcall?hotline={call.expected.hotline}", time_scale=TIME_SCALE,
                              timeout=HANG)


def run_due(worker: Worker) -> str:
    """``hotline-eval callbacks run-due``: the sweep ``rq cron`` runs, enqueueing every due task's request."""
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "hotline-eval"), "callbacks", "run-due"], env=worker.env,
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


async def test_two_servers_and_two_workers_store_each_rating_once_and_call_each_complaint_back_once(
    tmp_path: Path,
) -> None:
    database = fresh_postgres_database("hotline_eval_scale_out")
    queue_redis = redis.Redis.from_url(worker_redis_url(1))
    queue_redis.flushdb()  # this worker's services database: no job of an earlier run
    servers = [ScaleOutServer(tmp_path / f"agi-{n}", database) for n in range(2)]
    workers = [Worker(tmp_path / f"worker-{n}", database) for n in range(2)]
    store = RatingStore(make_engine(database), parse_rules(scale_out_rules()))
    seed = 23
    try:
        for process in [*servers, *workers]:
            await asyncio.to_thread(process.start)
        load = SpreadLoad(servers, seed)
        await load.until(random.Random(seed).randrange(40, 100))  # well under way on both servers
        await asyncio.to_thread(servers[0].kill)
        killed_with = len(load.placed)
        await load.until(40)  # the other server takes every call meanwhile
        await asyncio.to_thread(servers[0].start)  # as systemd restarts it
        await load.until(60)
        calls = await load.stop()
        await wait_until(lambda: len(streams(servers[0].journal)) == 1, HANG,
                         explain=lambda: f"dead streams not taken over: {streams(servers[0].journal)}")
        for server in servers:
            assert server.stop() == 0  # each drains its journal into the store

        negatives = stored_once(store, calls)
        assert "enqueued" in run_due(workers[0])  # the workers take the requests as rq cron's sweep enqueues them
        await wait_until(lambda: sum(len(w.jobs_run()) for w in workers) >= len(negatives), HANG,
                         explain=lambda: f"{len(negatives)} tasks, jobs run: {[w.jobs_run() for w in workers]}")
        tasks = attempts_per_task(store)
        for worker in workers:
            assert worker.stop() == 0
    finally:
        for process in [*servers, *workers]:
            process.kill()  # whatever a failure left running
        store.engine.dispose()
        queue_redis.flushdb()
        queue_redis.close()

    # The load: on both servers, the kill in the middle of it, refused calls sent to the other server.
    taken = Counter(load.taken_by.values())
    assert taken[0] > 0 and taken[1] > 0 and killed_with < len(calls) and load.resent > 0, (taken, load.resent)
    assert "taking over" in servers[0].log()
    # Two hosts' calls with the same number, told apart by their systemname, were both stored.
    assert twins(calls), "no call with the same number from both hosts was rated"
    # Every 差评 was called back once: one task each, its one request job run once, on either worker.
    assert sorted(tasks) == sorted(negatives.values()) and all(n == 1 for n in tasks.values()), tasks
    ran = [job for worker in workers for job in worker.jobs_run()]
    assert sorted(ran) == sorted(f"callback-request-{task}-1" for task in negatives.values()), ran
    assert all(worker.jobs_run() for worker in workers), "one worker took every job"


def twins(calls: list[SimulatedCall]) -> list[tuple[str, str]]:
    """The pairs of acknowledged calls from the two hosts with the same number ("pbx-a-N" and "pbx-b-N")."""
    acknowledged = {call.uniqueid for call in calls if heard(call, *ACKNOWLEDGING)}
    return [(uid, "pbx-b-" + uid.removeprefix("pbx-a-")) for uid in acknowledged
            if uid.startswith("pbx-a-") and "pbx-b-" + uid.removeprefix("pbx-a-") in acknowledged]


def stored_once(store: RatingStore, calls: list[SimulatedCall]) -> dict[str, int]:
    """Check every acknowledged rating is stored, once, with its level, and every 差评 has one task; the 差评
    calls' uniqueids and their tasks' ids."""
    with store.sessions() as session:
        per_uniqueid = counted(session, Call.uniqueid)
        ratings_per_call = counted(session, Rating.call_id)
        tasks_per_rating = counted(session, CallbackTask.rating_id)
        rows = {call.uniqueid: call for call in session.scalars(select(Call))}
        acknowledged = [call for call in calls if heard(call, *ACKNOWLEDGING)]
        assert acknowledged
        for call in acknowledged:
            row = rows.get(call.uniqueid)
            assert row is not None and row.rating is not None, f"{call.uniqueid}: acknowledged, not stored"
            assert per_uniqueid[call.uniqueid] == 1 and ratings_per_call[row.id] == 1, call.uniqueid
            assert row.rating.level == call.expected.level, call.uniqueid
        negatives: dict[str, int] = {}
        for row in rows.values():
            if row.rating is not None and row.rating.is_negative:
                tasks = tasks_per_rating[row.rating.id]
                assert tasks == 1, f"{row.uniqueid}: a 差评 with {tasks} tasks"
                assert row.rating.callback_task is not None
                negatives[row.uniqueid] = row.rating.callback_task.id
        assert negatives
        return negatives


def attempts_per_task(store: RatingStore) -> dict[int, int]:
    """Each callback task's id and how many attempts its request jobs queued for the dialer."""
    with store.sessions() as session:
        attempts = counted(session, CallbackAttempt.task_id)
        return {task_id: attempts[task_id] for task_id in session.scalars(select(CallbackTask.id))}


def counted(session: Session, column: Any) -> Counter[Any]:
    """How many rows hold each value of ``column``."""
    return Counter({value: n for value, n in session.execute(select(column, func.count()).group_by(column))})


# -- the sample dialplan's fallback, on a real Asterisk ----------------------------------------------------


def refusal_noted(robot: Robot, call: PbxCall) -> bool:
    """Whether [hotline-eval-agi] found the first server refusing ``call`` and went on to the other."""
    return any(m.name == "Newexten" and m.get("Uniqueid") == call.uniqueid and m.get("Application") == "NoOp"
               and "refused the call" in (m.get("AppData") or "") for m in robot.events)


@pytest.mark.pbx
async def test_the_sample_dialplan_sends_a_refused_call_to_the_other_server_and_a_served_one_nowhere(
    asterisk_build: None, tmp_path: Path
) -> None:
    """The sample's [hotline-eval-agi] with HOTLINE_EVAL_AGI_2 set (as channel variables here): a call goes to
    one of the two servers, and to the other only when the first refused the connection; a call that was
    served and ended with AGISTATUS=FAILURE (a prompt that would not play) is not evaluated again. (That one
    the server's HANGUP ends; the dialplan's time guard is for a server that closes without hanging up after
    a failed command: the next test.)"""
    database = fresh_postgres_database("hotline_eval_scale_out_pbx")
    closed = f"agi://127.0.0.1:{pbx_free_port()}"  # nothing listens there: a server that is down
    with running_pbx(tmp_path / "pbx") as pbx:
        rules = pbx_rules(pbx)
        missing = pbx.sounds / "hotline-eval-missing" / "12345"  # its "thanks" will not play
        missing.mkdir(parents=True)
        for prompt in (pbx.sounds / "hotline-eval" / "12345").glob("*.wav"):
            if prompt.name != "thanks.wav":
                (missing / prompt.name).symlink_to(prompt)
        variant(rules, "12345-missing", of="12345", sound_dir="hotline-eval-missing/12345")
        servers = [FastAgi(pbx, tmp_path / f"agi-{n}", database, rules, port=pbx_free_port()) for n in range(2)]
        with running(servers[0]), running(servers[1]):
            async with Robot(pbx) as robot:

                def caller(first: str, other: str, key: str) -> Caller:
                    return Caller([Press(key)], callerid="13812345678", variables={
                        "EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询", "HOTLINE_EVAL_AGI": first,
                        "HOTLINE_EVAL_AGI_2": other})

                both_down = await robot.call(caller(closed, closed, "1"), "12345")
                one_down = [await robot.call(caller(closed, servers[0].url, "2"), "12345") for _ in range(2)]
                served_failing = await robot.call(caller(servers[0].url, servers[1].url, "2"), "12345-missing")
                for call in (both_down, *one_down, served_failing):
                    await robot.finished(call)
                noted = {call.uniqueid: refusal_noted(robot, call) for call in (both_down, served_failing)}
    store = RatingStore(make_engine(database), parse_rules(rules))
    try:
        with store.sessions() as session:
            stored = counted(session, Call.uniqueid)
            levels = {uniqueid: level for uniqueid, level in session.execute(select(Call.uniqueid, Rating.level)
                                                                              .join(Rating))}
    finally:
        store.engine.dispose()
    # Both down: the other tried at once, then nothing stored and the dialplan goes on.
    assert noted[both_down.uniqueid] and both_down.agistatus == "FAILURE" and both_down.commands == []
    assert stored[both_down.uniqueid] == 0
    # One down: whichever was picked first, the call is served once, by the live server.
    for call in one_down:
        assert call.commands and stored[call.uniqueid] == 1 and levels[call.uniqueid] == "satisfied", call
    # Served, its FAILURE after the call: not sent to the other server.
    assert served_failing.agistatus == "FAILURE" and not noted[served_failing.uniqueid], served_failing
    assert stored[served_failing.uniqueid] == 1
    assert sum(served_failing.uniqueid in server.log() for server in servers) == 1


class StandIn:
    """A FastAGI server that takes a call, keeps it ``hold`` seconds, then runs one command that fails (a sound
    that is not there) and closes without hanging up: a server that served the call, then broke. It notes each
    call it was given in ``given``, (its name, the call's uniqueid), in order, beside the other stand-ins'."""

    def __init__(self, name: str, hold: float, given: list[tuple[str, str]]) -> None:
        self.name, self.hold, self.given = name, hold, given
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"agi://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> StandIn:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        environment = (await reader.readuntil(b"\n\n")).decode()
        uniqueid = re.search(r"^agi_uniqueid: (.*)$", environment, flags=re.M)
        assert uniqueid, environment
        self.given.append((self.name, uniqueid.group(1)))
        await asyncio.sleep(self.hold)
        writer.write(b'STREAM FILE hotline-eval-nowhere/none ""\n')
        await writer.drain()
        await reader.readline()  # 200 result=-1 endpos=0
        writer.close()


@pytest.mark.pbx
async def test_the_sample_dialplan_tries_the_other_server_only_after_a_quick_failure(pbx: Any) -> None:
    """[hotline-eval-agi]'s time guard: AGISTATUS=FAILURE within 3 s of the AGI's start is taken for a server that
    could not serve (the other is tried); later, for one that served the call and then broke (the caller has
    rated or hung up: the other would ask again, so nothing more)."""
    given: list[tuple[str, str]] = []
    async with (StandIn("quick", 0, given) as quick, StandIn("late", 5, given) as late,
                StandIn("other", 0, given) as other, Robot(pbx) as robot):

        def servers(call: PbxCall) -> list[str]:
            return [name for name, uniqueid in given if uniqueid == call.uniqueid]

        # The Gosub picks either server first at random (a fair coin): a call is placed until its stand-in was the
        # first pick, 30 tries at most (one chance in a billion of 30 tails).
        tried = {}
        for first in (quick, late):
            for _ in range(30):
                call = await robot.finished(await robot.call(Caller([], callerid="13812345678", variables={
                    "EVAL_AGENT": "1024", "HOTLINE_EVAL_AGI": first.url, "HOTLINE_EVAL_AGI_2": other.url}), "12345"))
                if servers(call)[:1] == [first.name]:
                    tried[first.name] = servers(call)
                    break
            else:
                raise AssertionError(f"{first.name} was never tried first in 30 calls: {given}")
    assert tried == {"quick": ["quick", "other"],  # failed at once: sent on to the other
                     "late": ["late"]}  # failed after serving 5 s: not evaluated again
