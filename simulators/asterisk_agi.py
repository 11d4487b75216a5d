"""Asterisk's side of FastAGI, played by a scripted caller: for the simulator, tests and benchmarks.

:class:`SimulatedChannel` is the sans-I/O part: given one command line it
returns the bytes Asterisk 22 would send back, following the transcripts in
``shared/asterisk/OBSERVED.md`` (reply formats, the ``-1`` then ``HANGUP``
order on a hangup, ``511`` on a dead channel except for the commands res_agi
allows there, ``510``/``520`` for bad commands). :func:`run_call` connects it
to a FastAGI server over real TCP.

A caller is a list of reactions, one used at each point where Asterisk waits
for the caller: GET DATA, WAIT FOR DIGIT, RECORD FILE, ``EXEC Record``, STREAM
FILE with escape digits, and ``EXEC AudioSocket`` (where :func:`play_audiosocket`
connects to the flow's AudioSocket server and streams what the caller says, as
§3 of the transcripts shows). A STREAM FILE without escape digits plays out
whatever the caller does, as on a real channel. What a caller says into a
recording is written as Asterisk writes it (8 kHz 16-bit mono wav, the key's
last 200 ms (RECORD FILE) or 250 ms (Record()) trimmed, trailing silence cut
back to about a second) under ``recordings``, the folder standing for
Asterisk's disk.

The same callers are played on a real Asterisk 22 by ``tests/test_pbx_*.py``,
which compare the two call by call. What that found wrong here, and fixed:

* ``EXEC Record`` was unknown. On a caller's hangup it answers ``200 result=0``
  (not ``-1``) with ``HANGUP`` in the same read, sets ``RECORD_STATUS``, and
  keeps the file only with its ``k`` option; trailing silence is cut back to
  1.02 s, as RECORD FILE's.
* A caller still speaking when the server ended the AudioSocket session (it
  had heard enough) hung up or pressed their key inside the session (``-1``);
  on a real call that comes in whatever the call does next.
* A caller spoke into a recording at once. A real one takes a moment, and
  RECORD FILE counts that pause as silence: ``Say.pause`` says how long, and
  a pause as long as the silence limit ends the recording before any speech.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ivr.agi_server import close_quietly
from ivr.agi_session import RECORDING_FORMATS
from protocols.agi import (
    DEAD_CHANNEL_COMMANDS,
    DEAD_CHANNEL_REPLY,
    INVALID_COMMAND_REPLY,
    MAX_COMMAND_BYTES,
    Reply,
    format_environment,
    format_reply,
    split_command,
)
from protocols.audiosocket import FRAME_BYTES, SILENCE_FRAME, Kind, encode
from speech_models.recordings import SAMPLE_RATE, write_recording

DEFAULT_SOUND_SECONDS = 3.0
HANGUP_LINE = b"HANGUP\n"
HANGUP_DELAY = 0.04  # OBSERVED.md §1.4: the bare HANGUP line trails a reply by about 40 ms


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


@dataclass(frozen=True)
class Say:
    """In an AudioSocket session or a recording the caller says ``audio`` (8 kHz 16-bit mono PCM),
    after ``pause`` seconds of quiet, then presses ``press`` or hangs up (``hang_up``), else stays
    silent until the server ends it (or the recording ends on silence). ``hang_up_after`` cuts the
    audio off mid-utterance at that many bytes."""

    audio: bytes = b""
    press: str | None = None
    hang_up: bool = False
    hang_up_after: int | None = None
    pause: float = 0.0

    @property
    def said(self) -> bytes:
        """What reaches Asterisk: the pause, then the audio up to the hangup."""
        audio = self.audio if self.hang_up_after is None else self.audio[:self.hang_up_after]
        return bytes(int(self.pause * SAMPLE_RATE) * 2) + audio

    @property
    def ending(self) -> str:
        """What the caller does once done speaking: "hangup", the keys pressed, or "silence"."""
        if self.hang_up or self.hang_up_after is not None:
            return "hangup"
        return self.press or "silence"

    def afterwards(self) -> Reaction | None:
        """What the caller does once done speaking, when the server stopped listening first: it happens
        in whatever the call does next."""
        if self.ending == "hangup":
            return HangUp()
        return Press(self.press) if self.press else None


Reaction = Press | Silence | Speak | HangUp | Say


@dataclass(frozen=True)
class AudioSocketRequest:
    session: uuid.UUID
    host: str
    port: int
    reaction: Reaction


@dataclass
class Reactions:
    """What a caller will do, in order: the next reaction each time Asterisk waits for them, silence once
    they run out. The simulated channel and the real-PBX tests' robot both follow a caller this way."""

    pending: list[Reaction]
    used: int = 0

    def next(self) -> Reaction:
        if self.used < len(self.pending):
            self.used += 1
            return self.pending[self.used - 1]
        return Silence()

    def speaks_next(self) -> bool:
        """A caller who will speak lets the prompt play out and speaks when listened to."""
        return self.used < len(self.pending) and isinstance(self.pending[self.used], Say)

    def later(self, reaction: Reaction) -> None:
        """``reaction`` is what the caller does next (one put off from a moment that had passed)."""
        self.pending.insert(self.used, reaction)


