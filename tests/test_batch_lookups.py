"""A batch of call events is loaded up front (rating_core/store/batch_lookups.py): the same rows as one event at a
time, in a number of statements that does not grow with the batch (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import event, select
from sqlalchemy.orm import selectinload

from conftest import refused_in_one_batch
from rating_core.complaints.appeals import block_number
from rating_core.events.call_events import (
    CallEnded,
    CallEvent,
    CallStarted,
    RatingGiven,
    ReasonGiven,
    VoiceMessageRecorded,
)
from rating_core.ratings.store import RatingStore
from rating_core.store.models import Call, CaseRecord, OutboxEvent, Rating, SmsReminder

CST = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)


@contextmanager
def counted_statements(store: RatingStore) -> Iterator[list[str]]:
    """Every statement the store's engine sends (an executemany counts once: it is one round trip's work)."""
    sent: list[str] = []

    def note(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        sent.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(store.engine, "before_cursor_execute", note)


def call_uid(world: str, n: int) -> str:
    return f"17956{world}.{n}"


def number(world: str, n: int) -> str:
    return f"13{world}{n:08d}"


def started(world: str, n: int, caller: int, at: datetime) -> CallStarted:
    uid = call_uid(world, n)
    return CallStarted(uniqueid=uid, linkedid=f"{uid}-orig", hotline="12345", at=at,
                       caller_number=number(world, caller), agent_id="1024", unit="市人社局")


def scenario(world: str) -> tuple[list[CallEvent], list[CallEvent]]:
    """Calls that exercise every lookup, as (what came before, the batch): a number rated twice in the batch,
    one rated before as well, a quiet one, a blocked one, a 差评 with its reason and message, an unrated call,
    a 工单 that came first, and a call rated before whose rating the batch changes."""
    at = T0 + timedelta(minutes=5)
    before = [started(world, 0, 2, T0), RatingGiven(call_uid(world, 0), "satisfied", "dtmf", T0),
              CallEnded(call_uid(world, 0), "completed", T0)]
    callers = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 6}
    levels = {1: "satisfied", 2: "very_satisfied", 3: "basic", 4: "satisfied", 5: "very_dissatisfied",
              6: "dissatisfied", 8: "satisfied"}  # 7 ends unrated
    batch: list[CallEvent] = [started(world, n, caller, at) for n, caller in callers.items()]
    batch += [RatingGiven(call_uid(world, n), level, "dtmf", at + timedelta(seconds=n)) for n, level in levels.items()]
    batch += [ReasonGiven(call_uid(world, 6), ("attitude",), at + timedelta(seconds=10)),
              VoiceMessageRecorded(call_uid(world, 6), "/voice/6.wav", 4.0, at + timedelta(seconds=11)),
              RatingGiven(call_uid(world, 0), "dissatisfied", "dtmf", at + timedelta(seconds=12))]  # rated before
    batch += [CallEnded(call_uid(world, n), "completed" if n in levels else "no_input", at + timedelta(seconds=20))
              for n in callers]
    return before, batch


def prepare(store: RatingStore, world: str) -> None:
    with store.sessions.begin() as session:
        block_number(session, number(world, 4), "多次恶意差评", T0, "supervisor:boss")
        session.add(CaseRecord(linkedid=f"{call_uid(world, 3)}-orig", case_number=f"GD-{world}", unit="市医保局",
                               received_at=T0))


def snapshot(store: RatingStore, world: str) -> dict[int, tuple]:
    """What the store holds for a world's calls, with the world's own names taken out."""
    with store.sessions() as session:
        calls = session.scalars(
            select(Call).where(Call.uniqueid.like(f"17956{world}.%")).options(
                selectinload(Call.rating).selectinload(Rating.callback_task),
                selectinload(Call.rating).selectinload(Rating.changes))
        ).all()
        call_of_rating = {call.rating.id: int(call.uniqueid.split(".")[1]) for call in calls if call.rating}
        reminders = {row.call_id: row.status for row in session.scalars(select(SmsReminder))}
        outbox: dict[int, list[tuple]] = {}
        for row in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)):
            complaint = row.payload["complaint"]
            outbox.setdefault(row.rating_id, []).append(
                (row.type, row.payload["rating"]["level"], row.payload["rating"]["reason_codes"],
                 complaint and complaint["task_id"] == session.get(Rating, row.rating_id).callback_task.id))


        def named(changes: dict[str, list]) -> dict[str, list]:
            """A batch flag names its head by the head's call, not by a row id."""
            return {field: [call_of_rating.get(value) for value in moved] if field == "batch_of_id" else moved
                    for field, moved in changes.items()}

        result = {}
        for call in calls:
            rating = call.rating
            result[int(call.uniqueid.split(".")[1])] = (
                call.case_number and call.case_number.replace(world, "W"), call.unit, call.progress,
                call.end_reason, reminders.get(call.id),
                rating and (rating.level, rating.is_adopted, rating.not_adopted_reason,
                            call_of_rating.get(rating.batch_of_id),
                            rating.callback_task and (rating.callback_task.state, rating.callback_task.state_reason),
                            [(change.source, named(change.changes)) for change in rating.changes],
                            outbox.get(rating.id)),
            )
        return result


