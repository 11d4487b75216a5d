"""The platform pushing events in (signed, windowed, once per id, all or nothing) and pulling ours out."""

from __future__ import annotations

import io
import json
import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.outbox.webhook_endpoints import new_secret
from rating_core.store.database import REGION_CODE
from rating_core.store.models import Call, CallbackTask, CaseRecord, InboundEvent, OutboxEvent, Rating

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
    assert response.status_code == 401 and "签名无效" in response.json["error"]
    with site.store.sessions() as session:
        assert session.scalars(select(CaseRecord)).all() == []


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"type": "case.record", "records": []}, 400, "非空列表 records"),
    ({"type": "case.sold", "records": [{}]}, 400, "未知的事件类型 'case.sold'"),
    ({"type": "case.record", "records": [{"case_number": "GD"}]}, 400, "records[0] 须有 linkedid 或 uniqueid"),
    ({"type": "rating.correction", "records": [{"call_uniqueid": "1795316400.1", "valid": True, "reason": "x"}]},
     400, "records[0].valid 须为 false"),
    ({"type": "rating.correction", "records": [{"call_uniqueid": "1795316400.1", "valid": False, "reason": "x"},
                                               {"call_uniqueid": "nope", "valid": False, "reason": "x"}]},
     422, "尚无通话 'nope' 的评价"),
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
    assert response.status_code == 400 and "不是合法的 JSON" in response.json["error"]


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


# -- hostile pushes: each is signed, so only the body's checks stand between it and the database --------------


def stored(site) -> tuple[list[CaseRecord], list[InboundEvent]]:
    with site.store.sessions() as session:
        return session.scalars(select(CaseRecord)).all(), session.scalars(select(InboundEvent)).all()


@pytest.mark.parametrize("depth", [10_000, 50])
def test_a_deeply_nested_body_is_refused_with_a_400(platform, depth: int) -> None:
    site, secret = platform
    raw = ('{"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD", "x": '
           + "[" * depth + "]" * depth + "}]}").encode()
    response = push(site, secret, None, raw=raw)
    assert response.status_code == 400 and "嵌套过深" in response.json["error"]
    assert stored(site) == ([], [])


@pytest.mark.parametrize(("field", "longest"), [("uniqueid", 64), ("linkedid", 64), ("case_number", 128),
                                                ("unit", 256)])
def test_a_case_record_string_past_its_column_is_refused_naming_the_field(platform, field: str,
                                                                          longest: int) -> None:
    """PostgreSQL refuses a string longer than its varchar: a 500 there, unless refused first."""
    site, secret = platform
    record = {"uniqueid": "1795316400.1", "case_number": "GD-1"} | {field: "长" * (longest + 1)}
    response = push(site, secret, {"type": "case.record", "records": [record]})
    assert response.status_code == 400 and f"records[0].{field}" in response.json["error"]
    assert f"至多 {longest} 个字符" in response.json["error"]
    assert stored(site) == ([], [])
    # The longest that fits is taken whole.
    record[field] = "长" * longest
    assert push(site, secret, {"type": "case.record", "records": [record]}).status_code == 200


def test_a_correction_reason_past_its_column_is_refused(platform) -> None:
    site, secret = platform
    body = {"type": "rating.correction",
            "records": [{"call_uniqueid": "1795316400.1", "valid": False, "reason": "理" * 250}]}
    response = push(site, secret, body)
    assert response.status_code == 400 and "records[0].reason" in response.json["error"]
    with site.store.sessions() as session:
        assert session.scalars(select(Rating.is_adopted)).one() is True


def test_a_webhook_id_past_its_column_is_refused(platform) -> None:
    site, secret = platform
    response = push(site, secret, {"type": "case.record", "records": [{"uniqueid": "1", "case_number": "GD"}]},
                    webhook_id="m" * 129)
    assert response.status_code == 400 and "webhook-id" in response.json["error"]
    assert stored(site) == ([], [])


@pytest.mark.parametrize("raw", [
    b'{"type": "case.record", "records": [{"uniqueid": "17953\\u0000", "case_number": "GD"}]}',
    b'{"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD\\ud800"}]}',
    b'{"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD", "n": NaN}]}',
    b'{"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD", "n": '
    + b"9" * 5000 + b"}]}",
    b'{"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "\xff\xfe"}]}',
], ids=["NUL", "lone surrogate", "NaN", "5000-digit number", "not UTF-8"])
def test_a_body_the_database_cannot_hold_is_refused_with_a_400(platform, raw: bytes) -> None:
    site, secret = platform
    data = raw
    webhook_id, at = "msg_raw", datetime.now(timezone.utc)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
               # Signed over the bytes as sent: the library signs text, so these are decoded as Latin-1 for it.
               "webhook-signature": Webhook(secret).sign(webhook_id, at, data.decode("latin-1")),
               "content-type": "application/json"}
    response = site.app.test_client().post("/api/inbound", data=data, headers=headers)
    if raw.endswith(b'"\xff\xfe"}]}'):
        assert response.status_code in (400, 401)  # the signature over non-UTF-8 bytes may not verify
    else:
        assert response.status_code == 400, response.json
    assert "error" in response.json
    assert stored(site) == ([], [])


