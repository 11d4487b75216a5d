"""Asterisk's AudioSocket protocol, both directions, without any I/O (in the manner of h11).

Asterisk's ``AudioSocket()`` application is the TCP client; we are the server.
Every message is ``kind (1 byte) | payload length (2 bytes, big-endian) | payload``:

=======  =========================================================================
 kind    payload
=======  =========================================================================
 0x00    hang up (no payload). Only we send it: Asterisk just closes TCP.
 0x01    the session's UUID as 16 raw bytes; always the first message.
 0x03    one DTMF digit in ASCII, sent once when the key is released.
 0x10    audio: signed 16-bit little-endian, 8 kHz mono; usually 320 bytes
         (20 ms), any shorter length at the end of a playback.
 0xff    error (a code byte).
=======  =========================================================================

Facts from a real Asterisk 22 (``shared/asterisk/OBSERVED.md`` §3): ending the
session with ``00 00 00`` makes ``EXEC AudioSocket`` return ``200 result=0`` with
the channel still up; a reset or an unknown kind from us gives ``result=-1``;
with no frames either way for 2 s Asterisk gives up, so the server keeps
sending 20 ms of silence while it listens.

:class:`AudioSocketConnection` is the server's side; the ``encode`` function is
what the simulated Asterisk uses to speak it. ``NEED_DATA``,
``ConnectionClosed`` and the errors are those of :mod:`protocols.common`.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass

from protocols.common import (
    NEED_DATA,
    ByteReader,
    ConnectionClosed,
    LocalProtocolError,
    NeedData,
    RemoteProtocolError,
    transition,
)

HEADER = struct.Struct(">BH")
SAMPLE_RATE = 8000
FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit mono
SILENCE_FRAME = bytes(FRAME_BYTES)
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


KINDS = frozenset(Kind)


@dataclass(frozen=True)
class SessionStarted:
    uuid: uuid.UUID


@dataclass(frozen=True)
class AudioReceived:
    pcm: bytes


@dataclass(frozen=True)
class DtmfReceived:
    digit: str


@dataclass(frozen=True)
class HangupReceived:
    """The peer sent 0x00 (Asterisk itself never does; a hangup is a plain close)."""


@dataclass(frozen=True)
class ErrorReceived:
    code: bytes


Event = SessionStarted | AudioReceived | DtmfReceived | HangupReceived | ErrorReceived | ConnectionClosed


class State(enum.Enum):
    AWAITING_UUID = "awaiting the UUID"
    STREAMING = "streaming"
    CLOSED = "closed"
    ERROR = "error"  # the peer is not speaking AudioSocket; entered from any state, left never


TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAITING_UUID, "receive the UUID"): State.STREAMING,
    (State.AWAITING_UUID, "close"): State.CLOSED,
    (State.STREAMING, "close"): State.CLOSED,
    (State.CLOSED, "close"): State.CLOSED,
}


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise LocalProtocolError(f"an AudioSocket payload holds at most 65535 bytes, got {len(payload)}")
    return HEADER.pack(kind, len(payload)) + payload


class AudioSocketConnection(ByteReader[Event]):
    """The server's side of one AudioSocket session."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self.state = State.AWAITING_UUID
        self.uuid: uuid.UUID | None = None

    def _next_event(self) -> Event | NeedData:
        if len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            self._check_header(kind, length)
            if len(self._buffer) >= HEADER.size + length:
                payload = bytes(self._buffer[HEADER.size:HEADER.size + length])
                del self._buffer[:HEADER.size + length]
                return self._event(kind, payload)
        if self._eof:
            self.state = transition(TRANSITIONS, self.state, "close")
            return ConnectionClosed(truncated=bool(self._buffer))
        return NEED_DATA

    def _check_header(self, kind: int, length: int) -> None:
        """Refuse garbage at its first three bytes, not after waiting for a bogus length."""
        if self.state is State.AWAITING_UUID:
            if kind != Kind.UUID:
                raise RemoteProtocolError(f"the first message must be the UUID (0x01), got kind 0x{kind:02x}")
            if length != 16:
                raise RemoteProtocolError(f"a UUID is 16 raw bytes, got {length}")
        elif kind not in KINDS:
            raise RemoteProtocolError(f"unknown message kind 0x{kind:02x}")

    def _event(self, kind: int, payload: bytes) -> Event:
        if self.state is State.AWAITING_UUID:
            self.uuid = uuid.UUID(bytes=payload)
            self.state = transition(TRANSITIONS, self.state, "receive the UUID")
            return SessionStarted(self.uuid)
        if kind == Kind.AUDIO:
            return AudioReceived(payload)
        if kind == Kind.DTMF:
            digit = payload.decode("ascii", "replace")
            if len(payload) != 1 or digit not in DTMF_DIGITS:
                raise RemoteProtocolError(f"a DTMF message carries one digit, got {payload!r}")
            return DtmfReceived(digit)
        if kind == Kind.HANGUP:
            return HangupReceived()
        if kind == Kind.ERROR:
            return ErrorReceived(payload)
        raise RemoteProtocolError("a second UUID in one session")

    # -- what we send ---------------------------------------------------------------

    @staticmethod
    def send_audio(pcm: bytes) -> bytes:
        return encode(Kind.AUDIO, pcm)

    @staticmethod
    def send_hangup() -> bytes:
        """Ends the session; the channel stays up and ``EXEC AudioSocket`` returns 0."""
        return encode(Kind.HANGUP)
