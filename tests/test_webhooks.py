"""Outbound webhooks: the outbox in the change's transaction, and delivery to a real HTTP receiver on loopback.

The receiver fails, times out, answers 410 / 429 / 500, goes down for hours and
comes back; time is moved by passing ``now`` to each pass, and the receiver
checks every signature by recomputing it (``Webhook.verify`` itself also runs,
in the test that sends at the real time, since it checks the clock).
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from delivery import webhooks
from delivery.webhooks import deliver_pass
from rating_core.events.call_events import CallStarted, RatingGiven, ReasonGiven
from rating_core.outbox.webhook_endpoints import EndpointError, add_endpoint, new_secret, replay, rotate_secret
from rating_core.ratings.store import RatingStore
from rating_core.store.models import OutboxEvent, WebhookDelivery, WebhookEndpoint

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=timezone.utc)
_ids = iter(range(10**6))


class Receiver:
    """A webhook receiver on 127.0.0.1: answers from a script, keeps what it accepted, checks signatures."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.script: list[int | str] = []  # per request: a status, or "sleep" (past the client's timeout)
        self.headers: dict[str, str] = {}
        self.accepted: list[dict] = []
        self.seen_ids: list[str] = []
        self.bad_signatures = 0
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                action = receiver.script.pop(0) if receiver.script else 200
                if action == "sleep":
                    threading.Event().wait(1.0)
                    action = 200
                if not receiver.signed(body, self.headers):
                    receiver.bad_signatures += 1
                    action = 400
                self.send_response(int(action))
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if action == 200:
                    receiver.seen_ids.append(self.headers["webhook-id"])
                    receiver.accepted.append(json.loads(body))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def signed(self, body: bytes, headers) -> bool:
        stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=timezone.utc)
        given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ")]
        for secret in self.secrets:
            expected = Webhook(secret).sign(headers["webhook-id"], stamp, body.decode()).split(",", 1)[1]
            if any(hmac.compare_digest(expected, candidate) for candidate in given):
                return True
        return False


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    receiver = Receiver([secret])
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def subscribe(store: RatingStore, url: str, secret: str, events: list[str] | None = None) -> int:
    with store.sessions.begin() as session:
        return add_endpoint(session, url, events or ["*"], T0, profile="native", secret=secret).id


def rate(store: RatingStore, level: str = "very_dissatisfied", tags: tuple[str, ...] = ()) -> str:
    uid = f"1795316400.{next(_ids)}"
    events = [CallStarted(uniqueid=uid, hotline="12345", at=T0, caller_number="13800000000", agent_id="1024",
                          case_number="GD20261120001", unit="市人社局", queue="社保咨询"),
              RatingGiven(uid, level, "dtmf", T0)]
    if tags:
        events.append(ReasonGiven(uid, tags, T0))
    store.apply(events)
    return uid


def run(store: RatingStore, client: httpx.Client, at: datetime) -> webhooks.PassResult:
    return deliver_pass(store.sessions, client, now=at, rng=random.Random(1))


def test_the_outbox_is_written_with_the_change_and_carries_what_platforms_file(store: RatingStore) -> None:
    rate(store, tags=("attitude",))
    with store.sessions() as session:
        events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        assert [e.type for e in events] == ["rating.created", "rating.updated"]
        payload = events[0].payload
    assert payload["schema_version"] == "1.0" and payload["id"].startswith("evt_")
    rating = payload["rating"]
    assert (rating["case_number"], rating["department"], rating["evaluated_staff"], rating["service_item"]) == (
        "GD20261120001", "市人社局", "1024", "社保咨询")
    assert (rating["level"], rating["channel"], rating["default_evaluation"], rating["valid"]) == (
        "very_dissatisfied", "dtmf", False, True)
    assert payload["complaint"]["state"] == "pending"
    assert (rating["heard_text"], rating["heard_confidence"]) == (None, None)  # a key: nothing heard
    # A replayed call event changes nothing, so it announces nothing.
    uid = rate(store)
    store.apply([RatingGiven(uid, "very_dissatisfied", "dtmf", T0)])
    with store.sessions() as session:
        assert len(session.scalars(select(OutboxEvent)).all()) == 3


