"""The three wire protocols are driven one way (protocols/common.py): what holds for each of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from protocols import agi, ami, audiosocket, common

UUID_MESSAGE = bytes.fromhex("01 00 10 76 1a f4 87 df b8 49 40 94 25 d2 2f 8a 30 0b 43")


@dataclass(frozen=True)
class Case:
    """A connection in its first state, bytes that make a whole first event, part of the next, and garbage."""

    make: Callable[[], Any]
    first: bytes
    part: bytes
    garbage: bytes
    closed_state: Any
    error_state: Any


def agi_after_a_command() -> agi.AgiConnection:
    conn = agi.AgiConnection()
    conn.receive_data(b"agi_network: yes\nagi_uniqueid: 1795316432.0\n\n")
    assert isinstance(conn.next_event(), agi.EnvironmentReceived)
    conn.send_command(["ANSWER"])
    return conn


CASES = {
    "agi": Case(agi_after_a_command, b"200 result=0\n", b"200 resu", b"HTTP/1.1 200 OK\n",
                agi.State.CLOSED, agi.State.ERROR),
    "ami": Case(ami.AmiParser, b"Asterisk Call Manager/11.0.0\r\n", b"Event: FullyBooted\r\nPrivilege: system",
                b"HTTP/1.1 400 Bad Request\r\n\r\n", ami.State.CLOSED, ami.State.ERROR),
    "audiosocket": Case(audiosocket.AudioSocketConnection, UUID_MESSAGE, b"\x10\x01\x40" + bytes(100),
                        b"GET / HTTP/1.1\r\n", audiosocket.State.CLOSED, audiosocket.State.ERROR),
}


def test_one_need_data_one_close_one_family_of_errors() -> None:
    for module in (agi, ami, audiosocket):
        assert module.NEED_DATA is common.NEED_DATA
        assert module.ConnectionClosed is common.ConnectionClosed
        assert module.RemoteProtocolError is common.RemoteProtocolError
        assert module.LocalProtocolError is common.LocalProtocolError
    assert issubclass(agi.ArgumentError, common.LocalProtocolError)
    assert issubclass(common.LocalProtocolError, common.ProtocolError)
    assert issubclass(common.RemoteProtocolError, common.ProtocolError)


@pytest.mark.parametrize("name", sorted(CASES))
def test_input_ends_with_empty_bytes_and_the_close_is_said_again_if_asked(name: str) -> None:
    case = CASES[name]
    conn = case.make()
    conn.receive_data(case.first)
    conn.receive_data(b"")
    assert not isinstance(conn.next_event(), (common.NeedData, common.ConnectionClosed))
    assert conn.next_event() == common.ConnectionClosed(truncated=False)
    assert conn.next_event() == common.ConnectionClosed(truncated=False)
    assert conn.state is case.closed_state
    with pytest.raises(common.LocalProtocolError, match="after the end of input"):
        conn.receive_data(case.first)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_close_in_the_middle_of_an_event_says_so(name: str) -> None:
    case = CASES[name]
    conn = case.make()
    conn.receive_data(case.first + case.part)
    assert not isinstance(conn.next_event(), common.NeedData)
    assert conn.next_event() is common.NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() == common.ConnectionClosed(truncated=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_after_the_peer_breaks_the_protocol_the_connection_stays_broken(name: str) -> None:
    case = CASES[name]
    conn = case.make()
    conn.receive_data(case.garbage)
    with pytest.raises(common.RemoteProtocolError):
        conn.next_event()
    assert conn.state is case.error_state
    conn.receive_data(case.first)  # however good what comes next is
    with pytest.raises(common.RemoteProtocolError, match="already broke the protocol"):
        conn.next_event()


def test_our_own_misuse_is_a_local_error_in_each_protocol() -> None:
    conn = agi_after_a_command()
    with pytest.raises(common.LocalProtocolError, match="cannot send a command while awaiting reply"):
        conn.send_command(["ANSWER"])
    with pytest.raises(common.LocalProtocolError):
        ami.format_action("Originate", "x", {"Channel": "PJSIP/1\r\nAction: Hangup"})
    with pytest.raises(common.LocalProtocolError):
        audiosocket.encode(audiosocket.Kind.AUDIO, bytes(70000))
