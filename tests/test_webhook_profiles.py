"""Delivery in each endpoint's profile: what is sent, what is held and why, what goes once fixed, what is not
sent twice, and the same bodies pulled from the API.

The receiver is an ``httpx.MockTransport`` that keeps every request; time moves by the ``now`` given to each
pass. The bodies themselves are the golden files' business (``tests/test_profiles.py``); here it is the
delivery around them.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from delivery.webhooks import HOLD_RECHECK, PassResult, deliver_pass
from rating_core.events.call_events import CallStarted, RatingGiven, ReasonGiven, VoiceMessageRecorded
from rating_core.outbox.profile import PROFILES_DIR, load_profile
from rating_core.outbox.render import RenderContext, render_context, validate
from rating_core.outbox.webhook_endpoints import add_endpoint, new_secret, replay, set_profile
from rating_core.ratings.inbound import apply_inbound
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.store.models import OutboxEvent, Rating, WebhookDelivery

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=timezone.utc)  # 09:30 in Beijing
REGION, DEPARTMENT, SOURCE = "330102", "11330102MB1957806X", "12345"
_ids = iter(range(10**6))


@dataclass
class Platform:
    """Every request the endpoints got, by host."""

    requests: list[httpx.Request] = field(default_factory=list)

    def bodies(self, host: str) -> list[dict]:
        return [json.loads(request.content) for request in self.requests if request.url.host == host]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200)


@pytest.fixture
def platform() -> Platform:
    return Platform()


@pytest.fixture
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(platform.handle)) as client:
        yield client


def context(rules: Rules, **codes: str | None) -> RenderContext:
    given = {"region_code": REGION, "department_code": DEPARTMENT, "data_source_code": SOURCE} | codes
    return render_context(rules, **given)


def subscribe(store: RatingStore, host: str, profile: str, events: list[str] | None = None,
              secret: str | None = None) -> int:
    with store.sessions.begin() as session:
        return add_endpoint(session, f"https://{host}/hooks", events or ["*"], T0, profile=profile, secret=secret).id


def call(store: RatingStore, level: str = "satisfied", case_number: str | None = "GD20261120000123") -> str:
    uid = f"1795316400.{next(_ids)}"
    store.apply([CallStarted(uniqueid=uid, hotline="12345", at=T0, caller_number="13800000000", agent_id="1024",
                             queue="社保咨询", case_number=case_number, unit="市人社局"),
                 RatingGiven(uid, level, "dtmf", T0 + timedelta(seconds=5))])
    return uid


def run(store: RatingStore, client: httpx.Client, at: datetime, rules: Rules, **codes: str | None) -> PassResult:
    return deliver_pass(store.sessions, client, now=at, rng=random.Random(1), context=context(rules, **codes))


def statuses(store: RatingStore, endpoint_id: int) -> list[tuple[str, str]]:
    with store.sessions() as session:
        return [(event_type, status) for event_type, status in session.execute(
            select(OutboxEvent.type, WebhookDelivery.status).join(WebhookDelivery.event)
            .where(WebhookDelivery.endpoint_id == endpoint_id).order_by(OutboxEvent.id))]


def test_an_endpoint_gets_its_profile_s_body_signed_in_the_profile_s_order(store: RatingStore, rules: Rules,
                                                                          platform: Platform,
                                                                          client: httpx.Client) -> None:
    secret = new_secret()
    subscribe(store, "national.example", "gbt39046", secret=secret)
    subscribe(store, "ours.example", "native")
    call(store, "very_satisfied")
    result = run(store, client, T0 + timedelta(minutes=1), rules)
    assert result.delivered == 2 and result.held == 0
    [national] = [request for request in platform.requests if request.url.host == "national.example"]
    body = json.loads(national.content)
    profile = load_profile("gbt39046")
    assert profile.mapping is not None
    assert list(body) == [spec.key for spec in profile.mapping.fields if spec.key in body]  # the profile's order
    assert body["办件编号"] == "GD20261120000123" and body["满意度代码"] == "1" and body["评价渠道"] == "电话"
    assert body["行政区划"] == REGION and body["评价时间"] == "20261120T093005"  # Beijing time, the standard's form
    with store.sessions() as session:
        assert body["评价编号"] == session.scalars(select(Rating.public_id)).one()
    assert validate(profile, body) == []
    stamp = datetime.fromtimestamp(int(national.headers["webhook-timestamp"]), tz=timezone.utc)
    expected = Webhook(secret).sign(national.headers["webhook-id"], stamp, national.content.decode())
    assert national.headers["webhook-signature"] == expected  # the rendered text is what is signed
    [native] = platform.bodies("ours.example")
    assert native["rating"]["level"] == "very_satisfied" and native["schema_version"] == "1.0"  # unchanged


def test_a_rating_without_its_case_number_is_held_then_sent_in_order_once_the_number_arrives(
        store: RatingStore, rules: Rules, platform: Platform, client: httpx.Client) -> None:
    endpoint = subscribe(store, "national.example", "gbt39046")
    uid = call(store, "very_dissatisfied", case_number=None)
    store.apply([ReasonGiven(uid, ("attitude",), T0 + timedelta(seconds=9))])
    first = run(store, client, T0 + timedelta(minutes=1), rules)
    assert (first.delivered, first.held) == (0, 1)
    # The created event is held with the reason; the update behind it waits, pending, never sent ahead of it.
    assert statuses(store, endpoint) == [("rating.created", "held"), ("rating.updated", "pending")]
    with store.sessions() as session:
        reasons = session.scalars(select(WebhookDelivery.held_reasons).where(WebhookDelivery.status == "held")).one()
    assert reasons == "缺少必填项“办件编号”（办件编号）：该评价没有工单号"
    assert platform.requests == []
    # Before the recheck nothing moves; the 12345 platform's case record brings the number meanwhile.
    assert run(store, client, T0 + timedelta(minutes=2), rules).held == 0 and platform.requests == []
    with store.sessions.begin() as session:
        apply_inbound(session, "msg_case_1", {"type": "case.record", "records": [
            {"uniqueid": uid, "case_number": "GD20261120000999", "unit": "市人社局"}]}, T0 + timedelta(minutes=3))
    done = run(store, client, T0 + timedelta(minutes=1) + HOLD_RECHECK, rules)
    bodies = platform.bodies("national.example")
    assert [body["办件编号"] for body in bodies] == ["GD20261120000999"] * len(bodies)
    assert bodies[0]["满意度"] == "非常不满意" and bodies[-1]["差评原因"] == "服务态度差"
    # created, then the reason's update; the case record's own update says nothing new: not sent again.
    assert statuses(store, endpoint) == [("rating.created", "delivered"), ("rating.updated", "delivered"),
                                         ("rating.updated", "unchanged")]
    assert (done.delivered, done.unchanged) == (2, 1)


def test_a_missing_setting_holds_and_a_replay_renders_again_at_once(store: RatingStore, rules: Rules,
                                                                    platform: Platform,
                                                                    client: httpx.Client) -> None:
    endpoint = subscribe(store, "zj.example", "zj-example")
    call(store)
    assert run(store, client, T0 + timedelta(minutes=1), rules, department_code=None).held == 1
    with store.sessions() as session:
        held = session.scalars(select(WebhookDelivery)).one()
        assert "未设置 HOTLINE_EVAL_DEPARTMENT_CODE" in (held.held_reasons or "")
        assert held.attempts == 0 and held.first_attempt_at is None  # nothing was sent: no retry window runs
        event_id = held.event.event_id
    # Held for a month, it is still there: a hold never dies.
    assert run(store, client, T0 + timedelta(days=30), rules, department_code=None).dead == 0
    assert statuses(store, endpoint) == [("rating.created", "held")]
    with store.sessions.begin() as session:  # the admin's 重新检查, once the setting is given
        assert replay(session, event_id=event_id, now=T0 + timedelta(days=30, minutes=1)) == 1
    assert run(store, client, T0 + timedelta(days=30, minutes=1), rules).delivered == 1
    [body] = platform.bodies("zj.example")
    assert body["deptCode"] == DEPARTMENT and body["pf"] == "5"


def test_a_hold_warns_once_and_again_only_when_its_reasons_change(store: RatingStore, rules: Rules,
                                                                   platform: Platform, client: httpx.Client,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Thousands held for want of one setting must not repeat a warning each at every recheck."""
    subscribe(store, "zj.example", "zj-example")
    call(store)
    caplog.set_level(logging.DEBUG, logger="delivery.webhooks")

    def logged(at: datetime, **codes: str | None) -> list[tuple[int, str]]:
        caplog.clear()
        run(store, client, at, rules, **codes)
        return [(record.levelno, record.getMessage()) for record in caplog.records
                if record.name == "delivery.webhooks"]

    [(level, line)] = logged(T0 + timedelta(minutes=1), department_code=None)
    assert level == logging.WARNING and "\n" not in line
    assert "(rating.created) to https://zj.example/hooks held (profile zj-example)" in line
    assert line.endswith("缺少必填项“部门统一社会信用代码”（deptCode）：未设置 HOTLINE_EVAL_DEPARTMENT_CODE")
    # The recheck finds the same reason: said for whoever runs with -v, not warned again.
    recheck = T0 + timedelta(minutes=1) + HOLD_RECHECK
    assert logged(recheck, department_code=None) == [(logging.DEBUG, line)]
    # Another reason joins it: that is news, and the warning names both.
    [(level, changed)] = logged(recheck + HOLD_RECHECK, department_code=None, region_code=None)
    assert level == logging.WARNING and "HOTLINE_EVAL_DEPARTMENT_CODE" in changed
    assert "HOTLINE_EVAL_REGION_CODE" in changed
    # Released once the settings are given: it goes, and the release logs what it always did (nothing).
    assert logged(recheck + 2 * HOLD_RECHECK) == []
    assert [body["deptCode"] for body in platform.bodies("zj.example")] == [DEPARTMENT]


