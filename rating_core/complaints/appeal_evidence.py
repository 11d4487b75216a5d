"""申诉证明材料: the files a unit hands in with an appeal — which are taken, how they are checked, where they go.

The limits and the accepted types are data here (:data:`MAX_FILES`,
:data:`MAX_FILE_BYTES`, :data:`EVIDENCE_TYPES`), read by the unit's page and
by :func:`check_evidence`. A file is taken for its extension *and* its
content: the first bytes must be the signature of that kind of file, so an
executable renamed ``报告.pdf`` is refused.

The signatures are checked here rather than with a package (``filetype``,
``python-magic``): the project has neither installed, libmagic is a system
library the web host may lack, and nine fixed signatures (plus a look at a
ZIP's table of contents for docx / xlsx) are all that is needed.

A checked file is written under the evidence folder (the home folder's
``evidence/``) by a random name, never the name it came with, which is kept
in the database (cleaned of path separators and control characters) for the
page and the download. :func:`attach_evidence` writes the files and adds
their rows in the caller's transaction and lists every path it wrote, so the
caller can delete them if the transaction does not commit: an appeal and its
files are saved together or not at all.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import AppealEvidence

MAX_FILES = 5
MAX_FILE_BYTES = 10 * 1024 * 1024
# A name longer than this is shortened (its extension kept) before it is stored and shown.
MAX_NAME_CHARS = 120
# Random hex, the only names the evidence folder holds: what a stored name must look like to be opened.
STORED_NAME = re.compile(r"[0-9a-f]{32}")

# What no file system or Content-Disposition takes in a name (as rating_core.reports.cell_text, a layer above).
_NOT_IN_NAMES = re.compile(r'[\x00-\x1f\x7f\\/:*?"<>|]')
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # doc and xls (Office 97–2003 compound file)


def _zip_holding(member: str) -> Callable[[bytes], bool]:
    """An Office Open XML file: a ZIP whose table of contents lists ``member`` (read, never extracted)."""
    def matches(content: bytes) -> bool:
        if not content.startswith(b"PK\x03\x04"):
            return False
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, ValueError, OSError):
            return False
        return "[Content_Types].xml" in names and member in names
    return matches


def _plain_text(content: bytes) -> bool:
    return _text_encoding(content) is not None


def _text_encoding(content: bytes) -> str | None:
    """UTF-8 or GB18030 (what Windows Notepad saves Chinese text as), with no NUL or other binary controls."""
    if re.search(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]", content):
        return None
    for encoding in ("utf-8", "gb18030"):
        try:
            content.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


@dataclass(frozen=True)
class EvidenceType:
    kind: str  # as a unit reads it
    content_type: str  # served with it (a text file's charset is added)
    matches: Callable[[bytes], bool]


EVIDENCE_TYPES: dict[str, EvidenceType] = {
    "pdf": EvidenceType("PDF", "application/pdf", lambda content: b"%PDF-" in content[:1024]),
    "jpg": EvidenceType("JPG 图片", "image/jpeg", lambda content: content.startswith(b"\xff\xd8\xff")),
    "jpeg": EvidenceType("JPG 图片", "image/jpeg", lambda content: content.startswith(b"\xff\xd8\xff")),
    "png": EvidenceType("PNG 图片", "image/png", lambda content: content.startswith(b"\x89PNG\r\n\x1a\n")),
    "doc": EvidenceType("Word 文档", "application/msword", lambda content: content.startswith(_OLE2)),
    "docx": EvidenceType("Word 文档",
                         "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                         _zip_holding("word/document.xml")),
    "xls": EvidenceType("Excel 表格", "application/vnd.ms-excel", lambda content: content.startswith(_OLE2)),
    "xlsx": EvidenceType("Excel 表格", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                         _zip_holding("xl/workbook.xml")),
    "txt": EvidenceType("文本文件", "text/plain", _plain_text),
}
# For the page: what may be handed in, as a unit reads it, and the browser's file picker filter.
ACCEPTED_TEXT = "PDF、JPG/PNG 图片、Word（doc/docx）、Excel（xls/xlsx）、TXT 文本"
ACCEPT_ATTRIBUTE = ",".join(f".{extension}" for extension in EVIDENCE_TYPES)


class EvidenceError(Refused):
    """A file the rules do not take; the message names it (zh-CN)."""

    reason = Reason.INVALID


@dataclass(frozen=True)
class Evidence:
    """A file that passed every check, ready to be written."""

    name: str
    content: bytes
    content_type: str
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)


def display_name(given: str) -> str:
    """The name a file came with, as it may be stored and shown: its last path part, without separators,
    quotes or control characters, at most :data:`MAX_NAME_CHARS` long (its extension kept)."""
    name = _NOT_IN_NAMES.sub("_", re.split(r"[\\/]", given)[-1]).strip(". ")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        keep = f"{dot}{extension}" if dot and len(extension) <= 8 else ""
        name = (stem if keep else name)[:MAX_NAME_CHARS - len(keep)] + keep
    return name


def check_evidence(files: Sequence[tuple[str, bytes]]) -> list[Evidence]:
    """Each ``(name, content)`` checked against the limits and its type; refused whole on the first fault.

    ``content`` may be cut at ``MAX_FILE_BYTES + 1`` bytes by the caller: longer is too long either way.
    """
    if len(files) > MAX_FILES:
        raise EvidenceError(f"证明材料最多 {MAX_FILES} 个文件，本次选择了 {len(files)} 个")
    checked = []
    for given, content in files:
        name = display_name(given)
        shown = name or "（无名文件）"
        extension = name.rpartition(".")[2].lower() if "." in name else ""
        kind = EVIDENCE_TYPES.get(extension)
        if kind is None:
            raise EvidenceError(f"“{shown}”的文件类型不支持，仅限 {ACCEPTED_TEXT}")
        if not content:
            raise EvidenceError(f"“{shown}”是空文件")
        if len(content) > MAX_FILE_BYTES:
            raise EvidenceError(f"“{shown}”超过 {MAX_FILE_BYTES // (1024 * 1024)} MB，请压缩或拆分后再上传")
        if not kind.matches(content):
            raise EvidenceError(f"“{shown}”的内容不是有效的{kind.kind}（与扩展名 .{extension} 不符）")
        content_type = kind.content_type
        if extension == "txt":
            content_type += f"; charset={_text_encoding(content)}"
        checked.append(Evidence(name, content, content_type, hashlib.sha256(content).hexdigest()))
    return checked


def attach_evidence(session: Session, appeal_id: int, evidence: Sequence[Evidence], folder: Path, at: datetime,
                    actor: str, written: list[Path]) -> list[AppealEvidence]:
    """Write each file under ``folder`` by a random name and add its row to the caller's transaction.

    Every path is appended to ``written`` before the file is created, so that the caller, if the
    transaction then fails (or this does, half-way), deletes exactly what was written: :func:`discard`.
    """
    if evidence:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    rows = []
    for item in evidence:
        stored = secrets.token_hex(16)
        path = folder / stored
        written.append(path)
        # O_EXCL: never over another file, however unlikely the name; 0600: the web tool's alone.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(item.content)
        row = AppealEvidence(appeal_id=appeal_id, original_name=item.name, stored_name=stored,
                             content_type=item.content_type, size=item.size, sha256=item.sha256,
                             uploaded_at=at, uploaded_by=actor)
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def discard(written: Sequence[Path]) -> None:
    """Delete the files of a transaction that did not commit."""
    for path in written:
        path.unlink(missing_ok=True)


def stored_path(folder: Path, stored_name: str) -> Path | None:
    """The file of a stored name, if it is one of ours (random hex, directly in ``folder``) and is there."""
    if not STORED_NAME.fullmatch(stored_name):
        return None
    path = folder / stored_name
    return path if path.is_file() else None
