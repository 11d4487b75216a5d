"""The 差评 callback on a real Asterisk 22: ``hotline-eval dialer`` sends real Originates over AMI into the
shipped ``callback-verify`` context, Asterisk runs the automated callback over FastAGI against
``hotline-eval agi``, and the citizens are the test dialplan's: 138… answers (the robot presses their keys),
139… is busy, 136… rings out, 135… rejects, 137… meets congestion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import selectinload

from callback.dialer import AmiSettings
from callback.dialer import Dialer as DialerLoop
from conftest import fresh_postgres_database
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import parse_rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from rating_core.store.models import CallbackAttempt, CallbackTask
from real_pbx import Dialer, FastAgi, Pbx, PbxCall, Robot, attempt, pbx_rules, queue_callback, running
from simulators.asterisk_agi import Press
from simulators.asterisk_ami import SimulatedAsterisk
from waiting import HANG, wait_until

NUMBERS = {"answered": "13812340001", "busy": "13912340002", "no_answer": "13612340003", "rejected": "13512340004",
           "congestion": "13712340005"}
CAUSES = {"busy": 17, "no_answer": 19, "rejected": 21, "congestion": 34}
KIND_OF = {number: kind for kind, number in NUMBERS.items()}


@dataclass
class Callbacks:
    pbx: Pbx
    store: RatingStore
    fastagi: FastAgi
    dialer: Dialer

    def attempt(self, attempt_id: int) -> CallbackAttempt:
        return attempt(self.store, attempt_id)

    def task(self, task_id: int) -> CallbackTask:
        with self.store.sessions() as session:
            task = session.scalars(select(CallbackTask).where(CallbackTask.id == task_id).options(
                selectinload(CallbackTask.answers), selectinload(CallbackTask.history))).one()
            session.expunge_all()
            return task

    async def outcome(self, attempt_id: int) -> CallbackAttempt:
        await wait_until(lambda: self.attempt(attempt_id).outcome is not None, HANG, every=0.2,
                         explain=lambda: f"attempt {attempt_id}: {self.attempt(attempt_id).status}; dialer log:\n"
                                         f"{self.dialer.log()[-2000:]}")
        return self.attempt(attempt_id)


@pytest.fixture(scope="module")
def callbacks(pbx: Pbx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callbacks]:
    rules = pbx_rules(pbx)
    database = fresh_postgres_database("hotline_eval_pbx")
    home = tmp_path_factory.mktemp("callbacks")
    store = RatingStore(make_engine(database), parse_rules(rules))
    with (running(FastAgi(pbx, home / "fastagi", database, rules)) as fastagi,
          running(Dialer(pbx, home / "dialer", database, rules)) as dialer):
        yield Callbacks(pbx, store, fastagi, dialer)
    store.engine.dispose()


@dataclass
class Dialled:
    tasks: dict[str, int]
    attempts: dict[str, CallbackAttempt]
    answered: PbxCall
    placed: dict[str, int]  # how many calls Asterisk saw to each citizen


@pytest.fixture(scope="module")
def dialled(callbacks: Callbacks) -> Dialled:
    """One callback to each kind of citizen, all queued at once."""
    async def run() -> Dialled:
        async with Robot(callbacks.pbx) as robot:
            queued = {kind: queue_callback(callbacks.store, number, f"1796200000.{n}")
                      for n, (kind, number) in enumerate(NUMBERS.items())}
            tasks = {kind: attempt.task_id for kind, attempt in queued.items()}
            # 是本人 1, 问题已解决 1, 对处理结果满意 1.
            answered = robot.expect(queued["answered"].channel_id, [Press("1"), Press("1"), Press("1")])
            attempts = {kind: await callbacks.outcome(attempt.id) for kind, attempt in queued.items()}
            await robot.finished(answered)
            return Dialled(tasks, attempts, answered, {kind: robot.dialled(number) for kind, number in NUMBERS.items()})
    return asyncio.run(run())


def test_the_automated_callback_answered_with_keys_closes_the_task_as_rectified_and_satisfied(
        callbacks: Callbacks, dialled: Dialled) -> None:
    attempt, task = dialled.attempts["answered"], callbacks.task(dialled.tasks["answered"])
    assert (attempt.outcome, attempt.status, attempt.purpose) == ("answered", "ended", "verify")
    assert (task.state, task.state_reason) == ("closed", "市民对处理结果满意（整改满意）")
    assert (task.citizen_resolved, task.citizen_satisfied) == (True, True)
    assert sorted((a.question, a.answer, a.key) for a in task.answers) == [
        ("identity", True, "1"), ("resolved", True, "1"), ("satisfied", True, "1")]
    call = dialled.answered
    today = datetime.now(timezone.utc).astimezone(ZoneInfo(callbacks.store.rules.callback.timezone))
    assert call.commands[:5] == ["ANSWER", "STREAM FILE hotline-eval/12345/verify_greeting ",
                                 f"STREAM FILE hotline-eval/dates/month_{today.month} ",
                                 f"STREAM FILE hotline-eval/dates/day_{today.day} ",
                                 "STREAM FILE hotline-eval/12345/verify_rated "]
    assert [c for c in call.commands if c.startswith("GET DATA")] == [
        "GET DATA hotline-eval/12345/verify_identity 6000 1", "GET DATA hotline-eval/12345/verify_resolved 6000 1",
        "GET DATA hotline-eval/12345/verify_satisfaction 6000 1"]
    assert call.commands[-2:] == ["STREAM FILE hotline-eval/12345/verify_thanks ", "HANGUP"]
    # The sample dialplan's MixMonitor recorded the callback where the rules say the web tool finds it.
    assert attempt.recording_file == str(callbacks.pbx.monitor / "hotline-eval" /
                                         f"callback-{task.id}-{attempt.id}.wav")
    assert Path(attempt.recording_file).stat().st_size > 44


@pytest.mark.parametrize("kind", ["busy", "no_answer", "rejected", "congestion"])
def test_each_real_originate_outcome_lands_on_its_attempt(dialled: Dialled, callbacks: Callbacks, kind: str) -> None:
    attempt = dialled.attempts[kind]
    assert (attempt.outcome, attempt.hangup_cause) == (kind, CAUSES[kind]), callbacks.dialer.log()[-2000:]
    task = callbacks.task(dialled.tasks[kind])
    assert task.state == "pending" and task.next_attempt_at is not None  # the policy's retry
    assert dialled.placed[kind] == 1


def test_every_citizen_was_dialled_once(dialled: Dialled) -> None:
    assert dialled.placed == {kind: 1 for kind in NUMBERS}


async def test_a_manager_reload_during_a_callback_loses_nothing(callbacks: Callbacks) -> None:
    async with Robot(callbacks.pbx) as robot:
        queued = queue_callback(callbacks.store, "13812340006", "1796200000.10")
        call = robot.expect(queued.channel_id, [Press("1"), Press("2")])  # 是本人, 问题未解决
        await asyncio.wait_for(call.in_agi.wait(), HANG)
        reloaded = callbacks.pbx.cli("manager reload")
        done = await callbacks.outcome(queued.id)
        await robot.finished(call)
        assert robot.dialled("13812340006") == 1
    assert done.outcome == "answered", reloaded
    state = callbacks.task(queued.task_id)
    assert (state.state, state.citizen_resolved) == ("contacted", False)
    assert state.state_reason == "市民表示问题未解决，待核实处理"


async def test_a_citizen_who_hangs_up_while_the_server_waits_for_the_store(callbacks: Callbacks) -> None:
    """Between two commands: the callback's store lookup is held up (a lock on ratings), the citizen hangs up,
    Asterisk sends a bare HANGUP; the script then meets a dead channel, and says so on the task's record."""
    async with Robot(callbacks.pbx) as robot:
        queued = queue_callback(callbacks.store, "13812340007", "1796200000.11")
        with callbacks.store.engine.connect() as lock:
            lock.execute(text("LOCK TABLE ratings IN ACCESS EXCLUSIVE MODE"))
            call = robot.expect(queued.channel_id, [])
            await asyncio.wait_for(call.in_agi.wait(), HANG)
            await asyncio.sleep(0.3)
            await robot.hang_up(call)
            await asyncio.sleep(0.5)
            lock.rollback()
        await robot.finished(call)
        done = await callbacks.outcome(queued.id)
    assert call.commands == ["ANSWER"]  # answered 511: nothing more was tried on the dead channel
    assert done.outcome == "answered"
    ended = [event for event in callbacks.task(queued.task_id).history if event.kind == "script_ended"]
    assert [(e.detail["end_reason"], e.detail["progress"]) for e in ended] == [("citizen_hangup", "connected")]
    logged = [line for line in callbacks.fastagi.log().splitlines() if f"callback {queued.channel_id} (" in line]
    assert any(line.endswith("): hung up at connected") for line in logged), logged


