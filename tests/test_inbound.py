"""The platform pushing events in (signed, windowed, once per id, all or nothing) and pulling ours out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.outbox.webhook_endpoints import new_secret
from rating_core.store.models import Call, CallbackTask, CaseRecord, OutboxEvent, Rating

_ids = iter(range(10**6))


@pytest.fixture
def platform(web_site):
    secret = new_secret()
    web_site.app.config.update(INBOUND_SECRETS=(secret,), PULL_TOKENS=("token-one", "token-two"))
    return web_site, secret


def push(site, secret: str, body: object, *, webhook_id: str | None = None, at: datetime | None = None,
         tamper: bool = False, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    webhook_id = webhook_id or f"msg_{next(_ids)}"
    at = at or datetime.now(timezone.utc)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": Webhook(secret).sign(webhook_id, at, data.decode()),
               "content-type": "application/json"}
    return site.app.test_client().post("/api/inbound", data=data + (b" " if tamper else b""), headers=headers)


def call(site, uid: str, linkedid: str, level: str | None = "very_dissatisfied") -> None:
    now = datetime.now(timezone.utc)
    events = [CallStarted(uniqueid=uid, hotline="12345", at=now, caller_number="13800000001", linkedid=linkedid)]
    if level:
        events.append(RatingGiven(uid, level, "dtmf", now))
    site.store.apply(events)


def test_a_case_record_links_a_call_that_is_already_here(platform) -> None:
    site, secret = platform
    response = push(site, secret, {"type": "case.record", "records": [
        {"uniqueid": "1795316400.1", "case_number": "GD-2026-0001", "unit": "市住建局"}]})
    assert response.status_code == 200 and response.json == {"status": "applied"}
    with site.store.sessions() as session:
        call = session.scalars(select(Call).where(Call.uniqueid == "1795316400.1")).one()
        assert (call.case_number, call.unit) == ("GD-2026-0001", "市住建局")
        assert session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id.desc())).first() == "rating.updated"


def test_a_case_record_that_comes_first_waits_for_its_call(platform) -> None:
    site, secret = platform
    response = push(site, secret, {"type": "case.record", "records": [
        {"linkedid": "1795399999.7", "case_number": "GD-2026-0002"}]})
    assert response.json == {"status": "pending"}
    call(site, "1795399999.9", "1795399999.7")
    with site.store.sessions() as session:
        assert session.scalars(select(Call.case_number).where(Call.uniqueid == "1795399999.9")).one() == "GD-2026-0002"
        assert session.scalars(select(CaseRecord.applied_at)).one() is not None


def test_a_correction_marks_the_差评_invalid_and_closes_its_task(platform) -> None:
    site, secret = platform
    response = push(site, secret, {"type": "rating.correction", "records": [
        {"call_uniqueid": "1795316400.1", "valid": False, "reason": "非本热线受理范围"}]})
    assert response.json == {"status": "applied"}
    with site.store.sessions() as session:
        rating = session.scalars(select(Rating)).one()
        assert rating.is_adopted is False and "非本热线受理范围" in rating.not_adopted_reason
        assert session.get(CallbackTask, 1).state == "closed"


def test_a_redelivered_id_is_applied_once(platform) -> None:
    site, secret = platform
    body = {"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD-3"}]}
    assert push(site, secret, body, webhook_id="msg_same").json == {"status": "applied"}
    assert push(site, secret, body, webhook_id="msg_same").json == {"status": "duplicate"}
    with site.store.sessions() as session:
        assert len(session.scalars(select(CaseRecord)).all()) == 1


@pytest.mark.parametrize("case", ["tampered", "wrong secret", "old", "future", "no headers", "garbage signature"])
def test_unsigned_or_stale_pushes_are_refused(platform, case: str) -> None:
    site, secret = platform
    body = {"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD-X"}]}
    if case == "no headers":
        response = site.app.test_client().post("/api/inbound", json=body)
    elif case == "garbage signature":
        response = site.app.test_client().post("/api/inbound", json=body, headers={
            "webhook-id": "m", "webhook-timestamp": str(int(datetime.now(timezone.utc).timestamp())),
            "webhook-signature": "nonsense"})
    else:
        response = push(site, new_secret() if case == "wrong secret" else secret, body, tamper=case == "tampered",
                        at=datetime.now(timezone.utc) + {"old": timedelta(minutes=-10),
                                                         "future": timedelta(minutes=10)}.get(case, timedelta(0)))
    assert response.status_code == 401 and "signature not accepted" in response.json["error"]
    with site.store.sessions() as session:
        assert session.scalars(select(CaseRecord)).all() == []


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"type": "case.record", "records": []}, 400, "non-empty list"),
    ({"type": "case.sold", "records": [{}]}, 400, "unknown event type"),
    ({"type": "case.record", "records": [{"case_number": "GD"}]}, 400, "needs a linkedid or a uniqueid"),
    ({"type": "rating.correction", "records": [{"call_uniqueid": "1795316400.1", "valid": True, "reason": "x"}]},
     400, "valid must be false"),
    ({"type": "rating.correction", "records": [{"call_uniqueid": "1795316400.1", "valid": False, "reason": "x"},
                                               {"call_uniqueid": "nope", "valid": False, "reason": "x"}]},
     422, "no rating for call 'nope'"),
])
def test_bad_bodies_get_a_clear_4xx_and_nothing_is_applied(platform, body, status: int, message: str) -> None:
    site, secret = platform
    response = push(site, secret, body)
    assert response.status_code == status and message in response.json["error"]
    # A code for the platform's program beside the words for its people: a call we do not know, or a bad body.
    assert response.json["reason"] == ("not_found" if status == 422 else "invalid")
    with site.store.sessions() as session:
        assert session.scalars(select(Rating.is_adopted)).one() is True  # the first record was not half-applied
        assert session.scalars(select(CaseRecord)).all() == []


def test_a_body_that_is_not_json(platform) -> None:
    site, secret = platform
    response = push(site, secret, None, raw=b"{not json")
    assert response.status_code == 400 and response.json["error"] == "body is not JSON"


def test_the_pull_api_pages_by_cursor_with_a_token(platform) -> None:
    site, _secret = platform
    for n in range(3):
        call(site, f"1795400000.{n}", f"1795400000.{n}", level="satisfied")
    client = site.app.test_client()
    assert client.get("/api/events").status_code == 401
    assert client.get("/api/events", headers={"Authorization": "Bearer token-three"}).status_code == 401
    auth = {"Authorization": "Bearer token-two"}
    seen, cursor = [], "0"
    while True:
        page = client.get(f"/api/events?cursor={cursor}&limit=2", headers=auth).json
        seen += [event["id"] for event in page["events"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    with site.store.sessions() as session:
        assert seen == session.scalars(select(OutboxEvent.event_id).order_by(OutboxEvent.id)).all()
    assert client.get("/api/events?limit=0", headers=auth).status_code == 400
