"""Asterisk's side of FastAGI, played by a scripted caller: for the simulator, tests and benchmarks.

:class:`SimulatedChannel` is the sans-I/O part: given one command line it
returns the bytes Asterisk 22 would send back, following the transcripts in
``shared/asterisk/OBSERVED.md`` (reply formats, the ``-1`` then ``HANGUP``
order on a hangup, ``511`` on a dead channel except for the commands res_agi
allows there, ``510``/``520`` for bad commands). :func:`run_call` connects it
to a FastAGI server over real TCP.

A caller is a list of reactions, one used at each point where Asterisk waits
for the caller: GET DATA, WAIT FOR DIGIT, RECORD FILE, and STREAM FILE with
escape digits. A STREAM FILE without escape digits plays out whatever the
caller does, as on a real channel.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field

from ivr.agi_protocol import (
    DEAD_CHANNEL_COMMANDS,
    DEAD_CHANNEL_REPLY,
    INVALID_COMMAND_REPLY,
    MAX_COMMAND_BYTES,
    Reply,
    format_environment,
    format_reply,
    split_command,
)

SAMPLE_RATE = 8000
DEFAULT_SOUND_SECONDS = 3.0
HANGUP_LINE = b"HANGUP\n"


@dataclass(frozen=True)
class Press:
    """The caller presses these keys (GET DATA takes as many as it asks for)."""

    digits: str


@dataclass(frozen=True)
class Silence:
    """The caller does nothing: prompts play out, inputs time out."""


@dataclass(frozen=True)
class Speak:
    """The caller talks into a recording for ``seconds``, then ends it: ``silence``, ``#`` or ``hangup``."""

    seconds: float
    end: str = "silence"


@dataclass(frozen=True)
class HangUp:
    """The caller hangs up while Asterisk waits for them."""


Reaction = Press | Silence | Speak | HangUp


@dataclass
class Caller:
    """A scripted caller and the channel variables the hotline's dialplan set."""

    reactions: list[Reaction]
    callerid: str = "13800000000"
    variables: dict[str, str] = field(default_factory=dict)
    kind: str = "custom"


# Which commands wait for the caller, and the argument counts res_agi.c accepts
# (number of words after the command name: min, max).
_ARITY: dict[tuple[str, ...], tuple[int, int]] = {
    ("ANSWER",): (0, 0),
    ("CHANNEL", "STATUS"): (0, 1),
    ("GET", "VARIABLE"): (1, 1),
    ("GET", "FULL", "VARIABLE"): (1, 2),
    ("SET", "VARIABLE"): (2, 2),
    ("VERBOSE",): (1, 2),
    ("EXEC",): (1, 99),
    ("GET", "DATA"): (1, 3),
    ("STREAM", "FILE"): (2, 3),
    ("WAIT", "FOR", "DIGIT"): (1, 1),
    ("RECORD", "FILE"): (4, 7),
    ("HANGUP",): (0, 1),
    ("NOOP",): (0, 99),
}
_APPLICATIONS = {"playback", "wait", "audiosocket", "noop", "set", "background"}


def _match(words: list[str]) -> tuple[tuple[str, ...] | None, list[str]]:
    upper = [w.upper() for w in words]
    for size in (3, 2, 1):
        name = tuple(upper[:size])
        if name in _ARITY:
            return name, words[size:]
    return None, words