def test_events_arrive_signed_once_each_and_in_order(store, receiver: Receiver, client, secret) -> None:
    subscribe(store, receiver.url, secret)
    rate(store, tags=("attitude",))
    result = run(store, client, T0)
    assert (result.fanned_out, result.delivered, receiver.bad_signatures) == (2, 2, 0)
    assert [e["type"] for e in receiver.accepted] == ["rating.created", "rating.updated"]
    assert run(store, client, T0 + timedelta(minutes=5)).delivered == 0  # nothing twice


def test_the_library_verifies_what_we_send(store, receiver: Receiver, client, secret) -> None:
    sent: list[httpx.Request] = []
    subscribe(store, receiver.url, secret)
    rate(store, level="satisfied")
    with httpx.Client(event_hooks={"request": [sent.append]}) as recording:
        deliver_pass(store.sessions, recording)  # at the real time: Webhook.verify checks the clock
    request = sent[0]
    payload = Webhook(secret).verify(request.content, dict(request.headers))
    assert payload["type"] == "rating.created"
    # Refused, whichever of its two errors this version raises (1.1 raised ValueError for a malformed header,
    # 1.3 raises WebhookVerificationError): web/api.py catches both.
    refused = (WebhookVerificationError, ValueError)
    with pytest.raises(refused):
        Webhook(secret).verify(request.content, {**request.headers, "webhook-signature": "garbage"})
    with pytest.raises(refused):
        Webhook(secret).verify(request.content.replace(b"satisfied", b"dissatisfied"), dict(request.headers))
    with pytest.raises(refused):
        Webhook("whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()).verify(
            request.content, dict(request.headers))


def test_a_failure_retries_with_backoff_and_a_rating_waits_for_its_earlier_event(store, receiver, client, secret):
    subscribe(store, receiver.url, secret)
    rate(store, tags=("attitude",))
    receiver.script = [500]
    first = run(store, client, T0)
    assert (first.delivered, first.failed) == (0, 1)
    with store.sessions() as session:
        waiting = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert waiting[0].next_attempt_at >= T0 + timedelta(seconds=2.5) and waiting[0].last_status == 500
    assert receiver.accepted == []  # rating.updated waited behind the failed rating.created
    assert run(store, client, T0 + timedelta(seconds=1)).delivered == 0
    assert run(store, client, T0 + timedelta(seconds=6)).delivered == 2
    assert [e["type"] for e in receiver.accepted] == ["rating.created", "rating.updated"]


def test_retry_after_is_honoured(store, receiver, client, secret) -> None:
    subscribe(store, receiver.url, secret)
    rate(store, level="satisfied")
    receiver.script, receiver.headers = [429], {"Retry-After": "120"}
    run(store, client, T0)
    receiver.headers = {}
    assert run(store, client, T0 + timedelta(seconds=100)).delivered == 0
    assert run(store, client, T0 + timedelta(seconds=121)).delivered == 1


def test_410_gone_disables_the_endpoint(store, receiver, client, secret) -> None:
    endpoint_id = subscribe(store, receiver.url, secret)
    rate(store, level="satisfied")
    receiver.script = [410]
    result = run(store, client, T0)
    assert result.disabled == [receiver.url]
    rate(store, level="basic")
    assert run(store, client, T0 + timedelta(hours=1)).delivered == 0 and receiver.accepted == []
    with store.sessions() as session:
        assert session.get(WebhookEndpoint, endpoint_id).active is False


def test_a_timeout_is_a_failure_to_retry(store, receiver, client, secret, monkeypatch) -> None:
    monkeypatch.setattr(webhooks, "REQUEST_TIMEOUT", 0.2)
    subscribe(store, receiver.url, secret)
    rate(store, level="satisfied")
    receiver.script = ["sleep"]
    assert run(store, client, T0).failed == 1
    with store.sessions() as session:
        assert "Timeout" in session.scalars(select(WebhookDelivery.last_error)).one()


def test_a_long_outage_then_everything_arrives_once_in_order(store, receiver, client, secret) -> None:
    subscribe(store, receiver.url, secret)
    port = receiver.port
    receiver.stop()  # down for hours
    uids = [rate(store, tags=("attitude",)) for _ in range(3)]
    at = T0
    for _ in range(12):  # passes over ten hours; a fresh client each time, as after a worker restart
        with httpx.Client() as fresh:
            assert run(store, fresh, at).delivered == 0
        at += timedelta(minutes=50)
    receiver.port = port
    receiver.start()
    with store.sessions() as session:
        latest = max(session.scalars(select(WebhookDelivery.next_attempt_at)))
    run(store, client, latest)
    assert len(receiver.accepted) == 6 and len(set(receiver.seen_ids)) == 6 and receiver.bad_signatures == 0
    for uid in uids:
        types = [e["type"] for e in receiver.accepted if e["rating"]["call_uniqueid"] == uid]
        assert types == ["rating.created", "rating.updated"]


