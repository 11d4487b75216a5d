"""Serving recordings (voice messages, service calls, callbacks): allowed folders only, audio only, every play
audited.

The path comes from the store, and so from channel variables or the platform:
it is trusted for nothing. A file is served only inside the recording folders,
only if its name ends in an audio format we know, and always with that
format's type (never one guessed from the name, which could make an ``.html``
in a recording folder render on the tool's origin), ``nosniff`` and an
``inline`` Content-Disposition under a name of our own.

Asterisk often records GSM 6.10 in a WAV container (``wav49``), or raw
``.gsm``; browsers play neither. Such a file is transcoded once with sox to
16-bit PCM WAV in a cache under the tool's home, keyed by path, size and
modification time, and the copy is served; the original is never touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

from flask import abort, current_app, send_file

from web.audit import audit
from web.context import db
from web.downloads import inline

# WAV format tags Chromium plays: PCM and IEEE float.
PLAYABLE_WAV_FORMATS = {1, 3}

# The audio formats a recording may be in (by the name's ending, any case: Asterisk's wav49 is ``.WAV``) and the
# type each is served as. ``.gsm`` never reaches a browser as it is: it is served as its PCM WAV copy.
AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".gsm": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
}
NOT_AUDIO = "录音文件格式不受支持"
MISSING = "录音文件不存在或已被清理"


def serve_recording(path: str | None, target: str) -> Any:
    if not path:
        abort(404, description=MISSING)
    real = _inside_roots(path, target)
    suffix = real.suffix.lower()
    if suffix not in AUDIO_TYPES:
        current_app.logger.warning("recording %r for %s not served: not a known audio format", path, target)
        abort(404, description=NOT_AUDIO)
    try:
        playable = browser_playable(real, Path(current_app.config["TRANSCODE_DIR"]))
    except (TranscodeError, OSError) as exc:
        current_app.logger.error("recording %r for %s cannot be read or transcoded: %s", path, target, exc)
        abort(404, description=MISSING)
    session = db()
    audit(session, "play_recording", target, file=path)
    session.commit()
    response = send_file(playable, mimetype=AUDIO_TYPES[suffix], conditional=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = inline(f"{target}{playable.suffix.lower()}",
                                                     f"recording{playable.suffix.lower()}")
    return response


def _inside_roots(path: str, target: str) -> Path:
    """``path`` resolved, if it is a file inside one of the recording folders; else a 404.

    A NUL, a lone surrogate or an overlong name from a channel variable is
    refused like a missing file, rather than raising from ``os``.
    """
    roots = [os.path.realpath(root) for root in current_app.config["RECORDING_ROOTS"]]
    try:
        real = os.path.realpath(path)
        inside = any(os.path.commonpath([real, root]) == root for root in roots) and os.path.isfile(real)
    except (ValueError, UnicodeError, OSError) as exc:
        current_app.logger.warning("recording %r for %s not served: %s", path, target, exc)
        abort(404, description=MISSING)
    if not inside:
        current_app.logger.warning("recording %r for %s not served: outside %s or missing", path, target, roots)
        abort(404, description=MISSING)
    return Path(real)


class TranscodeError(RuntimeError):
    pass


def needs_transcoding(path: Path) -> bool:
    if path.suffix.lower() == ".gsm":
        return True
    if path.suffix.lower() != ".wav":
        return False
    with path.open("rb") as wav:
        header = wav.read(64)
    # RIFF....WAVE then chunks; the first is "fmt " in every file Asterisk writes.
    at = header.find(b"fmt ")
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE" or at < 0 or len(header) < at + 10:
        return False  # not a WAV we understand: let the browser try
    (format_tag,) = struct.unpack_from("<H", header, at + 8)
    return format_tag not in PLAYABLE_WAV_FORMATS


def browser_playable(path: Path, cache: Path) -> Path:
    """``path`` itself, or its PCM copy in ``cache`` (made on first use)."""
    if not needs_transcoding(path):
        return path
    stat = path.stat()
    key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    copy = cache / f"{key}.wav"
    if copy.exists():
        return copy
    if shutil.which("sox") is None:
        raise TranscodeError("sox is not installed (Debian: apt-get install sox)")
    cache.mkdir(parents=True, exist_ok=True)
    partial = copy.with_suffix(".partial.wav")
    source = ["-t", "gsm", "-r", "8000", "-c", "1"] if path.suffix.lower() == ".gsm" else []
    done = subprocess.run(["sox", *source, str(path), "-e", "signed-integer", "-b", "16", str(partial)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise TranscodeError(done.stderr.strip()[:300] or f"sox exited {done.returncode}")
    partial.replace(copy)  # atomic: a concurrent request never serves half a file
    return copy
