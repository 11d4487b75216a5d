"""Every record with states keeps to its machine: an SMS reminder, a webhook delivery, an appeal, a voice
message's transcript (a callback task's and an attempt's are in test_callback_tasks.py).

For each: every state has a Chinese name, the one move function accepts every arrow of the table and
refuses every move it has no arrow for, and the flows that move the records (run as their own tests run
them) leave only the enum's states behind, each reached from the one before along the table's arrows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm.attributes import InstrumentedAttribute

from delivery.sms import SmsSettings, send_due
from delivery.webhooks import deliver_pass, fan_out
from rating_core.complaints.appeal_states import APPEAL_DECISION_NAMES, APPEAL_MOVES, AppealDecision, appeal_move
from rating_core.complaints.appeals import AppealError, decide_appeal, file_appeal
from rating_core.events.call_events import CallEnded, CallStarted, RatingGiven, VoiceMessageRecorded
from rating_core.outbox.delivery_states import (
    DELIVERY_MOVES,
    DELIVERY_STATUS_NAMES,
    FIRST_DELIVERY_STATUSES,
    DeliveryStatus,
    delivery_move,
)
from rating_core.outbox.render import RenderContext
from rating_core.outbox.webhook_endpoints import add_endpoint, replay
from rating_core.ratings.reminder_states import (
    FIRST_REMINDER_STATUSES,
    REMINDER_MOVES,
    REMINDER_STATUS_NAMES,
    ReminderStatus,
    reminder_move,
)
from rating_core.ratings.store import RatingStore
from rating_core.ratings.transcript_states import (
    TRANSCRIPT_MOVES,
    TRANSCRIPT_STATUS_NAMES,
    TranscriptStatus,
    transcript_move,
)
from rating_core.rules.refusals import Reason
from rating_core.rules.rulebook import Rules
from rating_core.rules.state_moves import IllegalMove
from rating_core.store.models import Appeal, Call, CallbackTask, OutboxEvent, Rating, SmsReminder, WebhookDelivery
from simulators.sms_gateway import SimulatedSmsGateway
from speech_audio import synthesise
from speech_models.recordings import write_recording
from speech_models.voice_transcripts import LEASE, transcribe_waiting
from web_pages import csrf, signed_in

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday morning
CHINESE = re.compile(r"[\u4e00-\u9fff]")
_ids = iter(range(10**6))


@dataclass(frozen=True)
class Machine:
    """One record's states as the tests read them. ``table`` has a row for None too: a record being made
    (reminders, deliveries), or the state stored as NULL (an appeal under review, a message waiting)."""

    states: frozenset[Any]
    targets: frozenset[Any]  # what a move may name as its end (an appeal is never moved back under review)
    names: Mapping[Any, str]
    table: Mapping[Any, frozenset[Any]]
    move: Callable[[Any, Any], Any]


MACHINES = {
    "reminder": Machine(frozenset(ReminderStatus), frozenset(ReminderStatus), REMINDER_STATUS_NAMES,
                        {None: FIRST_REMINDER_STATUSES, **REMINDER_MOVES}, reminder_move),
    "delivery": Machine(frozenset(DeliveryStatus), frozenset(DeliveryStatus), DELIVERY_STATUS_NAMES,
                        {None: FIRST_DELIVERY_STATUSES, **DELIVERY_MOVES}, delivery_move),
    "appeal": Machine(frozenset({None, *AppealDecision}), frozenset(AppealDecision), APPEAL_DECISION_NAMES,
                      APPEAL_MOVES, appeal_move),
    "transcript": Machine(frozenset({None, *TranscriptStatus}), frozenset({None, *TranscriptStatus}),
                          TRANSCRIPT_STATUS_NAMES, TRANSCRIPT_MOVES, transcript_move),
}


def stored(state: Any) -> str | None:
    """The plain string a column holds, as the move functions are handed it after a load."""
    return None if state is None else str(state.value)


def every_move(arrows: bool) -> list[Any]:
    """(machine, from, to) for every pair of states, the table's arrows or the others."""
    return [pytest.param(name, source, target, id=f"{name}:{source}->{target}")
            for name, machine in MACHINES.items() for source in machine.table
            for target in sorted(machine.targets, key=str)  # a set: sorted, the same order in every xdist worker
            if (target in machine.table[source]) == arrows]


def reachable(table: Mapping[Any, frozenset[Any]], start: Any, end: Any) -> bool:
    """Whether ``end`` is ``start`` or lies along the table's arrows from it."""
    seen, frontier = {start}, [start]
    while frontier:
        for target in table[frontier.pop()] - seen:
            seen.add(target)
            frontier.append(target)
    return end in seen


