"""Restarts with calls in progress, on a real Asterisk 22 of this module's own (it is restarted here): the
FastAGI server stopped by a service manager or killed outright while callers are in the evaluation, and
Asterisk itself restarted while the dialer has callbacks in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from conftest import fresh_postgres_database
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import parse_rules
from rating_core.store.database import make_engine
from rating_core.store.models import Call, Rating
from real_pbx import Dialer, FastAgi, Pbx, PbxCall, Robot, attempt, pbx_rules, queue_callback, running, running_pbx
from simulators.asterisk_agi import Caller, Press, Silence, Speak
from waiting import HANG, wait_until

VARIABLES = {"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询"}


@dataclass
class Site:
    pbx: Pbx
    store: RatingStore
    database: str
    rules: dict[str, Any]
    home: Path

    def fastagi(self, name: str) -> FastAgi:
        return FastAgi(self.pbx, self.home / name, self.database, self.rules)

    def calls(self, uniqueid: str) -> int:
        with self.store.sessions() as session:
            return session.scalar(select(func.count()).select_from(Call).where(Call.uniqueid == uniqueid)) or 0

    def stored(self, uniqueid: str) -> Call | None:
        with self.store.sessions() as session:
            call = session.scalars(select(Call).where(Call.uniqueid == uniqueid)
                                   .options(selectinload(Call.rating))).one_or_none()
            session.expunge_all()
            return call

    def ratings(self, uniqueid: str) -> int:
        with self.store.sessions() as session:
            return session.scalar(select(func.count()).select_from(Rating).join(Call)
                                  .where(Call.uniqueid == uniqueid)) or 0


@pytest.fixture(scope="module")
def site(asterisk_build: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("restarts")
    database = fresh_postgres_database("hotline_eval_pbx")
    with running_pbx(home / "pbx") as pbx:
        rules = pbx_rules(pbx)
        store = RatingStore(make_engine(database), parse_rules(rules))
        yield Site(pbx, store, database, rules, home)
        store.engine.dispose()


def caller(*reactions: Any) -> Caller:
    return Caller(list(reactions), callerid="13812345678", variables=VARIABLES)


async def until_it_plays(call: PbxCall, prompt: str) -> None:
    await wait_until(lambda: any(prompt in command for command in call.commands), HANG, every=0.05,
                     explain=lambda: str(call))


async def test_a_fastagi_server_stopped_by_its_service_manager_lets_its_calls_finish(site: Site) -> None:
    """SIGTERM mid-call: the caller in the evaluation is served to the end; one who comes while the server drains
    finds the port closed and goes on in the dialplan (AGISTATUS=FAILURE); the server started again serves the
    next. Each call is stored once."""
    first = site.fastagi("first")
    async with Robot(site.pbx) as robot:
        with running(first):
            during = await robot.call(caller(Press("5"), Press("2"), Silence(), Speak(3.0, "#")), "12345")
            await until_it_plays(during, "tag_menu")
            stopping = asyncio.create_task(asyncio.to_thread(first.stop))
            await wait_until(lambda: "stopping: waiting for 1 call(s) in progress" in first.log(), HANG,
                             explain=first.log)
            refused = await robot.call(caller(Press("1")), "12345")
            await robot.finished(refused)
            assert await stopping == 0  # a clean exit, once the call in progress was over
        assert during.ended.is_set(), during
        with running(site.fastagi("second")):
            after = await robot.call(caller(Press("2")), "12345")
            await robot.finished(after)
    kept = site.stored(during.uniqueid)
    assert kept is not None and kept.rating is not None
    assert (kept.rating.level, kept.rating.reason_tags, kept.end_reason) == (
        "very_dissatisfied", ["inefficient"], "completed")
    assert kept.rating.voice_message_file is not None and Path(kept.rating.voice_message_file).is_file()
    assert refused.agistatus == "FAILURE" and refused.commands == []  # nobody listening: the dialplan went on
    assert site.calls(refused.uniqueid) == 0
    assert site.stored(after.uniqueid).rating.level == "satisfied"
    assert [site.calls(c.uniqueid) for c in (during, after)] == [1, 1]


async def test_a_fastagi_server_killed_mid_call_keeps_the_stored_rating_once(site: Site) -> None:
    """kill -9 once the caller's 差评 is stored: Asterisk's AGI ends with the connection and the channel goes on
    in the dialplan; the server started again takes the dead journal over, stores nothing twice, and ends the
    call it left open as server_crash."""
    server = site.fastagi("killed")
    async with Robot(site.pbx) as robot:
        with running(server):
            killed = await robot.call(caller(Press("4"), Press("1"), Silence(), Speak(3.0, "#")), "12345")
            await wait_until(lambda: (stored := site.stored(killed.uniqueid)) is not None and stored.rating is not None,
                             HANG, every=0.02, explain=lambda: str(killed))
            server.kill()
            await robot.finished(killed)
            server.start()  # the same server, its journal folder and store, as systemd restarts it
            after = await robot.call(caller(Press("3")), "12345")
            await robot.finished(after)
    # The AGI ended with the connection and the dialplan went on; Asterisk cannot tell a server that died from
    # one that closed after its script: SUCCESS.
    assert killed.agistatus == "SUCCESS", killed
    kept = site.stored(killed.uniqueid)
    assert kept.rating.level == "dissatisfied" and site.ratings(killed.uniqueid) == 1
    assert kept.end_reason == "server_crash" and kept.ended_at is not None
    assert site.calls(killed.uniqueid) == 1
    assert site.stored(after.uniqueid).rating.level == "basic"
    assert server.log().count("FastAGI server listening") == 2


@pytest.mark.parametrize(("how", "ringing_outcome"), [("restart", "failed"), ("crash", "unknown")])
async def test_the_dialer_across_an_asterisk_restart_never_dials_twice(site: Site, how: str,
                                                                       ringing_outcome: str) -> None:
    """Asterisk goes with two callbacks in flight, one answered and one still ringing. Restarted by an admin, it
    hangs both up first and the dialer sees how they ended; crashed, it says nothing, and the dialer, logged in
    again, finds neither (Status by ChannelId) and records the answered one as answered, the ringing one as
    unknown. Either way each is recorded once and neither is dialled again."""
    numbers = {"answered": f"1381234{how == 'crash':d}021", "ringing": f"1361234{how == 'crash':d}022"}
    attempts = {kind: queue_callback(site.store, number, f"1796300{how == 'crash':d}00.{n}")
                for n, (kind, number) in enumerate(numbers.items())}
    with running(FastAgi(site.pbx, site.home / f"verify-{how}", site.database, site.rules)), \
            running(Dialer(site.pbx, site.home / f"dialer-{how}", site.database, site.rules)) as dialer:
        async with Robot(site.pbx) as robot:
            answered = robot.expect(attempts["answered"].channel_id, [])  # the citizen listens, says nothing
            await asyncio.wait_for(answered.in_agi.wait(), HANG)
            # The citizen's leg being in the AGI is not yet the dialer having stored the answer: on a busy
            # machine a crash in between leaves an attempt nobody saw answered, rightly recorded as unknown.
            await wait_until(lambda: attempt(site.store, attempts["answered"].id).status == "answered", HANG,
                             every=0.05, explain=lambda: dialer.log()[-3000:])
            await wait_until(lambda: robot.dialled(numbers["ringing"]) == 1, HANG)
            if how == "crash":
                site.pbx.crash()
            await asyncio.to_thread(site.pbx.restart)
            await robot.connected()
            await wait_until(lambda: all(attempt(site.store, a.id).outcome for a in attempts.values()), HANG, every=0.2,
                             explain=lambda: dialer.log()[-3000:])
            await asyncio.sleep(3)  # time enough for a wrongly repeated Originate to show
            placed = {kind: robot.dialled(number) for kind, number in numbers.items()}
    assert placed == {"answered": 1, "ringing": 1}, dialer.log()[-3000:]
    assert attempt(site.store, attempts["answered"].id).outcome == "answered"
    ringing = attempt(site.store, attempts["ringing"].id)
    assert ringing.outcome == ringing_outcome, dialer.log()[-3000:]
    if how == "crash":
        assert "不重拨" in (ringing.detail or "")
    assert dialer.log().count("AMI connected") == 2  # logged in again once Asterisk was back
