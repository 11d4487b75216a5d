"""补充评价: the reminder planned when a call ends unrated, the window, the signed link, the rating it gives,
and one call, one rating (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from rating_core.events.call_events import CallEnded, CallStarted, RatingGiven, to_record
from rating_core.events.dead_letters import DeadLetters
from rating_core.events.journal import Position, parse
from rating_core.ratings.intake import RatingRefused
from rating_core.ratings.lifecycle import default_unrated
from rating_core.ratings.store import RatingStore
from rating_core.ratings.supplementary import (
    LinkRefused,
    SupplementaryRefused,
    link_token,
    outside_quiet_hours,
    window_end,
)
from rating_core.ratings.supplementary_rating import give_supplementary, rating_page
from rating_core.rules.callback_policy import Duration
from rating_core.rules.lifecycle_policy import QuietHours
from rating_core.rules.rulebook import Rules
from rating_core.rules.working_days import WorkingCalendar
from rating_core.store.models import BlockedNumber, Call, CallbackTask, OutboxEvent, Rating, SmsReminder

CST = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday
SECRET = "test-link-secret"
NUMBER = "13812345678"
_ids = iter(range(10**6))


def ended_unrated(store: RatingStore, *, number: str | None = NUMBER, at: datetime = T0) -> str:
    uid = f"1795400000.{next(_ids)}"
    store.apply([CallStarted(uniqueid=uid, hotline="12345", at=at, caller_number=number, agent_id="1024"),
                 CallEnded(uid, "no_input", at + timedelta(seconds=30), progress="menu", menu_plays=2)])
    return uid


def reminder(store: RatingStore, uid: str) -> SmsReminder | None:
    with store.sessions() as session:
        return session.scalars(select(SmsReminder).join(Call).where(Call.uniqueid == uid)).one_or_none()


def sent_link(store: RatingStore, uid: str) -> str:
    """The reminder as the sender leaves it after the gateway accepted it; its link's token."""
    with store.sessions.begin() as session:
        row = session.scalars(select(SmsReminder).join(Call).where(Call.uniqueid == uid)).one()
        row.status, row.sent_at = "sent", row.next_attempt_at
        return link_token(row.code, SECRET)


def rating_of(store: RatingStore, uid: str) -> Rating | None:
    with store.sessions() as session:
        found = session.scalars(select(Rating).join(Call).where(Call.uniqueid == uid)).one_or_none()
        if found is not None:
            found.changes, found.callback_task  # load while open
        return found


def give(store: RatingStore, rules: Rules, token: str, level: str, tags=(), text: str = "",
         now: datetime = T0 + timedelta(hours=2)) -> Rating:
    with store.sessions.begin() as session:
        return give_supplementary(session, rules, token, SECRET, level, list(tags), text, now)


# --- the window and quiet hours (pure) ---

@pytest.mark.parametrize(("called", "closes"), [
    # Friday: the next five working days are Mon–Fri; the link works to the end of Friday.
    ("2026-11-20T09:30", "2026-11-28T00:00"),
    # A Saturday call counts from Monday too.
    ("2026-11-21T10:00", "2026-11-28T00:00"),
    # National Day 2026: Oct 1–7 off, Saturday Oct 10 a 调休 working day.
    ("2026-09-30T15:00", "2026-10-14T00:00"),
])
def test_the_window_is_five_working_days_after_the_day_of_the_call(called: str, closes: str) -> None:
    start = datetime.fromisoformat(called).replace(tzinfo=CST)
    end = window_end(start, Duration(amount=5, unit="working_days"), WorkingCalendar(), CST)
    assert end == datetime.fromisoformat(closes).replace(tzinfo=CST)


def test_a_calendar_override_moves_the_window() -> None:
    start = datetime(2026, 11, 20, 9, 30, tzinfo=CST)
    calendar = WorkingCalendar({datetime(2026, 11, 23).date(): False})  # a local holiday on Monday
    end = window_end(start, Duration(amount=5, unit="working_days"), calendar, CST)
    assert end == datetime(2026, 12, 1, tzinfo=CST)


@pytest.mark.parametrize(("clock", "sent_at"), [
    ("2026-11-20T12:00", "2026-11-20T12:00"),
    ("2026-11-20T21:00", "2026-11-21T08:00"),
    ("2026-11-20T23:59", "2026-11-21T08:00"),
    ("2026-11-21T07:59", "2026-11-21T08:00"),
    ("2026-11-21T08:00", "2026-11-21T08:00"),
])
def test_quiet_hours_wrap_midnight(clock: str, sent_at: str) -> None:
    quiet = QuietHours(start="21:00", end="08:00")
    moment = datetime.fromisoformat(clock).replace(tzinfo=CST)
    assert outside_quiet_hours(moment, quiet, CST) == datetime.fromisoformat(sent_at).replace(tzinfo=CST)


# --- planning: one reminder per unrated call, in the call's own transaction ---