def test_after_three_days_a_delivery_is_dead_and_can_be_replayed(store, receiver, client, secret) -> None:
    subscribe(store, receiver.url, secret)
    rate(store, level="satisfied")
    receiver.script = [500] * 1000
    at = T0
    while run(store, client, at).dead == 0:
        with store.sessions() as session:
            at = session.scalars(select(WebhookDelivery.next_attempt_at)).one()
    assert at - T0 <= timedelta(days=3)
    receiver.script = []
    assert run(store, client, at + timedelta(days=1)).delivered == 0
    with store.sessions.begin() as session:
        assert replay(session, dead=True, now=at) == 1
    assert run(store, client, at + timedelta(days=1)).delivered == 1
    assert len(receiver.accepted) == 1


def test_a_rotated_secret_signs_twice_during_the_overlap(store, client, secret) -> None:
    old_only, new_only = Receiver([secret]), Receiver([])
    old_only.start()
    try:
        endpoint_id = subscribe(store, old_only.url, secret)
        with store.sessions.begin() as session:
            new_secret_value = rotate_secret(session, endpoint_id, T0, timedelta(hours=24)).secret
        new_only.secrets = [new_secret_value]
        rate(store, level="satisfied")
        run(store, client, T0)  # within the overlap: the old secret still verifies
        assert len(old_only.accepted) == 1 and old_only.bad_signatures == 0
        rate(store, level="basic")
        run(store, client, T0 + timedelta(hours=25))  # after it: the old secret no longer does
        assert old_only.bad_signatures == 1
    finally:
        old_only.stop()


def test_a_claimed_delivery_is_not_sent_twice_by_another_worker(store, receiver, client, secret) -> None:
    subscribe(store, receiver.url, secret)
    rate(store, level="satisfied")
    with store.sessions.begin() as session:
        webhooks.fan_out(session)
        delivery = session.scalars(select(WebhookDelivery)).one()
        delivery.next_attempt_at = T0 + webhooks.LEASE  # a worker claimed it, then died mid-request
    assert run(store, client, T0 + timedelta(seconds=30)).delivered == 0
    assert run(store, client, T0 + timedelta(seconds=61)).delivered == 1 and len(receiver.seen_ids) == 1


@pytest.mark.parametrize(("url", "events", "message"), [("ftp://x", ["*"], "须为 http"),
                                                         ("https://x/h", ["rating.sold"], "未知：rating.sold"),
                                                         ("https://x/h", [], "请选择事件类型；")])
def test_bad_endpoints_are_refused(store, url: str, events: list[str], message: str) -> None:
    with pytest.raises(EndpointError, match=message), store.sessions.begin() as session:
        add_endpoint(session, url, events, T0, profile="native")
    with pytest.raises(EndpointError, match="whsec_"), store.sessions.begin() as session:
        add_endpoint(session, "https://x/h", ["*"], T0, profile="native", secret="not base64!")


def test_every_event_the_loop_makes_matches_the_documented_schema(store: RatingStore, rules) -> None:
    """Created, updated, verified, attempt, rectified and satisfaction events, checked against the JSON Schema."""
    from pathlib import Path

    import jsonschema

    from rating_core.complaints.callback_tasks import (
        claim_attempt,
        record_answer,
        record_outcome,
        record_verdict,
        request_attempt,
    )

    schema = json.loads((Path(__file__).parent.parent / "rating_core" / "outbox"
                         / "webhook_payload.schema.json").read_text())
    rate(store, tags=("attitude",))
    store.apply([CallStarted(uniqueid="1795316499.9", hotline="12345-ko", at=T0, caller_number="13812340001"),
                 RatingGiven("1795316499.9", "satisfied", "speech", T0, heard="만족", confidence=0.91)])
    policy = rules.callback
    at = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    with store.sessions.begin() as session:
        first = request_attempt(session, policy, 1, at, "t").attempt_id
        claim_attempt(session, first, at, "x")
        record_outcome(session, policy, first, "answered", at, "dialer")
        record_verdict(session, policy, 1, "immediate_fix", at, "agent:2001", "已办结")
        again = request_attempt(session, policy, 1, at, "t").attempt_id
        claim_attempt(session, again, at, "x")
        record_answer(session, again, "satisfied", True, "1", "u", at, "ivr")
    with store.sessions() as session:
        events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        types = [e.type for e in events]
        for event in events:
            jsonschema.validate(event.payload, schema, format_checker=jsonschema.FormatChecker())
    assert types == ["rating.created", "rating.updated", "rating.created", "callback.attempt", "complaint.verified",
                     "complaint.rectified", "complaint.satisfaction"]
    spoken = events[2].payload["rating"]
    assert (spoken["channel"], spoken["heard_text"], spoken["heard_confidence"]) == ("speech", "만족", 0.91)
    assert events[-1].payload["complaint"]["citizen_satisfied"] is True


