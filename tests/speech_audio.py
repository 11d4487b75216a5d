"""Speech for the tests: espeak-ng's voice, made 8 kHz 16-bit mono with sox, as a phone line carries it."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path


def synthesise(text: str, folder: Path, name: str, voice: str = "ko") -> bytes:
    """``text`` spoken, as raw PCM (what AudioSocket carries)."""
    for tool in ("espeak-ng", "sox"):
        assert shutil.which(tool), f"{tool} is installed by tests/services.sh"
    wav, raw = folder / f"{name}.wav", folder / f"{name}.raw"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw",
                    "-L", str(raw)], check=True)
    return raw.read_bytes()


def write_asterisk_wav(path: Path, pcm: bytes) -> Path:
    """``pcm`` as the file Asterisk's RECORD FILE … wav writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(8000)
        file.writeframes(pcm)
    return path
