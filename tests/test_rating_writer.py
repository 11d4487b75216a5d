"""The rating writer: no AGI turn waits for the database, nothing handed to it is lost.

Calls run over real FastAGI TCP against a real store (SQLite and PostgreSQL);
the store process is a real child process, killed for real.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ivr.rating_writer import RatingWriter, ThreadApplier
from ivr.service import running_ivr
from ivr.simulated_asterisk import Caller, Press, run_call
from ivr.store_process import StoreProcess
from rating_core.call_events import CallEnded, CallEvent, CallStarted, RatingGiven
from rating_core.database import make_engine
from rating_core.models import Call, Rating
from rating_core.spool import Spool
from rating_core.store import RatingStore, Rejected
from waiting import wait_until

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
VARS = {"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询"}


class RecordingApplier(ThreadApplier):
    """The real store, noting each batch it is given (as the kinds of its events). A gated one commits
    only once the test opens its gate: a database that is slow to commit."""

    def __init__(self, store: RatingStore, *, gated: bool = False) -> None:
        super().__init__(store)
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()

    async def apply(self, events: Sequence[CallEvent]) -> list[Rejected]:
        self.batches.append([event.kind for event in events])
        await self.gate.wait()
        return await super().apply(events)


def stored_calls(store: RatingStore) -> dict[str, Call]:
    with store.sessions() as s:
        return {c.uniqueid: c for c in s.scalars(select(Call).options(selectinload(Call.rating)))}


async def test_the_call_plays_on_while_its_rating_is_being_committed(store: RatingStore, spool: Spool) -> None:
    """The flow hands the rating over and plays the thanks at once; the socket closes only once it is durable."""
    applier = RecordingApplier(store, gated=True)
    async with running_ivr(store, spool, "127.0.0.1", 0) as ivr:
        ivr.writer.applier = applier
        call = asyncio.create_task(run_call("127.0.0.1", ivr.server.port, Caller([Press("2")], variables=VARS),
                                            uniqueid="1795316432.301"))
        # CallStarted, RatingGiven and CallEnded all handed over: the flow has run to its end...
        await wait_until(lambda: ivr.writer.pending == 3)
        assert len(applier.batches) == 1 and not call.done()  # ...while the first commit still waits, socket open
        assert "1795316432.301" not in stored_calls(store)
        applier.gate.set()
        result = await call
    commands = [" ".join(words) for words in result.channel.commands]
    assert any(c.startswith("STREAM FILE hotline-eval/12345/thanks") for c in commands) and commands[-1] == "HANGUP"
    assert result.closed_by_server and not result.error
    row = stored_calls(store)["1795316432.301"]
    assert (row.rating.level, row.end_reason, row.agent_id) == ("satisfied", "completed", "1024")
    assert ivr.writer.pending == 0 and not spool.has_pending()


async def test_a_dead_database_costs_one_attempt_then_events_go_straight_to_the_spool(
    rules, sqlite_engine, tmp_path, caplog
) -> None:
    dead = RatingStore(make_engine("postgresql+psycopg://eval@127.0.0.1:9/nothing?connect_timeout=1"), rules)
    spool = Spool(tmp_path / "spool")
    applier = RecordingApplier(dead)
    writer = RatingWriter(dead, spool, retry_after=60, applier=applier)
    for n in range(3):  # three calls, one after the other: three batches
        await writer.write(CallStarted(f"d.{n}", "12345", T0))
        await writer.write(RatingGiven(f"d.{n}", "very_dissatisfied", "dtmf", T0))
        await writer.write(CallEnded(f"d.{n}", "completed", T0, "rated"))
    await writer.stop()
    assert len(applier.batches) == 1  # the rest waited out retry_after in the spool, not in connect timeouts
    assert writer.spooled == 9 and writer.pending == 0
    assert "store unavailable, retried in" in caplog.text and "d.2" in caplog.text
    alive = RatingStore(sqlite_engine, rules)
    assert alive.replay_spool(spool) == 9
    levels = {uid: c.rating.level for uid, c in stored_calls(alive).items()}
    assert levels == {"d.0": "very_dissatisfied", "d.1": "very_dissatisfied", "d.2": "very_dissatisfied"}


async def test_an_event_the_store_refuses_is_spooled_with_the_rest_of_its_call(
    store: RatingStore, spool: Spool, caplog
) -> None:
    """One batch, two calls: a rating for a call the store never saw is refused; its neighbour is written."""
    writer = RatingWriter(store, spool)
    a = writer.submit(CallStarted("ok.1", "12345", T0))
    b = writer.submit(RatingGiven("ghost.1", "satisfied", "dtmf", T0))
    c = writer.submit(RatingGiven("ok.1", "basic", "dtmf", T0))
    d = writer.submit(CallEnded("ghost.1", "completed", T0))
    await asyncio.gather(a, b, c, d)
    await writer.stop()
    assert stored_calls(store)["ok.1"].rating.level == "basic"
    assert writer.spooled == 2 and "no call with uniqueid 'ghost.1'" in caplog.text
    assert [e.kind for e in Spool._read(spool.pending_files()[0])] == ["rating_given", "call_ended"]


def test_apply_batch_refuses_a_bad_event_and_its_calls_later_events_only(store: RatingStore) -> None:
    rejected = store.apply_batch([
        CallStarted("x.1", "12345", T0),
        RatingGiven("nobody", "satisfied", "dtmf", T0),
        RatingGiven("x.1", "nonsense-level", "dtmf", T0),
        CallEnded("x.1", "completed", T0),
        CallStarted("y.1", "12345", T0),
        RatingGiven("y.1", "very_satisfied", "dtmf", T0),
    ])
    assert [r.index for r in rejected] == [1, 2, 3]
    assert "UnknownCall" in rejected[0].reason and rejected[2].reason == "an earlier event of this call was refused"
    calls = stored_calls(store)
    assert calls["x.1"].rating is None and calls["x.1"].ended_at is None  # the end stays with its refused rating
    assert calls["y.1"].rating.level == "very_satisfied"


async def test_the_store_process_writes_calls_and_comes_back_after_being_killed(store: RatingStore, spool: Spool) -> None:
    async with running_ivr(store, spool, "127.0.0.1", 0, store_process=True) as ivr:
        applier = ivr.writer.applier
        assert isinstance(applier, StoreProcess) and applier.pid not in (None, os.getpid())
        first = await run_call("127.0.0.1", ivr.server.port, Caller([Press("1")], variables=VARS),
                               uniqueid="1795316432.401")
        os.kill(applier.pid, signal.SIGKILL)
        await asyncio.to_thread(applier._process.join, 10)  # type: ignore[union-attr]
        second = await run_call("127.0.0.1", ivr.server.port, Caller([Press("5"), Press("1")], variables=VARS),
                                uniqueid="1795316432.402")
        assert applier.started == 2
    assert first.closed_by_server and second.closed_by_server
    calls = stored_calls(store)
    assert calls["1795316432.401"].rating.level == "very_satisfied"
    assert (calls["1795316432.402"].rating.level, calls["1795316432.402"].rating.reason_tags) == (
        "very_dissatisfied", ["attitude"])
    assert not spool.has_pending()


async def test_a_store_process_stuck_on_a_locked_database_is_killed_and_its_batch_spooled(
    rules, sqlite_engine, tmp_path, caplog
) -> None:
    store = RatingStore(sqlite_engine, rules)
    spool = Spool(tmp_path / "spool")
    lock = sqlite3.connect(str(tmp_path / "store.db"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the file: the child waits on SQLite's busy timeout
    try:
        async with running_ivr(store, spool, "127.0.0.1", 0, store_process=True, write_timeout=1.0) as ivr:
            applier = ivr.writer.applier
            stuck = applier.pid
            result = await run_call("127.0.0.1", ivr.server.port, Caller([Press("4"), Press("3")], variables=VARS),
                                    uniqueid="1795316432.501")
            assert result.closed_by_server and not result.error
            assert "store process %d is stuck; killing it" % stuck in caplog.text
            assert spool.has_pending() and ivr.writer.spooled >= 1
            lock.execute("ROLLBACK")
            assert await ivr.writer.replay_once() > 0
    finally:
        lock.close()
    with store.sessions() as s:
        rating = s.scalars(select(Rating).join(Call).where(Call.uniqueid == "1795316432.501")).one()
    assert (rating.level, rating.reason_tags) == ("dissatisfied", ["unresolved"])


@pytest.mark.parametrize(("linger", "batches"), [
    (0.0, [["call_started"], ["rating_given", "call_ended"]]),  # written as soon as the writer is free
    (0.5, [["call_started", "rating_given", "call_ended"]]),  # the FastAGI server's: a batch gathers first
])
async def test_a_lingering_writer_gathers_a_batch_while_the_store_is_idle(
    store: RatingStore, spool: Spool, linger: float, batches: list[list[str]]
) -> None:
    applier = RecordingApplier(store)
    writer = RatingWriter(store, spool, applier=applier, linger=linger)
    writer.submit(CallStarted("l.1", "12345", T0))
    await asyncio.sleep(0)  # the writer takes the first event
    writer.submit(RatingGiven("l.1", "satisfied", "dtmf", T0))
    await writer.write(CallEnded("l.1", "completed", T0))
    await writer.stop()
    assert applier.batches == batches
    assert stored_calls(store)["l.1"].rating.level == "satisfied"
