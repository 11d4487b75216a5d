"""A voice message's transcript statuses (``Rating.voice_transcript_status``), the moves between them as a
table, and the one check every move passes.

::

    waiting (None) ──claimed──▶ transcribing ──▶ done | failed (a missing or unreadable file: not retried)
    transcribing ──released (its model would not load)──▶ waiting
    transcribing ──its lease ran out (a worker gone)──▶ transcribing (claimed again)
    any status ──recorded again (a rating given again)──▶ waiting: the new message waits for its own words

Waiting is no value at all (NULL), as it has always been stored. Claimed and
finished by ``speech_models.voice_transcripts``; set back to waiting by
:mod:`rating_core.ratings.intake` when a new message is recorded.
"""

from __future__ import annotations

from enum import StrEnum

from rating_core.rules.state_moves import IllegalMove


class TranscriptStatus(StrEnum):
    TRANSCRIBING = "transcribing"
    DONE = "done"
    FAILED = "failed"


# As a person reads them; None is a message waiting. (The agent's page says what a done or failed one means.)
TRANSCRIPT_STATUS_NAMES: dict[TranscriptStatus | None, str] = {
    None: "待转写", TranscriptStatus.TRANSCRIBING: "转写中", TranscriptStatus.DONE: "已转写",
    TranscriptStatus.FAILED: "转写失败",
}
# A message recorded again waits again, whatever its old one had come to.
_RECORDED_AGAIN: frozenset[TranscriptStatus | None] = frozenset({None})
TRANSCRIPT_MOVES: dict[TranscriptStatus | None, frozenset[TranscriptStatus | None]] = {
    None: frozenset({TranscriptStatus.TRANSCRIBING}) | _RECORDED_AGAIN,
    TranscriptStatus.TRANSCRIBING: frozenset({TranscriptStatus.DONE, TranscriptStatus.FAILED,
                                              TranscriptStatus.TRANSCRIBING}) | _RECORDED_AGAIN,
    TranscriptStatus.DONE: _RECORDED_AGAIN,
    TranscriptStatus.FAILED: _RECORDED_AGAIN,
}


def transcript_move(current: str | None, to: str | None) -> TranscriptStatus | None:
    """The status a transcript moves to, if it may move there from ``current`` (None: waiting)."""
    source = None if current is None else TranscriptStatus(current)
    target = None if to is None else TranscriptStatus(to)
    if target not in TRANSCRIPT_MOVES[source]:
        raise IllegalMove(f"录音转写不能从“{TRANSCRIPT_STATUS_NAMES[source]}”改为“{TRANSCRIPT_STATUS_NAMES[target]}”")
    return target
