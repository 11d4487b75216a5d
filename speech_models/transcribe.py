"""Free-mode transcription of a whole recording: what a 差评's voice message says, for the agent.

Free mode decodes at about real time on one core (a real-time factor of 1.66
with the small Korean model, benchmarks/speech.py), so it never runs on a call:
a background job transcribes messages after the calls have ended.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from speech_models.recordings import SAMPLE_RATE

CHUNK_BYTES = 8000  # 0.5 s of audio per call into the decoder
# Vosk puts spaces between Chinese words; a transcript reads without them (Korean keeps its own spaces).
_SPACE_BETWEEN_HAN = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float  # the mean word confidence; 0 when nothing was heard


@lru_cache(maxsize=4)
def load_model(folder: str) -> Any:
    """A Vosk model, loaded once per process (hundreds of MB, seconds to load)."""
    import vosk

    vosk.SetLogLevel(-1)
    return vosk.Model(folder)


def transcribe(model: Any, pcm: bytes) -> Transcript:
    """Every utterance in ``pcm`` (8 kHz 16-bit mono), in free mode, joined into one text."""
    import vosk

    recogniser = vosk.KaldiRecognizer(model, SAMPLE_RATE)
    recogniser.SetWords(True)
    segments: list[dict[str, Any]] = []
    for start in range(0, len(pcm), CHUNK_BYTES):
        if recogniser.AcceptWaveform(pcm[start:start + CHUNK_BYTES]):
            segments.append(json.loads(recogniser.Result()))
    segments.append(json.loads(recogniser.FinalResult()))
    text = " ".join(str(s["text"]) for s in segments if s.get("text"))
    confidences = [float(w.get("conf", 0.0)) for s in segments for w in s.get("result") or []]
    return Transcript(_SPACE_BETWEEN_HAN.sub("", text), sum(confidences) / len(confidences) if confidences else 0.0)
