"""The AudioSocket server: Asterisk connects here when a call flow runs ``EXEC AudioSocket``.

A flow announces a session by UUID (:meth:`AudioSocketServer.expect`) before it
runs the application; the connection that brings that UUID is handed to the
flow's handler, which reads the caller's audio and DTMF from ``call.events``.
While the handler runs the server sends 20 ms of silence every 20 ms
(Asterisk gives up after 2 s with no frames either way); when it returns the
server ends the session with ``00 00 00``, so the channel stays up and the
flow's ``EXEC`` returns ``200 result=0``.

A connection whose first message is not a UUID within a few seconds, or whose
UUID no flow is waiting for, is logged and ended.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from ivr.agi_server import close_quietly
from protocols.audiosocket import (
    SILENCE_FRAME,
    AudioSocketConnection,
    ConnectionClosed,
    Event,
    RemoteProtocolError,
    SessionStarted,
)
from protocols.common import NeedData

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.02


class AudioSocketCall:
    """One connected session as its handler sees it: an event queue and who it belongs to."""

    def __init__(self, session: uuid.UUID, owner: str) -> None:
        self.session = session
        self.owner = owner  # the call's uniqueid, for the log
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.closed_by_peer = False


Handler = Callable[[AudioSocketCall], Awaitable[None]]


class AudioSocketServer:
    def __init__(self, *, uuid_timeout: float = 3.0) -> None:
        self.uuid_timeout = uuid_timeout
        self._waiting: dict[uuid.UUID, tuple[str, Handler]] = {}
        self._server: asyncio.Server | None = None
        self.active: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, host, port, backlog=4096)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self.active):
            task.cancel()
        await asyncio.gather(*self.active, return_exceptions=True)
        if self._server is not None:  # last: from Python 3.12 it waits for the connections cancelled above
            await self._server.wait_closed()

    def expect(self, session: uuid.UUID, owner: str, handler: Handler) -> None:
        self._waiting[session] = (owner, handler)

    def expecting(self, session: uuid.UUID) -> bool:
        """Whether ``session`` was announced and its connection has not come yet."""
        return session in self._waiting

    def forget(self, session: uuid.UUID) -> None:
        self._waiting.pop(session, None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        peer = writer.get_extra_info("peername")
        conn = AudioSocketConnection()
        try:
            first = await asyncio.wait_for(self._next(conn, reader), self.uuid_timeout)
            if not isinstance(first, SessionStarted):
                log.warning("AudioSocket from %s: closed before sending its UUID", peer)
                return
            waiting = self._waiting.pop(first.uuid, None)
            if waiting is None:
                log.warning("AudioSocket from %s: UUID %s matches no call waiting for audio; ending it",
                            peer, first.uuid)
                await self._end(writer)
                return
            owner, handler = waiting
            call = AudioSocketCall(first.uuid, owner)
            await self._serve(call, handler, conn, reader, writer)
        except TimeoutError:
            log.warning("AudioSocket from %s: no UUID within %g s", peer, self.uuid_timeout)
        except RemoteProtocolError as exc:
            log.warning("AudioSocket from %s: not AudioSocket: %s", peer, exc)
        except (ConnectionError, OSError) as exc:
            log.info("AudioSocket from %s: %s", peer, exc)
        finally:
            await close_quietly(writer)
            self.active.discard(task)

    async def _serve(self, call: AudioSocketCall, handler: Handler, conn: AudioSocketConnection,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pump = asyncio.create_task(self._pump(call, conn, reader), name=f"audiosocket-read-{call.session}")
        silence = asyncio.create_task(self._send_silence(writer), name=f"audiosocket-silence-{call.session}")
        try:
            await handler(call)
        finally:
            pump.cancel()
            silence.cancel()
            await asyncio.gather(pump, silence, return_exceptions=True)
        if not call.closed_by_peer:
            await self._end(writer)

    async def _pump(self, call: AudioSocketCall, conn: AudioSocketConnection, reader: asyncio.StreamReader) -> None:
        """Socket to ``call.events``; a protocol error ends the stream like a close does."""
        while True:
            try:
                event = await self._next(conn, reader)
            except RemoteProtocolError as exc:
                log.warning("call %s: AudioSocket session %s sent garbage: %s", call.owner, call.session, exc)
                event = ConnectionClosed(truncated=True)
            except (ConnectionError, OSError) as exc:
                log.info("call %s: AudioSocket session %s: %s", call.owner, call.session, exc)
                event = ConnectionClosed(truncated=True)
            if isinstance(event, ConnectionClosed):
                call.closed_by_peer = True
                call.events.put_nowait(event)
                return
            call.events.put_nowait(event)

    @staticmethod
    async def _next(conn: AudioSocketConnection, reader: asyncio.StreamReader) -> Event:
        while isinstance(event := conn.next_event(), NeedData):
            conn.receive_data(await reader.read(65536))
        return event

    @staticmethod
    async def _send_silence(writer: asyncio.StreamWriter) -> None:
        frame = AudioSocketConnection.send_audio(SILENCE_FRAME)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not writer.is_closing():
            writer.write(frame)
            next_at += FRAME_SECONDS
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    @staticmethod
    async def _end(writer: asyncio.StreamWriter) -> None:
        if writer.is_closing():
            return
        writer.write(AudioSocketConnection.send_hangup())
        try:
            await writer.drain()
        except (ConnectionError, OSError):
            pass