def test_a_voice_message_goes_to_native_but_is_not_sent_twice_in_a_profile_without_it(
        store: RatingStore, rules: Rules, platform: Platform, client: httpx.Client) -> None:
    national = subscribe(store, "national.example", "gbt39046")
    ours = subscribe(store, "ours.example", "native")
    uid = call(store, "dissatisfied")
    store.apply([VoiceMessageRecorded(uid, "/var/spool/asterisk/hotline-eval/12345/m.wav", 6.0,
                                      T0 + timedelta(seconds=20))])
    run(store, client, T0 + timedelta(minutes=1), rules)
    # The native endpoint hears of the voice message; the national one already has what its body says.
    assert statuses(store, ours) == [("rating.created", "delivered"), ("rating.updated", "delivered")]
    assert "voice_message_file" in platform.bodies("ours.example")[1]["data"]["fields"]
    assert statuses(store, national) == [("rating.created", "delivered"), ("rating.updated", "unchanged")]
    assert len(platform.bodies("national.example")) == 1


def test_callback_attempts_are_not_fanned_out_to_a_profile_that_does_not_send_them(
        store: RatingStore, rules: Rules, client: httpx.Client) -> None:
    from rating_core.complaints.callback_tasks import claim_attempt, record_outcome, request_attempt

    national = subscribe(store, "national.example", "gbt39046")
    ours = subscribe(store, "ours.example", "native")
    call(store, "very_dissatisfied")
    at = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
    with store.sessions.begin() as session:
        task = session.scalars(select(Rating)).one().callback_task
        assert task is not None
        attempt_id = request_attempt(session, rules.callback, task.id, at, "test").attempt_id
        assert attempt_id is not None
        claim_attempt(session, attempt_id, at, "PJSIP/13800000000@trunk")
        record_outcome(session, rules.callback, attempt_id, "no_answer", at + timedelta(minutes=1), "test")
    run(store, client, at + timedelta(minutes=2), rules)
    assert "callback.attempt" in [event_type for event_type, _ in statuses(store, ours)]
    assert "callback.attempt" not in [event_type for event_type, _ in statuses(store, national)]


