"""A real Asterisk 22 for the tests, the FastAGI server as its own process, and the people on the calls.

:class:`Pbx` builds Asterisk once (``build-asterisk.sh`` beside its source, cached under /opt) and
starts it in a folder of its own with the project's test configuration (``tests/pbx/``: the shipped
sample dialplans included as a centre pastes them, a caller and the citizens), on private ports.
:class:`FastAgi` runs ``hotline-eval agi`` as a process of its own, as a centre runs it.
:class:`Robot` places evaluation calls over AMI and plays the person on the line: it follows what the
evaluation plays (``AGIExecStart`` events) and answers each prompt that waits for the caller with the
next reaction of an :class:`simulators.asterisk_agi.Caller`, the same scripts the simulator plays, by
moving the caller's half of the Local channel pair to an extension of the ``caller`` context
(``press``, ``say``, ``hangup``, with ``Setvar`` for the keys and the clip) with AMI ``Redirect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import yaml
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from callback.ami_client import AmiClient
from conftest import worker_redis_url
from protocols.agi import split_command
from protocols.ami import Message, originate_fields
from rating_core.complaints.callback_tasks import request_attempt
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import DEFAULT_RULES_FILE
from rating_core.store.models import Call, CallbackAttempt
from simulators.asterisk_agi import Caller, HangUp, Press, Reaction, Reactions, Say, Silence, Speak
from speech_audio import tone
from speech_models.recordings import write_recording

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).with_name("pbx")
VERSION = "22.10.1"
PREFIX = Path(os.environ.get("ASTERISK_PREFIX", f"/opt/asterisk-{VERSION}"))
AMI_USER, AMI_SECRET = "hotline-eval", "test-pbx-secret"
SAMPLE_AMI_USER = "hotline-eval-sample"  # ivr/asterisk/manager.conf's permissions, with the same secret
THINK = 0.6  # seconds a caller takes to react to a prompt: past the 0.25 s beep before a recording


class PbxUnavailable(RuntimeError):
    """Asterisk is not built here and cannot be built."""


def asterisk_source() -> Path:
    """Where the Asterisk source and its build script are: $ASTERISK_SOURCE, else ../shared/asterisk."""
    return Path(os.environ.get("ASTERISK_SOURCE") or ROOT.parent / "shared" / "asterisk")


def ensure_built() -> Path:
    """The asterisk binary, built first when absent (about 5 minutes on 2 cores, once per machine)."""
    binary = PREFIX / "sbin" / "asterisk"
    if (PREFIX / f".built-{VERSION}").exists():
        return binary
    script = asterisk_source() / "build-asterisk.sh"
    if not script.exists():
        raise PbxUnavailable(f"Asterisk {VERSION} is not built at {PREFIX} and {script} is missing "
                             "(set ASTERISK_SOURCE to the folder with the source and build-asterisk.sh)")
    subprocess.run(["bash", str(script), str(PREFIX)], check=True)
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the PBX ----------------------------------------------------------------------------------


def rendered(template: Path, values: dict[str, str]) -> str:
    """A file of ``tests/pbx/`` with its ``@{name}`` placeholders filled in (a name without a value: KeyError)."""
    return re.sub(r"@\{(\w+)\}", lambda m: values[m.group(1)], template.read_text(encoding="utf-8"))


class Switchboard(Protocol):
    """What the robot needs of an Asterisk: its AMI, with a user allowed everything, and its sounds folder (where
    the callers' clips go)."""

    @property
    def ami_host(self) -> str: ...
    @property
    def ami_port(self) -> int: ...
    @property
    def ami_username(self) -> str: ...
    @property
    def ami_secret(self) -> str: ...
    @property
    def sounds(self) -> Path: ...


class Pbx:
    """One Asterisk, its configuration rendered into ``home/etc`` from ``tests/pbx/``."""

    ami_host, ami_username, ami_secret = "127.0.0.1", AMI_USER, AMI_SECRET

    def __init__(self, home: Path, *, fastagi_port: int | None = None) -> None:
        self.home = home
        self.binary = ensure_built()
        self.ami_port = free_port()
        self.fastagi_port = fastagi_port or free_port()
        self.sounds = home / "data" / "sounds"
        self.voice_messages = home / "spool" / "hotline-eval"  # rules: voice_message.directory
        self.speech_recordings = home / "spool" / "speech"  # --speech-recordings: made by hand, as the README says
        self.monitor = home / "spool" / "monitor"
        self._render()

    @property
    def conf(self) -> Path:
        return self.home / "etc" / "asterisk.conf"

    def _render(self) -> None:
        values = {"home": str(self.home), "prefix": str(PREFIX), "repo": str(ROOT), "ami_port": str(self.ami_port),
                  "ami_secret": AMI_SECRET, "fastagi_port": str(self.fastagi_port)}
        for folder in ("etc", "lib", "agi-bin", "run", "log", "spool", "data"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        for template in CONFIG.glob("*.conf"):
            (self.home / "etc" / template.name).write_text(rendered(template, values), encoding="utf-8")
        # The XML documentation the core needs to start lives with the install; the sounds are ours:
        # the shipped prompts where the sample dialplan expects them, a beep, and what callers say.
        documentation = self.home / "data" / "documentation"
        if not documentation.exists():
            documentation.symlink_to(PREFIX / "var" / "lib" / "asterisk" / "documentation")
        (self.sounds / "callers").mkdir(parents=True, exist_ok=True)
        if not (self.sounds / "hotline-eval").exists():
            (self.sounds / "hotline-eval").symlink_to(ROOT / "ivr" / "sounds")
        write_recording(self.sounds / "beep.wav", tone(0.25, 1000, 8000))
        self.speech_recordings.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        for stale in (self.home / "run").glob("*"):
            stale.unlink()
        subprocess.run([str(self.binary), "-C", str(self.conf)], check=True)
        deadline = time.monotonic() + 60
        while True:  # the control socket appears a moment after the daemon forks
            done = subprocess.run([str(self.binary), "-C", str(self.conf), "-rx", "core waitfullybooted"],
                                  capture_output=True, text=True)
            if "fully booted" in done.stdout:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Asterisk did not start: {done.stdout}{done.stderr}\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def cli(self, command: str) -> str:
        done = subprocess.run([str(self.binary), "-C", str(self.conf), "-rx", command],
                              capture_output=True, text=True, timeout=60)
        return done.stdout

    @property
    def pid(self) -> int | None:
        try:
            pid = int((self.home / "run" / "asterisk.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.pid
        if pid is None:
            return
        self.cli("core stop now")
        deadline = time.monotonic() + 30
        while self.pid is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pid is not None:
            os.kill(pid, signal.SIGKILL)

    def restart(self) -> None:
        """``core stop now`` and start: Asterisk hangs its calls up (and says so) before it goes."""
        self.stop()
        self.start()

    def crash(self) -> None:
        """kill -9: the calls vanish with no event at all."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid is not None:
                time.sleep(0.05)

    def log(self) -> str:
        path = self.home / "log" / "messages.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_pbx(home: Path, **kwargs: Any) -> Iterator[Pbx]:
    pbx = Pbx(home, **kwargs)
    pbx.start()
    try:
        yield pbx
    finally:
        pbx.stop()


# -- the rules and the FastAGI server ----------------------------------------------------------


def pbx_rules(pbx: Pbx) -> dict[str, Any]:
    """The shipped rules (as a document to change) pointed at the test PBX: its folders, its citizens,
    calls at any hour, a short ring."""
    document = copy.deepcopy(yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8")))
    document["defaults"]["voice_message"]["directory"] = str(pbx.voice_messages)
    callback = document["callback"]
    callback["mode"] = "automated"
    callback["calling_days"] = "every_day"
    callback["calling_windows"] = [{"start": "00:00", "end": "23:59:59"}]
    callback["dialer"] |= {"citizen_dial_string": "Local/{number}@citizens", "ring_timeout_seconds": 5,
                           "recording_file": str(pbx.monitor / "hotline-eval" / "callback-{task}-{attempt}.wav")}
    return document


def variant(document: dict[str, Any], hotline: str, of: str, **changes: Any) -> None:
    """Add ``hotline`` to the rules: a copy of hotline ``of`` with ``changes`` to its section."""
    section = copy.deepcopy(document["hotlines"][of])
    for key, value in changes.items():
        if isinstance(value, dict):
            section[key] = {**section.get(key, {}), **value}
        else:
            section[key] = value
    document["hotlines"][hotline] = section


class Service:
    """A ``hotline-eval`` command as a process of its own, in its own session (so a kill takes its children
    too), logging to ``home/<name>.log``; started once its log says ``ready``."""

    def __init__(self, home: Path, database_url: str, rules: dict[str, Any], command: list[str], *,
                 name: str, ready: str) -> None:
        self.home = home
        self.command, self.name, self.ready = command, name, ready
        home.mkdir(parents=True, exist_ok=True)
        self.rules_file = home / "rules.yaml"
        self.rules_file.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
        self.log_file = home / f"{self.name}.log"
        self.env = dict(os.environ, DATABASE_URL=database_url, HOTLINE_EVAL_HOME=str(home),
                        HOTLINE_EVAL_RULES=str(self.rules_file), HOTLINE_EVAL_SPOOL=str(home / "spool"),
                        REDIS_URL=worker_redis_url(1))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = ROOT / ".venv" / "bin" / "hotline-eval"
        seen = len(self.log())
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen([str(executable) if executable.exists() else "hotline-eval",
                                             *self.command], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 120  # the speech models load first
        while self.ready not in self.log()[seen:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"hotline-eval {self.name} exited {self.process.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hotline-eval {self.name} never got ready:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM, as a service manager stops it; its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def kill(self) -> None:
        """kill -9 of the process and everything it started."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace") if self.log_file.exists() else ""


class FastAgi(Service):
    """``hotline-eval agi``: what Asterisk connects to."""

    def __init__(self, pbx: Pbx, home: Path, database_url: str, rules: dict[str, Any], *args: str,
                 port: int | None = None) -> None:
        self.port = port or pbx.fastagi_port  # the sample dialplan's HOTLINE_EVAL_AGI; others are asked per call
        self.audiosocket_port = free_port()
        super().__init__(home, database_url, rules,
                         ["agi", "--listen", f"127.0.0.1:{self.port}",
                          "--audiosocket", f"127.0.0.1:{self.audiosocket_port}", *args],
                         name="fastagi", ready="FastAGI server listening")

    @property
    def url(self) -> str:
        return f"agi://127.0.0.1:{self.port}"


class Dialer(Service):
    """``hotline-eval dialer``: the callbacks, over the PBX's AMI."""

    def __init__(self, pbx: Pbx, home: Path, database_url: str, rules: dict[str, Any]) -> None:
        super().__init__(home, database_url, rules, ["dialer"], name="dialer", ready="AMI connected")
        # As the sample's user (tests/pbx/manager.conf's copy of its read= and write=): what the dialer does here
        # is what those permissions allow.
        self.env |= {"AMI_HOST": "127.0.0.1", "AMI_PORT": str(pbx.ami_port), "AMI_USERNAME": SAMPLE_AMI_USER,
                     "AMI_SECRET": AMI_SECRET}


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    service.start()
    try:
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def running_fastagi(pbx: Pbx, home: Path, database_url: str, rules: dict[str, Any], *args: str,
                    port: int | None = None) -> Iterator[FastAgi]:
    server = FastAgi(pbx, home, database_url, rules, *args, port=port)
    with running(server):
        yield server


# -- the people on the calls ----------------------------------------------------------------------

# The AGI commands during which Asterisk waits for the caller, as the simulated channel counts them.
_WAITS = ("GET DATA", "WAIT FOR DIGIT", "RECORD FILE", "EXEC AudioSocket", "EXEC Record")


@dataclass
class PbxCall:
    """One call on the real PBX as the robot saw it: the AGI commands Asterisk ran (``AGIExecStart``, in
    order, as the simulator's ``sent`` prints them), their results, and how the dialplan went on."""

    uniqueid: str  # the leg running the AGI script
    peer: str  # the person's leg (the Local pair's other half)
    reactions: Reactions
    commands: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)  # AGIExecEnd ResultCode, command by command
    agistatus: str | None = None  # AGISTATUS once the AGI ended: the dialplan went on
    hangup_cause: str | None = None
    in_agi: asyncio.Event = field(default_factory=asyncio.Event)  # the dialplan has started the AGI
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    said: list[str] = field(default_factory=list)  # what the robot did, for failure messages

    def __str__(self) -> str:
        return (f"call {self.uniqueid}: commands {self.commands}, results {self.results}, robot {self.said}, "
                f"AGISTATUS {self.agistatus}")


def waits_for_the_caller(words: list[str]) -> bool:
    command = " ".join(words[:3]).upper()
    if command.startswith("STREAM FILE"):
        return len(words) > 3 and words[3] != ""  # only a prompt with escape digits can be cut short
    return any(command.startswith(w.upper()) for w in _WAITS)


class Robot:
    """Places calls on the PBX and plays the caller (or the citizen called back) on each."""

    def __init__(self, pbx: Switchboard) -> None:
        self.pbx = pbx
        self.calls: dict[str, PbxCall] = {}
        self.events: list[Message] = []
        self.client = AmiClient(pbx.ami_host, pbx.ami_port, pbx.ami_username, pbx.ami_secret, on_event=self._on_event,
                                events="on", backoff_max=1.0, name="robot")
        self._runner: asyncio.Task[None] | None = None
        self._actions: set[asyncio.Task[None]] = set()
        self._clips = 0

    async def __aenter__(self) -> Robot:
        self._runner = asyncio.create_task(self.client.run())
        await asyncio.wait_for(self.client.connected.wait(), 60)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._actions:
            task.cancel()
        await asyncio.gather(*self._actions, return_exceptions=True)
        await self.client.stop()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    async def connected(self) -> None:
        """After an Asterisk restart: wait until the robot is logged in again."""
        await asyncio.wait_for(self.client.connected.wait(), 60)

    # -- placing ------------------------------------------------------------------------------

    async def call(self, caller: Caller, hotline: str, *, server: FastAgi | None = None,
                   dialled: tuple[str, str] = ("postcall-eval", "s")) -> PbxCall:
        """A caller who has just been served, handed to the evaluation by the sample dialplan's
        ``postcall-eval``; ``server`` when not the one its HOTLINE_EVAL_AGI names (the channel's own
        variable of that name comes before the global). ``dialled``: another (context, extension) that starts the
        evaluation, such as the sample's test line ``("eval-test", "8000")``."""
        uniqueid = f"{int(time.time())}.{uuid.uuid4().hex[:10]}"
        call = self.expect(uniqueid, caller.reactions)
        variables = {"EVAL_HOTLINE": hotline, **caller.variables}
        if server is not None:
            variables["HOTLINE_EVAL_AGI"] = server.url
        await self.client.send("Originate", originate_fields(
            channel="Local/wait@caller/n", context=dialled[0], exten=dialled[1], priority=1,
            caller_id=f'"{caller.callerid}" <{caller.callerid}>', timeout_ms=30000,
            channel_id=uniqueid, other_channel_id=call.peer, variables=variables))
        return call

    def expect(self, uniqueid: str, reactions: list[Reaction], peer: str | None = None) -> PbxCall:
        """Follow the call whose AGI leg is ``uniqueid`` (the dialer's calls too: its ``ChannelId``), from its
        first event, even one that came before it was expected."""
        call = PbxCall(uniqueid, peer or f"{uniqueid}-2", Reactions(list(reactions)))
        self.calls[uniqueid] = call
        for message in [m for m in self.events if m.get("Uniqueid") == uniqueid]:
            self._follow(call, message)
        return call

    async def hang_up(self, call: PbxCall) -> None:
        """The person hangs up now, whatever the call is doing."""
        call.said.append("hangup (now)")
        await self.client.send("Hangup", {"Channel": call.peer})

    def dialled(self, number: str) -> int:
        """How many calls were placed to the citizen ``number`` (the Local channels the Originates made)."""
        return sum(1 for m in self.events if m.name == "Newchannel" and (m.get("Channel") or "").startswith(
            f"Local/{number}@citizens-") and (m.get("Channel") or "").endswith(";1"))

    async def finished(self, call: PbxCall, timeout: float = 300.0) -> PbxCall:
        try:
            await asyncio.wait_for(call.ended.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"call not over within {timeout:g} s: {call}") from None
        return call

    # -- following --------------------------------------------------------------------------------

    def _on_event(self, message: Message) -> None:
        self.events.append(message)
        call = self.calls.get(message.get("Uniqueid") or "")
        if call is not None:
            self._follow(call, message)

    def _follow(self, call: PbxCall, message: Message) -> None:
        if message.name == "AGIExecStart":
            words = split_command(message.get("Command") or "")
            call.commands.append(" ".join(words))
            if waits_for_the_caller(words) and not (words[:2] == ["STREAM", "FILE"] and call.reactions.speaks_next()):
                self._react(call, call.reactions.next())
        elif message.name == "AGIExecEnd":
            call.results.append(message.get("ResultCode") or "")
        elif message.name == "Newexten" and message.get("Application") == "AGI":
            call.in_agi.set()
        elif message.name == "VarSet" and message.get("Variable") == "AGISTATUS":
            call.agistatus = message.get("Value")
        elif message.name == "Hangup":
            call.hangup_cause = message.get("Cause")
            call.ended.set()

    def _react(self, call: PbxCall, reaction: Reaction) -> None:
        if isinstance(reaction, Silence):
            call.said.append("silence")
            return
        if isinstance(reaction, Press):
            exten, variables = "press", {"KEYS": reaction.digits}
        elif isinstance(reaction, HangUp):
            exten, variables = "hangup", {}
        else:
            exten, variables = "say", self._saying(reaction)
        call.said.append(f"{exten} {variables}" if variables else exten)
        task = asyncio.create_task(self._move(call, exten, variables))
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    def _saying(self, reaction: Say | Speak) -> dict[str, str]:
        """The audio as a clip of the PBX's sounds, and what the caller does after it: a key, a hangup or quiet."""
        if isinstance(reaction, Speak):
            audio, end = tone(reaction.seconds), reaction.end
        else:
            audio, end = reaction.said, reaction.ending
        self._clips += 1
        clip = f"clip{self._clips}"
        write_recording(self.pbx.sounds / "callers" / f"{clip}.wav", audio)
        if end == "hangup":
            return {"CLIP": clip, "THEN": "hangup"}
        if end == "silence":
            return {"CLIP": clip, "THEN": ""}
        return {"CLIP": clip, "THEN": "press", "KEYS": end}

    async def _move(self, call: PbxCall, exten: str, variables: dict[str, str]) -> None:
        """After a moment to react, the person's leg goes to ``caller,exten`` with its variables set."""
        await asyncio.sleep(THINK)
        try:
            for name, value in variables.items():
                await self.client.send("Setvar", {"Channel": call.peer, "Variable": name, "Value": value})
            await self.client.send("Redirect", {"Channel": call.peer, "Context": "caller", "Exten": exten,
                                                "Priority": "1"})
        except Exception as exc:  # the call may be over: noted, the test's assertions say the rest
            call.said.append(f"move to {exten} failed: {exc}")


def queue_callback(store: RatingStore, number: str, uniqueid: str) -> CallbackAttempt:
    """A 差评 from ``number`` as the evaluation stores it, and its callback queued for the dialer as the RQ job
    queues it when the task is due."""
    now = datetime.now(timezone.utc)
    store.apply([CallStarted(uniqueid=uniqueid, hotline="12345", at=now, caller_number=number, agent_id="1024",
                             queue="社保咨询"),
                 RatingGiven(uniqueid, "very_dissatisfied", "dtmf", now)])
    with store.sessions.begin() as session:
        rating = session.scalars(select(Call).where(Call.uniqueid == uniqueid)
                                 .options(selectinload(Call.rating))).one().rating
        assert rating is not None and rating.callback_task is not None
        decision = request_attempt(session, store.rules.callback, rating.callback_task.id, now, "system:rq")
        assert decision.attempt_id is not None, decision
    return attempt(store, decision.attempt_id)


def attempt(store: RatingStore, attempt_id: int) -> CallbackAttempt:
    with store.sessions() as session:
        row = session.get(CallbackAttempt, attempt_id)
        assert row is not None
        session.expunge(row)
        return row


def place_all(pbx: Pbx, calls: dict[str, tuple[str, Caller]], server: FastAgi | None = None) -> dict[str, PbxCall]:
    """Place every call at once (``{name: (hotline, caller)}``), and return each when it is over."""
    async def run() -> dict[str, PbxCall]:
        async with Robot(pbx) as robot:
            placed = {name: await robot.call(caller, hotline, server=server)
                      for name, (hotline, caller) in calls.items()}
            for call in placed.values():
                await robot.finished(call)
            return placed
    return asyncio.run(run())