def test_a_call_that_ends_unrated_plans_one_reminder(store: RatingStore) -> None:
    uid = ended_unrated(store)
    row = reminder(store, uid)
    assert (row.status, row.number, row.attempts) == ("pending", NUMBER, 0)
    assert row.next_attempt_at == T0 + timedelta(seconds=30, minutes=10)  # the configured delay
    assert row.expires_at == datetime(2026, 11, 28, tzinfo=CST)
    store.apply([CallEnded(uid, "no_input", T0 + timedelta(minutes=1))])  # a replayed end plans nothing more
    with store.sessions() as session:
        assert len(session.scalars(select(SmsReminder)).all()) == 1


def test_rated_calls_and_calls_without_a_number_plan_nothing(store: RatingStore) -> None:
    store.apply([CallStarted(uniqueid="r.1", hotline="12345", at=T0, caller_number=NUMBER),
                 RatingGiven("r.1", "satisfied", "dtmf", T0), CallEnded("r.1", "completed", T0)])
    no_number = ended_unrated(store, number=None)
    assert reminder(store, "r.1") is None and reminder(store, no_number) is None


def test_landlines_and_blocked_numbers_are_recorded_as_skipped(store: RatingStore) -> None:
    with store.sessions.begin() as session:
        session.add(BlockedNumber(number="13900000000", reason="多次恶意评价", added_by="boss", added_at=T0))
    landline = reminder(store, ended_unrated(store, number="053188886666"))
    blocked = reminder(store, ended_unrated(store, number="13900000000"))
    assert (landline.status, landline.status_reason) == ("skipped", "非手机号码，无法发送短信")
    assert blocked.status == "skipped" and "恶意评价名单" in blocked.status_reason


# --- the link and the rating it gives ---

def test_a_supplementary_差评_lands_once_as_主动评价_and_starts_the_callback(store: RatingStore, rules: Rules) -> None:
    uid = ended_unrated(store)
    token = sent_link(store, uid)
    with store.sessions() as session:
        page = rating_page(session, store.rules, token, SECRET, T0 + timedelta(hours=1))
    assert (page.masked_number, page.called, page.last_day) == ("138****5678", "11月20日 09:30", "11月27日")
    give(store, rules, token, "dissatisfied", tags=["attitude", "unresolved"], text="接线员态度冷淡")
    given = rating_of(store, uid)
    assert ((given.level, given.channel, given.is_active, given.is_negative)
            == ("dissatisfied", "supplementary", True, True))
    assert given.reason_tags == ["attitude", "unresolved"] and given.reason_text == "接线员态度冷淡"
    assert given.callback_task is not None and given.callback_task.state == "pending"
    assert given.changes[0].source == "sms"
    with pytest.raises(LinkRefused, match="已使用") as refused:
        give(store, rules, token, "satisfied")
    assert refused.value.gone
    with store.sessions() as session:
        # As from the IVR: the rating, then its reason (nothing from the refused second try).
        assert session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)).all() == [
            "rating.created", "rating.updated"]
        assert len(session.scalars(select(Rating)).all()) == 1
        assert reminder(store, uid).used_at == T0 + timedelta(hours=2)


@pytest.mark.parametrize(("level", "tags", "text", "message"), [
    ("excellent", [], "", "请选择1至5星"),
    ("", [], "", "请选择1至5星"),
    ("very_dissatisfied", [], "", "请选择不满意的原因"),
    ("dissatisfied", ["no_such_tag"], "", "所选原因不存在"),
    ("satisfied", [], "好" * 501, "不要超过500字"),
])
def test_bad_answers_are_refused_and_nothing_is_half_saved(store: RatingStore, rules: Rules, level, tags, text,
                                                           message) -> None:
    uid = ended_unrated(store)
    token = sent_link(store, uid)
    with pytest.raises(SupplementaryRefused, match=message) as refused:
        give(store, rules, token, level, tags, text)
    assert not isinstance(refused.value, LinkRefused)  # the page shows the form again with the message
    assert rating_of(store, uid) is None and reminder(store, uid).used_at is None
    give(store, rules, token, "satisfied")  # the link still works for a proper answer
    assert rating_of(store, uid).level == "satisfied"


def test_forged_tampered_and_unknown_links_are_refused(store: RatingStore, rules: Rules) -> None:
    token = sent_link(store, ended_unrated(store))
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    other_code = ("x" if token[0] != "x" else "y") + token[1:]
    unknown = link_token("AAAAAAAA", SECRET)
    for bad, message in [(tampered, "链接无效"), (other_code, "链接无效"), (unknown, "链接无效"),
                         (link_token(token[:8], "another-secret"), "链接无效"), ("short", "链接不完整"),
                         (token + "x", "链接不完整"), ("../../etc/passwd", "链接不完整")]:
        with pytest.raises(LinkRefused, match=message) as refused:
            give(store, rules, bad, "satisfied")
        assert not refused.value.gone
    with store.sessions() as session:
        assert session.scalars(select(Rating)).all() == []


def test_an_expired_link_is_refused_at_the_window_end(store: RatingStore, rules: Rules) -> None:
    token = sent_link(store, ended_unrated(store))
    closes = datetime(2026, 11, 28, tzinfo=CST)
    with pytest.raises(LinkRefused, match="补充评价已于11月27日截止") as refused:
        give(store, rules, token, "satisfied", now=closes)
    assert refused.value.gone
    assert give(store, rules, token, "satisfied", now=closes - timedelta(seconds=1)).level == "satisfied"


