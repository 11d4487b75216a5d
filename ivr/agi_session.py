"""An AGI session over any byte transport: typed, awaitable commands for the call flow.

This is the thin async adapter around :class:`~protocols.agi.AgiConnection`.
It turns Asterisk's reply conventions into Python: a ``-1`` that means the
caller hung up becomes :class:`ChannelHungUp`; a ``-1`` on a live channel
(a missing sound file, a recording that could not be written) becomes
:class:`CommandFailed`; a peer that stops answering becomes
:class:`ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from ivr.reply_bounds import ReplyBounds
from protocols.agi import (
    NEED_DATA,
    AgiConnection,
    AgiEnvironment,
    ConnectionClosed,
    EnvironmentReceived,
    RemoteProtocolError,
    Reply,
    ReplyReceived,
)
from rating_core.rules.metrics import AGI_TURN

log = logging.getLogger(__name__)

CHANNEL_UP = 6


class Transport(Protocol):
    async def read(self) -> bytes:
        """Some bytes, or ``b""`` at end of stream."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class AgiError(Exception):
    """Base of the errors a call flow sees."""


class ChannelHungUp(AgiError):
    """The caller hung up; only dead-channel commands work from here on."""


class ConnectionLost(AgiError):
    """Asterisk went away, stopped answering, or sent garbage."""


class CommandFailed(AgiError):
    def __init__(self, command: str, reply: Reply) -> None:
        super().__init__(f"{command} failed: {reply.code} {reply.text}")
        self.command = command
        self.reply = reply


@dataclass(frozen=True)
class Recording:
    """What a recording came to: how it ended, the key that ended it, and its length."""

    ended_by: str  # "dtmf", "timeout" (silence or length cap) or "hangup"
    digit: str | None
    samples: int

    @property
    def seconds(self) -> float:
        return self.samples / 8000  # 8 kHz samples, as RECORD FILE's endpos counts them


# How Record()'s RECORD_STATUS reads as a Recording's end.
RECORD_STATUSES = {"DTMF": "dtmf", "SILENCE": "timeout", "TIMEOUT": "timeout", "HANGUP": "hangup"}
# Asterisk's recording formats: bytes of header, and bytes per second of 8 kHz audio (format_wav.c writes a
# 44-byte header before 16-bit samples; GSM packs 160 samples in 33 bytes, WAV-GSM 320 in 65 after 60 bytes).
RECORDING_FORMATS = {"wav": (44, 16000), "sln": (0, 16000), "ulaw": (0, 8000), "alaw": (0, 8000),
                     "gsm": (0, 1650), "wav49": (60, 1625)}


def samples_in_file(size: int, fmt: str) -> int:
    """8 kHz samples in a recording of ``size`` bytes written by Asterisk in ``fmt``."""
    header, per_second = RECORDING_FORMATS[fmt]
    return max(size - header, 0) * 8000 // per_second


