"""What the three protocols share, so that their users drive them all one way (h11's way).

Each connection object takes bytes with ``receive_data`` (``b""`` when the
peer closed: the one way to end input) and hands out events with
``next_event``, which returns :data:`NEED_DATA` until a whole event has come.
Its state is an enum with an ``ERROR`` state: once the peer has sent
something the protocol does not allow, ``next_event`` raised
:class:`RemoteProtocolError` and keeps raising it, since nothing after it can
be trusted. Misusing a connection from our side (sending out of turn, a value
the wire cannot carry, data after the end) raises :class:`LocalProtocolError`:
a bug here, not something the peer did.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


class ProtocolError(Exception):
    """Base of every protocol error."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow; the connection cannot be trusted any more."""


class NeedData:
    """The type of :data:`NEED_DATA`, for annotations; there is one instance."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()
"""``next_event``'s answer when the bytes so far hold no whole event: read more and feed them."""


@dataclass(frozen=True)
class ConnectionClosed:
    """End of input: the peer closed and every whole event before it has been read.

    ``truncated`` says the peer stopped in the middle of something (part of a
    message was left over). Asked again, ``next_event`` says this again.
    """

    truncated: bool = False


S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E")


class ByteReader(ABC, Generic[E]):
    """The input half the three connections share: bytes in, ``b""`` to end them, events out.

    A subclass keeps its unread bytes in ``_buffer``, has a ``state`` whose
    enum has an ``ERROR`` member, and reads one event in ``_next_event``.
    """

    _buffer: bytearray
    _eof: bool
    state: Any

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the connection was closed."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data after the end of input")
        self._buffer += data

    def next_event(self) -> E | NeedData:
        """The next event, or NEED_DATA; after a :class:`RemoteProtocolError` the connection is in ERROR for good."""
        if self.state.name == "ERROR":
            raise RemoteProtocolError("the peer already broke the protocol: nothing after it can be read")
        try:
            return self._next_event()
        except RemoteProtocolError:
            self.state = type(self.state).ERROR
            raise

    @abstractmethod
    def _next_event(self) -> E | NeedData:
        """One event read from ``_buffer`` (and ``_eof``), or NEED_DATA: each protocol's own grammar."""


def transition(table: Mapping[tuple[S, str], S], state: S, what: str) -> S:
    """The state after doing ``what`` in ``state``, from a protocol's table of transitions.

    A pair missing from the table is not allowed: it can only be our own side
    asking for it (what the peer sends is checked before it gets here).
    """
    try:
        return table[state, what]
    except KeyError:
        raise LocalProtocolError(f"cannot {what} while {state.value}") from None
