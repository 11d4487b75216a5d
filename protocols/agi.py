"""The AGI protocol, both directions, without any I/O (in the manner of h11).

:class:`AgiConnection` is the application's side: feed it the bytes Asterisk
sent (``receive_data``), pull parsed events (``next_event``), and get the bytes
of a command to send (``send_command``). It never touches a socket, so the
FastAGI server, the stdin/stdout entry and the tests all drive the same code.

The Asterisk side's pieces (``split_command``, ``format_environment``) live
here too; the simulator uses them to play Asterisk faithfully.

Behaviour follows Asterisk's res_agi.c and the transcripts of a real Asterisk 22
(``shared/asterisk/OBSERVED.md``): lines end in ``\\n``; the environment block
ends with an empty line; replies are ``200 result=N [(data)] [endpos=N]``,
``510`` invalid command, ``511`` dead channel, and a ``520-`` usage block ending
``520 End of proper usage.``; a caller hangup arrives as a bare ``HANGUP``
line that may come at any time, even between a command and its reply.
``GET VARIABLE`` sends the value as it is (``200 result=1 (%s)``), so a value
holding a line break spans several lines: a reply whose ``(`` is not closed
on its first line goes on until a line that closes it (``_data_closed``).

No library was used: pyst2's FastAGI fails on Python 3, pyst2 and pystrix do
not quote arguments, and panoramisk pins the unsolicited HANGUP line on the
next command. ``NEED_DATA``, ``ConnectionClosed`` and the errors are those of
:mod:`protocols.common`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from protocols.common import (
    NEED_DATA,
    ByteReader,
    ConnectionClosed,
    LocalProtocolError,
    NeedData,
    RemoteProtocolError,
    transition,
)

# res_agi.c reads a command into a buffer of AGI_BUF_LEN (2048) bytes and
# silently truncates longer lines; refuse them instead of sending half a command.
MAX_COMMAND_BYTES = 2048
MAX_ENV_BYTES = 16 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_ARGS = 128  # res_agi.c MAX_ARGS

DEAD_CHANNEL_REPLY = "511 Command Not Permitted on a dead channel or intercept routine"
INVALID_COMMAND_REPLY = "510 Invalid or unknown command"
USAGE_FIRST_LINE = "520-Invalid command syntax.  Proper usage follows:"
USAGE_LAST_LINE = "520 End of proper usage."

# Commands res_agi.c still runs after the caller hung up (its "dead" flag).
DEAD_CHANNEL_COMMANDS = frozenset(
    {
        ("GET", "VARIABLE"),
        ("GET", "FULL", "VARIABLE"),
        ("SET", "VARIABLE"),
        ("NOOP",),
        ("VERBOSE",),
        ("EXEC",),
        ("DATABASE", "GET"),
        ("DATABASE", "PUT"),
        ("DATABASE", "DEL"),
        ("DATABASE", "DELTREE"),
    }
)

# The order res_agi.c writes the environment block in (setup_env()).
ENVIRONMENT_ORDER = (
    "agi_network", "agi_network_script", "agi_request", "agi_channel", "agi_language", "agi_type",
    "agi_uniqueid", "agi_version", "agi_callerid", "agi_calleridname", "agi_callingpres",
    "agi_callingani2", "agi_callington", "agi_callingtns", "agi_dnid", "agi_rdnis", "agi_context",
    "agi_extension", "agi_priority", "agi_enhanced", "agi_accountcode", "agi_threadid",
)


class ArgumentError(LocalProtocolError, ValueError):
    """An argument cannot be sent in an AGI command line."""


# ---------------------------------------------------------------- commands --


def quote_argument(argument: str | int) -> str:
    """Quote one argument so that res_agi.c's ``parse_args`` reads it back unchanged.

    Plain words go as they are; anything empty or holding whitespace, ``"`` or
    ``\\`` is wrapped in double quotes with ``"`` and ``\\`` escaped. Line breaks
    and NUL cannot be carried at all: a newline ends the command.
    """
    text = str(argument)
    if any(ch in text for ch in "\n\r\0"):
        raise ArgumentError(f"AGI arguments cannot hold line breaks or NUL: {text!r}")
    if text and not any(ch in text for ch in ' \t"\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_command(words: Sequence[str | int]) -> bytes:
    """The bytes of one command line, e.g. ``format_command(["STREAM", "FILE", "menu", ""])``."""
    if not words:
        raise ArgumentError("empty command")
    line = " ".join(quote_argument(word) for word in words).encode("utf-8") + b"\n"
    if len(line) > MAX_COMMAND_BYTES:
        raise ArgumentError(f"command of {len(line)} bytes exceeds Asterisk's {MAX_COMMAND_BYTES}-byte buffer")
    return line


def split_command(line: str) -> list[str]:
    """Split a command line exactly as res_agi.c's ``parse_args`` does (Asterisk's side).

    Whitespace separates words unless quoted or escaped; ``"`` toggles quoting
    and, coming off whitespace, starts a word (so ``""`` is an empty word);
    ``\\`` makes the next character literal.
    """
    words: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
            continue
        if ch in " \t" and not quoted and not escaped:
            if current is not None:
                words.append("".join(current))
                current = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if current is None:
            if len(words) >= MAX_ARGS - 1:
                continue  # Asterisk warns "Too many arguments, truncating"
            current = []
        current.append(ch)
        escaped = False
    if current is not None:
        words.append("".join(current))
    return words


# ----------------------------------------------------------------- replies --


@dataclass(frozen=True)
class Reply:
    """One reply to a command.

    ``result`` is the text after ``result=`` (``""`` for a GET DATA timeout with
    no digits); ``data`` the text in parentheses; ``endpos`` the sample offset
    STREAM FILE and RECORD FILE report.
    """

    code: int
    result: str | None = None
    data: str | None = None
    endpos: int | None = None
    text: str = ""
    usage: tuple[str, ...] = ()

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result) if self.result is not None else None
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return self.code == 200


_REPLY_LINE = re.compile(r"(?P<code>[0-9]{3})(?:[ -](?P<rest>.*))?\Z", re.S)
_ENDPOS = re.compile(r"(?:^| )endpos=(-?[0-9]+)\Z")
# A 200 reply with (data), and the end of a line that closes it.
_OPENS_DATA = re.compile(r"200 result=[^ ]* \(")
_CLOSES_DATA = re.compile(r"\)(?: endpos=-?[0-9]+)?\Z")


def parse_reply_line(line: str) -> Reply:
    """Parse a one-line reply such as ``200 result=-1 (hangup) endpos=24000``."""
    match = _REPLY_LINE.match(line)
    if not match:
        raise RemoteProtocolError(f"not an AGI reply: {line!r}")
    code = int(match["code"])
    rest = match["rest"] or ""
    if code != 200:
        return Reply(code=code, text=rest)
    if not rest.startswith("result="):
        raise RemoteProtocolError(f"200 reply without result=: {line!r}")
    rest = rest[len("result="):]
    result, _, tail = rest.partition(" ")
    endpos = None
    found = _ENDPOS.search(tail)
    if found:
        endpos = int(found.group(1))
        tail = tail[: found.start()]
    data = None
    tail = tail.strip(" ")
    if tail:
        if not (tail.startswith("(") and tail.endswith(")")):
            raise RemoteProtocolError(f"unexpected text after result: {line!r}")
        data = tail[1:-1]
    return Reply(code=200, result=result, data=data, endpos=endpos, text=rest)


def format_reply(reply: Reply) -> bytes:
    """The bytes Asterisk would send for a reply (used by the simulator)."""
    if reply.code != 200:
        if reply.usage:
            body = "".join(line + "\n" for line in reply.usage)
            return f"{USAGE_FIRST_LINE}\n{body}{USAGE_LAST_LINE}\n".encode()
        return f"{reply.code} {reply.text}\n".encode()
    line = f"200 result={reply.result if reply.result is not None else ''}"
    if reply.data is not None:
        line += f" ({reply.data})"
    if reply.endpos is not None:
        line += f" endpos={reply.endpos}"
    return (line + "\n").encode("utf-8")


# ------------------------------------------------------------- environment --


@dataclass(frozen=True)
class AgiEnvironment:
    """The ``agi_*`` variables Asterisk sends first, plus the ``agi_arg_N`` arguments."""

    variables: dict[str, str]
    args: tuple[str, ...] = ()

    def get(self, name: str) -> str | None:
        """A variable without its ``agi_`` prefix; Asterisk's ``unknown`` and empty become None."""
        value = self.variables.get(f"agi_{name}")
        return None if value in (None, "", "unknown") else value

    @property
    def is_network(self) -> bool:
        return self.variables.get("agi_network") == "yes"

    @property
    def script(self) -> str:
        """``agi_network_script`` for FastAGI (everything after host:port/, query included)."""
        if self.is_network:
            return self.variables.get("agi_network_script", "")
        return self.variables.get("agi_request", "")

    @property
    def path(self) -> str:
        return self.script.partition("?")[0].strip("/")

    @property
    def query(self) -> dict[str, str]:
        """The script's query string, then any ``name=value`` arguments, first value wins."""
        params: dict[str, str] = {}
        for name, value in parse_qsl(self.script.partition("?")[2], keep_blank_values=True):
            params.setdefault(name, value)
        for arg in self.args:
            name, sep, value = arg.partition("=")
            if sep and name:
                params.setdefault(name, value)
        return params

    @property
    def uniqueid(self) -> str | None:
        return self.get("uniqueid")


