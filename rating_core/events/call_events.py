"""What the IVR tells the store, as plain events.

Every write from a call is one of these events. Being plain data, an event can
be journalled to disk before the database sees it and applied later; being
idempotent (applying one twice changes nothing), a replay after a write whose
outcome was unknown is always safe. How the store applies them is
:mod:`rating_core.ratings.intake`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

PROGRESS_ORDER = ("connected", "menu", "rated", "reason", "voice_message", "thanks", "completed")


def utcnow() -> datetime:
    """When an event happens: an aware time in UTC, as the store keeps it (people read it in Beijing time)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class CallStarted:
    kind: ClassVar[str] = "call_started"
    uniqueid: str
    hotline: str
    at: datetime
    linkedid: str | None = None
    caller_number: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    case_number: str | None = None
    unit: str | None = None
    channel: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    recording_file: str | None = None


@dataclass(frozen=True)
class ProgressMade:
    kind: ClassVar[str] = "progress"
    uniqueid: str
    progress: str
    at: datetime
    menu_plays: int | None = None


@dataclass(frozen=True)
class RatingGiven:
    kind: ClassVar[str] = "rating_given"
    uniqueid: str
    level: str
    channel: str
    at: datetime
    source: str = "ivr"
    heard: str | None = None  # a spoken rating: what the recogniser returned, and its confidence
    confidence: float | None = None


@dataclass(frozen=True)
class ReasonGiven:
    kind: ClassVar[str] = "reason_given"
    uniqueid: str
    tags: tuple[str, ...]
    at: datetime
    text: str | None = None
    source: str = "ivr"


@dataclass(frozen=True)
class VoiceMessageRecorded:
    kind: ClassVar[str] = "voice_message"
    uniqueid: str
    path: str
    seconds: float
    at: datetime
    source: str = "ivr"


@dataclass(frozen=True)
class CallEnded:
    kind: ClassVar[str] = "call_ended"
    uniqueid: str
    end_reason: str
    at: datetime
    progress: str | None = None
    menu_plays: int | None = None


@dataclass(frozen=True)
class CallbackAnswered:
    """The citizen answered a question of the automated callback (``uniqueid`` is the callback's channel)."""

    kind: ClassVar[str] = "callback_answered"
    uniqueid: str
    attempt_id: int
    question: str
    answer: bool
    key: str
    at: datetime


@dataclass(frozen=True)
class CallbackCallEnded:
    """The automated callback's script ended, and why (the dialer records the attempt's outcome itself)."""

    kind: ClassVar[str] = "callback_ended"
    uniqueid: str
    attempt_id: int
    end_reason: str
    at: datetime
    progress: str | None = None


CallEvent = (
    CallStarted | ProgressMade | RatingGiven | ReasonGiven | VoiceMessageRecorded | CallEnded
    | CallbackAnswered | CallbackCallEnded
)
EVENT_TYPES: dict[str, type[CallEvent]] = {
    cls.kind: cls for cls in (CallStarted, ProgressMade, RatingGiven, ReasonGiven, VoiceMessageRecorded, CallEnded,
                              CallbackAnswered, CallbackCallEnded)
}
# Events after which a call sends nothing more.
FINAL_EVENTS = (CallEnded, CallbackCallEnded)
_TIME_FIELDS = {"at"}


def to_record(event: CallEvent) -> dict[str, Any]:
    """A JSON-ready dict of an event (for the spool)."""
    record = dataclasses.asdict(event)
    record["kind"] = event.kind
    record["at"] = event.at.isoformat()
    if isinstance(event, ReasonGiven):
        record["tags"] = list(event.tags)
    return record


def from_record(record: dict[str, Any]) -> CallEvent:
    data = dict(record)
    cls = EVENT_TYPES[data.pop("kind")]
    for name in _TIME_FIELDS:
        data[name] = datetime.fromisoformat(data[name])
    if cls is ReasonGiven:
        data["tags"] = tuple(data["tags"])
    return cls(**data)
