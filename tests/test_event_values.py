"""Values clamped at the edge: whatever text a PBX sends, the call and its rating are stored (issue 17).

Each bad value goes through ``clamp`` and then the store, on SQLite and on
PostgreSQL; without ``clamp`` PostgreSQL refuses them, which is what makes the
rest mean something.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from conftest import refused_in_one_batch
from ivr.service import IvrService
from rating_core.events.call_events import (
    EVENT_TYPES,
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
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.store.event_values import FIELDS, clamp, printable
from rating_core.store.models import Call
from simulators.asterisk_agi import Caller, Press, run_call

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=timezone.utc)
UID = "1795316432.7"
FINE = {"caller_number": "13812345678", "agent_id": "1024", "queue": "社保咨询", "case_number": "GD20261120001",
        "unit": "市人社局", "linkedid": "1795316400.1", "channel": "PJSIP/hotline-trunk-0000001a"}


@dataclass(frozen=True)
class Bad:
    """One value a PBX might send, the field it comes in, and what the store should keep of it."""

    field: str
    value: str
    stored: str  # what the column holds after clamp (for the uniqueid: checked by length and hash instead)
    refused_by_postgresql: bool  # without clamp


BAD = {
    "caller number of 100 digits": Bad("caller_number", "8" * 100, "8" * 64, True),
    "NUL in the unit": Bad("unit", "市人社局\x00社保中心", "市人社局社保中心", True),
    "uniqueid of 200 characters": Bad("uniqueid", "1795316432." + "9" * 189, "", True),
    "case number of 500 characters": Bad("case_number", "GD" + "0" * 498, "GD" + "0" * 126, True),
    "unit of 1000 characters": Bad("unit", "局" * 1000, "局" * 256, True),
    "newline in the case number": Bad("case_number", "GD001\nGD002\n", "GD001 GD002", False),
    "lone surrogate in the queue": Bad("queue", "社保\udcff咨询", "社保\ufffd咨询", True),
}


def call_of(bad: Bad) -> list[CallEvent]:
    """One whole call (started, rated, ended) carrying ``bad``, as the IVR would write it."""
    uniqueid = bad.value if bad.field == "uniqueid" else UID
    values = FINE | ({} if bad.field == "uniqueid" else {bad.field: bad.value})
    return [
        CallStarted(uniqueid=uniqueid, hotline="12345", at=T0, variables={"agi_request": "agi://x/postcall"},
                    **values),
        RatingGiven(uniqueid, "satisfied", "dtmf", T0 + timedelta(seconds=5)),
        CallEnded(uniqueid, "completed", T0 + timedelta(seconds=9), "completed", 1),
    ]


def stored_call(store: RatingStore, uniqueid: str) -> Call | None:
    with store.sessions() as session:
        return session.scalars(select(Call).where(Call.uniqueid == uniqueid)
                               .options(selectinload(Call.rating))).one_or_none()


# -- through the store, SQLite and PostgreSQL ----------------------------------------------------


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_a_clamped_call_is_stored_with_its_rating_and_the_original(store: RatingStore, bad: Bad) -> None:
    events = [clamp(event) for event in call_of(bad)]
    assert refused_in_one_batch(store, events) == []
    call = stored_call(store, events[0].uniqueid)
    assert call is not None and call.rating is not None
    assert (call.rating.level, call.progress, call.end_reason) == ("satisfied", "completed", "completed")
    if bad.field == "uniqueid":
        assert len(call.uniqueid) == 64 and call.uniqueid.startswith("1795316432.999")
    else:
        assert getattr(call, bad.field) == bad.stored
        assert call.uniqueid == UID
    assert call.variables[f"original_{bad.field}"] == printable(bad.value)
    assert call.variables["agi_request"] == "agi://x/postcall"
    untouched = {name: getattr(call, name) for name in FINE if name != bad.field}
    assert untouched == {name: value for name, value in FINE.items() if name != bad.field}


def test_a_reason_message_and_spoken_rating_with_bad_text_are_stored(store: RatingStore) -> None:
    # A 差评 whose every later event carries text that does not fit: the reason (with its task) is kept.
    at = T0 + timedelta(seconds=5)
    events = [clamp(event) for event in [
        CallStarted(uniqueid=UID, hotline="12345", at=T0, **FINE),
        RatingGiven(UID, "very_dissatisfied", "speech", at, heard="非常不满意" * 60, confidence=0.9),
        ReasonGiven(UID, ("buck_passing\x00",), at, text="办事\x00拖拉\n第二行\udcff"),
        VoiceMessageRecorded(UID, "/var/spool/asterisk/hotline-eval/\x00" + "d" * 600 + ".wav", 3.5, at),
        CallEnded(UID, "completed", at, "completed", 1),
    ]]
    assert refused_in_one_batch(store, events) == []
    call = stored_call(store, UID)
    assert call is not None and call.rating is not None
    rating = call.rating
    assert rating.is_negative and rating.heard_text == ("非常不满意" * 60)[:256]
    assert rating.reason_tags == ["buck_passing"]
    assert rating.reason_text == "办事拖拉\n第二行\ufffd"  # free text keeps its line break
    assert rating.voice_message_file == ("/var/spool/asterisk/hotline-eval/" + "d" * 600)[:512]
    with store.sessions() as session:
        assert session.get(Call, call.id).rating.callback_task is not None  # the 差评's task rode along


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
@pytest.mark.parametrize("bad", [bad for bad in BAD.values() if bad.refused_by_postgresql],
                         ids=[name for name, bad in BAD.items() if bad.refused_by_postgresql])
def test_without_clamping_postgresql_refuses_the_whole_call(engine: Engine, rules: Rules, bad: Bad) -> None:
    store = RatingStore(engine, rules)
    events = call_of(bad)
    assert refused_in_one_batch(store, events) == [0, 1, 2]  # the call, its rating and its end: all refused
    assert stored_call(store, events[0].uniqueid[:64]) is None


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_without_clamping_sqlite_refuses_a_lone_surrogate(engine: Engine, rules: Rules) -> None:
    store = RatingStore(engine, rules)
    assert refused_in_one_batch(store, call_of(BAD["lone surrogate in the queue"])) == [0, 1, 2]


async def test_a_channel_variable_with_line_breaks_keeps_its_call(ivr: IvrService) -> None:
    # The report "a value with a newline dropped its whole call, not even 未评价": Asterisk sends GET VARIABLE's
    # value as it is, so the reply spans lines; the AGI parser refused its first line and the session closed
    # before the call's first event was written. (Raw until the writer clamps; clamped after.)
    variables = {"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询", "EVAL_CASE": "GD001\n",
                 "EVAL_UNIT": "市人社局(社保中心)\n", "EVAL_LINKEDID": "1795316400.1"}
    caller = Caller([Press("2")], callerid="13812345678", variables=variables)
    result = await run_call("127.0.0.1", ivr.server.port, caller, uniqueid=UID, script="postcall?hotline=12345")
    assert result.closed_by_server and not result.error
    call = stored_call(ivr.store, UID)
    assert call is not None and call.rating is not None and call.rating.level == "satisfied"
    assert call.case_number in ("GD001\n", "GD001") and call.unit in ("市人社局(社保中心)\n", "市人社局(社保中心)")
    assert call.agent_id == "1024" and call.end_reason == "completed"


# -- the function itself ----------------------------------------------------------------------------


def test_every_text_field_of_every_event_is_mapped_to_a_column() -> None:
    for cls in EVENT_TYPES.values():
        texts = {f.name for f in dataclasses.fields(cls) if "str" in str(f.type)}
        assert set(FIELDS[cls]) == texts, cls.__name__


FINE_EVENTS: list[CallEvent] = [
    CallStarted(uniqueid=UID, hotline="12345", at=T0, variables={"agi_request": "agi://x/postcall?a=1 b"}, **FINE),
    ProgressMade(UID, "menu", T0, 1),
    RatingGiven(UID, "satisfied", "speech", T0, heard="满意", confidence=0.8),
    ReasonGiven(UID, ("buck_passing",), T0, text="第一行\n\t第二行"),
    VoiceMessageRecorded(UID, "/var/spool/asterisk/hotline-eval/12345/20261120/1795316432.7.wav", 2.0, T0),
    CallEnded(UID, "completed", T0, "completed", 1),
    CallbackAnswered("1795316500.3", 1, "resolved", True, "1", T0),
    CallbackCallEnded("1795316500.3", 1, "completed", T0, "thanks"),
]


@pytest.mark.parametrize("event", FINE_EVENTS, ids=lambda event: event.kind)
def test_an_event_that_fits_is_returned_as_it_is(event: CallEvent, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert clamp(event) is event
    assert caplog.records == []


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_clamping_twice_changes_nothing_more(bad: Bad) -> None:
    for event in call_of(bad):
        once = clamp(event)
        assert clamp(once) is once


def test_a_long_uniqueid_is_cut_the_same_way_for_every_event_and_stays_distinct() -> None:
    long = "1795316432." + "9" * 189
    uniqueids = {clamp(event).uniqueid for event in call_of(BAD["uniqueid of 200 characters"])}
    assert len(uniqueids) == 1
    [uniqueid] = uniqueids
    assert len(uniqueid) == 64 and uniqueid != long[:64]
    other = clamp(RatingGiven(long[:-1] + "8", "satisfied", "dtmf", T0)).uniqueid  # the same first 64 characters
    assert len(other) == 64 and other != uniqueid
    assert clamp(CallbackAnswered(long, 1, "resolved", True, "1", T0)).uniqueid == uniqueid


def test_line_breaks_and_controls() -> None:
    event = clamp(CallStarted(uniqueid=UID, hotline="12345\n", at=T0, case_number="\x00GD\t001\r\n",
                              unit="市人社局\x07", agent_id="10\x1b24"))
    assert isinstance(event, CallStarted)
    assert (event.hotline, event.case_number, event.unit, event.agent_id) == ("12345", "GD 001", "市人社局", "1024")
    assert event.variables == {"original_hotline": "12345\\n", "original_case_number": "\\x00GD\\t001\\r\\n",
                               "original_unit": "市人社局\\x07", "original_agent_id": "10\\x1b24"}


def test_a_surrogate_pair_is_one_character_and_only_a_lone_one_is_replaced() -> None:
    event = clamp(CallStarted(uniqueid=UID, hotline="12345", at=T0, unit="\ud83d\ude00局\udc80"))
    assert isinstance(event, CallStarted)
    assert event.unit == "\U0001F600局\ufffd"
    assert event.variables["original_unit"] == "\U0001F600局\\udc80"
    assert event.unit.encode("utf-8")  # encodes: the store's drivers will take it


def test_the_original_kept_is_bounded() -> None:
    event = clamp(CallStarted(uniqueid=UID, hotline="12345", at=T0, unit="\x00" * 5000))
    assert isinstance(event, CallStarted)
    assert event.unit == "" and event.variables["original_unit"] == "\\x00" * 250  # 1000 characters


def test_bad_variables_are_made_printable_and_nothing_else_is_touched() -> None:
    event = clamp(CallStarted(uniqueid=UID, hotline="12345", at=T0, variables={"agi_request": "agi://x/\x00\n"}))
    assert isinstance(event, CallStarted)
    assert event.variables == {"agi_request": "agi://x/\\x00\\n"}


def test_each_clamped_field_is_logged_with_its_call_and_length_but_not_its_value(
        caplog: pytest.LogCaptureFixture) -> None:
    number = "13812345678" * 9
    with caplog.at_level(logging.WARNING, logger="rating_core.store.event_values"):
        clamp(CallStarted(uniqueid=UID, hotline="12345", at=T0, caller_number=number, unit="局\x00"))
    messages = {record.getMessage() for record in caplog.records}
    assert len(messages) == 2
    by_field = {next(name for name in ("caller_number", "unit") if name in m): m for m in messages}
    assert UID in by_field["caller_number"] and "99 characters" in by_field["caller_number"]
    assert "64" in by_field["caller_number"] and "original_caller_number" in by_field["caller_number"]
    assert "control characters" in by_field["unit"]
    assert all(number[:20] not in message for message in messages)


def test_the_limits_are_the_columns_of_the_model() -> None:
    assert FIELDS[CallStarted]["caller_number"].length == Call.__table__.c.caller_number.type.length == 64
    assert FIELDS[ReasonGiven]["text"].length is None  # Text: made valid, never cut