def format_environment(variables: dict[str, str], args: Sequence[str] = ()) -> bytes:
    """The environment block Asterisk sends, in res_agi.c's order (used by the simulator)."""
    lines = [f"{name}: {variables[name]}\n" for name in ENVIRONMENT_ORDER if name in variables]
    lines += [f"agi_arg_{n}: {value}\n" for n, value in enumerate(args, 1)]
    return ("".join(lines) + "\n").encode("utf-8")


# ------------------------------------------------------------- connection --


class _Event:
    pass


@dataclass(frozen=True)
class EnvironmentReceived(_Event):
    environment: AgiEnvironment


@dataclass(frozen=True)
class ReplyReceived(_Event):
    reply: Reply


@dataclass(frozen=True)
class HangupReceived(_Event):
    """Asterisk's bare ``HANGUP`` line: the caller is gone (or the script is over)."""


Event = EnvironmentReceived | ReplyReceived | HangupReceived | ConnectionClosed | NeedData


class State(enum.Enum):
    READING_ENVIRONMENT = "reading environment"
    IDLE = "idle"
    AWAITING_REPLY = "awaiting reply"
    CLOSED = "closed"
    ERROR = "error"  # the peer broke the protocol; entered from any state, left never


# A HANGUP line changes no state: it may come at any time, and the reply to a command still follows it.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.READING_ENVIRONMENT, "end the environment"): State.IDLE,
    (State.IDLE, "send a command"): State.AWAITING_REPLY,
    (State.AWAITING_REPLY, "receive a reply"): State.IDLE,
    (State.IDLE, "close"): State.CLOSED,
    (State.AWAITING_REPLY, "close"): State.CLOSED,
    (State.CLOSED, "close"): State.CLOSED,
}


