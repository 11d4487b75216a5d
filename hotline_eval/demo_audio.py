"""The demo's stand-in for Asterisk's disk: the voice messages and callback recordings the store names, as WAVs.

The simulated Asterisk only says how long a caller spoke, and the simulated
AMI records nothing; a real Asterisk would have written the files where the
rules say (``voice_message.directory``, ``dialer.recording_file``). The demo's
rules put both under ``$HOTLINE_EVAL_HOME/recordings``, and this writes a
soft beep of the recorded length at every path the store names there and
that does not exist yet, so the web tool's players play. Paths outside that
folder (a user's own rules) are never written.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

from sqlalchemy import select

from rating_core.ratings.store import RatingStore
from rating_core.store.models import CallbackAttempt, Rating
from speech_models.recordings import SAMPLE_RATE, write_recording

# The shortest stand-in for a callback recording: the simulated calls last a fraction of a second.
MIN_CALLBACK_SECONDS = 3.0
MAX_SECONDS = 120.0


def recordings_root(home: Path) -> Path:
    """Where the demo's rules send voice messages (``voice/``) and callback recordings (``callbacks/``)."""
    return (home / "recordings").resolve()


def stand_in(seconds: float) -> bytes:
    """8 kHz 16-bit mono: a 440 Hz beep of 0.3 s every second, quiet, so nobody mistakes it for a voice."""
    samples = int(min(max(seconds, 0.5), MAX_SECONDS) * SAMPLE_RATE)
    beep = int(0.3 * SAMPLE_RATE)
    values = (int(2500 * math.sin(2 * math.pi * 440 * n / SAMPLE_RATE)) if n % SAMPLE_RATE < beep else 0
              for n in range(samples))
    return struct.pack(f"<{samples}h", *values)


def _inside(path: str, root: Path) -> Path | None:
    real = Path(os.path.realpath(path))
    return real if real.suffix.lower() == ".wav" and real.is_relative_to(root) else None


def write_missing_audio(store: RatingStore, root: Path) -> int:
    """Write the recordings under ``root`` that the store names and that are missing; how many were written."""
    with store.sessions() as session:
        wanted: list[tuple[str, float]] = [
            (path, seconds or 1.0) for path, seconds in
            session.execute(select(Rating.voice_message_file, Rating.voice_message_seconds)
                            .where(Rating.voice_message_file.is_not(None))).tuples()
            if path
        ]
        for path, answered, ended in session.execute(
            select(CallbackAttempt.recording_file, CallbackAttempt.answered_at, CallbackAttempt.ended_at)
            .where(CallbackAttempt.recording_file.is_not(None))
        ).tuples():
            talked = (ended - answered).total_seconds() if answered and ended else 0.0
            if path:
                wanted.append((path, max(talked, MIN_CALLBACK_SECONDS)))
    written = 0
    for path, seconds in wanted:
        target = _inside(path, root)
        if target is not None and not target.exists():
            write_recording(target, stand_in(seconds))
            written += 1
    return written
