"""The dialer against a simulated Asterisk speaking AMI over TCP (OBSERVED.md §2 behaviour)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time as clock
from collections.abc import AsyncIterator, Callable
from datetime import datetime, time, timezone

import pytest
from sqlalchemy import select

from callback.ami_client import AmiClient, ConnectionLost
from callback.dialer import AmiSettings, Dialer
from hotline_eval.demo_callbacks import fastagi_context
from ivr.service import running_ivr
from rating_core.complaints.appeals import block_number
from rating_core.complaints.callback_tasks import close_task, note_event, record_outcome, request_attempt
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.callback_policy import CallbackPolicy, CallingWindow, Leg
from rating_core.rules.rulebook import Rules
from rating_core.store.models import CallbackAttempt, CallbackTask, TaskEvent
from simulators.asterisk_agi import Press
from simulators.asterisk_ami import SimulatedAsterisk
from waiting import HANG, wait_until

ALL_DAY = (CallingWindow(start=time(0), end=time(23, 59, 59, 999999)),)


def policy_for(rules: Rules, **dialer: object) -> CallbackPolicy:
    settings = rules.callback.dialer.model_copy(update={
        "citizen_dial_string": "Local/{number}@callback-out", "agent_dial_string": "Local/{agent}@callback-agents",
        "ring_timeout_seconds": 5, "response_timeout_seconds": 5, "max_channels": 10, **dialer,
    })
    return rules.callback.model_copy(update={
        "mode": "automated", "calling_days": "every_day", "calling_windows": ALL_DAY, "dialer": settings,
    })


class Rig:
    """A store with tasks, a simulated Asterisk, and dialers to start and kill."""

    def __init__(self, store: RatingStore, policy: CallbackPolicy, sim: SimulatedAsterisk) -> None:
        self.store, self.policy, self.sim = store, policy, sim
        self.dialers: list[asyncio.Task[None]] = []

    def add_task(self, number: str, mode: str | None = None) -> int:
        now = datetime.now(timezone.utc)
        uid = f"{now.timestamp():.6f}-{number}"
        self.store.apply([CallStarted(uniqueid=uid, hotline="12345", at=now, caller_number=number),
                          RatingGiven(uid, "dissatisfied", "dtmf", now)])
        with self.store.sessions.begin() as session:
            task = session.scalars(select(CallbackTask).where(CallbackTask.number == number)
                                   .order_by(CallbackTask.id.desc())).first()
            if mode:
                task.mode = mode
            decision = request_attempt(session, self.policy, task.id, now, "test")
            assert decision.attempt_id is not None, decision
            return task.id

    def start_dialer(self, secret: str | None = None) -> Dialer:
        dialer = Dialer(self.store.sessions, self.policy,
                        AmiSettings(self.sim.host, self.sim.port, "hotline-eval", secret or "hotline-eval"),
                        poll_interval=0.05)
        self.dialers.append(asyncio.create_task(dialer.run()))
        return dialer

    async def kill_dialers(self) -> None:
        for task in self.dialers:
            task.cancel()
        await asyncio.gather(*self.dialers, return_exceptions=True)
        self.dialers.clear()

    def attempts(self) -> list[CallbackAttempt]:
        with self.store.sessions() as session:
            return list(session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id)))

    async def until(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        await wait_until(check, timeout, every=0.05,
                         explain=lambda: f"attempts: {[(a.status, a.outcome) for a in self.attempts()]}")

    async def all_ended(self, count: int) -> list[CallbackAttempt]:
        await self.until(lambda: sum(a.status == "ended" for a in self.attempts()) == count)
        return self.attempts()


BEHAVIOUR = {"13800000000": "answer", "13900000000": "busy", "13600000000": "noanswer",
             "13500000000": "reject", "13700000000": "congest", "13400000000": "unallocated"}


@pytest.fixture
async def rig(sqlite_engine, rules: Rules) -> AsyncIterator[Rig]:
    policy = policy_for(rules)
    store = RatingStore(sqlite_engine, rules.model_copy(update={"callback": policy}))
    sim = SimulatedAsterisk(behaviour=lambda n: BEHAVIOUR.get(n, "answer"), ring_seconds=0.2, talk_seconds=0.2,
                            seed=7)
    await sim.start()
    rig = Rig(store, policy, sim)
    yield rig
    await rig.kill_dialers()
    await sim.stop()


async def test_each_observed_outcome_lands_on_its_attempt(rig: Rig) -> None:
    expected = {"13800000000": ("answered", 16), "13900000000": ("busy", 17), "13600000000": ("no_answer", 19),
                "13500000000": ("rejected", 21), "13700000000": ("congestion", 34),
                "13400000000": ("invalid_number", 1)}
    for number in expected:
        rig.add_task(number)
    rig.start_dialer()
    attempts = await rig.all_ended(len(expected))
    with rig.store.sessions() as session:
        got = {session.get(CallbackTask, a.task_id).number: (a.outcome, a.hangup_cause) for a in attempts}
        states = {t.number: t.state for t in session.scalars(select(CallbackTask))}
    assert got == expected
    # Only the answered call was recorded, where the sample dialplan's MixMonitor puts it.
    assert {a.task_id: a.recording_file for a in attempts if a.recording_file} == {
        attempts[0].task_id: f"/var/spool/asterisk/monitor/hotline-eval/"
                             f"callback-{attempts[0].task_id}-{attempts[0].id}.wav"}
    assert states["13800000000"] == "contacted"
    assert states["13900000000"] == "pending"         # busy: retried later by policy
    assert states["13400000000"] == "exhausted"       # no such number: escalated, not redialled
    originate = rig.sim.originates[0]
    assert originate["Async"] == "true" and originate["ChannelId"] == attempts[0].channel_id
    assert originate["Channel"] == "Local/13800000000@callback-out"


async def test_agent_first_rings_the_agent_then_the_citizen(rig: Rig) -> None:
    rig.add_task("13800000000", mode="agent_first")
    rig.add_task("13900000000", mode="agent_first")
    rig.start_dialer()
    attempts = await rig.all_ended(2)
    assert [a.outcome for a in attempts] == ["answered", "busy"]
    first = rig.sim.originates[0]
    assert first["Channel"] == "Local/queue@callback-agents" and first["Context"] == "callback-bridge"
    assert "CALLBACK_NUMBER=13800000000" in first.get_all("Variable")
    assert first["CallerID"] == '"12345" <12345>'


async def test_an_originate_asterisk_refuses_fails_the_attempt_with_its_message(rig: Rig) -> None:
    rig.policy = rig.policy.model_copy(update={"dialer": rig.policy.dialer.model_copy(
        update={"automated": Leg(context="callback-verify", exten="")})})
    rig.add_task("13800000000")
    rig.start_dialer()
    (attempt,) = await rig.all_ended(1)
    assert attempt.outcome == "failed" and "Extension does not exist." in attempt.detail


async def test_no_more_calls_at_once_than_trunk_lines(rig: Rig) -> None:
    rig.policy = rig.policy.model_copy(update={"dialer": rig.policy.dialer.model_copy(update={"max_channels": 2})})
    rig.sim.hold_calls.clear()
    for n in range(5):
        rig.add_task(f"1380000000{n}")
    rig.start_dialer()
    await rig.until(lambda: len(rig.sim.originates) == 2)
    await asyncio.sleep(0.5)
    assert len(rig.sim.originates) == 2
    rig.sim.hold_calls.set()
    attempts = await rig.all_ended(5)
    assert [a.outcome for a in attempts] == ["answered"] * 5 and len(rig.sim.originates) == 5


async def test_a_connection_dropped_mid_call_is_followed_up_not_redialled(rig: Rig) -> None:
    rig.sim.talk_seconds = 2.0
    rig.sim.hold_calls.clear()
    rig.add_task("13800000000")
    dialer = rig.start_dialer()
    await rig.until(lambda: len(rig.sim.originates) == 1)
    rig.sim.drop_connections()          # the OriginateResponse and channel events go nowhere
    rig.sim.hold_calls.set()
    await rig.until(lambda: dialer.client.connections >= 2)
    (attempt,) = await rig.all_ended(1)
    assert attempt.outcome == "answered"
    assert len(rig.sim.originates) == 1


async def test_a_call_that_ended_while_disconnected_is_unknown_and_not_redialled(rig: Rig) -> None:
    rig.sim.hold_calls.clear()
    rig.add_task("13900000000")  # busy: over in milliseconds
    dialer = rig.start_dialer()
    await rig.until(lambda: len(rig.sim.originates) == 1)
    rig.sim.drop_connections()
    rig.sim.hold_calls.set()
    await rig.until(lambda: dialer.client.connections >= 2)
    (attempt,) = await rig.all_ended(1)
    assert attempt.outcome == "unknown" and "不重拨" in attempt.detail
    assert len(rig.sim.originates) == 1


async def test_an_originate_never_written_uses_no_try_and_is_dialled_once_asterisk_is_back(
    rig: Rig, caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = rig.add_task("13800000000")
    dialer = rig.start_dialer()
    loop = asyncio.get_running_loop()
    claim, port = dialer._claim_batch, rig.sim.port
    asterisk_gone = threading.Event()

    def claim_then_lose_asterisk() -> list:
        # Asterisk goes away between the claim and the send, and the client has noticed: the one
        # moment the dialer holds a claimed attempt with nothing to send it on.
        placements = claim()
        if placements and not asterisk_gone.is_set():
            asyncio.run_coroutine_threadsafe(rig.sim.stop(), loop).result(HANG)
            give_up = clock.monotonic() + HANG  # a hang guard, not a measure of speed
            while dialer.client.connected.is_set() and clock.monotonic() < give_up:
                clock.sleep(0.01)
            asterisk_gone.set()
        return placements

    dialer._claim_batch = claim_then_lose_asterisk
    with caplog.at_level(logging.WARNING, logger="callback.dialer"):
        await rig.until(asterisk_gone.is_set)
        await rig.until(lambda: [a.status for a in rig.attempts()] == ["queued"])
    assert "queued again, no try used" in caplog.text
    (attempt,) = rig.attempts()
    assert (attempt.seq, attempt.originated_at, attempt.dial_string, attempt.outcome) == (1, None, None, None)
    with rig.store.sessions() as session:
        task = session.get(CallbackTask, task_id)
        assert (task.state, task.attempts_made, task.next_attempt_at) == ("dialing", 1, None)
        kinds = session.scalars(select(TaskEvent.kind).where(TaskEvent.task_id == task_id)).all()
    assert "attempt_ended" not in kinds and "retry_scheduled" not in kinds
    assert rig.sim.originates == []

    await rig.sim.start(port=port)     # Asterisk is back: the same attempt is dialled, as the first try
    # The client's reconnect backoff has grown while Asterisk was away: a longer guard.
    await rig.until(lambda: [a.status for a in rig.attempts()] == ["ended"], 60)
    (attempt,) = rig.attempts()
    assert (attempt.seq, attempt.outcome) == (1, "answered")
    assert [o["ChannelId"] for o in rig.sim.originates] == [attempt.channel_id]


async def test_an_originate_written_before_the_connection_dropped_stays_unknown(rig: Rig) -> None:
    rig.sim.cut_at_next_originate = True
    task_id = rig.add_task("13800000000")
    dialer = rig.start_dialer()
    (attempt,) = await rig.all_ended(1)
    assert not rig.sim.cut_at_next_originate          # the Originate did reach Asterisk
    assert attempt.outcome == "unknown" and dialer.client.connections >= 2
    with rig.store.sessions() as session:
        task = session.get(CallbackTask, task_id)
        # It may have rung the citizen: it counts, and the next try waits as the policy says.
        assert (task.state, task.attempts_made) == ("pending", 1) and task.next_attempt_at is not None
    assert len(rig.attempts()) == 1 and rig.sim.originates == []


async def test_a_dialer_killed_mid_call_leaves_no_duplicate_call(rig: Rig) -> None:
    rig.sim.talk_seconds = 2.0
    rig.sim.hold_calls.clear()
    rig.add_task("13800000000")
    rig.start_dialer()
    await rig.until(lambda: len(rig.sim.originates) == 1)
    await rig.kill_dialers()
    rig.sim.hold_calls.set()
    await asyncio.sleep(0.1)
    rig.start_dialer()                 # the replacement finds the call by its ChannelId
    (attempt,) = await rig.all_ended(1)
    assert attempt.outcome == "answered" and len(rig.sim.originates) == 1


async def test_a_refused_login_places_nothing_and_says_so(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.add_task("13800000000")
    with caplog.at_level(logging.ERROR, logger="callback.ami_client"):
        dialer = rig.start_dialer(secret="wrong")
        await rig.until(lambda: "refused" in caplog.text)
    assert dialer.client.connections == 0 and rig.sim.originates == []
    assert [a.status for a in rig.attempts()] == ["queued"]


async def test_the_automated_callback_records_the_citizens_keys(sqlite_engine, rules: Rules, journal) -> None:
    """Dialer → AMI Originate → answered leg in [callback-verify] → FastAGI script → answers in the store."""
    policy = policy_for(rules)
    store = RatingStore(sqlite_engine, rules.model_copy(update={"callback": policy}))
    keys = {"13800000000": [Press("1"), Press("1"), Press("1")],  # it's me, solved, satisfied
            "13900000001": [Press("1"), Press("2")]}               # it's me, not solved
    async with running_ivr(store, journal, "127.0.0.1", 0) as ivr:
        sim = SimulatedAsterisk(seed=3, dialplan={
            "callback-verify": fastagi_context("127.0.0.1", ivr.server.port, lambda number: keys[number])})
        await sim.start()
        rig = Rig(store, policy, sim)
        try:
            solved, unsolved = (rig.add_task(number) for number in keys)
            rig.start_dialer()
            attempts = await rig.all_ended(2)
        finally:
            await rig.kill_dialers()
            await sim.stop()
    assert [a.outcome for a in attempts] == ["answered", "answered"]
    with store.sessions() as session:
        first, second = session.get(CallbackTask, solved), session.get(CallbackTask, unsolved)
        assert [(a.question, a.answer) for a in first.answers] == [
            ("identity", True), ("resolved", True), ("satisfied", True)]
        assert (first.state, first.citizen_satisfied) == ("closed", True)
        assert (second.state, second.citizen_resolved) == ("contacted", False)
        # The script ran on the channel the dialer named: answers carry its ChannelId.
        assert {a.uniqueid for a in first.answers} == {attempts[0].channel_id}


async def test_an_action_without_a_response_times_out_and_the_connection_stays(caplog) -> None:
    """A slow Asterisk is not a lost one: TimeoutError (an OSError since 3.11) must not read as ConnectionLost."""

    async def mute_asterisk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        login = await reader.readuntil(b"\r\n\r\n")
        action_id = next(line.split(b": ", 1)[1] for line in login.split(b"\r\n") if line.startswith(b"ActionID"))
        writer.write(b"Response: Success\r\nActionID: " + action_id + b"\r\nMessage: Authentication accepted\r\n\r\n")
        await reader.read()  # every later action goes unanswered

    server = await asyncio.start_server(mute_asterisk, "127.0.0.1", 0)
    client = AmiClient("127.0.0.1", server.sockets[0].getsockname()[1], "hotline-eval", "x",
                       on_event=lambda message: None, ping_interval=3600)
    running = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client.connected.wait(), 5)
        with pytest.raises(TimeoutError) as raised:
            await client.send("Status", {"Channel": "cb-1-1-x"}, timeout=0.2)
        assert not isinstance(raised.value, ConnectionLost)
        assert client.connected.is_set() and client.connections == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        server.close()


# -- the malicious-rater list: a listed number is never dialled (issue 18) --------------------------

def list_number(rig: Rig, number: str) -> tuple[int, ...]:
    with rig.store.sessions.begin() as session:
        return block_number(session, number, "多次恶意差评", datetime.now(timezone.utc), "supervisor:boss").stopped


def task_state(rig: Rig, task_id: int) -> tuple[str, str | None, list[str]]:
    with rig.store.sessions() as session:
        task = session.get(CallbackTask, task_id)
        return task.state, task.state_reason, [event.kind for event in task.history]


async def test_a_callback_queued_before_its_number_was_listed_is_never_dialled(rig: Rig) -> None:
    listed = rig.add_task("13800000000")
    control = rig.add_task("13800000001")
    assert list_number(rig, "13800000000") == (listed,)
    rig.start_dialer()
    await rig.until(lambda: [a.status for a in rig.attempts()] == ["ended", "ended"])
    dropped, placed = rig.attempts()
    assert [o["ChannelId"] for o in rig.sim.originates] == [placed.channel_id]
    assert (dropped.outcome, dropped.originated_at, placed.outcome) == ("cancelled", None, "answered")
    state, reason, kinds = task_state(rig, listed)
    assert (state, reason) == ("not_dialled", "号码在恶意评价名单中：多次恶意差评") and kinds[-1] == "stopped"
    assert task_state(rig, control)[0] == "contacted"


async def test_the_dialer_drops_an_attempt_whose_task_was_settled_or_whose_number_is_listed(rig: Rig) -> None:
    now = datetime.now(timezone.utc)
    closed = rig.add_task("13800000002")
    with rig.store.sessions.begin() as session:  # what an upheld appeal does to the task, its attempt still queued
        close_task(session, session.get(CallbackTask, closed), now, "supervisor:boss", "申诉成立（误评），评价不予采纳")
    # Listed while its 差评 was being rectified, which the list leaves to the unit; then the re-ask is queued.
    reask = rig.add_task("13800000003")
    with rig.store.sessions.begin() as session:
        attempt = session.scalars(select(CallbackAttempt).where(CallbackAttempt.task_id == reask)).one()
        record_outcome(session, rig.policy, attempt.id, "answered", now, "dialer")
        note_event(session, session.get(CallbackTask, reask), now, "agent:1024", "verified", "rectifying")
    assert list_number(rig, "13800000003") == ()
    with rig.store.sessions.begin() as session:  # as mark_rectified leaves it: the re-ask is due
        note_event(session, session.get(CallbackTask, reask), now, "unit:rsj", "rectified", "rectified")
        assert request_attempt(session, rig.policy, reask, now, "system:rq").attempt_id is not None
    control = rig.add_task("13800000004")
    rig.start_dialer()
    await rig.all_ended(4)
    of_closed, _verified, of_reask, of_control = rig.attempts()
    assert [o["ChannelId"] for o in rig.sim.originates] == [of_control.channel_id]
    assert (of_closed.outcome, of_closed.detail) == ("cancelled", "未拨出：申诉成立（误评），评价不予采纳")
    assert task_state(rig, closed)[0] == "closed" and task_state(rig, closed)[2][-1] == "attempt_dropped"
    assert (of_reask.task_id, of_reask.purpose, of_reask.outcome) == (reask, "satisfaction", "cancelled")
    assert task_state(rig, control)[0] == "contacted"
    state, reason, kinds = task_state(rig, reask)
    assert (state, reason) == ("not_dialled", "号码在恶意评价名单中：多次恶意差评") and kinds[-1] == "stopped"


async def test_a_call_under_way_when_its_number_is_listed_finishes_but_does_not_reopen_the_task(rig: Rig) -> None:
    rig.sim.talk_seconds = 0.5
    rig.sim.hold_calls.clear()
    listed = rig.add_task("13900000000")  # busy: a retry would put the task back to pending
    rig.start_dialer()
    await rig.until(lambda: len(rig.sim.originates) == 1)
    assert list_number(rig, "13900000000") == (listed,)
    with rig.store.sessions() as session:
        assert session.get(CallbackTask, listed).history[-1].detail["live_attempts"] == [1]
    rig.sim.hold_calls.set()
    (attempt,) = await rig.all_ended(1)
    assert attempt.outcome == "busy"
    state, _reason, kinds = task_state(rig, listed)
    assert state == "not_dialled" and "retry_scheduled" not in kinds and kinds[-1] == "attempt_ended"
    with rig.store.sessions() as session:
        assert session.get(CallbackTask, listed).next_attempt_at is None
    assert len(rig.sim.originates) == 1
