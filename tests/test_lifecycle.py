"""未评价 calls become default ratings when their period is over (四平 7.3), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from rating_core.events.call_events import CallEnded, CallStarted, RatingGiven
from rating_core.ratings.lifecycle import default_unrated
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.store.models import Call, CallbackTask, OutboxEvent, Rating

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday


def unrated(store: RatingStore, uid: str, at: datetime = T0, hotline: str = "12345") -> None:
    store.apply([CallStarted(uniqueid=uid, hotline=hotline, at=at, agent_id="1024"),
                 CallEnded(uid, "no_input", at + timedelta(seconds=30))])


def run(store: RatingStore, rules: Rules, now: datetime) -> int:
    with store.sessions.begin() as session:
        return default_unrated(session, rules, now)


def rating(store: RatingStore, uid: str) -> Rating | None:
    with store.sessions() as session:
        found = session.scalars(select(Rating).join(Call).where(Call.uniqueid == uid)).one_or_none()
        if found is not None:
            found.changes  # load while the session is open
        return found


def test_seven_days_to_the_second_then_基本满意_as_a_default(store: RatingStore, rules: Rules) -> None:
    unrated(store, "a.1")
    assert run(store, rules, T0 + timedelta(days=7) - timedelta(seconds=1)) == 0
    assert run(store, rules, T0 + timedelta(days=7, hours=3)) == 1
    given = rating(store, "a.1")
    assert (given.level, given.channel, given.is_active, given.is_negative) == ("basic", "default", False, False)
    assert given.rated_at == T0 + timedelta(days=7)  # dated when the period ended, not when the pass ran
    assert given.changes[0].source == "lifecycle"
    with store.sessions() as session:
        assert session.scalars(select(CallbackTask)).all() == []  # never a 差评, so no callback
        assert session.scalars(select(OutboxEvent.type)).all() == ["rating.defaulted"]


def test_the_pass_is_idempotent_and_leaves_rated_calls_alone(store: RatingStore, rules: Rules) -> None:
    unrated(store, "b.1")
    store.apply([CallStarted(uniqueid="b.2", hotline="12345", at=T0), RatingGiven("b.2", "satisfied", "dtmf", T0)])
    unrated(store, "b.3", hotline="110")  # a call for a hotline the rules do not know is not ours to rate
    later = T0 + timedelta(days=30)
    assert run(store, rules, later) == 1
    assert run(store, rules, later) == 0
    assert rating(store, "b.2").channel == "dtmf" and rating(store, "b.3") is None


def test_working_days_follow_the_official_calendar(store: RatingStore, rules: Rules) -> None:
    """2 working days from Wed 30 Sep 2026, across the National Day holiday (1–7 Oct) and its 调休."""
    from rating_core.rules.working_days import WorkingCalendar, add_duration

    policy = rules.lifecycle.default_rating.model_copy(update={"after": rules.callback.appeal_file_within})
    working = rules.model_copy(update={"lifecycle": rules.lifecycle.model_copy(update={"default_rating": policy})})
    start = datetime(2026, 9, 30, 10, 0, tzinfo=CST)
    unrated(store, "c.1", at=start)
    due = add_duration(start, policy.after, WorkingCalendar({}), CST)
    assert due > start + timedelta(days=7)  # the holiday does not count
    assert run(store, working, due - timedelta(minutes=1)) == 0
    assert run(store, working, due) == 1


def test_a_deployment_that_only_tracks_未评价_gives_no_default(store: RatingStore, rules: Rules) -> None:
    off = rules.lifecycle.default_rating.model_copy(update={"enabled": False})
    rules_off = rules.model_copy(update={"lifecycle": rules.lifecycle.model_copy(update={"default_rating": off})})
    unrated(store, "d.1")
    assert run(store, rules_off, T0 + timedelta(days=60)) == 0 and rating(store, "d.1") is None


@pytest.mark.parametrize("level", ["dissatisfied", "no_such_level"])
def test_the_default_level_must_be_a_known_good_level(level: str) -> None:
    import yaml

    from rating_core.rules.rulebook import DEFAULT_RULES_FILE, RulesError, parse_rules

    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    document["lifecycle"]["default_rating"]["level"] = level
    with pytest.raises(RulesError, match="default_rating.level"):
        parse_rules(document)
