"""Rules that decide which ratings count: 淄博's batch rule, the malicious-rater list, and how each changes
the figures; every decision recorded and reversible (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from rating_core.complaints.appeals import block_number
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.batch_ratings import BatchRuleError, lift_batch_flag
from rating_core.ratings.store import RatingStore
from rating_core.reports.figures import parse_period, unit_counts
from rating_core.rules.lifecycle_policy import Lifecycle
from rating_core.rules.rulebook import Rules
from rating_core.store.models import Call, CallbackTask, Rating

CST = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)
_ids = iter(range(10**6))


def rate(store: RatingStore, number: str, level: str = "satisfied", *, at: datetime = T0,
         channel: str = "dtmf") -> str:
    uid = f"1795600000.{next(_ids)}"
    store.apply([CallStarted(uniqueid=uid, hotline="12345", at=at, caller_number=number, agent_id="1024"),
                 RatingGiven(uid, level, channel, at)])
    return uid


def rating(store: RatingStore, uid: str) -> Rating:
    with store.sessions() as session:
        found = session.scalars(select(Rating).join(Call).where(Call.uniqueid == uid)).one()
        found.changes  # load while open
        return found


def counts(store: RatingStore) -> dict[str, int]:
    with store.sessions() as session:
        [agent] = unit_counts(session, parse_period("2026Q4", CST), "agent")
        return agent.counts


def with_batch(rules: Rules, **changes) -> RatingStore:
    batch = rules.lifecycle.batch.model_copy(update=changes)
    return rules.model_copy(update={"lifecycle": rules.lifecycle.model_copy(update={"batch": batch})})


def test_many_ratings_from_one_number_in_a_day_count_once(store: RatingStore) -> None:
    first = rate(store, "13800000001")
    second = rate(store, "13800000001", "very_satisfied", at=T0 + timedelta(hours=2))
    third = rate(store, "13800000001", "dissatisfied", at=T0 + timedelta(hours=5))
    other = rate(store, "13900000002", at=T0 + timedelta(hours=5))
    assert [rating(store, uid).batch_of_id for uid in (first, other)] == [None, None]
    head = rating(store, first).id
    assert rating(store, second).batch_of_id == head and rating(store, third).batch_of_id == head
    flag = rating(store, second).changes[-1]
    assert (flag.source, flag.changes) == ("rule:batch", {"batch_of_id": [None, head]})
    # Stored and shown as given (M, D, T); counted once for 主动评价 (P, I).
    assert {k: counts(store)[k] for k in ("A", "M", "P", "I", "D", "T")} == {
        "A": 4, "M": 4, "P": 2, "I": 2, "D": 1, "T": 1}


def test_a_batched_差评_still_gets_its_callback(store: RatingStore) -> None:
    rate(store, "13800000001")
    late = rate(store, "13800000001", "very_dissatisfied", at=T0 + timedelta(hours=1))
    with store.sessions() as session:
        found = session.scalars(select(Rating).join(Call).where(Call.uniqueid == late)).one()
        assert found.batch_of_id is not None and found.callback_task is not None
        assert found.is_adopted


def test_ratings_a_day_apart_and_defaults_are_not_a_batch(store: RatingStore) -> None:
    rate(store, "13800000001")
    next_day = rate(store, "13800000001", at=T0 + timedelta(days=1, seconds=1))
    default = rate(store, "13800000001", "basic", at=T0 + timedelta(days=1, hours=1), channel="default")
    assert rating(store, default).batch_of_id is None and rating(store, default).is_active is False
    assert rating(store, next_day).batch_of_id is None


def test_a_larger_threshold_flags_the_whole_batch_when_it_is_crossed(engine, rules: Rules) -> None:
    store = RatingStore(engine, with_batch(rules, more_than=3))
    uids = [rate(store, "13800000001", at=T0 + timedelta(minutes=n)) for n in range(3)]
    assert [rating(store, uid).batch_of_id for uid in uids] == [None, None, None]  # three: not yet a batch
    uids.append(rate(store, "13800000001", at=T0 + timedelta(minutes=3)))
    head = rating(store, uids[0]).id
    assert [rating(store, uid).batch_of_id for uid in uids] == [None, head, head, head]
    assert counts(store)["P"] == 1


def test_a_supervisor_lifts_a_flag_and_the_rule_respects_it(store: RatingStore) -> None:
    rate(store, "13800000001")
    second = rate(store, "13800000001", at=T0 + timedelta(hours=1))
    with store.sessions.begin() as session:
        lift_batch_flag(session, rating(store, second).id, T0 + timedelta(hours=2), "supervisor:boss")
    lifted = rating(store, second)
    assert (lifted.batch_of_id, lifted.batch_exempt) == (None, True)
    assert lifted.changes[-1].source == "supervisor:boss"
    rate(store, "13800000001", at=T0 + timedelta(hours=3))  # a third rating flags itself, not the lifted one
    assert rating(store, second).batch_of_id is None
    assert counts(store)["P"] == 2
    with store.sessions.begin() as session, pytest.raises(BatchRuleError, match="未被计为批量评价"):
        lift_batch_flag(session, rating(store, second).id, T0, "supervisor:boss")


def test_the_rule_can_be_switched_off(engine, rules: Rules) -> None:
    store = RatingStore(engine, with_batch(rules, enabled=False))
    rate(store, "13800000001")
    rate(store, "13800000001", at=T0 + timedelta(minutes=1))
    assert counts(store)["P"] == 2


def test_a_long_blocking_reason_is_cut_to_fit_the_rating_and_its_task(store: RatingStore) -> None:
    """The list takes 256 characters of reason; with its prefix the 差评's task once overflowed its column."""
    with store.sessions.begin() as session:
        block_number(session, "13900000008", "恶" * 256, T0, "supervisor:boss")
    uid = rate(store, "13900000008", "very_dissatisfied")
    found = rating(store, uid)
    with store.sessions() as session:
        task = session.scalars(select(CallbackTask).where(CallbackTask.rating_id == found.id)).one()
    expected = ("号码在恶意评价名单中：" + "恶" * 256)[:256]
    assert found.not_adopted_reason == expected and len(expected) == 256
    assert task.state == "not_dialled" and task.state_reason == ("评价未采纳：" + expected)[:256]


def test_a_malicious_raters_ratings_are_stored_not_adopted_and_not_counted(store: RatingStore) -> None:
    with store.sessions.begin() as session:
        block_number(session, "13900000009", "多次恶意差评", T0, "supervisor:boss")
    uid = rate(store, "13900000009", "very_dissatisfied")
    praise = rate(store, "13900000009", "very_satisfied", at=T0 + timedelta(days=2))
    found = rating(store, uid)
    assert (found.is_adopted, found.not_adopted_reason) == (False, "号码在恶意评价名单中：多次恶意差评")
    assert rating(store, praise).is_adopted is False
    # Figures count adopted ratings only: the 差评 shows as invalid (B), the praise nowhere.
    assert {k: counts(store)[k] for k in ("A", "M", "P", "I", "D", "T", "B")} == {
        "A": 2, "M": 0, "P": 0, "I": 0, "D": 1, "T": 0, "B": 1}


def test_the_batch_window_must_be_calendar_time() -> None:
    with pytest.raises(ValueError, match="working days"):
        Lifecycle.model_validate({"batch": {"enabled": True, "more_than": 1,
                                            "within": {"amount": 1, "unit": "working_days"}}})


def test_the_second_rating_table_must_be_complete() -> None:
    with pytest.raises(ValueError, match="missing"):
        Lifecycle.model_validate({"second_rating": {"dtmf": {"dtmf": "update"}}})