@dataclass
class Caller:
    """A scripted caller and the channel variables the hotline's dialplan set."""

    reactions: list[Reaction]
    callerid: str = "13800000000"
    variables: dict[str, str] = field(default_factory=dict)
    kind: str = "custom"


@dataclass(frozen=True)
class _Take:
    """How a recording went: it ``end``s on "key", "silence", "cap" (the length cap) or "hangup", after the caller
    spoke for ``spoken`` seconds (``audio``, when the caller said something real)."""

    end: str
    spoken: float
    audio: bytes | None
    key: str | None = None

    def seconds(self, silence: int | None) -> float:
        """How long the recording took on the channel."""
        return self.spoken + (silence or 0) if self.end == "silence" else self.spoken


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
_APPLICATIONS = {"playback", "wait", "audiosocket", "noop", "set", "background", "record"}


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
    audiosocket: AudioSocketRequest | None = None  # an EXEC AudioSocket the transport must play out
    recordings: Path | None = None  # stands for Asterisk's disk: what a caller says into a recording is written here
    files: dict[str, int] = field(default_factory=dict)  # recordings made, by path: their size in bytes (STAT)
    hangup_delay: float = 0.0  # seconds from a reply to the HANGUP line after it, when the caller hung up during it
    reactions: Reactions = field(init=False)  # the caller's; the call may put one off to later

    def __post_init__(self) -> None:
        self.variables = dict(self.caller.variables) | self.variables
        self.reactions = Reactions(list(self.caller.reactions))

    @property
    def agistatus(self) -> str:
        if self.failure:
            return "FAILURE"
        return "SUCCESS" if self.alive else "HANGUP"

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
        self.hangup_delay = HANGUP_DELAY
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
        if expression.startswith("${STAT(s,") and expression.endswith(")}"):
            size = self.files.get(expression[len("${STAT(s,"):-2])
            return Reply(200, "1", str(size) if size is not None else ""), 0.0
        if expression.startswith("${") and expression.endswith("}"):
            return Reply(200, "1", self.variables.get(expression[2:-1], "")), 0.0
        return Reply(200, "1", expression), 0.0

    def _set_variable(self, args: list[str]) -> tuple[Reply, float]:
        self.variables[args[0]] = args[1]
        return Reply(200, "1"), 0.0

    def _exec(self, args: list[str]) -> tuple[Reply, float]:
        if args[0].lower() not in _APPLICATIONS:
            return Reply(200, "-2"), 0.0
        if not self.alive:
            return Reply(200, "-1"), 0.0
        if args[0].lower() == "audiosocket":
            return self._audiosocket(args[1] if len(args) > 1 else "")
        if args[0].lower() == "record":
            return self._record(args[1] if len(args) > 1 else "")
        return Reply(200, "0"), 0.0

    def _audiosocket(self, data: str) -> tuple[Reply, float]:
        """Note the session for the transport; the reply stands only if nobody plays it (no connection)."""
        session, _, address = data.partition(",")
        host, _, port = address.rpartition(":")
        try:
            self.audiosocket = AudioSocketRequest(uuid.UUID(session), host, int(port), self.reactions.next())
        except ValueError:
            self.violations.append(f"EXEC AudioSocket with bad arguments {data!r}")
        return Reply(200, "-1"), 0.0

    def audiosocket_reply(self, outcome: str) -> tuple[bytes, bool]:
        """The EXEC's reply once the session is over, as observed: the server ended it (``0``),
        the caller hung up (``-1`` then HANGUP), or there was no connection (``-1``). When the server
        ended it before the caller was through ("server_first"), the caller's key or hangup comes in
        the next command, as on the real PBX (tests/test_pbx_speech.py)."""
        request, self.audiosocket = self.audiosocket, None
        if outcome == "server_first" and request is not None and isinstance(request.reaction, Say):
            later = request.reaction.afterwards()
            if later is not None:
                self.reactions.later(later)
            outcome = "server"
        if outcome == "server":
            return format_reply(Reply(200, "0")), False
        if outcome == "caller":
            self.alive = False
            return format_reply(Reply(200, "-1")), True
        return format_reply(Reply(200, "-1")), False

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
        if not escape or self.reactions.speaks_next():
            return Reply(200, "0", endpos=full), length
        reaction = self.reactions.next()
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
        reaction = self.reactions.next()
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
        reaction = self.reactions.next()
        if isinstance(reaction, HangUp):
            self.alive = False
            return Reply(200, "-1"), timeout / 2
        if isinstance(reaction, Press):
            return Reply(200, str(ord(reaction.digits[0]))), timeout / 2
        return Reply(200, "0"), timeout

    def _take(self, ends_on: str, cap: float, silence: int | None) -> _Take:
        """What the caller does into a recording of at most ``cap`` seconds that ``ends_on`` a key or
        ``silence`` seconds of it; the one rule behind RECORD FILE and Record()."""
        reaction = self.reactions.next()
        if isinstance(reaction, HangUp):
            return _Take("hangup", 0.0, None)
        if isinstance(reaction, Press) and reaction.digits[:1] in ends_on:
            return _Take("key", 0.0, None, reaction.digits[0])
        audio: bytes | None = None  # what a Say caller says, written as the file; a Speak caller is only a length
        if isinstance(reaction, Say):
            if silence is not None and reaction.pause >= silence:
                return _Take("silence", 0.0, b"")  # the recording ended on the quiet before the caller spoke
            audio = reaction.said
            spoken = len(audio) / 2 / SAMPLE_RATE
            end = reaction.ending
        else:
            spoken = reaction.seconds if isinstance(reaction, Speak) else 0.0
            end = reaction.end if isinstance(reaction, Speak) else "silence"
        key = end if len(end) == 1 and end in ends_on else None
        if spoken >= cap or (end != "hangup" and key is None and (silence is None or spoken + silence >= cap)):
            return _Take("cap", cap, audio)  # the length cap came first
        if end == "hangup":
            return _Take("hangup", spoken, audio)
        if key is not None:
            return _Take("key", spoken, audio, key)
        return _Take("silence", spoken, audio)

    def _keep(self, path: str, audio: bytes | None, samples: int) -> None:
        """The recording on Asterisk's disk: its size for STAT(), and the caller's audio where it is written."""
        header, per_second = RECORDING_FORMATS[path.rpartition(".")[2]]
        self.files[path] = header + samples * per_second // SAMPLE_RATE
        if audio is not None and self.recordings is not None and path.endswith(".wav"):
            write_recording(self.recordings / path.lstrip("/"), (audio + bytes(samples * 2))[:samples * 2])

    def _record_file(self, args: list[str]) -> tuple[Reply, float]:
        path, fmt, escape, max_ms = args[0], args[1], args[2], int(args[3])
        options = args[4:]
        silence = next((int(o[2:]) for o in options if o.startswith("s=")), None)
        beep = 0.25 if "BEEP" in (o.upper() for o in options) else 0.0
        cap = max_ms / 1000 if max_ms > 0 else 3600.0
        take = self._take(escape, cap, silence)
        if take.end == "hangup":
            self.alive = False
            samples = int(take.spoken * SAMPLE_RATE)
            reply = Reply(200, "-1", "hangup", endpos=samples)
        elif take.end == "key":
            # Asterisk trims the last 200 ms (the key's own sound) from the file.
            samples = max(int((take.spoken - 0.2) * SAMPLE_RATE), 0)
            reply = Reply(200, str(ord(take.key or "#")), "dtmf", endpos=samples)
        elif take.end == "cap":
            samples = int(cap * SAMPLE_RATE)
            reply = Reply(200, "0", "timeout", endpos=samples)
        else:
            assert silence is not None
            # Silence detection: trailing silence trimmed back to about 1 s; result = ms left on the wait.
            samples = int((take.spoken + 1.02) * SAMPLE_RATE)
            reply = Reply(200, str(int((cap - take.spoken - silence) * 1000)), "timeout", endpos=samples)
        if take.audio is not None and fmt == "wav":
            self._keep(f"{path}.{fmt}", take.audio, samples)
        return reply, beep + take.seconds(silence)

    def _record(self, data: str) -> tuple[Reply, float]:
        """``EXEC Record file.fmt,silence,maxduration,options`` as app_record.c runs it: the folder is made,
        ``RECORD_STATUS`` says how it ended, a hangup keeps the file only with ``k``."""
        filename, silence_s, max_s, options = (data.split(",") + ["", "", ""])[:4]
        silence = int(silence_s) if silence_s.isdigit() and int(silence_s) > 0 else None
        cap = float(max_s) if max_s.isdigit() and int(max_s) > 0 else 3600.0
        terminators = "" if "x" in options else "0123456789*#" if "y" in options else "*" if "t" in options else "#"
        beep = 0.0 if "q" in options else 0.25
        self.variables["RECORDED_FILE"] = filename.rpartition(".")[0]
        take = self._take(terminators, cap, silence)
        if take.end == "hangup":
            # On the real PBX: result=0, not -1, and HANGUP in the same read (tests/test_pbx_evaluation.py).
            self.alive = False
            self.hangup_delay = 0.0
            self.variables["RECORD_STATUS"] = "HANGUP"
            if "k" in options:
                self._keep(filename, take.audio, int(take.spoken * SAMPLE_RATE))
            return Reply(200, "0"), beep + take.spoken
        if take.end == "key":
            # The last quarter second (the key's own tone) is cut from the file.
            self.variables["RECORD_STATUS"] = "DTMF"
            samples = max(int((take.spoken - 0.25) * SAMPLE_RATE), 0)
        elif take.end == "cap":
            self.variables["RECORD_STATUS"] = "TIMEOUT"
            samples = int(cap * SAMPLE_RATE)
        else:
            # Trailing silence is cut back to about a second (1.02 s on the real PBX, as RECORD FILE's).
            self.variables["RECORD_STATUS"] = "SILENCE"
            samples = int((take.spoken + 1.02) * SAMPLE_RATE)
        self._keep(filename, take.audio, samples)
        return Reply(200, "0"), beep + take.seconds(silence)

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
    turn_seconds: list[float] = field(default_factory=list)  # our send → server's next command, while the caller is on

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
    recordings: Path | None = None,
) -> CallResult:
    """Play one call against a FastAGI server over TCP, as Asterisk would."""
    channel = SimulatedChannel(caller, uniqueid=uniqueid, linkedid=caller.variables.get("EVAL_LINKEDID", uniqueid),
                               sounds=sounds, recordings=recordings)
    result = CallResult(uniqueid, caller, channel)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(channel_environment(caller, uniqueid, host, port, script))
                await writer.drain()
                sent_at = time.perf_counter()
                channel_gone = False
                while True:
                    try:
                        raw = await reader.readline()
                    except ConnectionError:
                        if not channel_gone:
                            raise
                        raw = b""  # a reset after our HANGUP line: the server had already closed
                    if not raw:
                        result.closed_by_server = True
                        break
                    if not channel_gone:  # a caller who hung up waits for nothing (and the HANGUP line's delay is ours)
                        result.turn_seconds.append(time.perf_counter() - sent_at)
                    if not raw.endswith(b"\n"):
                        channel.violations.append(f"partial line at close: {raw!r}")
                        result.closed_by_server = True
                        break
                    if len(channel.commands) >= max_commands:
                        channel.violations.append(f"more than {max_commands} commands")
                        break
                    reply, seconds, hung_up = channel.handle(raw)
                    if channel.audiosocket is not None:
                        outcome = await play_audiosocket(channel.audiosocket, time_scale=time_scale)
                        reply, hung_up = channel.audiosocket_reply(outcome)
                    if time_scale and seconds:
                        await asyncio.sleep(seconds * time_scale)
                    writer.write(reply)
                    await writer.drain()
                    sent_at = time.perf_counter()
                    if hung_up and not channel_gone:
                        # Observed: the bare HANGUP line trails the reply by about 40 ms. A server that
                        # closed meanwhile answers it with a reset, which Asterisk ignores on a dead channel.
                        channel_gone = True
                        await asyncio.sleep(channel.hangup_delay * time_scale)
                        try:
                            writer.write(HANGUP_LINE)
                            await writer.drain()
                        except ConnectionError:
                            result.closed_by_server = True
                            break
            finally:
                await close_quietly(writer)
    except TimeoutError:
        result.error = f"call not finished within {timeout:g} s (server never closed?)"
    except (ConnectionError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def play_audiosocket(request: AudioSocketRequest, *, time_scale: float = 0.0,
                           silence_after: float = 3.0, timeout: float = 30.0,
                           on_end_of_speech: Callable[[], object] | None = None) -> str:
    """Asterisk's side of one AudioSocket session: "server" when the server ended it with
    ``00 00 00``, "server_first" when it did so before the caller had pressed the key or hung up
    as they meant to, "caller" when the caller hung up (a plain close, as Asterisk does), "failed"
    when there was no connection. Frames go every 20 ms × ``time_scale`` (0: as fast as the
    socket takes them); after the caller's audio (``on_end_of_speech`` is called when its last
    frame is sent) come ``silence_after`` seconds of silence."""
    try:
        reader, writer = await asyncio.open_connection(request.host, request.port)
    except OSError:
        return "failed"
    reaction = request.reaction
    say = reaction if isinstance(reaction, Say) else Say()
    ended = asyncio.Event()

    async def watch_server() -> None:
        # The server's audio goes to the caller; its 00 00 00 ends the session.
        try:
            while header := await reader.readexactly(3):
                kind, length = header[0], int.from_bytes(header[1:], "big")
                await reader.readexactly(length)
                if kind == Kind.HANGUP:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        ended.set()

    loop = asyncio.get_running_loop()
    next_at = loop.time()

    async def frame(data: bytes) -> None:
        nonlocal next_at
        writer.write(data)
        await writer.drain()
        next_at += 0.02 * time_scale  # on a schedule, as a channel's frames are: no drift from the sleeps
        await asyncio.sleep(max(0.0, next_at - loop.time()))

    watcher = asyncio.create_task(watch_server())
    outcome = "server"
    try:
        async with asyncio.timeout(timeout):
            writer.write(encode(Kind.UUID, request.session.bytes))
            audio = say.said
            for start in range(0, len(audio), FRAME_BYTES):
                if ended.is_set():
                    break
                await frame(encode(Kind.AUDIO, audio[start:start + FRAME_BYTES]))
            if on_end_of_speech is not None:
                on_end_of_speech()
            if ended.is_set() and say.afterwards() is not None:
                outcome = "server_first"  # heard before the caller was through: their key or hangup comes later
            elif isinstance(reaction, HangUp) or say.ending == "hangup":
                outcome = "caller"
            elif not ended.is_set():
                if say.press:
                    for digit in say.press:
                        await frame(encode(Kind.DTMF, digit.encode()))
                for _ in range(int(silence_after / 0.02)):
                    if ended.is_set():
                        break
                    await frame(encode(Kind.AUDIO, SILENCE_FRAME))
                await ended.wait()
    except TimeoutError:
        outcome = "caller"  # the server never ended it; the caller gives up
    except (ConnectionError, OSError):
        outcome = "server" if ended.is_set() else "caller"
    finally:
        watcher.cancel()
        await close_quietly(writer)
    return outcome


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