def test_a_body_over_256_kb_is_refused_before_it_is_read(platform) -> None:
    site, _secret = platform

    class Unreadable(io.BytesIO):
        def read(self, *_args: object) -> bytes:
            raise AssertionError("the body was read")

    response = site.app.test_client().post("/api/inbound", input_stream=Unreadable(b" " * (256 * 1024 + 1)),
                                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "256 KB" in response.json["error"]


def test_a_chunked_body_over_256_kb_is_refused_having_read_no_more(platform) -> None:
    """No Content-Length to refuse by: read to one byte past the limit, then refused."""
    site, _secret = platform
    stream = io.BytesIO(b" " * (1024 * 1024))
    response = site.app.test_client().post(
        "/api/inbound", input_stream=stream, environ_overrides={"wsgi.input_terminated": True},
        headers={"content-type": "application/json", "transfer-encoding": "chunked"})
    assert response.status_code == 413 and "256 KB" in response.json["error"]
    assert stream.tell() <= 256 * 1024 + 1 + 64 * 1024  # the limit, and at most one read buffer past it


def test_a_body_that_is_not_json_by_its_content_type_gets_415(platform) -> None:
    site, secret = platform
    data = json.dumps({"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD"}]})
    at = datetime.now(timezone.utc)
    response = site.app.test_client().post("/api/inbound", data=data, headers={
        "webhook-id": "msg_form", "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_form", at, data),
        "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415 and "application/json" in response.json["error"]
    assert stored(site) == ([], [])


@pytest.fixture
def regional(platform):
    """The platform, pushing to a deployment for 淄博 (行政区划代码 370300)."""
    site, secret = platform
    site.store.sessions.configure(info={REGION_CODE: "370300"})
    return site, secret


@pytest.mark.parametrize("where", ["event", "record"])
def test_a_push_for_another_region_is_refused_and_logged(regional, caplog, where: str) -> None:
    site, secret = regional
    record = {"call_uniqueid": "1795316400.1", "valid": False, "reason": "非本热线受理范围"}
    body = ({"type": "rating.correction", "region_code": "370100", "records": [record]} if where == "event" else
            {"type": "rating.correction", "region_code": "370300", "records": [record | {"region_code": "370100"}]})
    response = push(site, secret, body, webhook_id=f"msg_other_{where}")
    assert response.status_code == 422 and response.json["reason"] == "not_allowed"
    assert "370100" in response.json["error"] and "370300" in response.json["error"]
    assert f"msg_other_{where}" in caplog.text and "refused (422)" in caplog.text
    with site.store.sessions() as session:
        assert session.scalars(select(Rating.is_adopted)).one() is True
        assert session.scalars(select(InboundEvent)).all() == []


def test_a_push_without_a_region_is_refused_where_the_deployment_has_one(regional) -> None:
    site, secret = regional
    response = push(site, secret, {"type": "case.record", "records": [{"uniqueid": "1795316400.1",
                                                                       "case_number": "GD-9"}]})
    assert response.status_code == 422 and "region_code" in response.json["error"]


def test_a_push_for_this_region_is_applied(regional) -> None:
    site, secret = regional
    response = push(site, secret, {"type": "case.record", "region_code": "370300",
                                   "records": [{"uniqueid": "1795316400.1", "case_number": "GD-10"}]})
    assert response.json == {"status": "applied"}


def test_six_simultaneous_pushes_of_one_id_are_applied_once(platform, engine) -> None:
    """Each waits on the first's claim of the webhook-id, then is told it is a duplicate: no IntegrityError."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: the pushes cannot overlap there")
    site, secret = platform
    body = {"type": "case.record", "records": [{"uniqueid": "1795316400.1", "case_number": "GD-SAME"}]}
    start = threading.Barrier(6)
    answers: list[tuple[int, object]] = []

    def send() -> None:
        start.wait()
        response = push(site, secret, body, webhook_id="msg_six")
        answers.append((response.status_code, response.json))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers, key=str) == [(200, {"status": "applied"})] + [(200, {"status": "duplicate"})] * 5
    records, events = stored(site)
    assert len(records) == 1 and len(events) == 1


@pytest.mark.parametrize("cursor", ["²", "10²⁰", "٣", str(10**23), "2147483648", "-1", "1\x00"])
def test_a_bad_cursor_is_a_json_400(platform, cursor: str) -> None:
    site, _secret = platform
    response = site.app.test_client().get("/api/events", query_string={"cursor": cursor},
                                          headers={"Authorization": "Bearer token-one"})
    assert response.status_code == 400 and "error" in response.json
    assert re.search(r"[\u4e00-\u9fff]", response.json["error"])


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/api/nothing", 404), ("GET", "/api/inbound", 405),
                                                        ("POST", "/api/events", 405)])
def test_api_errors_are_json_in_chinese(platform, method: str, path: str, status: int) -> None:
    site, _secret = platform
    response = site.app.test_client().open(path, method=method)
    assert response.status_code == status and response.is_json
    assert re.search(r"[\u4e00-\u9fff]", response.json["error"])