def test_a_broken_profile_file_holds_and_a_mended_one_sends(store: RatingStore, rules: Rules, platform: Platform,
                                                            client: httpx.Client, tmp_path: Path) -> None:
    for suffix in (".yaml", ".schema.json"):
        shutil.copy(PROFILES_DIR / f"gbt39046{suffix}", tmp_path / f"gbt39046{suffix}")
    profile_file = tmp_path / "gbt39046.yaml"
    endpoint = subscribe(store, "province.example", str(profile_file))
    call(store)
    good = profile_file.read_text(encoding="utf-8")
    profile_file.write_text(good.replace("fields:", "fieldz:"), encoding="utf-8")
    assert run(store, client, T0 + timedelta(minutes=1), rules).held == 1
    with store.sessions() as session:
        reasons = session.scalars(select(WebhookDelivery.held_reasons)).one() or ""
    assert reasons.startswith(f"报文格式“{profile_file}”无法加载")
    profile_file.write_text(good, encoding="utf-8")
    assert run(store, client, T0 + timedelta(minutes=1) + HOLD_RECHECK, rules).delivered == 1
    assert statuses(store, endpoint) == [("rating.created", "delivered")]


def test_a_changed_profile_renders_what_still_waits(store: RatingStore, rules: Rules, platform: Platform,
                                                    client: httpx.Client) -> None:
    endpoint = subscribe(store, "national.example", "gbt39046")
    call(store, case_number=None)
    assert run(store, client, T0 + timedelta(minutes=1), rules).held == 1
    with store.sessions.begin() as session:
        set_profile(session, endpoint, "native")
    assert run(store, client, T0 + timedelta(minutes=1) + HOLD_RECHECK, rules).delivered == 1
    [body] = platform.bodies("national.example")
    assert body["type"] == "rating.created" and body["rating"]["case_number"] is None


