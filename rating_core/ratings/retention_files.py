"""The retention pass's files: voice messages, callback recordings, the web tool's playable copies, and
appeal evidence, deleted once their period is over (``rating_core.ratings.retention`` runs it).

A file is deleted before its row says so, in the caller's transaction: if that transaction then fails, the
next pass finds the row again, the file already gone, and marks it; never a row that says "deleted" over a
file still on disk. Only files under the folders the rules name for recordings are deleted: a path in the
store is data, and data never names what the pass may delete.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from rating_core.complaints.appeal_evidence import STORED_NAME
from rating_core.complaints.task_states import OPEN_TASK_STATES
from rating_core.rules.rulebook import Rules
from rating_core.store.models import Appeal, AppealEvidence, CallbackAttempt, CallbackTask, Rating

log = logging.getLogger(__name__)

# Rows looked at per query: a first pass over years of calls must not load them all at once.
CHUNK = 500


@dataclass(frozen=True)
class RetentionPlaces:
    """Where the pass may delete: the recording folders (from the rules), the web tool's playable copies
    (``$HOTLINE_EVAL_HOME/transcoded``) and appeal evidence (``$HOTLINE_EVAL_HOME/evidence``)."""

    recording_roots: tuple[Path, ...]
    transcoded: Path | None = None
    evidence: Path | None = None

    @classmethod
    def under_home(cls, home: Path, rules: Rules) -> RetentionPlaces:
        """The places of a deployment whose home folder is ``home`` (as the web tool sets them up)."""
        return cls(recording_roots(rules), home / "transcoded", home / "evidence")


@dataclass
class FileCounts:
    voice_messages: int = 0
    callback_recordings: int = 0
    transcoded_copies: int = 0
    evidence_files: int = 0
    # Due, but not deleted: outside the recording folders, or the disk refused; tried again by the next pass.
    kept: int = 0

    @property
    def purged(self) -> int:
        return self.voice_messages + self.callback_recordings + self.transcoded_copies + self.evidence_files


def recording_roots(rules: Rules) -> tuple[Path, ...]:
    """The folders recordings are written to: each hotline's voice messages, and the callbacks' MixMonitor
    folder (the part of ``callback.dialer.recording_file`` before its first placeholder)."""
    roots = {Path(profile.voice_message.directory) for profile in rules.hotlines.values()}
    template = rules.callback.dialer.recording_file
    if template:
        roots.add(Path(template.split("{", 1)[0]).parent if "{" in template else Path(template).parent)
    return tuple(sorted(roots))


def still_needed() -> ColumnElement[bool]:
    """On a CallbackTask row: its purpose has not ended, because the callback is still open or an appeal of
    it is still undecided. What belongs to such a 差评 (its recordings, its number) is kept."""
    undecided = exists().where(Appeal.task_id == CallbackTask.id, Appeal.decision.is_(None))
    return or_(CallbackTask.state.in_(OPEN_TASK_STATES), undecided)


def due_voice_messages(before: datetime) -> Select[tuple[Rating]]:
    needed = exists().where(CallbackTask.rating_id == Rating.id, still_needed())
    return select(Rating).where(Rating.voice_message_file.is_not(None), Rating.rated_at < before,
                                ~needed).order_by(Rating.id)


def due_callback_recordings(before: datetime) -> Select[tuple[CallbackAttempt]]:
    needed = exists().where(CallbackTask.id == CallbackAttempt.task_id, still_needed())
    return select(CallbackAttempt).where(CallbackAttempt.recording_file.is_not(None),
                                         CallbackAttempt.requested_at < before, ~needed).order_by(CallbackAttempt.id)


def due_evidence(before: datetime) -> Select[tuple[AppealEvidence]]:
    return select(AppealEvidence).join(Appeal, Appeal.id == AppealEvidence.appeal_id).where(
        AppealEvidence.purged_at.is_(None), and_(Appeal.decision.is_not(None), Appeal.decided_at < before),
    ).order_by(AppealEvidence.id)


def count(session: Session, query: Select[Any]) -> int:
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def playable_copy(path: Path, cache: Path) -> Path | None:
    """The web tool's PCM copy of ``path`` (web.recordings names it by the path, size and modification
    time of the original), if there is one; only the original's own details can name it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    copy = cache / f"{key}.wav"
    return copy if copy.is_file() else None


