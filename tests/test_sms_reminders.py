"""The 补充评价 SMS through a gateway over real HTTP: one per call, retried when it surely did not go,
never sent twice, quiet hours and the per-number limit kept (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from delivery.sms import PassResult, SmsSettings, read_answer, send_due
from rating_core.events.call_events import CallEnded, CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.ratings.supplementary import link_token
from rating_core.rules.rulebook import Rules
from rating_core.store.models import Call, SmsReminder
from simulators.sms_gateway import SimulatedSmsGateway

CST = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday morning
DUE = T0 + timedelta(minutes=11)  # past the 10-minute delay
SECRET = "test-link-secret"
TOKEN = "gateway-token"
_ids = iter(range(10**6))


def policy(rules: Rules, *, dedup: bool = False, **changes) -> Rules:
    """The shipped rules with a quicker gateway timeout and the given reminder settings."""
    supplementary = rules.lifecycle.supplementary
    gateway = supplementary.reminder.gateway.model_copy(update={"timeout_seconds": 0.5,
                                                                 "deduplicates_request_id": dedup})
    reminder = supplementary.reminder.model_copy(update={"gateway": gateway, **changes})
    lifecycle = rules.lifecycle.model_copy(
        update={"supplementary": supplementary.model_copy(update={"reminder": reminder})})
    return rules.model_copy(update={"lifecycle": lifecycle})


@pytest.fixture
def gateway() -> Iterator[SimulatedSmsGateway]:
    with SimulatedSmsGateway(token=TOKEN, slow_seconds=1.5) as running:
        yield running


@pytest.fixture
def settings(gateway: SimulatedSmsGateway) -> SmsSettings:
    return SmsSettings(url=gateway.url, token=TOKEN, public_url="https://pj.12345.example.gov.cn", secret=SECRET)


def unrated(store: RatingStore, number: str = "13812345678", at: datetime = T0) -> str:
    uid = f"1795500000.{next(_ids)}"
    store.apply([CallStarted(uniqueid=uid, hotline="12345", at=at, caller_number=number),
                 CallEnded(uid, "no_input", at + timedelta(seconds=30))])
    return uid


def row(store: RatingStore, uid: str) -> SmsReminder:
    with store.sessions() as session:
        return session.scalars(select(SmsReminder).join(Call).where(Call.uniqueid == uid)).one()


def run(store: RatingStore, rules: Rules, settings: SmsSettings | None, now: datetime) -> PassResult:
    with httpx.Client() as client:
        return send_due(store.sessions, rules, client, settings, now)


def test_one_sms_with_the_signed_link_goes_out_and_is_recorded(store, rules, gateway, settings) -> None:
    uid = unrated(store)
    assert run(store, rules, settings, DUE - timedelta(minutes=2)).sent == 0  # not due yet
    assert run(store, rules, settings, DUE).sent == 1
    sent = row(store, uid)
    assert (sent.status, sent.attempts, sent.gateway_message_id) == ("sent", 1, "biz-1")
    [request] = gateway.requests
    link = f"https://pj.12345.example.gov.cn/r/{link_token(sent.code, SECRET)}"
    assert request == {"phone": "13812345678", "out_id": f"sms-{sent.id}", "content":
                       f"【12345政务服务便民热线】您11月20日的来电尚未评价，可在11月27日前点击 {link} 评价，谢谢。"}
    assert len(request["content"]) <= 140  # two SMS segments at most, link included
    assert run(store, rules, settings, DUE + timedelta(hours=1)) == PassResult()  # never a second one
    assert len(gateway.requests) == 1


def test_a_gateway_error_is_retried_with_the_same_request_id(store, rules, gateway, settings) -> None:
    uid = unrated(store)
    gateway.script = ["error500"]
    assert run(store, rules, settings, DUE).retrying == 1
    waiting = row(store, uid)
    assert (waiting.status, waiting.last_error) == ("pending", "HTTP 500")
    assert waiting.next_attempt_at == DUE + timedelta(seconds=60)
    assert run(store, rules, settings, DUE + timedelta(seconds=30)).sent == 0
    assert run(store, rules, settings, DUE + timedelta(seconds=60)).sent == 1
    assert [r["out_id"] for r in gateway.requests] == [f"sms-{waiting.id}"] * 2
    assert len(gateway.delivered_to("13812345678")) == 1


def test_a_timeout_after_the_gateway_took_it_is_never_resent(store, rules, gateway, settings, caplog) -> None:
    rules = policy(rules)
    uid = unrated(store)
    gateway.script = ["slow"]
    caplog.set_level(logging.WARNING, "delivery.sms")
    assert run(store, rules, settings, DUE).unknown == 1
    lost = row(store, uid)
    assert lost.status == "unknown" and "ReadTimeout" in lost.last_error
    assert "不再重发" in lost.status_reason
    assert f"SMS reminder {lost.id} for call {uid} to 138****5678" in caplog.text  # masked in the log
    run(store, rules, settings, DUE + timedelta(days=1))
    assert len(gateway.requests) == 1 and len(gateway.delivered_to("13812345678")) == 1


def test_a_deduplicating_gateway_gets_the_retry_and_sends_once(store, rules, settings) -> None:
    with SimulatedSmsGateway(token=TOKEN, deduplicates=True, slow_seconds=1.5) as gateway:
        settings = SmsSettings(gateway.url, TOKEN, settings.public_url, SECRET)
        rules = policy(rules, dedup=True)
        uid = unrated(store)
        gateway.script = ["slow", "garbage"]
        assert run(store, rules, settings, DUE).retrying == 1
        assert run(store, rules, settings, DUE + timedelta(minutes=1)).retrying == 1
        assert run(store, rules, settings, DUE + timedelta(minutes=10)).sent == 1
        assert len(gateway.requests) == 3 and len({r["out_id"] for r in gateway.requests}) == 1
        assert len(gateway.delivered_to("13812345678")) == 1
        assert row(store, uid).status == "sent"


@pytest.mark.parametrize(("behaviour", "status", "reason"), [
    ("garbage", "unknown", "网关未确认"),
    ("refuse", "failed", "短信网关拒绝发送"),
    ("bad_request", "failed", "短信网关拒绝发送"),
])
def test_garbage_and_refusals_end_the_reminder_without_a_resend(store, rules, gateway, settings, behaviour, status,
                                                                reason) -> None:
    uid = unrated(store)
    gateway.script = [behaviour]
    run(store, rules, settings, DUE)
    run(store, rules, settings, DUE + timedelta(hours=2))
    ended = row(store, uid)
    assert (ended.status, ended.next_attempt_at) == (status, None) and reason in ended.status_reason
    assert len(gateway.requests) == 1


def test_a_gateway_that_is_down_is_retried_then_given_up(store, rules) -> None:
    down = SmsSettings("http://127.0.0.1:9/sms/send", None, "https://pj.example", SECRET)  # nothing listens
    rules = policy(rules, max_attempts=2)
    uid = unrated(store)
    assert run(store, rules, down, DUE).retrying == 1
    assert "ConnectError" in row(store, uid).last_error
    assert run(store, rules, down, DUE + timedelta(hours=1)).failed == 1
    gave_up = row(store, uid)
    assert (gave_up.status, gave_up.attempts, gave_up.status_reason) == ("failed", 2, "2次发送均未成功")


def test_quiet_hours_hold_the_sms_until_morning(store, rules, gateway, settings) -> None:
    uid = unrated(store, at=datetime(2026, 11, 20, 20, 55, tzinfo=CST))  # due at 21:05, inside 21:00–08:00
    assert row(store, uid).next_attempt_at == datetime(2026, 11, 21, 8, 0, tzinfo=CST)
    # A retry that would fall in the quiet hours waits for the morning too.
    early = unrated(store, number="13700000000", at=datetime(2026, 11, 20, 20, 40, tzinfo=CST))
    gateway.script = ["error500"]
    run(store, rules, settings, datetime(2026, 11, 20, 20, 59, 30, tzinfo=CST))
    assert row(store, early).next_attempt_at == datetime(2026, 11, 21, 8, 0, tzinfo=CST)
    assert run(store, rules, settings, datetime(2026, 11, 21, 7, 59, tzinfo=CST)) == PassResult()
    assert run(store, rules, settings, datetime(2026, 11, 21, 8, 0, tzinfo=CST)).sent == 2


def test_the_per_number_limit_skips_further_sms(store, rules, gateway, settings) -> None:
    first, second, third = (unrated(store, at=T0 + timedelta(minutes=n)) for n in range(3))
    result = run(store, rules, settings, DUE + timedelta(minutes=5))
    assert (result.sent, result.skipped) == (2, 1)  # the shipped limit: 2 a day per number
    assert row(store, third).status_reason == "同一号码1天内已发送2条短信，达到上限"
    later = unrated(store, at=T0 + timedelta(days=1, minutes=30))
    assert run(store, rules, settings, T0 + timedelta(days=1, hours=1)).sent == 1
    assert {row(store, uid).status for uid in (first, second, later)} == {"sent"}


def test_a_call_rated_before_the_sms_is_not_reminded(store, rules, gateway, settings) -> None:
    uid = unrated(store)
    store.apply([RatingGiven(uid, "satisfied", "dtmf", T0 + timedelta(minutes=1))])  # a late journal replay
    assert run(store, rules, settings, DUE).skipped == 1
    assert row(store, uid).status_reason == "已评价，无需提醒" and gateway.requests == []


def test_a_sender_that_died_mid_request_never_sends_again(store, rules, gateway, settings) -> None:
    uid = unrated(store)
    with store.sessions.begin() as session:
        stuck = session.scalars(select(SmsReminder)).one()
        stuck.status, stuck.attempts, stuck.claimed_at, stuck.lease_until = (
            "sending", 1, DUE, DUE + timedelta(seconds=40))
    assert run(store, rules, settings, DUE + timedelta(seconds=30)) == PassResult()  # the lease still holds
    assert run(store, rules, settings, DUE + timedelta(minutes=1)).unknown == 1
    assert row(store, uid).status == "unknown" and gateway.requests == []


def test_without_a_configured_gateway_nothing_is_sent_and_it_says_so(store, rules, caplog) -> None:
    uid = unrated(store)
    assert run(store, rules, None, DUE) == PassResult()
    assert "HOTLINE_EVAL_SMS_URL" in caplog.text and row(store, uid).status == "pending"


@pytest.mark.parametrize(("status", "body", "kind"), [
    (200, b'{"code": "OK", "biz_id": "9"}', "sent"),
    (200, b'{"code": "isv.BUSINESS_LIMIT_CONTROL"}', "failed"),
    (200, b'{"result": "OK"}', "unknown"),
    (200, b'["OK"]', "unknown"),
    (200, b"\xff\xfe", "unknown"),
    (202, b"", "unknown"),
    (301, b"", "unknown"),
    (401, b'{"code": "Unauthorized"}', "failed"),
    (429, b"", "retry"),
    (503, b"", "retry"),
    (504, b"", "unknown"),
])
def test_every_gateway_answer_is_read_one_way(rules, status: int, body: bytes, kind: str) -> None:
    answer = read_answer(rules.lifecycle.supplementary.reminder.gateway, status, body)
    assert answer.kind == kind
    assert (answer.message_id == "9") == (kind == "sent")
