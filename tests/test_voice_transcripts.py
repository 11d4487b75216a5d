"""差评 voice messages written down after the call: the real Vosk engine in free mode on the Korean
model, a real store (SQLite and PostgreSQL), files where Asterisk wrote them.

Free mode on espeak-ng speech is poor (benchmarks/speech.py reports it), so the tests check what
the pass does with a transcript, and only that the words begin as spoken.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from rating_core.events.call_events import CallStarted, RatingGiven, VoiceMessageRecorded
from rating_core.ratings.store import RatingStore
from rating_core.reports.export import export_rows
from rating_core.store.models import Call, Rating
from speech_audio import synthesise
from speech_models.recordings import write_recording
from speech_models.voice_transcripts import LEASE, transcribe_waiting

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def message_audio(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return synthesise("매우 만족", tmp_path_factory.mktemp("voice"), "message")


def leave_message(store: RatingStore, uid: str, hotline: str, path: Path, at: datetime = NOW) -> None:
    store.apply([
        CallStarted(uniqueid=uid, hotline=hotline, at=at, caller_number="13904330000"),
        RatingGiven(uid, "very_dissatisfied", "dtmf", at + timedelta(seconds=5)),
        VoiceMessageRecorded(uid, str(path), 2.0, at + timedelta(seconds=20)),
    ])


def rating_of(store: RatingStore, uid: str) -> Rating:
    with store.sessions() as session:
        return session.scalars(select(Rating).join(Call).where(Call.uniqueid == uid)).one()


def test_a_korean_voice_message_is_written_down(store: RatingStore, message_audio: bytes, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "speech_models.voice_transcripts")
    leave_message(store, "1795500000.1", "12345-ko", write_recording(tmp_path / "ko" / "1.wav", message_audio))
    result = transcribe_waiting(store.sessions, store.rules, NOW)
    rating = rating_of(store, "1795500000.1")
    assert (result.done, result.failed, rating.voice_transcript_status) == (1, 0, "done")
    assert rating.voice_transcript.startswith("매우")
    assert 0 < rating.voice_transcript_confidence <= 1
    assert "call 1795500000.1: voice message transcribed" in caplog.text
    with store.sessions() as session:
        exported = next(row for row in export_rows(session, store.rules) if row["uniqueid"] == "1795500000.1")
    assert exported["voice_transcript"] == rating.voice_transcript
    # Done is done: the next pass finds nothing to do.
    assert transcribe_waiting(store.sessions, store.rules, NOW + timedelta(minutes=1)).done == 0


def test_a_missing_file_fails_that_message_only_and_says_so(store: RatingStore, message_audio: bytes,
                                                           tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    leave_message(store, "1795500000.2", "12345-ko", tmp_path / "gone.wav")
    leave_message(store, "1795500000.3", "12345-ko", write_recording(tmp_path / "3.wav", message_audio))
    result = transcribe_waiting(store.sessions, store.rules, NOW)
    assert (result.done, result.failed) == (1, 1)
    gone = rating_of(store, "1795500000.2")
    assert (gone.voice_transcript_status, gone.voice_transcript) == ("failed", None)
    assert "call 1795500000.2: voice message not transcribed:" in caplog.text and "gone.wav" in caplog.text
    assert transcribe_waiting(store.sessions, store.rules, NOW).failed == 0  # not retried


def test_messages_wait_while_their_hotlines_model_is_not_installed(
        store: RatingStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """12345 names the Mandarin model, which cannot be had on these machines."""
    leave_message(store, "1795500000.4", "12345", tmp_path / "4.wav")
    result = transcribe_waiting(store.sessions, store.rules, NOW, models_dir=tmp_path / "models")
    assert (result.done, result.failed, result.waiting_for_a_model) == (0, 0, 1)
    assert rating_of(store, "1795500000.4").voice_transcript_status is None
    assert "hotline 12345: transcript model vosk-model-small-cn-0.22 is not usable" in caplog.text


def test_a_claimed_message_is_left_to_its_worker_until_the_lease_runs_out(
        store: RatingStore, message_audio: bytes, tmp_path: Path) -> None:
    leave_message(store, "1795500000.5", "12345-ko", write_recording(tmp_path / "5.wav", message_audio))
    with store.sessions.begin() as session:  # another worker took it, and may have died
        rating = session.scalars(select(Rating).join(Call).where(Call.uniqueid == "1795500000.5")).one()
        rating.voice_transcript_status, rating.voice_transcript_at = "transcribing", NOW
    assert transcribe_waiting(store.sessions, store.rules, NOW + LEASE - timedelta(seconds=1)).done == 0
    assert transcribe_waiting(store.sessions, store.rules, NOW + LEASE + timedelta(seconds=1)).done == 1
    assert rating_of(store, "1795500000.5").voice_transcript_status == "done"


def test_a_message_recorded_again_waits_for_its_own_transcript(store: RatingStore, message_audio: bytes,
                                                               tmp_path: Path) -> None:
    first = write_recording(tmp_path / "6a.wav", message_audio)
    leave_message(store, "1795500000.6", "12345-ko", first)
    transcribe_waiting(store.sessions, store.rules, NOW)
    assert rating_of(store, "1795500000.6").voice_transcript_status == "done"
    store.apply([VoiceMessageRecorded("1795500000.6", str(tmp_path / "6b.wav"), 3.0, NOW + timedelta(minutes=5))])
    again = rating_of(store, "1795500000.6")
    assert (again.voice_transcript, again.voice_transcript_status, again.voice_message_file) == (
        None, None, str(tmp_path / "6b.wav"))


def test_a_hotline_without_a_transcript_model_keeps_the_audio_only(store: RatingStore, message_audio: bytes,
                                                                   tmp_path: Path) -> None:
    rules = store.rules.model_copy(update={"hotlines": {
        code: hotline.model_copy(update={"voice_message": hotline.voice_message.model_copy(
            update={"transcript_model": None})}) for code, hotline in store.rules.hotlines.items()}})
    leave_message(store, "1795500000.7", "12345-ko", write_recording(tmp_path / "7.wav", message_audio))
    result = transcribe_waiting(store.sessions, rules, NOW)
    assert (result.done, result.waiting_for_a_model) == (0, 0)
    assert rating_of(store, "1795500000.7").voice_transcript_status is None
