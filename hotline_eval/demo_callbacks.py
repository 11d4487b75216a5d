"""The demo's second half: every 差评 from the simulated calls goes round the callback loop.

A private Redis (a ``redis-server`` child on a unix socket under the demo's
home, unless ``REDIS_URL`` is set), the real sweep and RQ jobs, the real
dialer, and the simulated Asterisk AMI answering, refusing or ringing out.
The demo runs the automated mode: an answered callback goes to the FastAGI
server's ``callback-verify`` script, where a scripted citizen keys answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import yaml
from rq import Queue, SimpleWorker
from sqlalchemy import select

from callback.dialer import AmiSettings, Dialer
from callback.jobs import QUEUE_NAME, redis_connection, sweep_due
from hotline_eval.demo_audio import recordings_root, write_missing_audio
from ivr.service import running_ivr
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.reports.export import callback_rows
from rating_core.rules.rulebook import DEFAULT_RULES_FILE
from rating_core.store.models import CallbackAttempt
from simulators.asterisk_agi import Caller, Press, Reaction, run_call
from simulators.asterisk_ami import ContextScript, SimChannel, SimulatedAsterisk

# How the demo's citizens pick up, by the last digit of their number, and what those who answer key
# (是否本人, 问题是否已解决, 对处理结果是否满意).
PICK_UP = {"6": "busy", "7": "noanswer", "8": "reject", "9": "congest"}
ANSWERS = {"3": "12", "4": "2", "5": "112"}  # not solved; someone else; solved but not satisfied
SATISFIED = "111"
# How long the demo waits for its callbacks to end, and how often it says how far they are.
DIAL_WAIT_SECONDS = 60
PROGRESS_EVERY_SECONDS = 3.0
STATE_NAMES = {"pending": "待重拨", "dialing": "拨号中", "contacted": "已接通待处理", "exhausted": "未接通已升级",
               "not_dialled": "不回访", "closed": "已办结", "rectifying": "限期整改中", "rectified": "待回访满意度"}
ANSWER_NAMES = {("identity", False): "非本人", ("resolved", True): "已解决", ("resolved", False): "未解决",
                ("satisfied", True): "满意", ("satisfied", False): "不满意"}


def fastagi_context(host: str, port: int, citizen: Callable[[str], list[Reaction]]) -> ContextScript:
    """``[callback-verify]``: AGI(agi://host:port/callback-verify?task=…&attempt=…) with the citizen's keys."""

    async def run(channel: SimChannel, variables: dict[str, str]) -> None:
        number = variables.get("CALLBACK_NUMBER", "")
        caller = Caller(citizen(number), callerid=variables.get("CALLBACK_HOTLINE", ""), variables=variables)
        script = (f"callback-verify?task={variables.get('CALLBACK_TASK', '')}"
                  f"&attempt={variables.get('CALLBACK_ATTEMPT', '')}")
        result = await run_call(host, port, caller, uniqueid=channel.uniqueid, script=script)
        if result.error:
            logging.getLogger(__name__).warning("simulated AGI on %s: %s", channel.name, result.error)

    return run


def write_demo_rules(home: Path) -> Path:
    """The shipped rules, but calling and texting around the clock, so the demo works whenever it is run."""
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    document["callback"]["mode"] = "automated"
    document["callback"]["calling_days"] = "every_day"
    document["callback"]["calling_windows"] = [{"start": "00:00", "end": "23:59:59.999999"}]
    document["callback"]["dialer"]["citizen_dial_string"] = "Local/{number}@callback-out"
    document["callback"]["dialer"]["agent_dial_string"] = "Local/{agent}@callback-agents"
    # The recordings where the demo writes them (hotline_eval.demo_audio) and its web tool serves them from.
    recordings = recordings_root(home)
    document["callback"]["dialer"]["recording_file"] = str(recordings / "callbacks" / "callback-{task}-{attempt}.wav")
    for section in (document["defaults"], *document["hotlines"].values()):
        if "directory" in (section.get("voice_message") or {}) or section is document["defaults"]:
            section["voice_message"]["directory"] = str(recordings / "voice")
    reminder = document["lifecycle"]["supplementary"]["reminder"]
    reminder["delay"] = {"amount": 0.01, "unit": "minutes"}  # due by the time the callbacks are done
    reminder["quiet_hours"] = None
    path = home / "demo-rules.yaml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def private_redis(home: Path) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = shutil.which("redis-server")
    if server is None:
        raise click.ClickException("redis-server not found: `make demo` installs it "
                                   "(Debian: apt-get install redis-server)")
    socket = (home / "redis.sock").resolve()
    socket.unlink(missing_ok=True)
    child = subprocess.Popen([server, "--port", "0", "--unixsocket", str(socket), "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if time.monotonic() > deadline or child.poll() is not None:
                raise click.ClickException("the demo's redis-server did not start")
            time.sleep(0.05)
        url = f"unix://{socket}"
        os.environ["REDIS_URL"] = url
        yield url
    finally:
        os.environ.pop("REDIS_URL", None)
        child.terminate()
        child.wait(timeout=10)


def run_callbacks(store: RatingStore, journal: Journal, home: Path) -> None:
    for name in ("callback", "rq", "rating_core"):
        logging.getLogger(name).setLevel(logging.WARNING)
    tz = ZoneInfo(store.rules.callback.timezone)
    if not os.environ.get("REDIS_URL"):
        click.echo("\n   starting a private redis-server for the callback loop …")
    with private_redis(home) as url:
        click.echo(f"\n6. callback loop: Redis at {url}; the sweep (what `rq cron` runs each minute) and RQ jobs")
        connection = redis_connection(url)
        queue = Queue(QUEUE_NAME, connection=connection)
        result = sweep_due(queue=queue)
        click.echo(f"   sweep: {result['due']} task(s) due; an RQ worker (burst) runs their jobs …")
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            SimpleWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
        finally:
            for sig, handler in handlers.items():  # RQ's stop handlers would outlive its burst
                signal.signal(sig, handler)
        click.echo(f"   {result['due']} task(s) due, {result['enqueued']} RQ job(s) run; "
                   f"attempts queued for the dialer")
        placed = asyncio.run(_dial(store, journal))
    write_missing_audio(store, recordings_root(home))
    click.echo(f"\n7. the dialer placed {placed} call(s) through a simulated Asterisk AMI; answered ones ran the")
    click.echo("   automated verification (FastAGI callback-verify). The tasks now:")
    with store.sessions() as session:
        for row in callback_rows(session, now=datetime.now(timezone.utc)):
            last = row["attempts"][-1] if row["attempts"] else None
            # Q.850 0: the automated callback hung up itself, which Asterisk reports as no cause at all.
            cause = f" (Q.850 {last['hangup_cause']})" if last and last["hangup_cause"] else ""
            outcome = f"{last['outcome']}{cause}" if last else row["state_reason"] or ""
            said = "、".join(ANSWER_NAMES[key] for a in row["answers"]
                             if (key := (a["question"], a["answer"])) in ANSWER_NAMES)
            verify_by = datetime.fromisoformat(row["verify_by"]).astimezone(tz)
            click.echo(f"   #{row['task_id']:<3} {row['number']:<12} {STATE_NAMES.get(row['state'], row['state']):<8}"
                       f" {outcome:<28} 核实期限 {verify_by:%m-%d %H:%M}  {said}")


def demo_asterisk(ivr_port: int) -> SimulatedAsterisk:
    """The simulated Asterisk AMI whose citizens pick up and answer by the demo's rules, verified over FastAGI."""
    def behaviour(number: str) -> str:
        return PICK_UP.get(number[-1:], "answer")

    def citizen(number: str) -> list[Reaction]:
        return [Press(key) for key in ANSWERS.get(number[-1:], SATISFIED)]

    verify = fastagi_context("127.0.0.1", ivr_port, citizen)
    return SimulatedAsterisk(behaviour=behaviour, ring_seconds=0.3, talk_seconds=0.3, seed=zlib.crc32(b"demo"),
                             dialplan={"callback-verify": verify})


async def _dial(store: RatingStore, journal: Journal) -> int:
    async with running_ivr(store, journal, "127.0.0.1", 0) as ivr:
        return await _run_dialer(store, demo_asterisk(ivr.server.port))


async def _run_dialer(store: RatingStore, ami: SimulatedAsterisk) -> int:
    await ami.start()
    dialer = Dialer(store.sessions, store.rules.callback, AmiSettings(ami.host, ami.port, ami.username, ami.secret),
                    poll_interval=0.05)
    running = asyncio.create_task(dialer.run())

    def counts() -> tuple[int, int]:
        with store.sessions() as session:
            statuses = session.scalars(select(CallbackAttempt.status)).all()
        return sum(status != "ended" for status in statuses), len(statuses)
    try:
        left, total = await asyncio.to_thread(counts)
        click.echo(f"   the dialer: {left} attempt(s) to dial through the simulated AMI …")
        started = said = time.monotonic()
        while left and time.monotonic() < started + DIAL_WAIT_SECONDS:
            await asyncio.sleep(0.1)
            left, total = await asyncio.to_thread(counts)
            if left and time.monotonic() - said >= PROGRESS_EVERY_SECONDS:
                said = time.monotonic()
                click.echo(f"   … {total - left} of {total} call(s) ended, {left} still ringing or talking "
                           f"({said - started:.0f} s)")
        if left:
            click.echo(f"   stopped waiting after {DIAL_WAIT_SECONDS} s: {left} call(s) not ended yet "
                       "(the web tool's dialer below picks them up)")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await ami.stop()
    return len(ami.originates)
