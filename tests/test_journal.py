"""The journal: a rating on disk before the caller hears the next prompt, applied to the store exactly once.

Calls run over real FastAGI TCP against a real store (SQLite and PostgreSQL); the journal is on a real
disk (and a real full tmpfs where this host may mount one); dead servers are real processes killed with
SIGKILL, whose locks the kernel lets go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError, InternalError, OperationalError, ProgrammingError
from sqlalchemy.orm import selectinload

from ivr.agi_session import AgiSession
from ivr.rating_writer import RatingWriter
from ivr.service import running_ivr
from rating_core.events.call_events import CallEnded, CallEvent, CallStarted, RatingGiven, ReasonGiven, to_record
from rating_core.events.dead_letters import DeadLetters
from rating_core.events.journal import Journal, JournalFull, OpenCalls, Position, claim_dead, segments, streams
from rating_core.ratings.journal_replay import JournalApplier, replay_dead_journals
from rating_core.ratings.lifecycle import default_unrated
from rating_core.ratings.store import RatingStore, store_fault
from rating_core.store.models import Call, CallbackTask, OutboxEvent, RatingChange
from simulators.asterisk_agi import Caller, HangUp, Press, run_call
from tmpfs import mounted
from waiting import HANG, wait_until

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
VARS = {"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询"}
ROOT = Path(__file__).resolve().parent.parent


def stored_calls(store: RatingStore) -> dict[str, Call]:
    with store.sessions() as s:
        return {c.uniqueid: c for c in s.scalars(select(Call).options(selectinload(Call.rating)))}


def count(store: RatingStore, model: type) -> int:
    with store.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def commands(result) -> list[str]:
    return [" ".join(words) for words in result.channel.commands]


class GatedAppend:
    """The journal's append, held at a gate for any batch with a rating: a disk slow to fsync."""

    def __init__(self, journal: Journal) -> None:
        self.append = journal.append
        self.gate = threading.Event()
        self.waiting = threading.Event()
        journal.append = self

    def __call__(self, events: Sequence[CallEvent]) -> Position:
        if any(isinstance(event, RatingGiven) for event in events):
            self.waiting.set()
            self.gate.wait(HANG)
        return self.append(events)


async def test_the_caller_hears_nothing_more_until_the_rating_is_on_disk(
    store: RatingStore, journal: Journal, monkeypatch
) -> None:
    """What the server sends and when the journal has the rating, in one log: the reason menu comes after."""
    log: list[str] = []
    send = AgiSession.command

    async def logged(self, *words):
        log.append(" ".join(map(str, words)))
        return await send(self, *words)

    monkeypatch.setattr(AgiSession, "command", logged)
    async with running_ivr(store, journal, "127.0.0.1", 0) as ivr:
        gated = GatedAppend(journal)
        call = asyncio.create_task(run_call("127.0.0.1", ivr.server.port,
                                            Caller([Press("5"), Press("1")], variables=VARS),
                                            uniqueid="1795316432.301"))
        await asyncio.to_thread(gated.waiting.wait, HANG)
        for _ in range(20):  # every chance to run ahead (it must not)
            await asyncio.sleep(0.01)
        log.append("-- the rating reaches the disk --")
        gated.gate.set()
        result = await call
    assert result.closed_by_server and not result.error
    disk = log.index("-- the rating reaches the disk --")
    assert "menu" in log[disk - 1] and "tag_menu" in log[disk + 1]  # the key read; then, only then, the next prompt
    row = stored_calls(store)["1795316432.301"]
    assert ((row.rating.level, row.rating.reason_tags, row.end_reason)
            == ("very_dissatisfied", ["attitude"], "completed"))