class AgiSession:
    def __init__(self, transport: Transport, connection: AgiConnection, *, reply_bounds: ReplyBounds) -> None:
        self.transport = transport
        self.connection = connection
        self.reply_bounds = reply_bounds
        # When Asterisk last gave us the turn (the environment, then each reply): the next command ends it.
        self._turn_began: float | None = None

    @classmethod
    async def open(
        cls, transport: Transport, *, env_timeout: float = 5.0, reply_bounds: ReplyBounds = ReplyBounds(),
        connection: AgiConnection | None = None,
    ) -> AgiSession:
        """Read the environment block (under a time limit) and return the session."""
        session = cls(transport, connection or AgiConnection(), reply_bounds=reply_bounds)
        try:
            event = await asyncio.wait_for(session._next_event(), env_timeout)
        except TimeoutError:
            raise ConnectionLost(f"no complete environment block within {env_timeout:g} s") from None
        if not isinstance(event, EnvironmentReceived):
            raise ConnectionLost(f"expected the environment block, got {event!r}")
        session._turn_began = time.perf_counter()
        return session

    @property
    def env(self) -> AgiEnvironment:
        assert self.connection.environment is not None
        return self.connection.environment

    @property
    def hung_up(self) -> bool:
        return self.connection.hung_up

    async def _next_event(self):
        while True:
            try:
                event = self.connection.next_event()
            except RemoteProtocolError as exc:
                raise ConnectionLost(f"protocol error: {exc}") from exc
            if event is not NEED_DATA:
                return event
            try:
                data = await self.transport.read()
            except (ConnectionError, OSError) as exc:
                raise ConnectionLost(f"read failed: {exc}") from exc
            self.connection.receive_data(data)

    async def command(self, *words: str | int) -> Reply:
        """Send one command and return its reply; raise ChannelHungUp on ``511``, and ConnectionLost when the
        reply does not come within the command's bound (its own length and some slack)."""
        bound = self.reply_bounds.for_command(words)
        data = self.connection.send_command(words)
        if self._turn_began is not None:
            AGI_TURN.observe(time.perf_counter() - self._turn_began)
            self._turn_began = None
        try:
            await self.transport.write(data)
        except (ConnectionError, OSError) as exc:
            raise ConnectionLost(f"write failed: {exc}") from exc
        try:
            async with asyncio.timeout(bound):
                while True:
                    event = await self._next_event()
                    if isinstance(event, ReplyReceived):
                        reply = event.reply
                        break
                    if isinstance(event, ConnectionClosed):
                        raise ConnectionLost(f"connection closed while waiting for the reply to {words[0]}")
                    # HangupReceived: noted by the connection; the reply still follows.
        except TimeoutError:
            raise ConnectionLost(f"no reply to {' '.join(map(str, words))[:60]} within {bound:g} s") from None
        self._turn_began = time.perf_counter()
        if reply.code == 511:
            raise ChannelHungUp(f"{words[0]} on a dead channel")
        if reply.code != 200:
            raise CommandFailed(" ".join(map(str, words[:2])), reply)
        return reply

    async def _caller_gone(self) -> bool:
        """Whether the caller has hung up, asked of Asterisk when the HANGUP line has not come yet.

        The HANGUP line trails a reply by up to some 40 ms, so the flag may not be
        set yet: CHANNEL STATUS answers ``511`` on a dead channel.
        """
        if not self.hung_up:
            try:
                await self.command("CHANNEL", "STATUS")
            except ChannelHungUp:
                pass
        return self.hung_up

    async def _failed_or_hung_up(self, name: str, reply: Reply) -> AgiError:
        """Tell a hangup from a failure after ``result=-1``."""
        if await self._caller_gone():
            return ChannelHungUp(f"caller hung up during {name}")
        return CommandFailed(name, reply)

    # -- the commands the flows use ------------------------------------------------

    async def answer(self) -> None:
        reply = await self.command("ANSWER")
        if reply.result == "-1":
            raise await self._failed_or_hung_up("ANSWER", reply)

    async def channel_status(self) -> int:
        reply = await self.command("CHANNEL", "STATUS")
        return reply.result_int if reply.result_int is not None else -1

    async def get_variable(self, name: str) -> str | None:
        """A channel variable, or None when unset (``200 result=0``)."""
        reply = await self.command("GET", "VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        reply = await self.command("GET", "FULL", "VARIABLE", expression)
        return (reply.data or None) if reply.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET", "VARIABLE", name, value)

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, level)

    async def get_data(self, sound: str, timeout_ms: int, max_digits: int) -> str | None:
        """Play ``sound`` (interruptible by any key) and collect digits; None when nothing was pressed."""
        reply = await self.command("GET", "DATA", sound, timeout_ms, max_digits)
        if reply.result == "-1":
            raise await self._failed_or_hung_up("GET DATA", reply)
        return reply.result or None

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play ``sound``; return the escape digit that interrupted it, if any."""
        reply = await self.command("STREAM", "FILE", sound, escape_digits)
        code = reply.result_int
        if code is None or code < 0:
            raise await self._failed_or_hung_up("STREAM FILE", reply)
        return chr(code) if code > 0 else None

    async def record_file(
        self, path: str, fmt: str, escape_digits: str, max_ms: int, *, beep: bool, silence_s: int | None
    ) -> Recording:
        words: list[str | int] = ["RECORD", "FILE", path, fmt, escape_digits, max_ms, 0]
        if beep:
            words.append("BEEP")
        if silence_s:
            words.append(f"s={silence_s}")
        reply = await self.command(*words)
        samples = reply.endpos or 0
        if reply.data == "hangup":
            return Recording("hangup", None, samples)
        if reply.data == "dtmf":
            code = reply.result_int or 0
            return Recording("dtmf", chr(code) if code > 0 else None, samples)
        if reply.result == "-1":
            raise await self._failed_or_hung_up("RECORD FILE", reply)
        return Recording("timeout", None, samples)

    async def record(self, path: str, fmt: str, *, silence_s: int, max_s: int, options: str) -> Recording:
        """The ``Record()`` application into ``path.fmt``, which (unlike RECORD FILE) creates the folder.

        Record() says how it ended only in ``RECORD_STATUS``, and not how long the file is: both are read
        after it, with commands that work on a dead channel too, so a caller who hangs up mid-message
        still has it measured (option ``k`` keeps the file). ``ERROR`` (the folder or the file could not
        be made or written) is a :class:`CommandFailed`.
        """
        filename = f"{path}.{fmt}"
        failure: CommandFailed | None = None
        try:
            await self.exec_application("Record", f"{filename},{silence_s},{max_s},{options}")
        except ChannelHungUp:
            pass  # Record() ended with the call; what it kept is measured below
        except CommandFailed as exc:
            failure = exc  # -1 on a live channel: RECORD_STATUS says why
        status = (await self.get_variable("RECORD_STATUS") or "").upper()
        ended_by = RECORD_STATUSES.get(status)
        # Record() says HANGUP too when it cannot play the beep: only a dead channel is a hangup.
        beepless = ended_by == "hangup" and not await self._caller_gone()
        if ended_by is None or beepless:
            why = f"RECORD_STATUS={status or '(unset)'}" + (f", {failure}" if failure else "")
            if beepless:
                why += " on a live channel: Asterisk could not play its 'beep' sound"
            raise CommandFailed(f"Record {filename}", Reply(200, "-1", text=why))
        size = await self.get_full_variable(f"${{STAT(s,{filename})}}")
        samples = samples_in_file(int(size), fmt) if size and size.isdigit() else 0
        return Recording(ended_by, None, samples)

    async def exec_application(self, application: str, data: str) -> int:
        """``EXEC`` a dialplan application; its result, or ChannelHungUp / CommandFailed on ``-1``."""
        reply = await self.command("EXEC", application, data)
        if reply.result == "-1":
            raise await self._failed_or_hung_up(f"EXEC {application}", reply)
        return reply.result_int or 0

    async def hangup(self) -> None:
        await self.command("HANGUP")

    async def close(self) -> None:
        """Close the connection: the dialplan waits until we do, so this always runs."""
        try:
            await self.transport.close()
        except (ConnectionError, OSError) as exc:
            log.debug("closing the AGI transport: %s", exc)
