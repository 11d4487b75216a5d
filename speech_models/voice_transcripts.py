"""Writing 差评 voice messages down after the call: one pass of the worker's transcript job.

1. A message waits (status None) when its hotline names a ``voice_message.transcript_model``.
   Where that model is not installed, the messages keep waiting and the pass says so.
2. Each message is claimed alone with one conditional UPDATE (status ``transcribing``,
   stamped with the pass's time), so two workers never decode one message. A claim older
   than ``LEASE`` (a worker killed mid-way) is taken again.
3. The file is read where Asterisk wrote it: a shared disk, as for the web tool's player.
   It is decoded in free mode in this process. Then:
   - the text is stored (``done``);
   - or the failure is logged with the call and stored (``failed``): a missing or unreadable
     file is not retried.
   The claim stamp must still match when the text is stored, so a message re-recorded meanwhile
   (a rating given again) is not given the old message's words.

A pass stops claiming after ``budget`` seconds: free mode runs at about real time, and an RQ
job has a time limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from rating_core.ratings.transcript_states import TranscriptStatus, transcript_move
from rating_core.rules.rulebook import Rules
from rating_core.store.database import rows_changed
from rating_core.store.models import Call, Rating
from speech_models.manifests import locate
from speech_models.recordings import UnreadableRecording, read_recording
from speech_models.transcribe import Transcript, load_model, transcribe

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=30)
BUDGET_SECONDS = 120.0


@dataclass
class TranscriptPass:
    done: int = 0
    failed: int = 0
    waiting_for_a_model: int = 0  # messages of hotlines whose transcript model is not installed here


@dataclass(frozen=True)
class _Claimed:
    rating_id: int
    uniqueid: str
    hotline: str
    path: str


def transcribe_waiting(sessions: sessionmaker[Session], rules: Rules, now: datetime, *,
                       models_dir: Path | None = None, budget: float = BUDGET_SECONDS) -> TranscriptPass:
    """Transcribe waiting voice messages, one claim at a time, until none wait or the budget is spent
    (the models from ``models_dir``, else only those installed as Python packages)."""
    models = _installed_models(rules, models_dir)
    result = TranscriptPass(waiting_for_a_model=_count_waiting(sessions, rules, set(models), now))
    started = time.monotonic()
    while models and time.monotonic() - started < budget:
        claimed = _claim_next(sessions, list(models), now)
        if claimed is None:
            break
        try:
            model = load_model(models[claimed.hotline])
        except Exception as exc:  # Vosk raises a bare Exception for a model it cannot load
            log.error("transcript model for hotline %s will not load from %s: %s; its messages wait",
                      claimed.hotline, models[claimed.hotline], exc)
            _release(sessions, claimed, now)
            del models[claimed.hotline]
            continue
        try:
            transcript = transcribe(model, read_recording(Path(claimed.path)))
        except UnreadableRecording as exc:
            log.error("call %s: voice message not transcribed: %s", claimed.uniqueid, exc)
            _finish(sessions, claimed, now, TranscriptStatus.FAILED)
            result.failed += 1
            continue
        _finish(sessions, claimed, now, TranscriptStatus.DONE, transcript)
        log.info("call %s: voice message transcribed (%d characters, confidence %.2f)",
                 claimed.uniqueid, len(transcript.text), transcript.confidence)
        result.done += 1
    return result


def _installed_models(rules: Rules, models_dir: Path | None) -> dict[str, str]:
    """{hotline: model folder} for the hotlines whose transcript model is installed and verified here."""
    folders: dict[str, str] = {}
    for code, hotline in rules.hotlines.items():
        name = hotline.voice_message.transcript_model
        if name is None:
            continue
        try:
            status = locate(name, models_dir)
        except KeyError as exc:
            log.error("hotline %s: voice_message.transcript_model: %s", code, exc.args[0])
            continue
        if status.usable:
            folders[code] = str(status.directory)
        else:
            log.warning("hotline %s: transcript model %s is not usable (%s); its voice messages wait",
                        code, name, "; ".join(status.problems[:2]))
    return folders


def _waiting(now: datetime):
    """Messages nobody is transcribing: never claimed, or claimed by a worker gone longer than the lease."""
    return and_(
        Rating.voice_message_file.is_not(None),
        or_(Rating.voice_transcript_status.is_(None),
            and_(Rating.voice_transcript_status == TranscriptStatus.TRANSCRIBING,
                 Rating.voice_transcript_at < now - LEASE)),
    )


def _count_waiting(sessions: sessionmaker[Session], rules: Rules, installed: set[str], now: datetime) -> int:
    without = [code for code, h in rules.hotlines.items() if h.voice_message.transcript_model and code not in installed]
    if not without:
        return 0
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Rating).join(Call, Rating.call_id == Call.id)
                              .where(_waiting(now), Call.hotline.in_(without))) or 0


def _claim_next(sessions: sessionmaker[Session], hotlines: list[str], now: datetime) -> _Claimed | None:
    with sessions() as session:
        while True:
            row = session.execute(
                select(Rating.id, Call.uniqueid, Call.hotline, Rating.voice_message_file,
                       Rating.voice_transcript_status)
                .join(Call, Rating.call_id == Call.id)
                .where(_waiting(now), Call.hotline.in_(hotlines))
                .order_by(Rating.id).limit(1)
            ).first()
            if row is None:
                return None
            took = rows_changed(session.execute(
                update(Rating).where(Rating.id == row.id, _waiting(now))
                .values(voice_transcript_status=transcript_move(row.voice_transcript_status,
                                                                TranscriptStatus.TRANSCRIBING),
                        voice_transcript_at=now)
            ))
            session.commit()
            if took:  # else another worker claimed it between the two statements: look again
                return _Claimed(row.id, row.uniqueid, row.hotline, row.voice_message_file)


def _still_ours(claimed: _Claimed, now: datetime):
    return and_(Rating.id == claimed.rating_id, Rating.voice_transcript_status == TranscriptStatus.TRANSCRIBING,
                Rating.voice_transcript_at == now, Rating.voice_message_file == claimed.path)


def _finish(sessions: sessionmaker[Session], claimed: _Claimed, now: datetime, status: TranscriptStatus,
            transcript: Transcript | None = None) -> None:
    with sessions() as session:
        session.execute(update(Rating).where(_still_ours(claimed, now)).values(
            voice_transcript_status=transcript_move(TranscriptStatus.TRANSCRIBING, status), voice_transcript_at=now,
            voice_transcript=transcript.text if transcript else None,
            voice_transcript_confidence=round(transcript.confidence, 3) if transcript else None,
        ))
        session.commit()


def _release(sessions: sessionmaker[Session], claimed: _Claimed, now: datetime) -> None:
    with sessions() as session:
        session.execute(update(Rating).where(_still_ours(claimed, now)).values(
            voice_transcript_status=transcript_move(TranscriptStatus.TRANSCRIBING, None), voice_transcript_at=None))
        session.commit()
