"""Hearing a spoken rating: ``EXEC AudioSocket`` on the call, Vosk on the audio, one answer back.

A FastAGI server cannot get the call's audio over AGI (Asterisk refuses EAGI
over ``agi://``), so the flow runs ``EXEC AudioSocket <uuid>,<host>:<port>``
and Asterisk streams the caller to our AudioSocket server while the AGI
command waits. The listening ends at the first of: a key (it always wins),
Vosk's end of speech, the listening window, or the caller hanging up; then
the server ends the session and the flow goes on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.agi_session import AgiSession, ChannelHungUp, CommandFailed
from ivr.audiosocket_server import AudioSocketCall, AudioSocketServer
from ivr.speech_workers import RecognizerPool, SpeechUnavailable
from protocols.audiosocket import AudioReceived, ConnectionClosed, DtmfReceived, ErrorReceived, HangupReceived
from rating_core.rules.rulebook import HotlineProfile
from speech_models.grammar import Understood, understand

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heard:
    """What one listening gave: a level, a key, nothing understood, or no listening at all."""

    level: str | None = None
    key: str | None = None
    understood: Understood | None = None
    hung_up: bool = False
    unavailable: str = ""  # why there was no listening; the flow goes on with keys

    @property
    def silent(self) -> bool:
        return self.understood is not None and self.understood.why_not == "silence"


class RatingListener(Protocol):
    """How a flow hears a spoken rating: streamed over AudioSocket (here), or recorded to a shared
    disk (:mod:`ivr.recorded_speech`)."""

    def hears(self, hotline: HotlineProfile) -> bool: ...

    async def listen(self, agi: AgiSession, hotline: HotlineProfile, call_id: str) -> Heard: ...


@dataclass(frozen=True)
class _Recognised:
    result: dict[str, Any]
    final: bool


class SpeechListener:
    def __init__(self, server: AudioSocketServer, pool: RecognizerPool, address: str, *,
                 final_timeout: float = 2.0) -> None:
        self.server = server
        self.pool = pool
        self.address = address  # host:port Asterisk connects to
        self.final_timeout = final_timeout  # for Vosk's last word after the window or a hangup

    def hears(self, hotline: HotlineProfile) -> bool:
        return self.pool.hears(hotline)

    def expect(self, session: uuid.UUID, call_id: str, hotline: HotlineProfile) -> asyncio.Future[Heard]:
        """Announce an AudioSocket session; the future holds what was heard (cancelled if the hearing failed)."""
        heard: asyncio.Future[Heard] = asyncio.get_running_loop().create_future()

        async def handler(call: AudioSocketCall) -> None:
            try:
                heard.set_result(await self._hear(call, hotline))
            finally:
                if not heard.done():
                    heard.cancel()

        self.server.expect(session, call_id, handler)
        return heard

    async def _heard_by_now(self, session: uuid.UUID, heard: asyncio.Future[Heard]) -> Heard | None:
        # On a hangup Asterisk answers the EXEC at once, while the last words may still be decoding.
        if not self.server.expecting(session):
            await asyncio.wait({heard}, timeout=self.final_timeout + 1.0)
        return heard.result() if heard.done() and not heard.cancelled() else None

    async def listen(self, agi: AgiSession, hotline: HotlineProfile, call_id: str) -> Heard:
        session = uuid.uuid4()
        hearing = self.expect(session, call_id, hotline)
        failure: CommandFailed | None = None
        try:
            try:
                await agi.exec_application("AudioSocket", f"{session},{self.address}")
            except ChannelHungUp:
                last = await self._heard_by_now(session, hearing)
                if last is not None and (last.level or last.key):
                    return Heard(last.level, last.key, last.understood, hung_up=True)
                raise
            except CommandFailed as exc:
                failure = exc
            heard = await self._heard_by_now(session, hearing)
        finally:
            self.server.forget(session)  # only now: whether it came tells how long to wait for the hearing
        if heard is None:
            why = f"did not run ({failure})" if failure else "ended without a connection"
            log.error("call %s: AudioSocket to %s %s; keys only", call_id, self.address, why)
            return Heard(unavailable=f"AudioSocket failed: {failure}" if failure else "no AudioSocket connection")
        if heard.understood is not None:
            log.info("call %s: heard %r (confidence %.2f) -> %s", call_id, heard.understood.text,
                     heard.understood.confidence, heard.level or heard.understood.why_not)
        return heard

    async def _hear(self, call: AudioSocketCall, hotline: HotlineProfile) -> Heard:
        grammar = self.pool.grammars[hotline.code]
        try:
            stream = self.pool.open(hotline.code,
                                    lambda result, final: call.events.put_nowait(_Recognised(result, final)),
                                    end_silence=hotline.speech.end_silence_seconds)
        except SpeechUnavailable as exc:
            log.error("call %s: %s; keys only", call.owner, exc)
            return Heard(unavailable=str(exc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hotline.speech.listen_seconds
        finishing = hung_up = False
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await call.events.get()
                except TimeoutError:
                    if finishing:
                        log.error("call %s: no final result from the recogniser within %g s",
                                  call.owner, self.final_timeout)
                        return Heard(hung_up=hung_up, unavailable="recogniser too slow")
                    stream.finish()
                    finishing, deadline = True, loop.time() + self.final_timeout
                    continue
                if isinstance(event, AudioReceived):
                    stream.feed(event.pcm)
                elif isinstance(event, DtmfReceived):
                    return Heard(key=event.digit)
                elif isinstance(event, _Recognised):
                    if "error" in event.result:
                        return Heard(hung_up=hung_up, unavailable=str(event.result["error"]))
                    understood = understand(event.result, grammar, hotline.speech.min_confidence)
                    if understood.why_not == "silence" and not event.final:
                        continue  # Vosk's endpoint on silence alone: keep listening until the window ends
                    return Heard(understood.level, None, understood, hung_up=hung_up)
                elif isinstance(event, (ConnectionClosed, HangupReceived, ErrorReceived)) and not finishing:
                    # The caller hung up (or the stream broke) maybe right after the last word: decode what came.
                    if isinstance(event, ErrorReceived):
                        log.warning("call %s: AudioSocket error message %r", call.owner, event.code)
                    stream.finish()
                    finishing, hung_up = True, True
                    deadline = loop.time() + self.final_timeout
        finally:
            stream.close()
