"""Speech for the tests: espeak-ng's voice, made 8 kHz 16-bit mono with sox, as a phone line carries it."""

from __future__ import annotations

import shutil
import subprocess
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