def test_the_simulated_ami_gives_each_citizen_the_outcome_the_real_pbx_gave(
        dialled: Dialled, callbacks: Callbacks, tmp_path: Path) -> None:
    """The dialer against simulators/asterisk_ami.py, the same five citizens: the same outcomes and causes."""
    behaviours = {"answered": "answer", "busy": "busy", "no_answer": "noanswer", "rejected": "reject",
                  "congestion": "congest"}
    rules = callbacks.store.rules
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    store = RatingStore(engine, rules)

    async def run() -> dict[str, tuple[str | None, int | None]]:
        async def verification(channel: object, variables: dict[str, str]) -> None:
            await asyncio.sleep(0.2)  # the automated callback's script, which hangs up when it is done

        simulated = SimulatedAsterisk(behaviour=lambda number: behaviours[KIND_OF[number]], ring_seconds=0.2,
                                      talk_seconds=0.2, seed=16, dialplan={"callback-verify": verification})
        await simulated.start()
        site = Callbacks(callbacks.pbx, store, callbacks.fastagi, callbacks.dialer)
        attempts = {kind: queue_callback(store, number, f"1796210000.{n}")
                    for n, (kind, number) in enumerate(NUMBERS.items())}
        dialer = DialerLoop(store.sessions, rules.callback, AmiSettings(simulated.host, simulated.port,
                                                                        "hotline-eval", "hotline-eval"),
                            poll_interval=0.05)
        running_dialer = asyncio.create_task(dialer.run())
        try:
            done = {kind: await site.outcome(attempt.id) for kind, attempt in attempts.items()}
        finally:
            running_dialer.cancel()
            await asyncio.gather(running_dialer, return_exceptions=True)
            await simulated.stop()
        return {kind: (a.outcome, a.hangup_cause) for kind, a in done.items()}

    try:
        simulated = asyncio.run(run())
    finally:
        engine.dispose()
    assert simulated == {kind: (a.outcome, a.hangup_cause) for kind, a in dialled.attempts.items()}
