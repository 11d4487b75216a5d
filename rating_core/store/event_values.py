"""Call events made to fit the store at the edge, so no call is refused for what its PBX sent.

Asterisk passes channel variables and caller IDs on verbatim: a dialplan that
fills ``EVAL_CASE`` from a ``SHELL()`` lookup brings its trailing newline, a
misconfigured trunk a caller ID of a hundred digits, a C string its NUL bytes,
a file name from a foreign disk its undecodable bytes. PostgreSQL refuses NUL
in text and any value longer than its column (DataError); neither driver can
encode a lone surrogate. Any of these would refuse the call's first event, and
with it every later one: the rating the caller gave would be lost for a case
number nobody reads. :func:`clamp` makes every text value of an event fit
instead, and keeps what the PBX really sent (bounded, made printable) in
``CallStarted.variables`` as ``original_<field>``.

The limits are the model's columns (``rating_core/store/models.py``), read here, so a
migration that widens a column widens what is kept. Which field lands in which
column is the table :data:`FIELDS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement

from rating_core.events.call_events import (
    CallbackAnswered,
    CallbackCallEnded,
    CallEnded,
    CallEvent,
    CallStarted,
    ProgressMade,
    RatingGiven,
    ReasonGiven,
    VoiceMessageRecorded,
)
from rating_core.store.models import Base, Call, CallbackAnswer, Rating, RatingChange, TaskEvent

log = logging.getLogger(__name__)

# How long an original kept for checking may be (after it was made printable).
ORIGINAL_LIMIT = 1000
# Where a kept original goes in CallStarted.variables.
ORIGINAL_PREFIX = "original_"
# A cut identifier ends in "~" and this many hex digits of the whole value's SHA-256: the same long uniqueid
# always becomes the same stored one (so every event of the call still finds it), two long ones rarely the same.
HASH_DIGITS = 12
HASH_SEPARATOR = "~"

# How a field's text is made to fit:
IDENTIFIER = "identifier"  # one line; cut with a hash of the whole, so it still tells calls apart
ONE_LINE = "one_line"  # one line: line breaks and tabs become spaces, other control characters go
MULTI_LINE = "multi_line"  # free text: keeps its line breaks and tabs, other control characters go
TAGS = "tags"  # a tuple of one-line values (a JSON list)
VARIABLES = "variables"  # a dict of values kept for checking (a JSON object): made printable, nothing cut


@dataclass(frozen=True)
class Fit:
    """Where an event field lands, and how its text is made to fit there."""

    column: ColumnElement[Any]
    how: str

    @property
    def length(self) -> int | None:
        """The column's declared length in characters; None for Text and JSON."""
        return getattr(self.column.type, "length", None)


def _c(model: type[Base], name: str) -> ColumnElement[Any]:
    return model.__table__.c[name]


