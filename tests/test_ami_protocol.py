"""The AMI parser and formatter on bytes, without sockets (transcripts from OBSERVED.md §2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callback.call_outcomes import dial_status_outcome, failed_outcome
from protocols.ami import (
    NEED_DATA,
    AmiParser,
    Banner,
    LocalProtocolError,
    MalformedMessage,
    Message,
    RemoteProtocolError,
    format_action,
    originate_fields,
)

LOGIN_EXCHANGE = (
    b"Asterisk Call Manager/11.0.0\r\n"
    b"Response: Success\r\nActionID: login-1\r\nMessage: Authentication accepted\r\n\r\n"
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 483\r\nLastReload: 483\r\nStatus: Fully Booted\r\n\r\n"
)
BUSY_RESPONSE = (
    b"Event: OriginateResponse\r\nPrivilege: call,all\r\nTimestamp: 1795317043.590504\r\nActionID: cb-busy\r\n"
    b"Response: Failure\r\nChannel: Local/13900000000@callback-out\r\nContext: callback-agent\r\nExten: s\r\n"
    b"Reason: 5\r\nUniqueid: <unknown>\r\nCallerIDNum: 12345\r\nCallerIDName: 12345\r\n\r\n"
)


def test_banner_then_response_then_event() -> None:
    parser = AmiParser()
    parser.receive_data(LOGIN_EXCHANGE)
    banner, response, event = parser.events()
    assert banner == Banner("Asterisk Call Manager/11.0.0") and banner.version == "11.0.0"
    assert response.is_response and response.name == "Success" and response.action_id == "login-1"
    assert event.is_event and event.name == "FullyBooted" and event["Status"] == "Fully Booted"
    assert parser.next_event() is NEED_DATA


@given(st.lists(st.integers(min_value=1, max_value=len(LOGIN_EXCHANGE + BUSY_RESPONSE) - 1), max_size=8))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    data = LOGIN_EXCHANGE + BUSY_RESPONSE
    parser = AmiParser()
    seen = []
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        parser.receive_data(data[last:cut])
        last = cut
        seen += parser.events()
    assert [m.name for m in seen[1:]] == ["Success", "FullyBooted", "OriginateResponse"]
    assert seen[3]["Reason"] == "5" and seen[3]["Uniqueid"] == "<unknown>"


def test_empty_values_keep_their_place_and_repeated_keys_are_kept() -> None:
    parser = AmiParser(expect_banner=False)
    parser.receive_data(b"Event: Newchannel\r\nAccountCode: \r\nVariable: A=1\r\nVariable: B=2\r\n\r\n")
    (message,) = parser.events()
    assert message.get("AccountCode") == "" and "AccountCode" in message
    assert message.get_all("variable") == ["A=1", "B=2"]


def test_a_server_that_is_not_asterisk_is_refused() -> None:
    parser = AmiParser()
    parser.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="not an Asterisk manager"):
        parser.next_event()


def test_a_malformed_block_is_reported_and_the_stream_stays_in_sync() -> None:
    parser = AmiParser(expect_banner=False)
    parser.receive_data(b"garbage without colon\r\nmore\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n")
    bad, good = parser.events()
    assert isinstance(bad, MalformedMessage) and "garbage" in bad.reason
    assert isinstance(good, Message) and good["Cause"] == "16"


def test_an_endless_block_is_a_protocol_error() -> None:
    parser = AmiParser(expect_banner=False, max_message_bytes=1000)
    parser.receive_data(b"Event: X\r\n" + b"Key: value\r\n" * 200)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        parser.next_event()


def test_actions_carry_their_action_id_second_and_refuse_line_breaks() -> None:
    assert format_action("Ping", "ping-1") == b"Action: Ping\r\nActionID: ping-1\r\n\r\n"
    with pytest.raises(LocalProtocolError, match="line break"):
        format_action("Originate", "x", {"Channel": "PJSIP/1\r\nAction: Hangup"})


def test_originate_is_always_async_and_named_by_channel_id() -> None:
    fields = originate_fields(
        channel="PJSIP/13800000000@trunk", context="callback-verify", exten="s", priority=1,
        caller_id='"12345" <12345>', timeout_ms=30000, channel_id="cb-1-1-abc", other_channel_id="cb-1-1-abc-2",
        variables={"CALLBACK_TASK": "1", "CALLBACK_NUMBER": "13800000000"},
    )
    parser = AmiParser(expect_banner=False)
    parser.receive_data(format_action("Originate", "cb-1-1-abc-a", fields))
    (message,) = parser.events()
    assert message["Async"] == "true" and message["ChannelId"] == "cb-1-1-abc"
    assert message.get_all("Variable") == ["CALLBACK_TASK=1", "CALLBACK_NUMBER=13800000000"]


@pytest.mark.parametrize(
    ("reason", "causes", "outcome"),
    [
        (5, [0, 17], "busy"),          # busy: ;1 says 0, ;2 says 17
        (3, [19, 19], "no_answer"),
        (0, [21, 21], "rejected"),     # rejected shows only in the cause
        (8, [34, 0], "congestion"),
        (0, [], "failed"),             # bad technology: no channel, no cause
        (0, [1], "invalid_number"),
    ],
)
def test_observed_outcomes(reason: int, causes: list[int], outcome: str) -> None:
    assert failed_outcome(reason, causes) == (outcome, None)


def test_a_reason_or_status_never_seen_is_a_failure_with_a_note() -> None:
    assert failed_outcome(42, []) == ("failed", "unknown OriginateResponse Reason 42")
    assert failed_outcome(None, [16]) == ("failed", "no OriginateResponse Reason")
    assert dial_status_outcome("WEIRD") == ("failed", "unknown DialStatus WEIRD")
    assert dial_status_outcome("busy") == ("busy", None)