@dataclass
class SimulatedChannel:
    """One answered channel running AGI, as Asterisk 22 behaves."""

    caller: Caller
    uniqueid: str
    linkedid: str
    sounds: dict[str, float] | None = None  # known sound names and lengths; None = every sound exists
    alive: bool = True
    failure: bool = False  # a command failed on a live channel → AGISTATUS=FAILURE
    commands: list[list[str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    _next: int = 0

    def __post_init__(self) -> None:
        self.variables = dict(self.caller.variables) | self.variables

    @property
    def agistatus(self) -> str:
        if self.failure:
            return "FAILURE"
        return "SUCCESS" if self.alive else "HANGUP"

    def _reaction(self) -> Reaction:
        if self._next < len(self.caller.reactions):
            self._next += 1
            return self.caller.reactions[self._next - 1]
        return Silence()

    def _sound_seconds(self, name: str) -> float | None:
        if self.sounds is None:
            return DEFAULT_SOUND_SECONDS
        return self.sounds.get(name)

    def handle(self, raw: bytes) -> tuple[bytes, float, bool]:
        """Reply bytes to one command line, the seconds it took on the channel, and whether
        the caller hung up during it (then ``HANGUP`` follows the reply)."""
        if len(raw) > MAX_COMMAND_BYTES:
            self.violations.append(f"command of {len(raw)} bytes exceeds {MAX_COMMAND_BYTES}")
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if "\r" in line:
            self.violations.append(f"carriage return in command {line!r}")
        words = split_command(line)
        self.commands.append(words)
        name, args = _match(words)
        if name is None:
            self.violations.append(f"unknown command {line!r}")
            return (INVALID_COMMAND_REPLY + "\n").encode(), 0.0, False
        low, high = _ARITY[name]
        if not low <= len(args) <= high:
            self.violations.append(f"wrong argument count {line!r}")
            usage = ("Usage: " + " ".join(name) + " …",)
            return format_reply(Reply(code=520, usage=usage)), 0.0, False
        if not self.alive and name not in DEAD_CHANNEL_COMMANDS:
            return (DEAD_CHANNEL_REPLY + "\n").encode(), 0.0, False
        was_alive = self.alive
        reply, seconds = getattr(self, "_" + "_".join(name).lower())(args)
        return format_reply(reply), seconds, was_alive and not self.alive

    # -- commands ---------------------------------------------------------------

    def _answer(self, args: list[str]) -> tuple[Reply, float]:
        return Reply(200, "0"), 0.0

    def _channel_status(self, args: list[str]) -> tuple[Reply, float]:
        return Reply(200, "6"), 0.0

    def _noop(self, args: list[str]) -> tuple[Reply, float]:
        return Reply(200, "0"), 0.0

    def _verbose(self, args: list[str]) -> tuple[Reply, float]:
        return Reply(200, "1"), 0.0

    def _get_variable(self, args: list[str]) -> tuple[Reply, float]:
        value = self.variables.get(args[0])
        return (Reply(200, "1", value), 0.0) if value is not None else (Reply(200, "0"), 0.0)

    def _get_full_variable(self, args: list[str]) -> tuple[Reply, float]:
        expression = args[0]
        builtins = {
            "${CHANNEL(linkedid)}": self.linkedid,
            "${CHANNEL(uniqueid)}": self.uniqueid,
            "${CALLERID(num)}": self.caller.callerid,
        }
        if expression in builtins:
            return Reply(200, "1", builtins[expression]), 0.0
        if expression.startswith("${") and expression.endswith("}"):
            return Reply(200, "1", self.variables.get(expression[2:-1], "")), 0.0
        return Reply(200, "1", expression), 0.0

    def _set_variable(self, args: list[str]) -> tuple[Reply, float]:
        self.variables[args[0]] = args[1]
        return Reply(200, "1"), 0.0

    def _exec(self, args: list[str]) -> tuple[Reply, float]:
        if args[0].lower() not in _APPLICATIONS:
            return Reply(200, "-2"), 0.0
        return (Reply(200, "0"), 0.0) if self.alive else (Reply(200, "-1"), 0.0)

    def _hangup(self, args: list[str]) -> tuple[Reply, float]:
        self.alive = False
        return Reply(200, "1"), 0.0

    def _stream_file(self, args: list[str]) -> tuple[Reply, float]:
        sound, escape = args[0], args[1]
        length = self._sound_seconds(sound)
        if length is None:
            self.failure = True
            return Reply(200, "-1", endpos=0), 0.0
        full = int(length * SAMPLE_RATE)
        if not escape:
            return Reply(200, "0", endpos=full), length
        reaction = self._reaction()
        if isinstance(reaction, HangUp):
            self.alive = False
            return Reply(200, "-1", endpos=full // 2), length / 2
        if isinstance(reaction, Press) and reaction.digits[:1] in escape:
            return Reply(200, str(ord(reaction.digits[0])), endpos=full // 3), length / 3
        return Reply(200, "0", endpos=full), length

    def _get_data(self, args: list[str]) -> tuple[Reply, float]:
        length = self._sound_seconds(args[0]) or 0.0  # a missing prompt just is not heard
        timeout_ms = int(args[1]) if len(args) > 1 else 6000
        max_digits = int(args[2]) if len(args) > 2 else 1024
        reaction = self._reaction()
        if isinstance(reaction, HangUp):
            self.alive = False
            return Reply(200, "-1"), length / 2
        if isinstance(reaction, Press):
            digits = reaction.digits.split("#", 1)[0][:max_digits]
            if len(digits) < max_digits and "#" not in reaction.digits:
                return Reply(200, digits, "timeout"), length + timeout_ms / 1000
            return Reply(200, digits), length / 2
        return Reply(200, "", "timeout"), length + timeout_ms / 1000

    def _wait_for_digit(self, args: list[str]) -> tuple[Reply, float]:
        timeout = int(args[0]) / 1000
        reaction = self._reaction()
        if isinstance(reaction, HangUp):
            self.alive = False
            return Reply(200, "-1"), timeout / 2
        if isinstance(reaction, Press):
            return Reply(200, str(ord(reaction.digits[0]))), timeout / 2
        return Reply(200, "0"), timeout

    def _record_file(self, args: list[str]) -> tuple[Reply, float]:
        escape, max_ms = args[2], int(args[3])
        options = args[4:]
        silence = next((int(o[2:]) for o in options if o.startswith("s=")), None)
        beep = 0.25 if "BEEP" in (o.upper() for o in options) else 0.0
        cap = max_ms / 1000 if max_ms > 0 else 3600.0
        reaction = self._reaction()
        if isinstance(reaction, HangUp):
            self.alive = False
            return Reply(200, "-1", "hangup", endpos=0), beep
        if isinstance(reaction, Press) and reaction.digits[:1] in escape:
            return Reply(200, str(ord(reaction.digits[0])), "dtmf", endpos=0), beep
        spoken = reaction.seconds if isinstance(reaction, Speak) else 0.0
        end = reaction.end if isinstance(reaction, Speak) else "silence"
        if spoken >= cap:
            return Reply(200, "0", "timeout", endpos=int(cap * SAMPLE_RATE)), beep + cap
        if end == "hangup":
            self.alive = False
            return Reply(200, "-1", "hangup", endpos=int(spoken * SAMPLE_RATE)), beep + spoken
        if end == "#" and "#" in escape:
            # Asterisk trims the last 200 ms (the key's own sound) from the file.
            samples = max(int((spoken - 0.2) * SAMPLE_RATE), 0)
            return Reply(200, str(ord("#")), "dtmf", endpos=samples), beep + spoken
        if silence is None:
            return Reply(200, "0", "timeout", endpos=int(cap * SAMPLE_RATE)), beep + cap
        # Silence detection: trailing silence trimmed back to about 1 s; result = ms left on the wait.
        samples = int((spoken + 1.02) * SAMPLE_RATE)
        left = max(int((cap - spoken - silence) * 1000), 0)
        return Reply(200, str(left), "timeout", endpos=samples), beep + spoken + silence


def channel_environment(
    caller: Caller, uniqueid: str, host: str, port: int, script: str, args: tuple[str, ...] = ()
) -> bytes:
    """The environment block for a call from ``caller``, shaped like OBSERVED.md's transcript A."""
    variables = {
        "agi_network": "yes",
        "agi_request": f"agi://{host}:{port}/{script}",
        "agi_channel": f"PJSIP/hotline-trunk-{abs(hash(uniqueid)) % 0xFFFFFFFF:08x}",
        "agi_language": "zh",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1",
        "agi_callerid": caller.callerid or "unknown",
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "12345",
        "agi_rdnis": "unknown",
        "agi_context": "postcall",
        "agi_extension": "s",
        "agi_priority": "5",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": str(140180919146176 + abs(hash(uniqueid)) % 100000),
    }
    if script:
        variables["agi_network_script"] = script
    return format_environment(variables, args)


@dataclass
class CallResult:
    uniqueid: str
    caller: Caller
    channel: SimulatedChannel
    closed_by_server: bool = False
    error: str | None = None
    turn_seconds: list[float] = field(default_factory=list)  # our send → server's next command

    @property
    def agistatus(self) -> str:
        return self.channel.agistatus


async def run_call(
    host: str,
    port: int,
    caller: Caller,
    *,
    uniqueid: str,
    script: str = "postcall?hotline=12345",
    time_scale: float = 0.0,
    sounds: dict[str, float] | None = None,
    timeout: float = 60.0,
    max_commands: int = 200,
) -> CallResult:
    """Play one call against a FastAGI server over TCP, as Asterisk would."""
    channel = SimulatedChannel(caller, uniqueid=uniqueid, linkedid=caller.variables.get("EVAL_LINKEDID", uniqueid),
                               sounds=sounds)
    result = CallResult(uniqueid, caller, channel)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(channel_environment(caller, uniqueid, host, port, script))
                await writer.drain()
                sent_at = time.perf_counter()
                while True:
                    raw = await reader.readline()
                    if not raw:
                        result.closed_by_server = True
                        break
                    result.turn_seconds.append(time.perf_counter() - sent_at)
                    if not raw.endswith(b"\n"):
                        channel.violations.append(f"partial line at close: {raw!r}")
                        result.closed_by_server = True
                        break
                    if len(channel.commands) >= max_commands:
                        channel.violations.append(f"more than {max_commands} commands")
                        break
                    reply, seconds, hung_up = channel.handle(raw)
                    if time_scale and seconds:
                        await asyncio.sleep(seconds * time_scale)
                    writer.write(reply)
                    await writer.drain()
                    sent_at = time.perf_counter()
                    if hung_up:
                        # Observed: the bare HANGUP line trails the reply by about 40 ms.
                        await asyncio.sleep(0.04 * time_scale)
                        writer.write(HANGUP_LINE)
                        await writer.drain()
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except (ConnectionError, OSError):
                    pass
    except TimeoutError:
        result.error = f"call not finished within {timeout:g} s (server never closed?)"
    except (ConnectionError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def run_agi_process(command: list[str], channel: SimulatedChannel, variables: dict[str, str], args: list[str],
                    env: dict[str, str], timeout: float = 30.0) -> tuple[int, str]:
    """Plain ``AGI(program,args)`` as Asterisk runs it: the environment block and replies on the program's stdin,
    its commands read from its stdout. Returns the exit code and what it wrote to stderr."""
    proc = subprocess.Popen([*command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(format_environment(variables, args))
    proc.stdin.flush()
    while line := proc.stdout.readline():
        reply, _seconds, hung_up = channel.handle(line)
        proc.stdin.write(reply + (HANGUP_LINE if hung_up else b""))
        proc.stdin.flush()
    proc.stdin.close()
    code = proc.wait(timeout=timeout)
    return code, proc.stderr.read().decode(errors="replace")
