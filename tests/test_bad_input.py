"""What each kind of bad input gets: a clear log line, a closed socket, and no given rating lost."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ivr.agi_server import FastAgiServer
from ivr.rating_writer import RatingWriter
from ivr.service import make_scripts, running_ivr
from rating_core.events.journal import Journal, streams
from rating_core.ratings.journal_replay import replay_dead_journals
from rating_core.ratings.store import RatingStore
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from rating_core.store.models import Call
from simulators.asterisk_agi import (
    Caller,
    HangUp,
    Press,
    SimulatedChannel,
    channel_environment,
    run_agi_process,
    run_call,
)
from waiting import wait_until

ENV = channel_environment(Caller([]), "1795316432.0", "127.0.0.1", 4573, "postcall?hotline=12345")


async def talk(port: int, data: bytes, *, read_for: float = 5.0) -> bytes:
    """Send raw bytes, then read until the server closes (or give up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(read_for):
            while chunk := await reader.read(4096):
                received += chunk
    finally:
        writer.close()
    return received


@pytest.fixture
async def strict_server(sqlite_engine, rules, journal):
    """A FastAGI server with a short environment timeout."""
    store = RatingStore(sqlite_engine, rules)
    journal.open()
    writer = RatingWriter(journal)
    server = FastAgiServer(make_scripts(store, writer), env_timeout=0.5)
    await server.start("127.0.0.1", 0)
    yield server
    await server.close()
    await writer.stop()
    journal.close(applied=False)


async def test_oversized_environment_is_cut_off(strict_server, caplog) -> None:
    flood = b"".join(b"agi_x%d: %s\n" % (i, b"y" * 100) for i in range(400))
    assert await talk(strict_server.port, flood) == b""  # closed, nothing sent
    assert "environment block longer than" in caplog.text


async def test_endless_environment_times_out(strict_server, caplog) -> None:
    assert await talk(strict_server.port, b"agi_network: yes\n") == b""
    assert "no complete environment block within 0.5 s" in caplog.text


async def test_garbage_is_refused(strict_server, caplog) -> None:
    assert await talk(strict_server.port, b"GET / HTTP/1.1\r\nHost: eval\r\n\r\n") == b""
    assert "not an AGI environment line" in caplog.text


async def test_garbage_reply_mid_call_keeps_the_rating(ivr, caplog) -> None:
    """Asterisk answers the rating, then sends garbage instead of the next reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ivr.server.port)
    channel = SimulatedChannel(Caller([Press("4")], variables={"EVAL_AGENT": "2001"}), "1795316432.77", "x")
    writer.write(channel_environment(channel.caller, "1795316432.77", "127.0.0.1", 0, "postcall?hotline=12345"))
    while (line := await reader.readline()) and not line.startswith(b"GET DATA hotline-eval/12345/tag_menu"):
        writer.write(channel.handle(line)[0])
    writer.write(b"\x00\xffNOT AGI AT ALL\n")
    assert await reader.read() == b""  # the server closed
    writer.close()
    with ivr.store.sessions() as s:
        call = s.scalars(select(Call).options(selectinload(Call.rating))).one()
    assert call.rating.level == "dissatisfied" and call.end_reason == "connection_lost"
    assert "protocol error" in caplog.text and "1795316432.77" in caplog.text


async def test_socket_closed_mid_reply_keeps_the_rating(ivr, caplog) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ivr.server.port)
    channel = SimulatedChannel(Caller([Press("1")]), "1795316432.78", "x")
    writer.write(channel_environment(channel.caller, "1795316432.78", "127.0.0.1", 0, "postcall?hotline=12345"))
    while (line := await reader.readline()) and not line.startswith(b"STREAM FILE hotline-eval/12345/thanks"):
        writer.write(channel.handle(line)[0])
    writer.write(b"200 res")  # half a reply, then the connection drops
    writer.close()
    await writer.wait_closed()
    # the client left first: wait for the server to finish the call and the store to have it
    await wait_until(lambda: not ivr.server.active)
    await ivr.settled()
    with ivr.store.sessions() as s:
        call = s.scalars(select(Call).options(selectinload(Call.rating))).one()
    assert call.rating.level == "very_satisfied" and call.end_reason == "connection_lost"
    assert "connection closed while waiting for the reply to STREAM" in caplog.text


async def test_dead_database_keeps_the_rating_in_the_journal_and_replays_it(
    tmp_path, rules, sqlite_engine, caplog
) -> None:
    """Nothing listens on the database port: the call goes on, the journal keeps it, then the real store has it."""
    dead = RatingStore(make_engine("postgresql+psycopg://eval@127.0.0.1:9/nothing?connect_timeout=1"), rules)
    folder = tmp_path / "journal"
    async with running_ivr(dead, Journal(folder), "127.0.0.1", 0, drain_timeout=1.0) as ivr:
        caller = Caller([Press("5"), Press("2")], variables={"EVAL_AGENT": "3003"})
        result = await run_call("127.0.0.1", ivr.server.port, caller, uniqueid="1795316432.90")
    assert result.closed_by_server and not result.error
    assert "the journal keeps every event until it is back" in caplog.text
    assert "it stays in" in caplog.text and streams(folder)
    alive = RatingStore(sqlite_engine, rules)
    assert replay_dead_journals(alive, folder) > 0 and not streams(folder)
    with alive.sessions() as s:
        call = s.scalars(select(Call).options(selectinload(Call.rating))).one()
    assert (call.uniqueid, call.agent_id, call.rating.level, call.rating.reason_tags) == (
        "1795316432.90", "3003", "very_dissatisfied", ["inefficient"])
    assert call.end_reason == "completed"


def test_plain_agi_over_stdin_stdout(tmp_path: Path) -> None:
    """`hotline-eval-agi` as Asterisk runs it: env block on stdin, commands on stdout, logs on stderr."""
    db = tmp_path / "agi.db"
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{db}", HOTLINE_EVAL_HOME=str(tmp_path))
    upgrade(make_engine(f"sqlite:///{db}"))
    channel = SimulatedChannel(Caller([Press("3")], variables={"EVAL_AGENT": "4004"}), "1795316432.5", "x")
    variables = {"agi_request": "/opt/hotline-eval/bin/hotline-eval-agi", "agi_channel": "PJSIP/trunk-0001",
                 "agi_uniqueid": "1795316432.5", "agi_callerid": "13900000000", "agi_enhanced": "0.0"}
    agi = str(Path(sys.executable).with_name("hotline-eval-agi"))
    code, stderr = run_agi_process([agi], channel, variables, ["hotline=12345"], env)
    assert code == 0, stderr
    assert channel.commands[-1] == ["HANGUP"] and not channel.violations
    store = RatingStore(make_engine(f"sqlite:///{db}"), None)
    with store.sessions() as s:
        call = s.scalars(select(Call).options(selectinload(Call.rating))).one()
    assert (call.agent_id, call.rating.level, call.end_reason) == ("4004", "basic", "completed")


async def test_the_simulated_asterisk_takes_a_reset_after_its_hangup_as_the_servers_close() -> None:
    """Real Asterisk ignores a failed write of the bare HANGUP line on a dead channel; so must its stand-in,
    or a benchmark counts calls the server finished and stored as failed."""

    async def close_with_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass  # the environment
        writer.write(b"WAIT FOR DIGIT 5000\n")
        await reader.readline()  # the caller hangs up meanwhile: "200 result=-1"
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # linger 0: the kernel sends RST, as for a write to an already closed socket

    server = await asyncio.start_server(close_with_reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # time_scale spaces the HANGUP line well after the reset arrives (a margin, not a timing check)
        result = await run_call("127.0.0.1", port, Caller([HangUp()]), uniqueid="1795316432.95", time_scale=1.0)
    finally:
        server.close()
        await server.wait_closed()
    assert result.error is None and result.closed_by_server
    assert result.channel.commands == [["WAIT", "FOR", "DIGIT", "5000"]] and not result.channel.alive
