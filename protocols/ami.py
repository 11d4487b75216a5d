"""Asterisk Manager Interface, sans I/O: bytes in, messages out; actions in, bytes out.

Nothing here touches a socket (h11's design), so the dialer's asyncio client
and the simulated Asterisk share one exact parser, and it is tested on bytes.
What the wire looks like (``../shared/asterisk/OBSERVED.md`` §2, Asterisk 22):

* on connect one banner line, ``Asterisk Call Manager/11.0.0\\r\\n``, with no
  empty line after it;
* then messages: ``Key: Value`` lines ending in ``\\r\\n``, a message ending
  in an empty line. A response starts with ``Response:``, an event with
  ``Event:``; an empty value is sent as ``Key: `` (trailing space);
* keys may repeat (``Variable:`` in an Originate), so a message is an ordered
  list of pairs, not a dict.

``NEED_DATA``, ``ConnectionClosed`` and the errors are those of
:mod:`protocols.common`: input ends with ``receive_data(b"")``, garbage from
the peer is a :class:`RemoteProtocolError` after which the parser is in
``ERROR``, and a value that cannot be sent is a :class:`LocalProtocolError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from protocols.common import (
    NEED_DATA,
    ByteReader,
    ConnectionClosed,
    LocalProtocolError,
    NeedData,
    RemoteProtocolError,
    transition,
)

BANNER_PREFIX = "Asterisk Call Manager/"
# Far more than any real block (the longest in the transcripts is under 1 KiB);
# beyond it the peer is not speaking AMI and the connection should be dropped.
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Banner:
    text: str

    @property
    def version(self) -> str:
        return self.text[len(BANNER_PREFIX):]


@dataclass(frozen=True)
class Message:
    """One AMI message (response, event or action) as ordered key/value pairs."""

    fields: tuple[tuple[str, str], ...]

    @cached_property
    def _first_values(self) -> dict[str, str]:
        # Built on the first lookup: the dialer asks each event for several keys.
        index: dict[str, str] = {}
        for name, value in self.fields:
            index.setdefault(name.lower(), value)
        return index

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._first_values.get(key.lower(), default)

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [value for name, value in self.fields if name.lower() == wanted]

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    @property
    def is_response(self) -> bool:
        return bool(self.fields) and self.fields[0][0].lower() == "response"

    @property
    def is_event(self) -> bool:
        return bool(self.fields) and self.fields[0][0].lower() == "event"

    @property
    def name(self) -> str:
        """The event name, the response status, or the action name."""
        return self.fields[0][1] if self.fields else ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        """First value of each key; for logging and tests."""
        out: dict[str, str] = {}
        for name, value in self.fields:
            out.setdefault(name, value)
        return out


@dataclass(frozen=True)
class MalformedMessage:
    """A block that is not ``Key: Value`` lines. Skipped; the stream stays in sync at the next empty line."""

    raw: bytes
    reason: str


_BLOCK_END = re.compile(rb"\r?\n\r?\n")
AmiEvent = Banner | Message | MalformedMessage | ConnectionClosed


class State(enum.Enum):
    AWAITING_BANNER = "awaiting the banner"
    OPEN = "open"
    CLOSED = "closed"
    ERROR = "error"  # the peer is not speaking AMI; entered from any state, left never


TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAITING_BANNER, "receive the banner"): State.OPEN,
    (State.AWAITING_BANNER, "close"): State.CLOSED,
    (State.OPEN, "close"): State.CLOSED,
    (State.CLOSED, "close"): State.CLOSED,
}


def parse_block(raw: bytes) -> Message | MalformedMessage:
    text = raw.decode("utf-8", errors="replace")
    fields: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or key[0].isspace() or key[-1].isspace():
            return MalformedMessage(raw, f"not a 'Key: Value' line: {line[:80]!r}")
        # One space follows the colon; an empty value is "Key: " (OBSERVED.md), keep the rest verbatim.
        fields.append((key, value[1:] if value[:1] == " " else value))
    if not fields:
        return MalformedMessage(raw, "empty message")
    return Message(tuple(fields))


class AmiParser(ByteReader[AmiEvent]):
    """Feed it bytes from either side of an AMI connection; take messages out.

    ``expect_banner`` is true on the client side (Asterisk speaks first).
    Lines may end in ``\\r\\n`` or a bare ``\\n``: Asterisk sends the first,
    and being liberal costs nothing.
    """

    def __init__(self, *, expect_banner: bool = True, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._eof = False
        self.state = State.AWAITING_BANNER if expect_banner else State.OPEN

    def _next_event(self) -> AmiEvent | NeedData:
        if self.state is State.AWAITING_BANNER:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > 1024:
                    raise RemoteProtocolError("no AMI banner in the first 1024 bytes")
                return self._closed() if self._eof else NEED_DATA
            line = bytes(self._buffer[:end]).rstrip(b"\r").decode("utf-8", errors="replace")
            del self._buffer[: end + 1]
            if not line.startswith(BANNER_PREFIX):
                raise RemoteProtocolError(f"not an Asterisk manager: first line {line[:80]!r}")
            self.state = transition(TRANSITIONS, self.state, "receive the banner")
            return Banner(line)
        while True:
            end, width = self._find_block_end()
            if end < 0:
                if len(self._buffer) > self._max:
                    raise RemoteProtocolError(f"message longer than {self._max} bytes without an end")
                return self._closed() if self._eof else NEED_DATA
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + width]
            if raw.strip(b"\r\n"):
                return parse_block(raw)
            # Stray empty lines between messages carry nothing.

    def _closed(self) -> ConnectionClosed:
        self.state = transition(TRANSITIONS, self.state, "close")
        return ConnectionClosed(truncated=bool(self._buffer.strip(b"\r\n")))

    def _find_block_end(self) -> tuple[int, int]:
        if self._buffer.startswith(b"\r\n"):
            return 0, 2
        if self._buffer.startswith(b"\n"):
            return 0, 1
        # One pass for either line ending (two find() calls would each scan the whole buffer).
        found = _BLOCK_END.search(self._buffer)
        if found is None:
            return -1, 0
        return found.start(), found.end() - found.start()

    def events(self) -> list[AmiEvent]:
        """Every complete message buffered so far (and the close, once, if input has ended)."""
        out: list[AmiEvent] = []
        while not isinstance(event := self.next_event(), NeedData):
            out.append(event)
            if isinstance(event, ConnectionClosed):
                break
        return out


def _check(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        raise LocalProtocolError(f"AMI {what} may not contain a line break: {text!r}")
    return text


def format_message(fields: Iterable[tuple[str, str]]) -> bytes:
    """Any AMI message (action, response or event) as wire bytes."""
    lines = []
    for key, value in fields:
        if not key or ":" in key:
            raise LocalProtocolError(f"bad AMI key {key!r}")
        lines.append(f"{_check(key, 'key')}: {_check(str(value), 'value')}\r\n")
    if not lines:
        raise LocalProtocolError("an AMI message needs at least one field")
    return ("".join(lines) + "\r\n").encode("utf-8")


def format_action(action: str, action_id: str, fields: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> bytes:
    """An action with its ActionID second, as Asterisk echoes it."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    return format_message([("Action", action), ("ActionID", action_id), *pairs])


def originate_fields(
    *, channel: str, context: str, exten: str, priority: int, caller_id: str, timeout_ms: int,
    channel_id: str, other_channel_id: str, variables: Mapping[str, str],
) -> list[tuple[str, str]]:
    """An Originate that is safe to fire and forget.

    ``Async: true`` always: without it Asterisk answers only when the call
    ends, blocking the connection. ``ChannelId`` names the channel in
    advance, so the call can be found again after a lost connection.
    """
    fields = [
        ("Channel", channel), ("Context", context), ("Exten", exten), ("Priority", str(priority)),
        ("CallerID", caller_id), ("Timeout", str(timeout_ms)), ("Async", "true"),
        ("ChannelId", channel_id), ("OtherChannelId", other_channel_id),
    ]
    for name, value in variables.items():
        if "=" in name:
            raise LocalProtocolError(f"bad channel variable name {name!r}")
        fields.append(("Variable", f"{name}={value}"))
    return fields
