"""The sans-I/O AGI protocol, fed the bytes a real Asterisk 22 sent (shared/asterisk/OBSERVED.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.agi import (
    NEED_DATA,
    AgiConnection,
    ArgumentError,
    ConnectionClosed,
    EnvironmentReceived,
    HangupReceived,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
    ReplyReceived,
    format_command,
    format_reply,
    parse_reply_line,
    quote_argument,
    split_command,
)
from simulators.asterisk_agi import Caller, Say, Silence, SimulatedChannel, Speak
from speech_models.recordings import read_recording

# OBSERVED.md 1.1 A, byte for byte (it arrived in two recv() chunks).
ENV_A = [
    (b"agi_network: yes\n"
     b"agi_network_script: postcall?hotline=12345&x=1\n"
     b"agi_request: agi://127.0.0.1:4573/postcall?hotline=12345&x=1\n"
     b"agi_channel: Local/silent@caller-sim-00000000;1\n"
     b"agi_language: en\n"
     b"agi_type: Local\n"
     b"agi_uniqueid: 1795316432.0\n"
     b"agi_version: 22.10.1\n"
     b"agi_callerid: 13800000000\n"
     b"agi_calleridname: Citizen\n"
     b"agi_callingpres: 0\n"
     b"agi_callingani2: 0\n"
     b"agi_callington: 0\n"
     b"agi_callingtns: 0\n"
     b"agi_dnid: unknown\n"
     b"agi_rdnis: unknown\n"
     b"agi_context: caller-sim\n"),
    (b"agi_extension: silent\n"
     b"agi_priority: 1\n"
     b"agi_enhanced: 0.0\n"
     b"agi_accountcode: \n"
     b"agi_threadid: 140180919146176\n"
     b"agi_arg_1: arg1\n"
     b"agi_arg_2: arg2\n"
     b"\n"),
]
# OBSERVED.md 1.1 B: an empty comma argument still arrives.
ENV_B_TAIL = (b"agi_extension: s\n"
              b"agi_priority: 1\n"
              b"agi_enhanced: 0.0\n"
              b"agi_accountcode: \n"
              b"agi_threadid: 140180920170176\n"
              b"agi_arg_1: arg1\n"
              b"agi_arg_2: \n"
              b"agi_arg_3: arg3\n"
              b"\n")


def connected(*chunks: bytes) -> AgiConnection:
    conn = AgiConnection()
    for chunk in chunks:
        conn.receive_data(chunk)
    event = conn.next_event()
    assert isinstance(event, EnvironmentReceived)
    return conn


def test_environment_block_from_asterisk_22() -> None:
    env = connected(*ENV_A).environment
    assert env is not None
    assert env.is_network
    assert env.script == "postcall?hotline=12345&x=1"
    assert env.path == "postcall"
    assert env.query == {"hotline": "12345", "x": "1"}
    assert env.uniqueid == "1795316432.0"
    assert env.get("callerid") == "13800000000"
    assert env.get("dnid") is None  # Asterisk sends "unknown"
    assert env.get("accountcode") is None  # sent as "agi_accountcode: " (a trailing space)
    assert env.variables["agi_accountcode"] == ""
    assert env.args == ("arg1", "arg2")


def test_empty_argument_is_kept_in_place() -> None:
    env = connected(ENV_A[0], ENV_B_TAIL).environment
    assert env is not None
    assert env.args == ("arg1", "", "arg3")


def test_environment_split_at_every_byte() -> None:
    data = b"".join(ENV_A)
    conn = AgiConnection()
    for i in range(len(data) - 1):
        conn.receive_data(data[i : i + 1])
        assert conn.next_event() is NEED_DATA
    conn.receive_data(data[-1:])
    assert isinstance(conn.next_event(), EnvironmentReceived)


def test_oversized_environment_is_refused() -> None:
    conn = AgiConnection(max_env_bytes=4096)
    conn.receive_data(b"".join(b"agi_var_%d: %s\n" % (i, b"x" * 60) for i in range(100)))
    with pytest.raises(RemoteProtocolError, match="environment block longer"):
        conn.next_event()


def test_endless_environment_line_is_refused() -> None:
    conn = AgiConnection(max_env_bytes=4096)
    conn.receive_data(b"agi_network: " + b"y" * 5000)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        conn.next_event()


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\n\n",
                                     b"hello\n"])
def test_garbage_instead_of_environment(garbage: bytes) -> None:
    conn = AgiConnection()
    conn.receive_data(garbage)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_close_before_environment_ends() -> None:
    conn = AgiConnection()
    conn.receive_data(ENV_A[0])
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed before"):
        conn.next_event()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("200 result=0", Reply(200, "0", text="0")),
        ("200 result=1 (call-0001)", Reply(200, "1", "call-0001", text="1 (call-0001)")),
        ("200 result=1 ()", Reply(200, "1", "", text="1 ()")),
        ("200 result=-2", Reply(200, "-2", text="-2")),
        ("200 result=-1 endpos=0", Reply(200, "-1", None, 0, text="-1 endpos=0")),
        ("200 result=51 endpos=12160", Reply(200, "51", None, 12160, text="51 endpos=12160")),
        ("200 result= (timeout)", Reply(200, "", "timeout", text=" (timeout)")),
        ("200 result=7 (timeout)", Reply(200, "7", "timeout", text="7 (timeout)")),
        ("200 result=7988 (timeout) endpos=8160",
         Reply(200, "7988", "timeout", 8160, text="7988 (timeout) endpos=8160")),
        ("200 result=35 (dtmf) endpos=10400", Reply(200, "35", "dtmf", 10400, text="35 (dtmf) endpos=10400")),
        ("200 result=-1 (hangup) endpos=24000", Reply(200, "-1", "hangup", 24000, text="-1 (hangup) endpos=24000")),
        ("510 Invalid or unknown command", Reply(510, text="Invalid or unknown command")),
        ("511 Command Not Permitted on a dead channel or intercept routine",
         Reply(511, text="Command Not Permitted on a dead channel or intercept routine")),
    ],
)
def test_replies_seen_from_asterisk_22(line: str, expected: Reply) -> None:
    assert parse_reply_line(line) == expected
    assert format_reply(expected) == (line + "\n").encode()


def test_variable_value_with_parentheses() -> None:
    assert parse_reply_line("200 result=1 (市人社局(社保中心))").data == "市人社局(社保中心)"


def test_variable_value_with_line_breaks_spans_lines() -> None:
    # res_agi.c sends GET VARIABLE's value as it is ("200 result=1 (%s)\n"): a SHELL() lookup's newline splits it.
    conn = connected(*ENV_A)
    conn.send_command(["GET", "VARIABLE", "EVAL_CASE"])
    conn.receive_data(b"200 result=1 (GD001\nHANGUP\n")
    assert conn.next_event() is NEED_DATA  # the value's own "HANGUP" line is not the caller hanging up
    conn.receive_data("GD002 (市人社局)\n)\n".encode())
    event = conn.next_event()
    assert isinstance(event, ReplyReceived)
    assert event.reply.data == "GD001\nHANGUP\nGD002 (市人社局)\n" and not conn.hung_up
    conn.send_command(["ANSWER"])
    conn.receive_data(b"200 result=0\nHANGUP\n")
    assert isinstance(conn.next_event(), ReplyReceived)
    assert isinstance(conn.next_event(), HangupReceived)


@pytest.mark.parametrize(("value", "hangup"), [
    ("市人社局(社保中心)\n", False),  # parentheses balance: the first line's ")" is the value's
    ("GD001\n\n", False),
    ("a(b", False),  # a lone "(" in a one-line value: nothing more came, so the reply is whole
    ("a(b", True),  # ...nor is the caller's HANGUP line after it part of it
])
def test_where_a_value_with_parentheses_or_line_breaks_ends(value: str, hangup: bool) -> None:
    conn = connected(*ENV_A)
    conn.send_command(["GET", "VARIABLE", "EVAL_UNIT"])
    conn.receive_data(f"200 result=1 ({value})\n".encode() + (b"HANGUP\n" if hangup else b""))
    event = conn.next_event()
    assert isinstance(event, ReplyReceived) and event.reply.data == value
    assert isinstance(conn.next_event(), HangupReceived if hangup else type(NEED_DATA))


def test_reply_data_that_never_closes_is_refused() -> None:
    conn = connected(*ENV_A)
    conn.max_line_bytes = 1000
    conn.send_command(["GET", "VARIABLE", "EVAL_CASE"])
    conn.receive_data(b"200 result=1 (GD001\n" + b"x" * 100 + b"\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data((b"x" * 100 + b"\n") * 9)
    with pytest.raises(RemoteProtocolError, match="never closes"):
        conn.next_event()


@pytest.mark.parametrize("line", ["HTTP/1.1 200 OK", "200 ok", "200 result=1 trailing", "2000 result=1"])
def test_malformed_reply_lines(line: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_reply_line(line)


def test_usage_reply_spanning_two_reads() -> None:
    conn = connected(*ENV_A)
    conn.send_command(["STREAM", "FILE"])
    conn.receive_data(b"520-Invalid command syntax.  Proper usage follows:\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(
        b"Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a DTMF digit.\n"
        b"HANGUP is a word that may appear in usage text\n"
        b"520 End of proper usage.\n"
    )
    event = conn.next_event()
    assert isinstance(event, ReplyReceived)
    assert event.reply.code == 520
    assert event.reply.usage[0].startswith("Waits up to")
    assert len(event.reply.usage) == 2
    assert not conn.hung_up


def test_hangup_after_the_interrupted_reply() -> None:
    # OBSERVED.md 1.4: the reply to the running command first, then a bare HANGUP ~40 ms later.
    conn = connected(*ENV_A)
    assert format_command(["STREAM", "FILE", "rating-prompt", ""]) == b'STREAM FILE rating-prompt ""\n'
    conn.send_command(["STREAM", "FILE", "rating-prompt", ""])
    conn.receive_data(b"200 result=-1 endpos=16160\n")
    event = conn.next_event()
    assert isinstance(event, ReplyReceived) and event.reply.result == "-1"
    assert not conn.hung_up
    conn.receive_data(b"HANGUP\n")
    assert isinstance(conn.next_event(), HangupReceived)
    assert conn.hung_up
    conn.send_command(["CHANNEL", "STATUS"])
    conn.receive_data(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    event = conn.next_event()
    assert isinstance(event, ReplyReceived) and event.reply.code == 511


def test_hangup_line_is_not_taken_for_the_next_reply() -> None:
    conn = connected(*ENV_A)
    conn.receive_data(b"HANGUP\n")  # alone, while no command runs
    conn.send_command(["GET", "VARIABLE", "RATING_CALLID"])
    assert isinstance(conn.next_event(), HangupReceived)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"200 result=1 (call-0001)\n")
    event = conn.next_event()
    assert isinstance(event, ReplyReceived) and event.reply.data == "call-0001"


def test_unsolicited_reply_is_a_protocol_error() -> None:
    conn = connected(*ENV_A)
    conn.receive_data(b"200 result=0\n")
    with pytest.raises(RemoteProtocolError, match="unsolicited"):
        conn.next_event()


def test_one_command_at_a_time() -> None:
    conn = connected(*ENV_A)
    conn.send_command(["ANSWER"])
    with pytest.raises(LocalProtocolError):
        conn.send_command(["ANSWER"])


def test_close_after_environment() -> None:
    conn = connected(*ENV_A)
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)


@pytest.mark.parametrize(
    ("argument", "quoted"),
    [("menu", "menu"), ("", '""'), ("a b", '"a b"'), ('say "hi"', '"say \\"hi\\""'), ("C:\\x", '"C:\\\\x"'),
     ("12345#*0", "12345#*0"), ("${CHANNEL(linkedid)}", "${CHANNEL(linkedid)}")],
)
def test_quoting(argument: str, quoted: str) -> None:
    assert quote_argument(argument) == quoted


@pytest.mark.parametrize("argument", ["two\nlines", "cr\r", "nul\0"])
def test_line_breaks_cannot_be_sent(argument: str) -> None:
    with pytest.raises(ArgumentError):
        format_command(["VERBOSE", argument])


def test_command_longer_than_asterisk_reads_is_refused() -> None:
    with pytest.raises(ArgumentError, match="exceeds"):
        format_command(["VERBOSE", "x" * 3000])


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('SET VARIABLE RATING_RESULT "5"', ["SET", "VARIABLE", "RATING_RESULT", "5"]),
        ('STREAM FILE rating-thanks ""', ["STREAM", "FILE", "rating-thanks", ""]),
        ('RECORD FILE /var/spool/eval/silence wav "#" 10000 0 BEEP s=2',
         ["RECORD", "FILE", "/var/spool/eval/silence", "wav", "#", "10000", "0", "BEEP", "s=2"]),
        ('VERBOSE "hello from fastagi" 1', ["VERBOSE", "hello from fastagi", "1"]),
        ("GET  DATA\tx", ["GET", "DATA", "x"]),
    ],
)
def test_split_like_res_agi(line: str, words: list[str]) -> None:
    assert split_command(line) == words


@given(st.lists(st.text(st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)), max_size=20),
                min_size=1, max_size=8))
def test_every_argument_survives_quoting(words: list[str]) -> None:
    line = format_command(words).decode()
    assert split_command(line.rstrip("\n")) == words


# -- the simulated channel's RECORD FILE, as OBSERVED.md §1.2 shows Asterisk 22 answer it ----------------


@pytest.mark.parametrize(("line", "reaction", "reply", "seconds"), [
    # Silence detection: trailing silence cut back to about 1 s (endpos 8160), result = ms left on the wait.
    ('RECORD FILE /var/spool/eval/maxlen2 wav "#" 3000 0 s=2', Silence(),
     b"200 result=1000 (timeout) endpos=8160\n", 2.0),
    # The length cap, with no silence detection: result 0.
    ('RECORD FILE /var/spool/eval/maxlen wav "#" 3000', Speak(1.0), b"200 result=0 (timeout) endpos=24000\n", 3.0),
    # '#' ends it; the key's own 200 ms is trimmed from the file.
    ('RECORD FILE /var/spool/eval/dtmf wav "#" 10000', Speak(1.5, "#"), b"200 result=35 (dtmf) endpos=10400\n", 1.5),
    # Speech whose silence would end after the cap: the cap comes first.
    ('RECORD FILE /var/spool/eval/long wav "#" 3000 0 s=2', Speak(2.0), b"200 result=0 (timeout) endpos=24000\n", 3.0),
    ('RECORD FILE /var/spool/eval/gone wav "#" 3000 0 s=2', Speak(1.0, "hangup"),
     b"200 result=-1 (hangup) endpos=8000\n", 1.0),
])
def test_the_simulated_record_file_answers_as_asterisk_does(line: str, reaction: object, reply: bytes,
                                                             seconds: float) -> None:
    channel = SimulatedChannel(Caller([reaction]), "1795316432.1", "1795316432.1")
    assert channel.handle(line.encode() + b"\n")[:2] == (reply, seconds)


def test_what_a_caller_says_into_record_file_is_written_as_asterisks_wav(tmp_path) -> None:
    said = bytes(range(256)) * 50  # 0.8 s of audio
    channel = SimulatedChannel(Caller([Say(said)]), "1795316432.2", "1795316432.2", recordings=tmp_path)
    reply, _, _ = channel.handle(b'RECORD FILE /var/spool/asterisk/speech/x wav 0123456789*# 3000 0 s=1\n')
    assert reply == b"200 result=1200 (timeout) endpos=14560\n"  # 0.8 s said, then about 1 s of silence kept
    written = read_recording(tmp_path / "var/spool/asterisk/speech/x.wav")
    assert written == said + bytes(14560 * 2 - len(said))
    channel = SimulatedChannel(Caller([Say(said, press="3")]), "1795316432.3", "1795316432.3", recordings=tmp_path)
    assert channel.handle(b'RECORD FILE /var/spool/asterisk/speech/y wav 0123456789*# 3000 0 s=1\n')[0] == (
        b"200 result=51 (dtmf) endpos=4800\n")
    assert read_recording(tmp_path / "var/spool/asterisk/speech/y.wav") == said[:4800 * 2]
