"""The rating store on SQLite and PostgreSQL: schema, events, history, export, spool."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from rating_core.events.call_events import (
    CallEnded,
    CallStarted,
    ProgressMade,
    RatingGiven,
    ReasonGiven,
    VoiceMessageRecorded,
    to_record,
)
from rating_core.events.dead_letters import DeadLetters
from rating_core.ratings.intake import UnknownCall
from rating_core.ratings.journal_replay import replay_dead_journals
from rating_core.ratings.store import RatingStore
from rating_core.reports.export import UNRATED, export_rows, write_csv, write_jsonl
from rating_core.store.models import Base, Call, Rating, RatingChange

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=timezone(timedelta(hours=8)))


def started(uniqueid: str = "1795316432.0", **extra) -> CallStarted:
    return CallStarted(uniqueid=uniqueid, hotline="12345", at=T0, caller_number="13800000000",
                       agent_id="1024", queue="社保咨询", case_number="GD001", unit="市人社局",
                       linkedid="1795316400.1", **extra)


def test_migrations_match_the_models(engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_rating_with_reason_and_voice_message(store: RatingStore) -> None:
    uid = "1795316432.0"
    store.apply([
        started(uid),
        ProgressMade(uid, "menu", T0),
        RatingGiven(uid, "very_dissatisfied", "dtmf", T0 + timedelta(seconds=5)),
        ReasonGiven(uid, ("buck_passing",), T0 + timedelta(seconds=9)),
        VoiceMessageRecorded(uid, "/var/spool/asterisk/hotline-eval/12345/x.wav", 6.5, T0 + timedelta(seconds=20)),
        CallEnded(uid, "completed", T0 + timedelta(seconds=25)),
    ])
    with store.sessions() as s:
        call = s.scalars(select(Call)).one()
        assert ((call.hotline, call.agent_id, call.queue, call.case_number, call.unit)
                == ("12345", "1024", "社保咨询", "GD001", "市人社局"))
        assert call.progress == "completed" and call.end_reason == "completed"
        assert call.started_at == T0 and call.started_at.tzinfo is not None
        rating = call.rating
        assert ((rating.level, rating.stars, rating.is_negative, rating.channel, rating.is_active)
                == ("very_dissatisfied", 1, True, "dtmf", True))
        assert rating.reason_tags == ["buck_passing"]
        assert rating.voice_message_seconds == 6.5
        assert rating.is_adopted and rating.not_adopted_reason is None
        assert [list(c.changes) for c in rating.changes][0] == ["level", "stars", "is_negative", "channel", "is_active"]
        assert len(rating.changes) == 3  # created, reason, voice message


def test_a_second_rating_of_the_same_call_is_an_update_with_history(store: RatingStore) -> None:
    uid = "1795316432.7"
    store.apply([started(uid), RatingGiven(uid, "satisfied", "dtmf", T0)])
    store.apply([RatingGiven(uid, "satisfied", "dtmf", T0 + timedelta(minutes=1))])  # same level: nothing moves
    store.apply([RatingGiven(uid, "dissatisfied", "dtmf", T0 + timedelta(minutes=2), source="ivr-repeat")])
    with store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 1
        rating = s.scalars(select(Rating)).one()
        assert rating.level == "dissatisfied" and rating.is_negative
        assert rating.rated_at == T0 and rating.updated_at == T0 + timedelta(minutes=2)
        history = s.scalars(select(RatingChange).order_by(RatingChange.id)).all()
        assert len(history) == 2
        assert history[1].source == "ivr-repeat"
        assert history[1].changes["level"] == ["satisfied", "dissatisfied"]


def test_a_spoken_rating_keeps_what_was_heard_until_a_key_replaces_it(store: RatingStore) -> None:
    uid = "1795316432.8"
    store.apply([started(uid), RatingGiven(uid, "satisfied", "speech", T0, heard="만족", confidence=0.91)])
    store.apply([RatingGiven(uid, "basic", "dtmf", T0 + timedelta(minutes=1))])  # the caller presses 3 after all
    with store.sessions() as s:
        rating = s.scalars(select(Rating)).one()
        assert (rating.channel, rating.heard_text, rating.heard_confidence) == ("dtmf", None, None)
        first, second = s.scalars(select(RatingChange).order_by(RatingChange.id)).all()
        assert (first.changes["heard_text"], first.changes["heard_confidence"]) == ([None, "만족"], [None, 0.91])
        assert (second.changes["heard_text"], second.changes["heard_confidence"]) == (["만족", None], [0.91, None])
    store.apply([started("1795316432.9"), RatingGiven("1795316432.9", "satisfied", "dtmf", T0)])
    with store.sessions() as s:
        keyed = s.scalars(select(RatingChange).join(Rating).join(Call).where(Call.uniqueid == "1795316432.9")
                          .order_by(RatingChange.id)).first()  # (then the batch rule's flag: same number)
        assert keyed.source == "ivr" and "heard_text" not in keyed.changes  # a keypress has nothing heard
    store.apply([started("1795316432.10"), RatingGiven("1795316432.10", "satisfied", "speech", T0, heard="만족",
                                                        confidence=0.91)])
    with store.sessions() as s:
        exported = {row["uniqueid"]: row for row in export_rows(s, store.rules)}
    assert (exported["1795316432.10"]["heard_text"], exported["1795316432.10"]["heard_confidence"]) == ("만족", 0.91)
    assert exported[uid]["heard_text"] is None  # replaced by a key


def test_the_database_refuses_two_ratings_for_one_call(store: RatingStore) -> None:
    uid = "1795316432.8"
    store.apply([started(uid), RatingGiven(uid, "satisfied", "dtmf", T0)])
    with pytest.raises(IntegrityError), store.sessions.begin() as s:
        call = s.scalars(select(Call)).one()
        s.add(Rating(call_id=call.id, level="basic", stars=3, is_negative=False, channel="dtmf",
                     rated_at=T0, updated_at=T0, reason_tags=[]))


def test_events_are_idempotent(store: RatingStore) -> None:
    uid = "1795316432.9"
    events = [started(uid), ProgressMade(uid, "menu", T0), RatingGiven(uid, "basic", "dtmf", T0),
              ReasonGiven(uid, (), T0), CallEnded(uid, "completed", T0)]
    store.apply(events)
    store.apply(events)
    with store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Call)) == 1
        assert s.scalar(select(func.count()).select_from(RatingChange)) == 1
        assert s.scalars(select(Call)).one().end_reason == "completed"


def test_progress_never_goes_backwards(store: RatingStore) -> None:
    uid = "1795316433.0"
    store.apply([started(uid), RatingGiven(uid, "basic", "dtmf", T0), ProgressMade(uid, "menu", T0)])
    with store.sessions() as s:
        assert s.scalars(select(Call)).one().progress == "rated"


def test_event_for_an_unknown_call_is_refused_whole(store: RatingStore) -> None:
    with pytest.raises(UnknownCall):
        store.apply([started("a.1"), RatingGiven("nobody.1", "basic", "dtmf", T0)])
    with store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Call)) == 0  # all or nothing


def test_unknown_level_is_refused(store: RatingStore) -> None:
    with pytest.raises(KeyError, match="unknown rating level"):
        store.apply([started("a.2"), RatingGiven("a.2", "delighted", "dtmf", T0)])


def test_export_lists_unrated_calls_and_filters_by_time(store: RatingStore) -> None:
    store.apply([
        started("b.1"), ProgressMade("b.1", "menu", T0, menu_plays=2), CallEnded("b.1", "no_input", T0),
        CallStarted("b.2", "12333", T0 + timedelta(hours=1)), RatingGiven("b.2", "dissatisfied", "dtmf", T0),
        ReasonGiven("b.2", ("long_wait",), T0),
    ])
    with store.sessions() as s:
        rows = list(export_rows(s, store.rules))
        later = list(export_rows(s, store.rules, since=T0 + timedelta(minutes=30)))
    assert [r["uniqueid"] for r in rows] == ["b.1", "b.2"]
    assert rows[0]["level_name"] == UNRATED and rows[0]["progress"] == "menu" and rows[0]["menu_plays"] == 2
    assert rows[1]["reason_tag_names"] == ["等待时间过长"] and rows[1]["score"] == 3
    assert [r["uniqueid"] for r in later] == ["b.2"]
    out = io.StringIO()
    assert write_jsonl(iter(rows), out) == 2
    assert json.loads(out.getvalue().splitlines()[1])["level"] == "dissatisfied"
    out = io.StringIO()
    write_csv(iter(rows), out)
    assert "long_wait" in out.getvalue() and UNRATED in out.getvalue()


def test_a_spool_file_of_the_version_before_the_journal_is_applied_once(store: RatingStore, tmp_path) -> None:
    """An upgrade finds the old spool's files in the folder: applied as dead streams, torn line and all."""
    uid = "c.1"
    events = (RatingGiven("ghost.1", "basic", "dtmf", T0), started(uid), RatingGiven(uid, "very_satisfied", "dtmf", T0),
              CallEnded(uid, "completed", T0))
    old = tmp_path / "events-4242-0a1b2c3d.jsonl"
    old.write_text("".join(json.dumps(to_record(event), ensure_ascii=False) + "\n" for event in events)
                   + '{"kind": "rating_gi', encoding="utf-8")  # a crash mid-write left a torn last line
    assert replay_dead_journals(store, tmp_path) == 4
    assert not old.exists() and replay_dead_journals(store, tmp_path) == 0
    with store.sessions() as s:
        assert s.scalars(select(Rating)).one().level == "very_satisfied"
    [orphan] = DeadLetters(tmp_path).all()
    assert orphan.line == 1 and "UnknownCall" in orphan.reason
