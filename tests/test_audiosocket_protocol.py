"""The AudioSocket parser on the bytes a real Asterisk 22 sent (OBSERVED.md §3), without sockets."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.audiosocket import (
    NEED_DATA,
    AudioReceived,
    AudioSocketConnection,
    ConnectionClosed,
    DtmfReceived,
    ErrorReceived,
    HangupReceived,
    Kind,
    LocalProtocolError,
    RemoteProtocolError,
    SessionStarted,
    encode,
)

# The first message of the "serverend" session, byte for byte.
OBSERVED_UUID = bytes.fromhex("01 00 10 76 1a f4 87 df b8 49 40 94 25 d2 2f 8a 30 0b 43")


def events(conn: AudioSocketConnection) -> list[object]:
    found = []
    while (event := conn.next_event()) is not NEED_DATA:
        found.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return found


def test_an_observed_session_parses_into_uuid_audio_dtmf_and_the_close() -> None:
    conn = AudioSocketConnection()
    conn.receive_data(OBSERVED_UUID)
    conn.receive_data(b"\x10\x01\x40" + bytes(320))
    conn.receive_data(bytes.fromhex("03 00 01 35") + bytes.fromhex("03 00 01 23"))
    conn.receive_data(b"\x10\x00\x02\x00\x00")  # the 2-byte frame that ends a playback
    conn.receive_data(b"")
    assert events(conn) == [
        SessionStarted(uuid.UUID("761af487-dfb8-4940-9425-d22f8a300b43")),
        AudioReceived(bytes(320)),
        DtmfReceived("5"),
        DtmfReceived("#"),
        AudioReceived(b"\x00\x00"),
        ConnectionClosed(truncated=False),
    ]
    assert conn.uuid == uuid.UUID("761af487-dfb8-4940-9425-d22f8a300b43")


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60))
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int]) -> None:
    stream = (OBSERVED_UUID + encode(Kind.AUDIO, bytes(range(200)) * 2) + encode(Kind.DTMF, b"1")
              + encode(Kind.AUDIO, b"\x01\x00"))
    conn = AudioSocketConnection()
    got: list[object] = []
    position = 0
    for cut in cuts:
        chunk = stream[position:position + cut]
        if chunk:  # b"" means end of stream; the cuts may run past the end
            conn.receive_data(chunk)
        position += cut
        got += events(conn)
    if stream[position:]:
        conn.receive_data(stream[position:])
    conn.receive_data(b"")
    got += events(conn)
    assert [type(e).__name__ for e in got] == [
        "SessionStarted", "AudioReceived", "DtmfReceived", "AudioReceived", "ConnectionClosed"]
    assert got[1] == AudioReceived(bytes(range(200)) * 2)


def test_a_stream_that_stops_mid_frame_reports_a_truncated_close() -> None:
    conn = AudioSocketConnection()
    conn.receive_data(OBSERVED_UUID + b"\x10\x01\x40" + bytes(100))
    conn.receive_data(b"")
    assert events(conn) == [SessionStarted(conn.uuid), ConnectionClosed(truncated=True)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x10\x01\x40" + bytes(320), "first message must be the UUID"),
        (b"\x01\x00\x04abcd", "16 raw bytes"),
        (OBSERVED_UUID + b"\x03\x00\x02" + b"12", "one digit"),
        (OBSERVED_UUID + b"\x03\x00\x01x", "one digit"),
        (OBSERVED_UUID + b"\x42\x00\x00", "unknown message kind 0x42"),
        (OBSERVED_UUID + OBSERVED_UUID, "second UUID"),
        (b"GET / HTTP/1.1\r\n", "first message must be the UUID"),
    ],
)
def test_garbage_is_a_protocol_error_naming_what_was_wrong(data: bytes, message: str) -> None:
    conn = AudioSocketConnection()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=message):
        events(conn)


def test_a_peer_hangup_and_error_message_are_events_not_crashes() -> None:
    conn = AudioSocketConnection()
    conn.receive_data(OBSERVED_UUID + b"\xff\x00\x01\x02" + b"\x00\x00\x00")
    assert events(conn)[1:] == [ErrorReceived(b"\x02"), HangupReceived()]


def test_what_we_send_is_what_asterisk_expects() -> None:
    assert AudioSocketConnection.send_hangup() == b"\x00\x00\x00"
    assert AudioSocketConnection.send_audio(bytes(320))[:3] == b"\x10\x01\x40"
    with pytest.raises(LocalProtocolError, match="65535"):
        encode(Kind.AUDIO, bytes(70000))