def test_a_batch_leaves_the_same_rows_as_its_events_one_at_a_time(store: RatingStore) -> None:
    for world in ("1", "2"):
        prepare(store, world)
        before, _batch = scenario(world)
        store.apply(before)
    _before, batch = scenario("1")
    assert refused_in_one_batch(store, batch) == []
    _before, one_by_one = scenario("2")
    for single in one_by_one:
        store.apply([single])
    batched, single = snapshot(store, "1"), snapshot(store, "2")
    assert batched == single
    # and what the rules say, so that both cannot be wrong the same way
    assert batched[2][5][3] == 1 and batched[1][5][3] is None  # number 1 rated twice in the batch
    assert batched[3][5][3] == 0 and batched[3][0] == "GD-W"  # number 2 rated before; its 工单 came first
    assert batched[4][5][:3] == ("satisfied", True, None)  # quiet
    assert batched[5][5][1:3] == (False, "号码在恶意评价名单中：多次恶意差评")
    assert batched[6][5][4][0] == "pending" and batched[7][4] is not None  # a task to dial; an SMS to send
    assert [kind for kind, *_ in batched[6][5][6]] == ["rating.created", "rating.updated", "rating.updated"]
    assert batched[6][5][6][0][2] == [] and batched[6][5][6][1][2] == ["attitude"]  # each as it stood then
    assert all(names_task for *_, names_task in batched[6][5][6])  # the new task's id, filled in at the end
    assert batched[0][5][0] == "dissatisfied" and batched[0][5][4][0] == "pending"


def test_a_batchs_statements_do_not_grow_with_its_calls(store: RatingStore) -> None:
    """Satisfied and unrated calls, the bulk of the traffic: their events' reads are loaded in a few
    queries, and their rows leave in one flush, as multi-row statements."""
    flushes: list[object] = []
    event.listen(store.sessions, "after_flush", lambda session, _context: flushes.append(session))

    def statements_for(world: str, calls: int) -> list[list[str]]:
        at = T0 + timedelta(hours=1)
        phases: list[list[CallEvent]] = [
            [started(world, n, n, at) for n in range(calls)],
            [RatingGiven(call_uid(world, n), "satisfied", "dtmf", at) for n in range(0, calls, 2)],
            [CallEnded(call_uid(world, n), "completed" if n % 2 == 0 else "no_input", at) for n in range(calls)],
        ]
        sent_by_phase = []
        for phase in phases:
            flushes.clear()
            with counted_statements(store) as sent:
                assert refused_in_one_batch(store, phase) == []
            assert len(flushes) == 1
            # The journal's position: two statements a batch (four for a stream's first), whatever its size.
            assert 2 <= sum("journal_positions" in s for s in sent) <= 4
            sent_by_phase.append([s for s in sent if "journal_positions" not in s])
        return sent_by_phase

    few, many = statements_for("3", 4), statements_for("4", 40)
    if store.engine.dialect.name == "sqlite":
        # A rating's history rows have no unique value of ours to match SQLite's RETURNING by (models.py,
        # insert_sentinel), so they go one INSERT each; PostgreSQL orders by the serial id instead.
        per_row = [sum(s.startswith("INSERT INTO rating_changes") for s in sent) for sent in many]
        assert per_row == [0, 20, 0]
        many = [[s for s in sent if not s.startswith("INSERT INTO rating_changes")] for sent in many]
        few = [[s for s in sent if not s.startswith("INSERT INTO rating_changes")] for sent in few]
    assert [len(sent) for sent in few] == [len(sent) for sent in many]
    assert sum(len(sent) for sent in many) < 25  # against some 11 statements per call, one event at a time
    with store.sessions() as session:
        stored = session.scalars(select(Call).where(Call.uniqueid.like("179564.%")).options(
            selectinload(Call.rating))).all()
        assert len(stored) == 40 and sum(call.rating is not None for call in stored) == 20