def test_a_link_whose_sms_never_went_does_not_work(store: RatingStore, rules: Rules) -> None:
    uid = ended_unrated(store)
    with store.sessions() as session:
        code = session.scalars(select(SmsReminder.code)).one()
    with pytest.raises(LinkRefused, match="链接无效"):
        give(store, rules, link_token(code, SECRET), "satisfied")
    assert rating_of(store, uid) is None


# --- one call, one rating ---

def test_a_supplementary_rating_replaces_the_default_with_history(store: RatingStore, rules: Rules) -> None:
    # Around a holiday the 7-day default can come before the 5 working days are over.
    uid = ended_unrated(store, at=datetime(2026, 9, 30, 15, 0, tzinfo=CST))
    token = sent_link(store, uid)
    with store.sessions.begin() as session:
        assert default_unrated(session, rules, datetime(2026, 10, 8, tzinfo=CST)) == 1
    assert rating_of(store, uid).channel == "default"
    give(store, rules, token, "very_dissatisfied", tags=["inefficient"], now=datetime(2026, 10, 12, 10, tzinfo=CST))
    given = rating_of(store, uid)
    assert (given.channel, given.is_active, given.level) == ("supplementary", True, "very_dissatisfied")
    assert [change.source for change in given.changes] == ["lifecycle", "sms", "sms"]
    assert given.changes[1].changes["channel"] == ["default", "supplementary"]
    assert given.callback_task is not None  # a 差评 by link starts the loop like any other
    with store.sessions() as session:
        assert session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)).all() == [
            "rating.defaulted", "rating.updated", "rating.updated"]


def test_a_call_rated_meanwhile_refuses_the_link_and_the_rating_stays(store: RatingStore, rules: Rules) -> None:
    uid = ended_unrated(store)
    token = sent_link(store, uid)
    store.apply([RatingGiven(uid, "very_satisfied", "dtmf", T0)])  # e.g. replayed from the IVR's journal
    with pytest.raises(LinkRefused, match="该次来电已评价"):
        give(store, rules, token, "very_dissatisfied", tags=["attitude"])
    assert rating_of(store, uid).level == "very_satisfied"


def test_the_rules_table_refuses_a_second_rating_by_channel(store: RatingStore) -> None:
    store.apply([CallStarted(uniqueid="s.1", hotline="12345", at=T0, caller_number=NUMBER),
                 RatingGiven("s.1", "satisfied", "supplementary", T0, source="sms")])
    for channel in ("dtmf", "speech", "supplementary", "default"):
        with pytest.raises(RatingRefused, match="already rated"):
            store.apply([RatingGiven("s.1", "very_dissatisfied", channel, T0 + timedelta(hours=1))])
    store.apply([CallStarted(uniqueid="s.2", hotline="12345", at=T0, caller_number="13700000000"),
                 RatingGiven("s.2", "satisfied", "speech", T0),
                 RatingGiven("s.2", "basic", "dtmf", T0 + timedelta(seconds=5))])  # the IVR's own update
    assert rating_of(store, "s.1").level == "satisfied"
    assert [c.source for c in rating_of(store, "s.2").changes] == ["ivr", "ivr"]
    with store.sessions() as session:
        assert session.scalars(select(CallbackTask)).all() == []


def test_a_refused_event_in_a_journal_becomes_a_dead_letter_not_kept_forever(store: RatingStore, tmp_path) -> None:
    """An IVR rating journaled before the SMS rating but applied after it is refused by the rules: kept
    aside with why, and the stream moves on past it."""
    store.apply([CallStarted(uniqueid="p.1", hotline="12345", at=T0, caller_number=NUMBER),
                 RatingGiven("p.1", "satisfied", "supplementary", T0, source="sms")])
    late = RatingGiven("p.1", "very_dissatisfied", "dtmf", T0 - timedelta(days=1))
    letters = DeadLetters(tmp_path)
    entry = parse(Position(1, 1), json.dumps(to_record(late)))
    assert store.apply_journaled("journal-test", [entry], letters.add, set()) == 0
    assert rating_of(store, "p.1").level == "satisfied"
    [letter] = letters.all()
    assert "already rated" in letter.reason and letter.record == to_record(late)
    assert store.apply_journaled("journal-test", [entry], letters.add, set()) == 0  # passed: not refused twice
    assert len(letters.all()) == 1


def test_times_are_kept_in_utc_and_shown_in_the_hotline_zone(store: RatingStore) -> None:
    uid = ended_unrated(store, at=datetime(2026, 11, 20, 23, 30, tzinfo=timezone.utc))  # 07:30 on the 21st in CST
    row = reminder(store, uid)
    assert row.next_attempt_at == datetime(2026, 11, 21, 8, 0, tzinfo=CST)  # after the quiet hours
    assert row.expires_at == datetime(2026, 11, 28, tzinfo=CST)
