"""Reading (and, for simulations, writing) the recordings Asterisk writes for ``RECORD FILE … wav``:
8 kHz 16-bit mono PCM in a RIFF file."""

from __future__ import annotations

import wave
from pathlib import Path

SAMPLE_RATE = 8000  # Asterisk's wav format; also what AudioSocket carries


class UnreadableRecording(ValueError):
    """A recording that is missing, or not the 8 kHz 16-bit mono wav Asterisk writes for ``wav``."""


def read_recording(path: Path) -> bytes:
    """The PCM of an Asterisk ``wav`` recording."""
    try:
        with wave.open(str(path), "rb") as file:
            shape = (file.getnchannels(), file.getsampwidth(), file.getframerate())
            if shape != (1, 2, SAMPLE_RATE):
                raise UnreadableRecording(f"{path}: {shape[0]} channel(s), {8 * shape[1]}-bit, {shape[2]} Hz; "
                                          f"expected mono 16-bit {SAMPLE_RATE} Hz")
            return file.readframes(file.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise UnreadableRecording(f"{path}: {exc}") from exc


def write_recording(path: Path, pcm: bytes) -> Path:
    """``pcm`` as the file Asterisk's ``RECORD FILE … wav`` writes (for the simulated channel and tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(pcm)
    return path