# -- the tables -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_every_state_has_a_chinese_name_and_a_row_of_the_table(name: str) -> None:
    machine = MACHINES[name]
    assert set(machine.names) == machine.states
    assert all(CHINESE.search(label) for label in machine.names.values())
    assert len(set(machine.names.values())) == len(machine.names)  # no two read alike
    assert set(machine.table) == machine.states | {None}
    assert all(targets <= machine.targets <= machine.states for targets in machine.table.values())
    assert all(reachable(machine.table, None, state) for state in machine.states)


@pytest.mark.parametrize(("name", "source", "target"), every_move(arrows=True))
def test_every_arrow_of_the_table_is_a_move_the_function_makes(name: str, source: Any, target: Any) -> None:
    assert MACHINES[name].move(stored(source), stored(target)) is target


@pytest.mark.parametrize(("name", "source", "target"), every_move(arrows=False))
def test_a_move_the_table_has_no_arrow_for_is_refused_in_chinese(name: str, source: Any, target: Any) -> None:
    machine = MACHINES[name]
    with pytest.raises(IllegalMove) as refused:
        machine.move(stored(source), stored(target))
    assert refused.value.reason == Reason.WRONG_STATE
    start = machine.names.get(source, "新建")
    assert f"不能从“{start}”改为“{machine.names[target]}”" in str(refused.value)


def test_the_web_reads_the_names_next_to_the_enums(web_site) -> None:
    filters = web_site.app.jinja_env.filters
    assert {state: filters["decision_name"](stored(state)) for state in AppealDecision} == {
        state: APPEAL_DECISION_NAMES[state] for state in AppealDecision}
    assert {state: filters["delivery_status_name"](stored(state)) for state in DeliveryStatus} == dict(
        DELIVERY_STATUS_NAMES)


# -- the flows leave only states, moved along the arrows ----------------------------------------------


def statuses(store: RatingStore, column: InstrumentedAttribute[Any]) -> dict[int, Any]:
    with store.sessions() as session:
        return {row_id: status for row_id, status in session.execute(select(column.class_.id, column))}


@contextmanager
def along_the_table(store: RatingStore, machine: Machine, column: InstrumentedAttribute[Any],
                    seen: set[Any]) -> Iterator[None]:
    """Around one step of a flow: each status the ORM sets is an arrow of the table; afterwards every row
    holds a state, reached from the one it held before (a new row: from None) along the arrows.

    A conditional UPDATE (a claim) is not seen as it happens; the row's next status must still be reachable.
    """
    before = statuses(store, column)
    moves: list[tuple[Any, Any]] = []

    def on_set(target: Any, value: Any, old: Any, initiator: Any) -> None:
        moves.append((old if old is None or isinstance(old, str) else None, value))  # never set: being made

    event.listen(column, "set", on_set)
    try:
        yield
    finally:
        event.remove(column, "set", on_set)
    after = statuses(store, column)
    assert [(old, new) for old, new in moves if new not in machine.table[old]] == []
    assert set(after.values()) <= machine.states
    assert {row: (before.get(row), now) for row, now in after.items()
            if not reachable(machine.table, before.get(row), now)} == {}
    seen |= set(before.values()) | set(after.values())