# Every text field of every event, and the column it is stored in. Fields that are not text (times,
# numbers, booleans) are not here; tests/test_event_values.py checks that no text field is missing.
FIELDS: dict[type[CallEvent], dict[str, Fit]] = {
    CallStarted: {
        "uniqueid": Fit(_c(Call, "uniqueid"), IDENTIFIER),
        "hotline": Fit(_c(Call, "hotline"), ONE_LINE),
        "linkedid": Fit(_c(Call, "linkedid"), IDENTIFIER),  # matched against the platform's 工单 like a uniqueid
        "caller_number": Fit(_c(Call, "caller_number"), ONE_LINE),
        "agent_id": Fit(_c(Call, "agent_id"), ONE_LINE),
        "queue": Fit(_c(Call, "queue"), ONE_LINE),
        "case_number": Fit(_c(Call, "case_number"), ONE_LINE),
        "unit": Fit(_c(Call, "unit"), ONE_LINE),
        "channel": Fit(_c(Call, "channel"), ONE_LINE),
        "recording_file": Fit(_c(Call, "recording_file"), ONE_LINE),
        "variables": Fit(_c(Call, "variables"), VARIABLES),
    },
    ProgressMade: {
        "uniqueid": Fit(_c(Call, "uniqueid"), IDENTIFIER),
        "progress": Fit(_c(Call, "progress"), ONE_LINE),
    },
    RatingGiven: {
        "uniqueid": Fit(_c(Call, "uniqueid"), IDENTIFIER),
        "level": Fit(_c(Rating, "level"), ONE_LINE),
        "channel": Fit(_c(Rating, "channel"), ONE_LINE),
        "source": Fit(_c(RatingChange, "source"), ONE_LINE),
        "heard": Fit(_c(Rating, "heard_text"), ONE_LINE),
    },
    ReasonGiven: {
        "uniqueid": Fit(_c(Call, "uniqueid"), IDENTIFIER),
        "tags": Fit(_c(Rating, "reason_tags"), TAGS),
        "text": Fit(_c(Rating, "reason_text"), MULTI_LINE),
        "source": Fit(_c(RatingChange, "source"), ONE_LINE),
    },
    VoiceMessageRecorded: {
        "uniqueid": Fit(_c(Call, "uniqueid"), IDENTIFIER),
        "path": Fit(_c(Rating, "voice_message_file"), ONE_LINE),
        "source": Fit(_c(RatingChange, "source"), ONE_LINE),
    },
    CallEnded: {
        "uniqueid": Fit(_c(Call, "uniqueid"), IDENTIFIER),
        "end_reason": Fit(_c(Call, "end_reason"), ONE_LINE),
        "progress": Fit(_c(Call, "progress"), ONE_LINE),
    },
    CallbackAnswered: {
        "uniqueid": Fit(_c(CallbackAnswer, "uniqueid"), IDENTIFIER),
        "question": Fit(_c(CallbackAnswer, "question"), ONE_LINE),
        "key": Fit(_c(CallbackAnswer, "key"), ONE_LINE),
    },
    CallbackCallEnded: {
        "uniqueid": Fit(_c(CallbackAnswer, "uniqueid"), IDENTIFIER),  # the callback's channel, as its answers keep it
        "end_reason": Fit(_c(TaskEvent, "detail"), ONE_LINE),
        "progress": Fit(_c(TaskEvent, "detail"), ONE_LINE),
    },
}

# C0 controls and DEL: PostgreSQL refuses NUL, and none of them belongs in a one-line value.
_CONTROLS = {code: None for code in [*range(0x20), 0x7F]}
_CONTROL_CHARS = "".join(map(chr, _CONTROLS))
_LINE_BREAKS = "\t\n\v\f\r\x1c\x1d\x1e\x1f"  # what str.isspace() calls whitespace among them
_ONE_LINE_TABLE = _CONTROLS | {ord(ch): " " for ch in _LINE_BREAKS}
_MULTI_LINE_TABLE = _CONTROLS | {ord(ch): ch for ch in "\t\n\r"}
_PRINTABLE_TABLE = {code: f"\\x{code:02x}" for code in _CONTROLS} | {ord("\t"): "\\t", ord("\n"): "\\n",
                                                                       ord("\r"): "\\r"}


def _pair_surrogates(text: str) -> str:
    """Surrogate pairs joined into the character they spell; lone surrogates are left as they are."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _valid(text: str) -> str:
    """Text that encodes as UTF-8: a lone surrogate (an undecodable byte, half a pair) becomes U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def one_line(text: str) -> str:
    """A one-line value: control characters at the ends go, line breaks and tabs within become spaces."""
    return _valid(text).strip(_CONTROL_CHARS).translate(_ONE_LINE_TABLE)


def multi_line(text: str) -> str:
    """Free text: line breaks and tabs stay, other control characters go."""
    return _valid(text).translate(_MULTI_LINE_TABLE)