@dataclass
class AgiConnection(ByteReader[Event]):
    """The application side of one AGI session, as a state machine over bytes."""

    max_env_bytes: int = MAX_ENV_BYTES
    max_line_bytes: int = MAX_LINE_BYTES
    state: State = State.READING_ENVIRONMENT
    environment: AgiEnvironment | None = None
    hung_up: bool = False
    _buffer: bytearray = field(default_factory=bytearray)
    _eof: bool = False
    _env_lines: list[tuple[str, str]] = field(default_factory=list)
    _env_bytes: int = 0
    _usage: list[str] | None = None
    _open_reply: list[str] | None = None  # the lines so far of a reply whose (data) holds line breaks

    def send_command(self, words: Sequence[str | int]) -> bytes:
        """The bytes of a command; only one command may be outstanding at a time."""
        next_state = transition(TRANSITIONS, self.state, "send a command")
        line = format_command(words)
        self.state = next_state
        return line

    def _next_event(self) -> Event:
        while True:
            line = self._next_line()
            if line is None:
                if self._eof:
                    if self.state is State.READING_ENVIRONMENT:
                        raise RemoteProtocolError("connection closed before the environment block ended")
                    self.state = transition(TRANSITIONS, self.state, "close")
                    partial = bool(self._buffer) or self._usage is not None or self._open_reply is not None
                    return ConnectionClosed(truncated=partial)
                return NEED_DATA
            if self.state is State.READING_ENVIRONMENT:
                event = self._environment_line(line)
                if event is not None:
                    return event
                continue
            if line == "HANGUP" and self._usage is None and self._open_reply is None:
                self.hung_up = True
                return HangupReceived()
            if self.state is State.AWAITING_REPLY:
                reply = self._reply_line(line)
                if reply is not None:
                    self.state = transition(TRANSITIONS, self.state, "receive a reply")
                    if reply.code == 511:
                        self.hung_up = True
                    return ReplyReceived(reply)
                continue
            raise RemoteProtocolError(f"unsolicited line with no command outstanding: {line!r}")

    def _next_line(self) -> str | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > self.max_line_bytes:
                raise RemoteProtocolError(f"line longer than {self.max_line_bytes} bytes")
            if self.state is State.READING_ENVIRONMENT and self._env_bytes + len(self._buffer) > self.max_env_bytes:
                raise RemoteProtocolError(f"environment block longer than {self.max_env_bytes} bytes")
            return None
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self.state is State.READING_ENVIRONMENT:
            self._env_bytes += end + 1
            if self._env_bytes > self.max_env_bytes:
                raise RemoteProtocolError(f"environment block longer than {self.max_env_bytes} bytes")
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return raw.decode("utf-8", errors="replace")

    def _environment_line(self, line: str) -> EnvironmentReceived | None:
        if line == "":
            if not self._env_lines:
                raise RemoteProtocolError("empty environment block")
            variables: dict[str, str] = {}
            args: dict[int, str] = {}
            for name, value in self._env_lines:
                if name.startswith("agi_arg_") and name[8:].isdigit():
                    args[int(name[8:])] = value
                else:
                    variables[name] = value
            self.environment = AgiEnvironment(variables, tuple(args[n] for n in sorted(args)))
            self.state = transition(TRANSITIONS, self.state, "end the environment")
            return EnvironmentReceived(self.environment)
        name, sep, value = line.partition(":")
        if not sep or not name.startswith("agi_") or " " in name:
            raise RemoteProtocolError(f"not an AGI environment line: {line[:80]!r}")
        self._env_lines.append((name, value[1:] if value.startswith(" ") else value))
        return None

    def _reply_line(self, line: str) -> Reply | None:
        if self._usage is not None:
            if line.startswith("520 "):
                usage, self._usage = tuple(self._usage), None
                return Reply(code=520, text=line[4:], usage=usage)
            self._usage.append(line)
            if sum(map(len, self._usage)) > self.max_line_bytes:
                raise RemoteProtocolError("520 usage block never ends")
            return None
        if self._open_reply is not None:
            self._open_reply.append(line)
            if sum(map(len, self._open_reply)) > self.max_line_bytes:
                raise RemoteProtocolError(f"reply data longer than {self.max_line_bytes} bytes never closes")
            line = "\n".join(self._open_reply)
            if not self._data_closed(line):
                return None
            self._open_reply = None
            return parse_reply_line(line)
        if line.startswith("520-"):
            self._usage = []
            return None
        if _OPENS_DATA.match(line) and not self._data_closed(line):
            self._open_reply = [line]
            return None
        return parse_reply_line(line)

    def _data_closed(self, reply: str) -> bool:
        """Whether a ``200 result=… (data)`` reply read so far is whole, or its value goes on to the next line.

        res_agi.c sends GET VARIABLE's value as it is, so a value holding a line break (a ``SHELL()``
        lookup's trailing newline) spans lines, and only a line ending in ``)`` can end it. Such a line
        ends it when the data's parentheses balance (``市人社局(社保中心)\n`` goes on past its first
        line), or when no further line has come with it (Asterisk writes a reply at once, and a value
        may hold a lone ``(``); a ``HANGUP`` line after it is the caller's.
        """
        if not _CLOSES_DATA.search(reply):
            return False
        data = reply[reply.index("("):]
        if data.count("(") <= data.count(")"):
            return True
        next_line = self._buffer.partition(b"\n")
        return not next_line[1] or next_line[0].rstrip(b"\r") == b"HANGUP"
