"""Speech for the tests: espeak-ng's voice, made 8 kHz 16-bit mono with sox, as a phone line carries it."""

from __future__ import annotations

import array
import math
import shutil
import struct
import subprocess
from pathlib import Path

from speech_models.recordings import SAMPLE_RATE


def synthesise(text: str, folder: Path, name: str, voice: str = "ko") -> bytes:
    """``text`` spoken, as raw PCM (what AudioSocket carries)."""
    for tool in ("espeak-ng", "sox"):
        assert shutil.which(tool), f"{tool} is installed by tests/services.sh"
    wav, raw = folder / f"{name}.wav", folder / f"{name}.raw"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw",
                    "-L", str(raw)], check=True)
    return raw.read_bytes()


def trimmed(pcm: bytes, floor: int = 300) -> bytes:
    """``pcm`` without espeak-ng's silence before and after the speech."""
    samples = array.array("h")
    samples.frombytes(pcm)
    loud = [i for i, value in enumerate(samples) if abs(value) > floor]
    return samples[loud[0]:loud[-1] + 1].tobytes() if loud else b""


def with_a_syllable_lost(before: str, lost: str, after: str, folder: Path) -> bytes:
    """``before lost after`` said on a line that drops ``lost`` (packet loss comes out as silence): "매우 불만족"
    reaches the recogniser as "매우 … 만족", which any grammar hears as 매우 만족, a 好评."""
    parts = [trimmed(synthesise(text, folder, f"part{n}")) for n, text in enumerate((before, lost, after))]
    gap = bytes(1600)  # the 0.1 s between words
    return bytes(3200) + parts[0] + gap + bytes(len(parts[1])) + parts[2] + bytes(4800)


def tone(seconds: float, hz: float = 440.0, amplitude: int = 6000) -> bytes:
    """A steady tone, 8 kHz 16-bit mono: sound that is not speech, where only its length matters."""
    return b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * hz * n / SAMPLE_RATE)))
                    for n in range(int(seconds * SAMPLE_RATE)))