def test_the_sms_sender_leaves_only_reminder_statuses_moved_along_the_table(store: RatingStore, rules: Rules) -> None:
    machine, seen = MACHINES["reminder"], set()
    reminder = rules.lifecycle.supplementary.reminder
    assert reminder.gateway is not None

    def with_gateway(dedup: bool) -> Rules:
        gateway = reminder.gateway.model_copy(update={"timeout_seconds": 0.5, "deduplicates_request_id": dedup})
        changed = reminder.model_copy(update={"gateway": gateway, "max_attempts": 2})
        supplementary = rules.lifecycle.supplementary.model_copy(update={"reminder": changed})
        return rules.model_copy(
            update={"lifecycle": rules.lifecycle.model_copy(update={"supplementary": supplementary})})

    def unrated(number: str) -> str:
        uid = f"1796700000.{next(_ids)}"
        store.apply([CallStarted(uniqueid=uid, hotline="12345", at=T0, caller_number=number),
                     CallEnded(uid, "no_input", T0 + timedelta(seconds=30))])
        return uid

    due = T0 + timedelta(minutes=11)
    with SimulatedSmsGateway(token="t", slow_seconds=1.5) as gateway, httpx.Client() as client:
        settings = SmsSettings(gateway.url, "t", "https://pj.example", "secret")
        with along_the_table(store, machine, SmsReminder.status, seen):  # planned: pending, or skipped at once
            calls = {name: unrated(number) for name, number in [
                ("sent", "13800000001"), ("retried then failed", "13800000002"), ("timed out", "13800000003"),
                ("refused", "13800000004"), ("landline", "053188886666"), ("first", "13900000009"),
                ("second", "13900000009"), ("over the limit", "13900000009"), ("rated meanwhile", "13800000005"),
                ("sender died", "13800000006"), ("sender died, deduplicating", "13800000007")]}
            store.apply([RatingGiven(calls["rated meanwhile"], "satisfied", "dtmf", T0 + timedelta(minutes=1))])
        with store.sessions.begin() as session:  # two senders that stopped mid-request, their leases running out
            for name, lease in (("sender died", due - timedelta(minutes=1)), ("sender died, deduplicating",
                                                                             due + timedelta(hours=2))):
                stuck = session.scalars(select(SmsReminder).join(Call).where(Call.uniqueid == calls[name])).one()
                stuck.status, stuck.attempts, stuck.claimed_at, stuck.lease_until = "sending", 1, T0, lease
        gateway.script = ["ok", "error500", "slow", "refuse"]
        with along_the_table(store, machine, SmsReminder.status, seen):
            send_due(store.sessions, with_gateway(dedup=False), client, settings, due)
        gateway.script = ["error500"]
        with along_the_table(store, machine, SmsReminder.status, seen):  # the second and last attempt
            send_due(store.sessions, with_gateway(dedup=False), client, settings, due + timedelta(seconds=61))
        with along_the_table(store, machine, SmsReminder.status, seen):  # back to pending, then sent
            send_due(store.sessions, with_gateway(dedup=True), client, settings, due + timedelta(hours=3))
    with store.sessions() as session:
        ended = {uid: status for uid, status in session.execute(
            select(Call.uniqueid, SmsReminder.status).select_from(SmsReminder).join(SmsReminder.call))}
    assert {name: ended[uid] for name, uid in calls.items()} == {
        "sent": "sent", "retried then failed": "failed", "timed out": "unknown", "refused": "failed",
        "landline": "skipped", "first": "sent", "second": "sent", "over the limit": "skipped",
        "rated meanwhile": "skipped", "sender died": "unknown", "sender died, deduplicating": "sent"}
    assert seen == machine.states


def test_webhook_deliveries_and_replays_leave_only_delivery_statuses_moved_along_the_table(
        store: RatingStore) -> None:
    machine, seen = MACHINES["delivery"], set()
    answers = {"ok.example": 200, "down.example": 500, "gone.example": 410, "national.example": 200}
    at = datetime(2026, 11, 20, 1, 30, tzinfo=timezone.utc)
    with store.sessions.begin() as session:
        for host in answers:
            add_endpoint(session, f"https://{host}/hooks", ["*"], at,
                         profile="gbt39046" if host == "national.example" else "native")
    # No 工单号: the national profile holds it. A voice message adds nothing its body carries: unchanged.
    store.apply([CallStarted(uniqueid="1796800000.1", hotline="12345", at=at, caller_number="13800000000"),
                 RatingGiven("1796800000.1", "satisfied", "dtmf", at),
                 CallStarted(uniqueid="1796800000.2", hotline="12345", at=at, caller_number="13800000000",
                             case_number="GD20261120002"),
                 RatingGiven("1796800000.2", "dissatisfied", "dtmf", at),
                 VoiceMessageRecorded("1796800000.2", "/var/spool/asterisk/hotline-eval/2.wav", 3.0, at)])
    transport = httpx.MockTransport(lambda request: httpx.Response(answers[request.url.host]))
    with httpx.Client(transport=transport) as client:

        def run(now: datetime) -> None:
            deliver_pass(store.sessions, client, now=now, rng=random.Random(1),
                         context=RenderContext(region_code="370303"))

        with along_the_table(store, machine, WebhookDelivery.status, seen):
            run(at)  # fanned out: delivered, waiting to be retried, its endpoint disabled by a 410, held, unchanged
        with along_the_table(store, machine, WebhookDelivery.status, seen):
            run(at + timedelta(days=3, hours=1))  # past the retry window: dead
        with along_the_table(store, machine, WebhookDelivery.status, seen), store.sessions.begin() as session:
            replay(session, dead=True, now=at + timedelta(days=3, hours=2))
            event_id = session.scalars(select(OutboxEvent.event_id).order_by(OutboxEvent.id)).first()
            replay(session, event_id=event_id, now=at + timedelta(days=3, hours=2))  # delivered ones too
        with along_the_table(store, machine, WebhookDelivery.status, seen):
            run(at + timedelta(days=3, hours=2))
    assert seen == machine.states


