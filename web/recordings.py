"""Serving recordings (voice messages, service calls, callbacks): allowed folders only, every play audited.

Asterisk often records GSM 6.10 in a WAV container (``wav49``), or raw
``.gsm``; browsers play neither. Such a file is transcoded once with sox to
16-bit PCM WAV in a cache under the tool's home, keyed by path, size and
modification time, and the copy is served; the original is never touched.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

from flask import abort, current_app, send_file

from web.audit import audit
from web.context import db

# WAV format tags Chromium plays: PCM and IEEE float.
PLAYABLE_WAV_FORMATS = {1, 3}


def serve_recording(path: str | None, target: str) -> Any:
    if not path:
        abort(404)
    real = os.path.realpath(path)
    roots = [os.path.realpath(root) for root in current_app.config["RECORDING_ROOTS"]]
    if not any(os.path.commonpath([real, root]) == root for root in roots) or not os.path.isfile(real):
        current_app.logger.warning("recording %s for %s not served: outside %s or missing", path, target, roots)
        abort(404)
    try:
        playable = browser_playable(Path(real), Path(current_app.config["TRANSCODE_DIR"]))
    except TranscodeError as exc:
        current_app.logger.error("recording %s for %s cannot be transcoded: %s", path, target, exc)
        abort(404)
    session = db()
    audit(session, "play_recording", target, file=path)
    session.commit()
    mimetype = mimetypes.guess_type(str(playable))[0] or "application/octet-stream"
    return send_file(playable, mimetype=mimetype, conditional=True)


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
