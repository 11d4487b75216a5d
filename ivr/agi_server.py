"""The FastAGI server: many concurrent calls in one asyncio process.

Asterisk connects once per ``AGI(agi://host:port/path?…)``; the path picks the
script. Whatever happens inside a script, the socket is closed at the end,
because the dialplan waits until it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import Token

from ivr.agi_session import AgiSession, ConnectionLost
from ivr.reply_bounds import ReplyBounds
from protocols.agi import AgiConnection
from rating_core.rules.log_context import call_uniqueid
from rating_core.rules.metrics import AGI_CALLS_IN_PROGRESS, AGI_SESSIONS

log = logging.getLogger(__name__)

Script = Callable[[AgiSession], Awaitable[object]]

DEFAULT_PORT = 4573


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a stream and wait for it; a peer that already went away is no error."""
    if not writer.is_closing():
        writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


class StreamTransport:
    """An asyncio stream as an AGI transport."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        await close_quietly(self.writer)


class FastAgiServer:
    def __init__(self, scripts: dict[str, Script], *, env_timeout: float = 5.0,
                 reply_bounds: ReplyBounds = ReplyBounds()) -> None:
        self.scripts = scripts
        self.env_timeout = env_timeout
        self.reply_bounds = reply_bounds
        self.active: set[asyncio.Task[None]] = set()
        self.sessions_total = 0
        self.sessions_failed = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> asyncio.Server:
        self._server = await asyncio.start_server(self._accept, host, port, backlog=4096, limit=65536)
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self, grace: float = 30.0) -> None:
        """Stop accepting, let calls in progress finish for up to ``grace`` seconds.

        ``wait_closed`` comes last: from Python 3.12 it waits for every connection to end, so before the
        grace period it would wait for the longest call, however long.
        """
        if self._server is not None:
            self._server.close()
        if self.active:
            _done, pending = await asyncio.wait(set(self.active), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        try:
            with AGI_CALLS_IN_PROGRESS.track_inprogress():
                await self._serve(StreamTransport(reader, writer), writer.get_extra_info("peername"))
        finally:
            self.active.discard(task)

    async def _serve(self, transport: StreamTransport, peer: object) -> None:
        self.sessions_total += 1
        session: AgiSession | None = None
        about: Token[str | None] | None = None
        outcome = "failed"  # until the script returns
        try:
            session = await AgiSession.open(
                transport, env_timeout=self.env_timeout, reply_bounds=self.reply_bounds, connection=AgiConnection()
            )
            # Where the call's uniqueid is first known: from here every line this connection's task logs (and
            # the threads it starts, which copy its context) is about this call (rating_core.rules.log_context).
            about = call_uniqueid.set(session.env.uniqueid)
            script = self.scripts.get(session.env.path)
            if script is None:
                self.sessions_failed += 1
                log.error("FastAGI from %s: no script for path %r (request %s); closing",
                          peer, session.env.path, session.env.variables.get("agi_request"))
                return
            await script(session)
            outcome = "ok"
        except ConnectionLost as exc:
            self.sessions_failed += 1
            uniqueid = session.env.uniqueid if session else None
            log.error("FastAGI from %s (call %s): %s; closing", peer, uniqueid, exc)
        except Exception:
            self.sessions_failed += 1
            log.exception("FastAGI from %s: script failed; closing", peer)
        finally:
            AGI_SESSIONS.labels(outcome).inc()
            await transport.close()
            if about is not None:
                call_uniqueid.reset(about)
