"""Hearing a spoken rating from a recording: ``RECORD FILE`` on the call, Vosk on the file.

For deployments where the FastAGI host shares storage with Asterisk (an NFS
mount of its spool, say) and would rather not open AudioSocket connections:
Asterisk records the caller until a key, ``recording_silence_seconds`` of
silence or the listening window, and the file is decoded whole once it is
written. A key ends the recording and wins, as it does while streaming.
RECORD FILE counts silence in whole seconds from the start, the caller's pause
before speaking included (a real caller on the test PBX, a moment after the
prompt, was cut off by ``s=1``): so the answer comes that long after the caller
stops, where AudioSocket answers within a fraction of a second.

The recording is the caller's answer to one question, not a message to keep:
it is deleted once decoded.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path, PurePosixPath

from ivr.agi_session import AgiSession, ChannelHungUp, CommandFailed
from ivr.menus import ANY_KEY
from ivr.speech_listener import Heard
from ivr.speech_workers import RecognizerPool, SpeechUnavailable
from rating_core.rules.rulebook import HotlineProfile
from speech_models.grammar import understand
from speech_models.recordings import UnreadableRecording, read_recording

log = logging.getLogger(__name__)


class RecordingListener:
    """Asterisk records into ``asterisk_dir``; this host reads the same files in ``local_dir``."""

    def __init__(self, pool: RecognizerPool, asterisk_dir: str, local_dir: Path, *,
                 decode_timeout: float = 10.0) -> None:
        self.pool = pool
        self.asterisk_dir = PurePosixPath(asterisk_dir)
        self.local_dir = local_dir
        self.decode_timeout = decode_timeout

    def hears(self, hotline: HotlineProfile) -> bool:
        return self.pool.hears(hotline)

    async def listen(self, agi: AgiSession, hotline: HotlineProfile, call_id: str) -> Heard:
        name = f"{call_id}-{uuid.uuid4().hex[:8]}"
        try:
            recording = await agi.record_file(
                str(self.asterisk_dir / name), "wav", ANY_KEY,
                int(hotline.speech.listen_seconds * 1000), beep=False,
                silence_s=hotline.speech.recording_silence_seconds,
            )
        except CommandFailed as exc:
            log.error("call %s: RECORD FILE into %s failed (%s); keys only", call_id, self.asterisk_dir, exc)
            return Heard(unavailable=f"RECORD FILE failed: {exc}")
        if recording.ended_by == "dtmf":
            self._remove(self.local_dir / f"{name}.wav", call_id)
            return Heard(key=recording.digit)
        heard = await self._hear(self.local_dir / f"{name}.wav", hotline, call_id)
        if recording.ended_by == "hangup":
            if heard.level is None:
                raise ChannelHungUp("caller hung up while saying the rating")
            return Heard(heard.level, None, heard.understood, hung_up=True)
        return heard

    async def _hear(self, path: Path, hotline: HotlineProfile, call_id: str) -> Heard:
        try:
            pcm = await asyncio.to_thread(read_recording, path)  # shared storage may be slow: off the loop
            results = await self.pool.decode(hotline.code, pcm, timeout=self.decode_timeout)
        except (UnreadableRecording, SpeechUnavailable) as exc:
            log.error("call %s: speech recording not heard: %s; keys only", call_id, exc)
            return Heard(unavailable=str(exc))
        finally:
            self._remove(path, call_id)
        grammar, threshold = self.pool.grammars[hotline.code], hotline.speech.min_confidence
        heard = [understand(result, grammar, threshold) for result in results]
        understood = next((u for u in heard if u.why_not != "silence"), heard[-1])
        log.info("call %s: heard %r (confidence %.2f) in %s -> %s", call_id, understood.text,
                 understood.confidence, path.name, understood.level or understood.why_not)
        return Heard(understood.level, None, understood)

    @staticmethod
    def _remove(path: Path, call_id: str) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("call %s: could not delete the speech recording %s: %s", call_id, path, exc)