def printable(text: str, limit: int | None = ORIGINAL_LIMIT) -> str:
    """What a value really was, for a person to check: control characters and lone surrogates written as escapes."""
    shown = "".join(f"\\u{ord(ch):04x}" if 0xD800 <= ord(ch) <= 0xDFFF else ch
                    for ch in _pair_surrogates(text).translate(_PRINTABLE_TABLE))
    return shown if limit is None else shown[:limit]


def identifier(text: str, length: int) -> str:
    """A one-line id within ``length``: if cut, it ends in a hash of the whole, so it stays the same and distinct."""
    value = one_line(text)
    if len(value) <= length:
        return value
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]
    return value[: length - len(HASH_SEPARATOR) - HASH_DIGITS] + HASH_SEPARATOR + digest


_MAKE_FIT: dict[str, Callable[[str], str]] = {ONE_LINE: one_line, MULTI_LINE: multi_line}


def _fitted(value: str, fit: Fit) -> str:
    if fit.how == IDENTIFIER:
        assert fit.length is not None, "an identifier's column has a length"
        return identifier(value, fit.length)
    made = _MAKE_FIT[fit.how](value)
    return made if fit.length is None else made[: fit.length]


def clamp(event: CallEvent) -> CallEvent:
    """``event`` with every text value made to fit its column; the same object when all already fit.

    Each changed value is logged (the call, the field, its length and what was wrong: never the value,
    which may be a citizen's number). A ``CallStarted`` also keeps the original as
    ``variables["original_<field>"]``; other events have no place for it, so theirs is only logged.
    Applying ``clamp`` to what it returned changes nothing more.
    """
    fields = FIELDS[type(event)]
    changes: dict[str, Any] = {}
    for name, fit in fields.items():
        value = getattr(event, name)
        if value is None:
            continue
        if fit.how == VARIABLES:
            made: Any = {printable(key, None): printable(item, None) if isinstance(item, str) else item
                         for key, item in value.items()}
        elif fit.how == TAGS:
            made = tuple(one_line(tag) for tag in value)
        else:
            made = _fitted(value, fit)
        if made != value:
            changes[name] = made
    if not changes:
        return event
    # The variables and tags are themselves what is kept (made printable): a single value has an original to keep.
    originals = {f"{ORIGINAL_PREFIX}{name}": printable(getattr(event, name)) for name in changes
                 if fields[name].how not in (VARIABLES, TAGS)} if isinstance(event, CallStarted) else {}
    uniqueid = changes.get("uniqueid", event.uniqueid)
    for name in changes:
        key = f"{ORIGINAL_PREFIX}{name}"
        log.warning("call %s: %s field %s did not fit the store (%s)%s", uniqueid, event.kind, name,
                    _what_was_wrong(getattr(event, name), fields[name]),
                    f"; the original is kept as variables[{key}]" if key in originals else "")
    if isinstance(event, CallStarted):
        changes["variables"] = changes.get("variables", event.variables) | originals
    return dataclasses.replace(event, **changes)


def _what_was_wrong(value: Any, fit: Fit) -> str:
    """For the log: how long the value was, and what of it did not fit."""
    if isinstance(value, str):
        texts, size = [value], f"{len(value)} characters"
    else:  # the variables or the tags
        texts = [text for item in (value.items() if isinstance(value, dict) else value)
                 for text in (item if isinstance(item, tuple) else (item,)) if isinstance(text, str)]
        size = f"{len(value)} values"
    wrong = [size]
    if fit.length is not None and isinstance(value, str) and len(_MAKE_FIT.get(fit.how, one_line)(value)) > fit.length:
        wrong.append(f"cut to the column's {fit.length}")
    if any(ord(ch) in _CONTROLS for text in texts for ch in text):
        wrong.append("control characters")
    if any(_valid(text) != text for text in texts):
        wrong.append("lone surrogates (undecodable text)")
    return ", ".join(wrong)