# -- the admin's page ------------------------------------------------------------------------------


def admin_client(site, username: str = "admin"):
    """A signed-in client and a CSRF token (the admin page's; for others the login page's)."""
    from web_pages import csrf, signed_in

    client = signed_in(site, username)
    page = client.get("/admin/webhooks")
    return client, csrf(client, "/admin/webhooks" if page.status_code == 200 else "/login")


def test_an_admin_manages_endpoints_and_replays_dead_letters(web_site) -> None:
    client, token = admin_client(web_site)
    bad = client.post("/admin/webhooks", follow_redirects=True,
                      data={"url": "ftp://nowhere", "events": ["rating.created"], "profile": "gbt39046",
                            "csrf_token": token})
    assert "推送地址须为 http(s) 网址" in bad.data.decode()
    unnamed = client.post("/admin/webhooks", follow_redirects=True, data={
        "url": "https://platform.example/hooks", "events": ["rating.created"], "profile": "/etc/passwd.yaml",
        "csrf_token": token})
    assert "请选择报文格式" in unnamed.data.decode()  # the form names shipped profiles only, never a path
    added = client.post("/admin/webhooks", follow_redirects=True, data={
        "url": "https://platform.example/hooks", "events": ["rating.created", "appeal.decided"],
        "profile": "zj-example", "csrf_token": token})
    page = added.data.decode()
    assert "签名密钥（仅显示一次" in page and "whsec_" in page and 'data-endpoint="1"' in page
    assert "<td>zj-example</td>" in page
    assert "whsec_" not in client.get("/admin/webhooks").data.decode()  # shown once only
    client.post("/admin/webhooks/1/disable", data={"csrf_token": token})
    with web_site.store.sessions() as session:
        assert session.get(WebhookEndpoint, 1).active is False
    with web_site.store.sessions.begin() as session:
        webhooks.fan_out(session)
        event = session.scalars(select(OutboxEvent)).first()
        session.add(WebhookDelivery(event_id=event.id, endpoint_id=1, rating_id=event.rating_id, status="dead",
                                    attempts=31, next_attempt_at=T0, last_error="HTTP 500: oops"))
    page = client.get("/admin/webhooks").data.decode()
    assert event.event_id in page and "HTTP 500: oops" in page
    done = client.post("/admin/webhooks/replay", follow_redirects=True, data={"event_id": event.event_id,
                                                                              "csrf_token": token})
    assert "已重新排队 1 条推送" in done.data.decode()
    with web_site.store.sessions() as session:
        assert session.scalars(select(WebhookDelivery.status)).all() == ["pending"]
    agent, agent_token = admin_client(web_site, "agent")
    assert agent.get("/admin/webhooks").status_code == 403
    assert agent.post("/admin/webhooks/replay", data={"csrf_token": agent_token}).status_code == 403


def test_after_an_outage_the_first_success_brings_the_rest_forward(store, receiver, client, secret) -> None:
    subscribe(store, receiver.url, secret)
    port = receiver.port
    receiver.stop()
    rate(store, level="satisfied")
    at = T0
    for _ in range(8):  # down for a while: the first event's retries spread out
        run(store, client, at)
        at += timedelta(minutes=10)
    rate(store, level="basic")  # a second rating's event, newer: due now, first in line once the receiver is back
    receiver.port = port
    receiver.start()
    result = run(store, client, at)
    assert result.delivered == 2 and len(receiver.accepted) == 2  # the older one did not wait out its backoff
