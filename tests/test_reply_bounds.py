"""Each AGI command waits for its reply as long as the command itself can run, plus slack; no longer.

A peer that stops answering must not hold a call for the bound of the longest command.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from ivr.agi_server import FastAgiServer
from ivr.agi_session import AgiSession, ConnectionLost, Recording
from ivr.reply_bounds import ReplyBounds
from simulators.asterisk_agi import Caller, channel_environment
from waiting import HANG

BOUNDS = ReplyBounds()


# -- the bound of each command -------------------------------------------------------------------


def test_a_record_file_waits_longer_than_its_maximum() -> None:
    # As AgiSession.record_file sends it: max 60 s, a beep, 3 s of silence ends it.
    assert BOUNDS.for_command(["RECORD", "FILE", "/var/spool/x", "wav", "#", 60000, 0, "BEEP", "s=3"]) > 60


def test_a_record_application_waits_longer_than_its_maximum() -> None:
    # As AgiSession.record sends it: <file.format>,<silence>,<max seconds>,<options>.
    assert BOUNDS.for_command(["EXEC", "Record", "/var/spool/hotline-eval/m.wav,3,60,k"]) > 60
    assert BOUNDS.for_command(["EXEC", "Record", "/var/spool/hotline-eval/m.wav,3,600,k"]) > 600


def test_commands_that_answer_at_once_get_the_short_bound() -> None:
    for words in (["GET", "VARIABLE", "EVAL_AGENT"], ["ANSWER"], ["SET", "VARIABLE", "X", "1"], ["HANGUP"],
                  ["CHANNEL", "STATUS"], ["GET", "FULL", "VARIABLE", "${CHANNEL(linkedid)}"]):
        assert BOUNDS.for_command(words) == BOUNDS.immediate <= 30, words


def test_a_menu_waits_for_its_prompt_and_then_its_timeout() -> None:
    one_digit = BOUNDS.for_command(["GET", "DATA", "hotline-eval/12345/rating_menu", 6000, 1])
    assert one_digit == BOUNDS.prompt + 6 + BOUNDS.slack
    # The timeout runs again before each further digit (OBSERVED.md 1.2: '4' at +0.8 s, '2' at +4.0 s of 5000 ms).
    assert BOUNDS.for_command(["GET", "DATA", "a&b", 5000, 2]) == 2 * BOUNDS.prompt + 10 + BOUNDS.slack


def test_playing_waits_for_the_prompt() -> None:
    assert BOUNDS.for_command(["STREAM", "FILE", "hotline-eval/12345/thanks", ""]) == BOUNDS.prompt + BOUNDS.slack
    assert BOUNDS.for_command(["EXEC", "Playback", "a&b,noanswer"]) == 2 * BOUNDS.prompt + BOUNDS.slack
    assert BOUNDS.for_command(["WAIT", "FOR", "DIGIT", 5000]) == 5 + BOUNDS.slack


def test_a_command_without_a_cap_of_its_own_gets_the_longest_bound() -> None:
    uncapped = BOUNDS.uncapped + BOUNDS.slack
    assert BOUNDS.for_command(["RECORD", "FILE", "/var/spool/x", "wav", "#", -1]) == uncapped
    assert BOUNDS.for_command(["WAIT", "FOR", "DIGIT", -1]) == uncapped
    assert BOUNDS.for_command(["EXEC", "Record", "/var/spool/m.wav,3,0,k"]) == uncapped
    assert BOUNDS.for_command(["EXEC", "Dial", "PJSIP/1000"]) == uncapped


# -- a FastAGI peer that is slow or stops answering -----------------------------------------------

# Only the short bound is short: a command that got any other bound would wait past the hang guard,
# and the test would fail instead of passing slowly.
SHORT = ReplyBounds(immediate=0.05, slack=2 * HANG, prompt=2 * HANG, listening=2 * HANG, uncapped=2 * HANG)


@asynccontextmanager
async def serving(script: Callable[[AgiSession], Awaitable[object]]) -> AsyncIterator[FastAgiServer]:
    server = FastAgiServer({"postcall": script}, reply_bounds=SHORT)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close(grace=0)


async def call(server: FastAgiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(channel_environment(Caller([]), "1795316432.5", "127.0.0.1", server.port, "postcall?hotline=12345"))
    return reader, writer


async def test_a_peer_that_stops_answering_loses_the_call_after_the_short_bound(
        caplog: pytest.LogCaptureFixture) -> None:
    lost: list[ConnectionLost] = []

    async def script(agi: AgiSession) -> None:
        try:
            await agi.get_variable("EVAL_AGENT")
        except ConnectionLost as exc:
            lost.append(exc)
            raise

    async with serving(script) as server:
        reader, writer = await call(server)
        try:
            assert await asyncio.wait_for(reader.readline(), HANG) == b"GET VARIABLE EVAL_AGENT\n"
            # No reply, ever: the server gives up and closes.
            assert await asyncio.wait_for(reader.read(), HANG) == b""
        finally:
            writer.close()
    assert len(lost) == 1 and "no reply to GET VARIABLE EVAL_AGENT within 0.05 s" in str(lost[0])
    assert server.sessions_failed == 1
    assert "no reply to GET VARIABLE EVAL_AGENT within 0.05 s; closing" in caplog.text


async def test_a_recording_is_not_cut_off_at_the_short_bound() -> None:
    recorded: list[Recording] = []

    async def script(agi: AgiSession) -> None:
        recorded.append(await agi.record_file("/var/spool/eval/m", "wav", "#", 60000, beep=True, silence_s=3))

    async with serving(script) as server:
        reader, writer = await call(server)
        try:
            line = await asyncio.wait_for(reader.readline(), HANG)
            assert line.startswith(b"RECORD FILE /var/spool/eval/m wav")
            # The session's clock for this reply started before we read the command, so past this
            # (the loop's clock, the one its timeout runs on) a short bound would have run out.
            await asyncio.sleep(4 * SHORT.immediate)
            writer.write(b"200 result=0 (timeout) endpos=480000\n")
            assert await asyncio.wait_for(reader.read(), HANG) == b""  # the script ended; the server closed
        finally:
            writer.close()
    assert recorded == [Recording("timeout", None, 480000)]
    assert server.sessions_failed == 0