def test_appeals_filed_and_decided_leave_only_decisions_moved_along_the_table(store: RatingStore,
                                                                               rules: Rules) -> None:
    machine, seen = MACHINES["appeal"], set()
    tasks = []
    for n in range(2):
        uid = f"1796900000.{n}"
        store.apply([CallStarted(uniqueid=uid, hotline="12345", at=T0, caller_number="13800000000", unit="市人社局"),
                     RatingGiven(uid, "very_dissatisfied", "dtmf", T0)])
        with store.sessions() as session:
            tasks.append(session.scalars(select(CallbackTask.id).order_by(CallbackTask.id.desc())).first())
    with along_the_table(store, machine, Appeal.decision, seen), store.sessions.begin() as session:
        appeals = [file_appeal(session, rules.callback, task_id, "市人社局", "非本单位职责", T0 + timedelta(hours=1),
                               "unit:rsj").id for task_id in tasks]
    decided = T0 + timedelta(days=1)
    with along_the_table(store, machine, Appeal.decision, seen), store.sessions.begin() as session:
        decide_appeal(session, appeals[0], True, "misjudged", "确属误评", decided, "supervisor:boss")
        decide_appeal(session, appeals[1], False, None, "情况属实", decided, "supervisor:boss")
    with along_the_table(store, machine, Appeal.decision, seen):
        with pytest.raises(AppealError, match="该申诉已复核"), store.sessions.begin() as session:
            decide_appeal(session, appeals[1], True, "malicious", "改判", decided, "supervisor:boss")
    assert seen == machine.states


def test_the_transcript_pass_leaves_only_transcript_statuses_moved_along_the_table(store: RatingStore,
                                                                                    tmp_path: Path) -> None:
    machine, seen = MACHINES["transcript"], set()
    now = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
    audio = synthesise("매우 만족", tmp_path, "message")

    def leave_message(uid: str, path: Path) -> None:
        store.apply([CallStarted(uniqueid=uid, hotline="12345-ko", at=now, caller_number="13904330000"),
                     RatingGiven(uid, "very_dissatisfied", "dtmf", now + timedelta(seconds=5)),
                     VoiceMessageRecorded(uid, str(path), 2.0, now + timedelta(seconds=20))])

    with along_the_table(store, machine, Rating.voice_transcript_status, seen):
        leave_message("1797000000.1", write_recording(tmp_path / "1.wav", audio))
        leave_message("1797000000.2", tmp_path / "gone.wav")
        leave_message("1797000000.3", write_recording(tmp_path / "3.wav", audio))
    with store.sessions.begin() as session:  # a worker took this one and died
        rating = session.scalars(select(Rating).join(Call).where(Call.uniqueid == "1797000000.3")).one()
        rating.voice_transcript_status, rating.voice_transcript_at = "transcribing", now - LEASE - timedelta(seconds=1)
    with along_the_table(store, machine, Rating.voice_transcript_status, seen):
        result = transcribe_waiting(store.sessions, store.rules, now)
    assert (result.done, result.failed) == (2, 1)
    with along_the_table(store, machine, Rating.voice_transcript_status, seen):  # a rating given again
        store.apply([VoiceMessageRecorded("1797000000.1", str(tmp_path / "1b.wav"), 3.0, now + timedelta(minutes=5))])
    assert seen == machine.states


def test_the_pages_show_the_statuses_by_their_names(web_site) -> None:
    """The admin's delivery counts under the names' headings, in the enum's order; a decided appeal by name."""
    with web_site.store.sessions.begin() as session:
        add_endpoint(session, "https://platform.example/hooks", ["*"], T0, profile="native")
        fan_out(session)
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        rows[0].status, rows[-1].status = DeliveryStatus.DELIVERED, DeliveryStatus.DEAD
        counts = [sum(row.status == status for row in rows) for status in DeliveryStatus]
    page = signed_in(web_site, "admin").get("/admin/webhooks").get_data(as_text=True)
    headings = re.findall(r"<th>([^<]*)</th>", page.split('id="endpoints"')[1].split("</thead>")[0])
    assert headings[5:5 + len(DeliveryStatus)] == [DELIVERY_STATUS_NAMES[status] for status in DeliveryStatus]
    row = page.split('data-endpoint="1"')[1].split("</tr>")[0]
    assert [int(n) for n in re.findall(r"<td>(\d+)</td>", row)][-len(DeliveryStatus):] == counts

    unit = signed_in(web_site, "unit")
    unit.post("/unit/tasks/1/appeal", data={"reason": "非本单位职责", "csrf_token": csrf(unit, "/unit/")})
    boss = signed_in(web_site, "boss")
    boss.post("/supervisor/appeals/1/decide", data={"decision": "rejected", "note": "情况属实",
                                                    "csrf_token": csrf(boss, "/supervisor/appeals")})
    named = f"{APPEAL_DECISION_NAMES[AppealDecision.REJECTED]}：情况属实"
    assert named in boss.get("/supervisor/appeals").get_data(as_text=True)
    assert named in unit.get("/unit/").get_data(as_text=True)