async def test_a_locked_database_holds_no_call_and_gets_every_event_once_it_is_free(
    rules, sqlite_engine, tmp_path
) -> None:
    store = RatingStore(sqlite_engine, rules)
    lock = sqlite3.connect(str(tmp_path / "store.db"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the file: the store waits on SQLite's busy timeout
    try:
        async with running_ivr(store, Journal(tmp_path / "journal"), "127.0.0.1", 0, store_process=True) as ivr:
            results = await asyncio.gather(*(
                run_call("127.0.0.1", ivr.server.port, Caller(keys, variables=VARS), uniqueid=f"1795316432.{n}")
                for n, keys in enumerate([[Press("1")], [Press("5"), Press("2")], [Press("4"), HangUp()]])
            ))
            # Every caller was thanked (or hung up) while the database was still locked.
            assert all(any("thanks" in c for c in commands(r)) for r in results[:2])
            assert ivr.applier.last.position < ivr.writer.appended
            lock.execute("ROLLBACK")
            await ivr.settled()
    finally:
        lock.close()
    calls = stored_calls(store)
    assert {uid: (c.rating.level, c.end_reason) for uid, c in calls.items()} == {
        "1795316432.0": ("very_satisfied", "completed"),
        "1795316432.1": ("very_dissatisfied", "completed"),
        "1795316432.2": ("dissatisfied", "caller_hangup"),
    }
    assert count(store, CallbackTask) == 2  # every 差评 with its task
    assert not streams(tmp_path / "journal")  # applied, then deleted at the clean stop


def journaled(journal: Journal, *events: CallEvent) -> Position:
    return journal.append(list(events))


def test_an_event_the_store_refuses_is_a_dead_letter_and_the_rest_goes_on(store: RatingStore, tmp_path) -> None:
    journal = Journal(tmp_path, min_free_bytes=0)
    journal.open()
    journaled(journal,
              CallStarted("ok.1", "12345", T0),
              RatingGiven("ghost.1", "satisfied", "dtmf", T0),  # a call the store never saw
              RatingGiven("ok.1", "basic", "dtmf", T0),
              RatingGiven("bad.1", "nonsense", "dtmf", T0))
    journaled(journal, CallEnded("ghost.1", "completed", T0), CallEnded("ok.1", "completed", T0))
    with open(segments(tmp_path, journal.stream)[-1], "a") as f:
        f.write('{"kind": "rating_given", "torn\n')  # a damaged line in the middle: read as unreadable
    journaled(journal, CallStarted("later.1", "12345", T0), RatingGiven("later.1", "very_satisfied", "dtmf", T0))
    applier = JournalApplier(store, tmp_path, journal.stream, batch=3)  # batches split the calls
    assert applier.drain() == 9
    calls = stored_calls(store)
    assert (calls["ok.1"].rating.level, calls["ok.1"].end_reason) == ("basic", "completed")
    assert calls["later.1"].rating.level == "very_satisfied"
    letters = {(letter.line, letter.reason.split(":")[0]) for letter in DeadLetters(tmp_path).all()}
    assert letters == {(2, "UnknownCall"), (4, "KeyError"), (5, "an earlier event of this call was refused"),
                       (7, "unreadable line")}
    # A new applier (a restart) reads the stream again from the start: the store's position skips it all.
    again = JournalApplier(store, tmp_path, journal.stream)
    again.drain()
    assert again.applied == 0 and len(DeadLetters(tmp_path).all()) == 4
    journal.close(applied=True)


def test_a_stream_applied_twice_writes_each_event_once(store: RatingStore, tmp_path) -> None:
    journal = Journal(tmp_path, min_free_bytes=0, segment_events=2)
    journal.open()
    journaled(journal, CallStarted("x.1", "12345", T0, caller_number="13800000000"))
    journaled(journal, RatingGiven("x.1", "very_dissatisfied", "dtmf", T0), ReasonGiven("x.1", ("attitude",), T0))
    journaled(journal, CallEnded("x.1", "completed", T0, "reason"))  # in a segment of its own: two were full
    assert len(segments(tmp_path, journal.stream)) == 2
    first = JournalApplier(store, tmp_path, journal.stream)
    assert (first.drain(), first.applied) == (4, 4)
    again = JournalApplier(store, tmp_path, journal.stream)  # a restarted store process: from the start
    assert (again.drain(), again.applied) == (1, 0)  # what is left of the stream, read and skipped
    assert count(store, RatingChange) == 2 and count(store, OutboxEvent) == 2 and count(store, CallbackTask) == 1
    # An applier deletes the segments it has passed (a later one exists); the last stays while it is written.
    assert [p.name.rsplit(".", 2)[1] for p in segments(tmp_path, journal.stream)] == ["00000002"]
    journal.close(applied=True)
    assert not list(tmp_path.glob("journal-*"))


DEAD_SERVER = """
import os, sys
from datetime import datetime, timezone
from rating_core.events.call_events import CallStarted, RatingGiven, CallEnded
from rating_core.events.journal import Journal
at = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
journal = Journal(sys.argv[1], min_free_bytes=0)
journal.open()
journal.append([CallStarted("open.1", "12345", at, caller_number="13800000001"),
                CallStarted("open.2", "12345", at, caller_number="13800000002"),
                CallStarted("done.1", "12345", at, caller_number="13800000003")])
journal.append([RatingGiven("open.1", "very_dissatisfied", "dtmf", at), CallEnded("done.1", "completed", at)])
with open(journal.directory / f"{journal.stream}.00000001.jsonl", "ab") as f:
    f.write(b'{"kind": "rating_given", "uniqueid": "open.2", "lev')  # the crash tore the last write
print(journal.stream, flush=True)
sys.stdin.read()  # holds the lock until killed
"""


def start_server_process(folder: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", DEAD_SERVER, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_a_dead_servers_journal_is_taken_over_and_its_open_calls_ended(store: RatingStore, tmp_path) -> None:
    process, stream = start_server_process(tmp_path)
    try:
        assert replay_dead_journals(store, tmp_path) == 0  # its server runs: nobody else touches its stream
        assert stream in streams(tmp_path) and not stored_calls(store)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(HANG)
    assert replay_dead_journals(store, tmp_path) > 0
    calls = stored_calls(store)
    assert {uid: (c.end_reason, c.rating.level if c.rating else None) for uid, c in calls.items()} == {
        "open.1": ("server_crash", "very_dissatisfied"),  # ended at the journal's last write, its 差评 kept
        "open.2": ("server_crash", None),  # 未评价: the torn rating was never acknowledged
        "done.1": ("completed", None),
    }
    assert count(store, CallbackTask) == 1
    assert not streams(tmp_path)  # deleted, lock file and all


def test_the_lifecycle_defaults_no_call_still_without_its_end(store: RatingStore) -> None:
    store.apply([CallStarted("open.9", "12345", T0), CallStarted("ended.9", "12345", T0),
                 CallEnded("ended.9", "no_input", T0)])
    with store.sessions.begin() as session:
        assert default_unrated(session, store.rules, T0 + timedelta(days=30)) == 1
    calls = stored_calls(store)
    assert calls["open.9"].rating is None and calls["ended.9"].rating.channel == "default"


def test_a_server_will_not_start_on_a_nearly_full_disk(tmp_path) -> None:
    journal = Journal(tmp_path, min_free_bytes=2**62)
    with pytest.raises(JournalFull, match="MiB free"):
        journal.open()
    assert not list(tmp_path.glob("journal-*"))


def test_a_stream_is_claimed_by_one_owner_only(tmp_path) -> None:
    journal = Journal(tmp_path, min_free_bytes=0)
    journal.open()
    journaled(journal, CallStarted("c.1", "12345", T0))
    assert list(claim_dead(tmp_path)) == []  # its own process may not take it either: flock is per open file
    journal.close(applied=False)
    [claim] = list(claim_dead(tmp_path))
    assert list(claim_dead(tmp_path)) == []  # held by the first claim
    claim.release()


async def test_calls_wait_for_room_when_the_disk_is_behind(tmp_path) -> None:
    journal = Journal(tmp_path, min_free_bytes=0)
    journal.open()
    gated = GatedAppend(journal)
    writer = RatingWriter(journal, max_queue=2)
    first = await writer.submit(RatingGiven("q.1", "basic", "dtmf", T0))  # taken by the writer, held at the gate
    await asyncio.to_thread(gated.waiting.wait, HANG)
    await writer.submit(RatingGiven("q.2", "basic", "dtmf", T0))
    await writer.submit(RatingGiven("q.3", "basic", "dtmf", T0))
    fourth = asyncio.create_task(writer.submit(RatingGiven("q.4", "basic", "dtmf", T0)))
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not fourth.done() and writer.pending == 2  # back-pressure: the queue holds two
    gated.gate.set()
    await (await fourth)
    assert first.done() and writer.appended.line == 4
    await writer.stop()
    journal.close(applied=False)


async def test_a_full_disk_holds_the_call_until_there_is_room_and_loses_nothing(
    store: RatingStore, tmp_path
) -> None:
    folder = tmp_path / "full"
    with mounted(folder, "size=256k") as ok:
        if not ok:
            pytest.skip("this host may not mount a tmpfs")
        journal = Journal(folder, min_free_bytes=0)
        async with running_ivr(store, journal, "127.0.0.1", 0) as ivr:
            filler = folder / "filler"
            with open(filler, "wb", buffering=0) as f:  # the disk fills up while the server runs
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass
            # Enough calls that their events need more of the disk than the page the journal has begun.
            calls = [asyncio.create_task(run_call("127.0.0.1", ivr.server.port,
                                                  Caller([Press("5"), Press("1")], variables=VARS),
                                                  uniqueid=f"1795316432.{600 + n}", timeout=HANG))
                     for n in range(40)]
            await wait_until(lambda: ivr.writer._failing is not None, HANG)
            assert not all(call.done() for call in calls)
            filler.unlink()  # room again: the held events go to disk, and the calls go on
            results = await asyncio.gather(*calls)
        assert all(result.closed_by_server and not result.error for result in results)
        rows = stored_calls(store)
        assert {(row.rating.level, tuple(row.rating.reason_tags)) for row in rows.values()} == {
            ("very_dissatisfied", ("attitude",))} and len(rows) == 40
        assert count(store, CallbackTask) == 40


def test_the_journal_lines_are_the_events_as_json(tmp_path) -> None:
    journal = Journal(tmp_path, min_free_bytes=0)
    journal.open()
    event = ReasonGiven("j.1", ("attitude",), T0, text="态度差\n说话冲")
    journaled(journal, event)
    header, line = segments(tmp_path, journal.stream)[0].read_text(encoding="utf-8").splitlines()
    assert json.loads(header)["open_calls"] == [] and json.loads(line) == to_record(event)
    journal.close(applied=False)


def test_a_rotation_that_fails_leaves_the_stream_on_its_segment_and_is_tried_again(store: RatingStore,
                                                                                    tmp_path) -> None:
    folder = tmp_path / "small"
    with mounted(folder, "size=64k") as ok:
        if not ok:
            pytest.skip("this host may not mount a tmpfs")
        journal = Journal(folder, min_free_bytes=0, segment_events=2)
        journal.open()
        journaled(journal, CallStarted("r.1", "12345", T0), RatingGiven("r.1", "very_dissatisfied", "dtmf", T0))
        filler = folder / "filler"
        with open(filler, "wb", buffering=0) as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 1024)
        with pytest.raises(OSError):  # the next segment cannot be begun: the disk is full
            journaled(journal, CallEnded("r.1", "completed", T0))
        assert [p.name.rsplit(".", 2)[1] for p in segments(folder, journal.stream)] == ["00000001"]
        filler.unlink()
        journaled(journal, CallEnded("r.1", "completed", T0))  # tried again: it works
        assert journal.position == Position(2, 1)
        applier = JournalApplier(store, folder, journal.stream)
        applier.drain()
        journal.close(applied=True)
    row = stored_calls(store)["r.1"]
    assert (row.rating.level, row.end_reason) == ("very_dissatisfied", "completed") and applier.applied == 3


def test_a_segment_whose_first_line_is_no_header_loses_nothing(store: RatingStore, tmp_path) -> None:
    """A header cut short by a full disk, an event glued after it: the line is read, never dropped unseen."""
    stream = "journal-old-1-00000000"
    (tmp_path / f"{stream}.00000001.jsonl").write_text(
        json.dumps(to_record(CallStarted("h.1", "12345", T0))) + "\n"
        + json.dumps(to_record(RatingGiven("h.1", "basic", "dtmf", T0))) + "\n", encoding="utf-8")
    assert replay_dead_journals(store, tmp_path) > 0
    assert stored_calls(store)["h.1"].rating.level == "basic"


def test_a_lock_file_deleted_before_the_owner_locks_it_is_not_trusted(tmp_path, monkeypatch) -> None:
    """A replayer took a just-created lock file for a dead stream without files and deleted it: the new
    owner must not write under a lock that guards nothing (another replayer would take its live stream)."""
    import fcntl as real_fcntl

    flock = real_fcntl.flock
    stolen: list[str] = []

    def racing(file, operation):
        if not stolen:
            stolen.append(file.name)
            Path(file.name).unlink()  # what claim_dead does to a lock-only stream
        return flock(file, operation)

    monkeypatch.setattr("rating_core.events.journal.fcntl.flock", racing)
    journal = Journal(tmp_path, min_free_bytes=0)
    journal.open()
    assert stolen and not stolen[0].endswith(f"{journal.stream}.lock")  # it began again, under a new name
    monkeypatch.setattr("rating_core.events.journal.fcntl.flock", flock)
    assert list(claim_dead(tmp_path)) == []  # its live stream is its own
    journal.close(applied=True)


def test_a_call_with_a_dead_letter_is_not_ended_by_the_crash(store: RatingStore) -> None:
    """Its rating may be among the dead letters: ended, it would be defaulted."""
    store.apply([CallStarted("x.7", "12345", T0), CallStarted("y.7", "12345", T0)])
    open_calls = OpenCalls({"x.7", "y.7"})
    assert store.end_crashed_calls("s", open_calls, T0, refused_calls={"x.7"}) == 1
    calls = stored_calls(store)
    assert calls["x.7"].ended_at is None and calls["y.7"].end_reason == "server_crash"


@pytest.mark.parametrize(("error", "database_failed"), [
    (OperationalError("SELECT 1", {}, Exception("connection refused")), True),
    (InternalError("UPDATE", {}, Exception("cannot execute UPDATE in a read-only transaction")), True),
    (ProgrammingError("INSERT", {}, Exception('relation "calls" does not exist')), True),
    (DataError("INSERT", {}, Exception("value too long for type character varying(64)")), False),
    (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (KeyError("unknown rating level 'nonsense'"), False),
])
def test_only_the_events_own_faults_make_dead_letters(error: Exception, database_failed: bool) -> None:
    assert store_fault(error) is database_failed