def test_the_command_line_lists_held_deliveries_with_their_reasons(store: RatingStore, rules: Rules,
                                                                   client: httpx.Client, monkeypatch,
                                                                   tmp_path: Path) -> None:
    from hotline_eval.cli import main

    subscribe(store, "national.example", "gbt39046")
    call(store, case_number=None)
    run(store, client, T0 + timedelta(minutes=1), rules)
    monkeypatch.setenv("DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("HOTLINE_EVAL_HOME", str(tmp_path))
    listed = CliRunner().invoke(main, ["webhooks", "list"])
    assert listed.exit_code == 0, listed.output
    assert "held=1" in listed.output
    assert "held  evt_" in listed.output and "rating.created  endpoint 1  缺少必填项“办件编号”" in listed.output


def test_the_admin_page_lists_held_deliveries_with_their_reasons(web_site, client: httpx.Client,
                                                                 rules: Rules) -> None:
    from web_pages import signed_in

    store = web_site.store
    subscribe(store, "national.example", "gbt39046")
    call(store, case_number=None)
    run(store, client, T0 + timedelta(minutes=1), rules)
    page = signed_in(web_site, "admin").get("/admin/webhooks").get_data(as_text=True)
    held = page.split('id="held"')[1].split("</table>")[0]
    assert "rating.created" in held and "<li>缺少必填项“办件编号”（办件编号）：该评价没有工单号</li>" in held
    assert "重新检查" in held


def test_the_pull_api_gives_bodies_in_a_profile_and_marks_what_is_held(web_site, rules: Rules) -> None:
    store = web_site.store
    client = web_site.app.test_client()
    web_site.app.config["PULL_TOKENS"] = ["pull-token-1"]
    web_site.app.extensions["hotline_render_context"] = context(rules)
    call(store, "basic", case_number=None)
    auth = {"Authorization": "Bearer pull-token-1"}
    native = client.get("/api/events?cursor=0&limit=500", headers=auth).get_json()
    pulled = client.get("/api/events?cursor=0&limit=500&profile=gbt39046", headers=auth)
    assert pulled.status_code == 200
    listed = pulled.get_json()["events"]
    # Every event the national profile sends is there, the fixture's callback attempt is not.
    sent_types = set(load_profile("gbt39046").mapping.events)  # type: ignore[union-attr]
    assert [entry["id"] for entry in listed] == [event["id"] for event in native["events"]
                                                  if event["type"] in sent_types]
    held = [entry for entry in listed if "held" in entry]
    assert held and held[-1]["held"] == ["缺少必填项“办件编号”（办件编号）：该评价没有工单号"]
    assert "body" not in held[-1]
    bodies = [entry["body"] for entry in listed if "body" in entry]
    assert bodies and all(validate(load_profile("gbt39046"), body) == [] for body in bodies)
    assert all(entry["rating_id"] for entry in listed)
    refused = client.get("/api/events?profile=../../etc/passwd.yaml", headers=auth)
    assert refused.status_code == 400 and "profile 须为以下之一" in refused.get_json()["error"]


def test_events_after_an_upheld_appeal_still_say_the_rating_was_malicious(store: RatingStore, rules: Rules,
                                                                          platform: Platform,
                                                                          client: httpx.Client) -> None:
    from rating_core.complaints.appeals import decide_appeal, file_appeal

    subscribe(store, "zj.example", "zj-example")
    ours = subscribe(store, "ours.example", "native")
    uid = call(store, "very_dissatisfied")
    with store.sessions.begin() as session:
        task = session.scalars(select(Rating)).one().callback_task
        assert task is not None
        appeal = file_appeal(session, rules.callback, task.id, "市人社局", "恶意评价", T0 + timedelta(hours=1),
                             "unit:rsj")
        decide_appeal(session, appeal.id, True, "malicious", "多次恶意差评", T0 + timedelta(days=1), "supervisor:boss")
    with store.sessions.begin() as session:  # a later change: the case record's new unit
        apply_inbound(session, "msg_case_2", {"type": "case.record", "records": [
            {"uniqueid": uid, "case_number": "GD20261120000123", "unit": "区人社局"}]}, T0 + timedelta(days=2))
    run(store, client, T0 + timedelta(days=2, minutes=1), rules)
    types = [event_type for event_type, _ in statuses(store, ours)]
    assert types[-1] == "rating.updated" and "appeal.decided" in types
    last = platform.bodies("ours.example")[-1]
    assert last["complaint"]["appeal"] == {"decision": "upheld", "finding": "malicious",
                                           "decided_at": last["complaint"]["appeal"]["decided_at"]}
    assert [body["isMalicious"] for body in platform.bodies("zj.example")][-2:] == ["1", "1"]