class _Deleter:
    def __init__(self, places: RetentionPlaces, counts: FileCounts) -> None:
        self.roots = [os.path.realpath(root) for root in places.recording_roots]
        self.transcoded = places.transcoded
        self.counts = counts

    def recording(self, stored: str) -> bool:
        """Delete a recording and its playable copy; whether it is gone (it may have been already)."""
        real = os.path.realpath(stored)
        if "\0" in stored or not any(os.path.commonpath([real, root]) == root for root in self.roots):
            log.error("retention: %s is outside the recording folders %s: not deleted", stored, self.roots)
            self.counts.kept += 1
            return False
        copy = playable_copy(Path(real), self.transcoded) if self.transcoded is not None else None
        if not _unlink(Path(real)):
            self.counts.kept += 1
            return False
        if copy is not None and _unlink(copy):
            self.counts.transcoded_copies += 1
        return True


def _unlink(path: Path) -> bool:
    try:
        path.unlink(missing_ok=True)
    except IsADirectoryError:
        log.error("retention: %s is a folder, not a recording: not deleted", path)
        return False
    except OSError as exc:
        log.error("retention: cannot delete %s: %s", path, exc)
        return False
    return True


def purge_files(session: Session, places: RetentionPlaces, now: datetime, before: datetime,
                *, dry_run: bool = False) -> FileCounts:
    """Delete what is older than ``before`` (recordings) or was decided before it (evidence)."""
    counts = FileCounts()
    if dry_run:
        counts.voice_messages = count(session, due_voice_messages(before))
        counts.callback_recordings = count(session, due_callback_recordings(before))
        counts.evidence_files = count(session, due_evidence(before))
        counts.transcoded_copies = len(_stale_copies(places.transcoded, before))
        return counts
    deleter = _Deleter(places, counts)
    after = 0
    while rows := session.scalars(due_voice_messages(before).where(Rating.id > after).limit(CHUNK)).all():
        after = rows[-1].id
        for rating in rows:
            if rating.voice_message_file and deleter.recording(rating.voice_message_file):
                rating.voice_message_file, rating.voice_message_purged_at = None, now
                counts.voice_messages += 1
    after = 0
    while attempts := session.scalars(
            due_callback_recordings(before).where(CallbackAttempt.id > after).limit(CHUNK)).all():
        after = attempts[-1].id
        for attempt in attempts:
            if attempt.recording_file and deleter.recording(attempt.recording_file):
                attempt.recording_file, attempt.recording_purged_at = None, now
                counts.callback_recordings += 1
    if places.evidence is not None:
        _purge_evidence(session, places.evidence, now, before, counts)
    for copy in _stale_copies(places.transcoded, before):
        if _unlink(copy):
            counts.transcoded_copies += 1
    session.flush()
    return counts


def _purge_evidence(session: Session, folder: Path, now: datetime, before: datetime, counts: FileCounts) -> None:
    after = 0
    while items := session.scalars(due_evidence(before).where(AppealEvidence.id > after).limit(CHUNK)).all():
        after = items[-1].id
        for item in items:
            # A stored name is random hex directly in the folder (appeal_evidence.stored_path); anything else
            # is not a file of ours, and only the row is marked.
            if STORED_NAME.fullmatch(item.stored_name) and not _unlink(folder / item.stored_name):
                counts.kept += 1
                continue
            item.purged_at = now
            counts.evidence_files += 1


def _stale_copies(folder: Path | None, before: datetime) -> Sequence[Path]:
    """Playable copies made before ``before``: a copy is a cache, made again from an original that is still
    kept, and one whose original is gone (or renamed) is found here even if no row named it."""
    if folder is None or not folder.is_dir():
        return []
    limit = before.timestamp()
    stale = []
    for entry in os.scandir(folder):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                stale.append(Path(entry.path))
        except OSError:
            continue
    return stale
