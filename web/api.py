"""The platform's side door: signed events pushed in, and our events pulled out by cursor.

Machines, not people: no session or CSRF. The inbound endpoint accepts only
Standard Webhooks signed with ``HOTLINE_EVAL_INBOUND_SECRET`` (and, while it
is being rotated, ``HOTLINE_EVAL_INBOUND_SECRET_PREVIOUS``) within the
library's five-minute window; the pull API takes a bearer token from
``HOTLINE_EVAL_PULL_TOKENS`` (comma-separated), compared in constant time.

Before the signature is even checked, an inbound body must say it is JSON (else 415) and be at most
``INBOUND_MAX_BYTES`` (else 413, refused by its Content-Length before a byte of it is read). Every refusal is
JSON, ``{"error": "…"}`` in Chinese for the platform's people (``reason`` for its program), and is logged.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.exceptions import RequestEntityTooLarge

from rating_core.outbox.bodies import Bodies, Held
from rating_core.outbox.profile import NATIVE, shipped_profiles
from rating_core.ratings.inbound import InboundError, apply_inbound, parse_body
from rating_core.rules.refusals import Reason
from rating_core.store.models import OutboxEvent
from web.context import csrf, db
from web.ids import MAX_ID
from web.numbers import whole

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)
log = logging.getLogger(__name__)
PAGE_MAX = 500
# The largest push: 1000 records of four short fields is about 200 KB.
INBOUND_MAX_BYTES = 256 * 1024


def machine_auth(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a route as authenticated by signature or token (the roles test accepts either)."""

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.machine_auth = kind  # type: ignore[attr-defined]  # a mark on the view function, read by the route audit
        return view

    return mark


def _error(status: int, message: str, reason: Reason | None = None) -> Any:
    """A refusal as JSON: ``error`` for a person, ``reason`` (a rules refusal's code) for the sender's program."""
    return jsonify({"error": message} | ({"reason": reason.value} if reason else {})), status


@bp.post("/inbound")
@machine_auth("webhook-signature")
def inbound() -> Any:
    secrets_ = current_app.config["INBOUND_SECRETS"]
    if not secrets_:
        return _error(503, "未配置接收推送的签名密钥（HOTLINE_EVAL_INBOUND_SECRET）")
    if request.content_length is not None and request.content_length > INBOUND_MAX_BYTES:
        return _refused(413, f"请求体超过 {INBOUND_MAX_BYTES // 1024} KB")
    if request.mimetype != "application/json":
        return _refused(415, "Content-Type 须为 application/json")
    # A chunked body has no Content-Length: it is read to one byte past the limit at most, enough to know.
    request.max_content_length = INBOUND_MAX_BYTES + 1
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raw = b" " * (INBOUND_MAX_BYTES + 1)
    if len(raw) > INBOUND_MAX_BYTES:
        return _refused(413, f"请求体超过 {INBOUND_MAX_BYTES // 1024} KB")
    headers = dict(request.headers)
    problem = "未配置密钥"
    for secret in secrets_:
        try:
            Webhook(secret).verify(raw, headers, json_parse=False)
            break
        except (WebhookVerificationError, ValueError) as exc:  # a malformed header is a ValueError
            problem = str(exc) or type(exc).__name__
    else:
        return _refused(401, f"签名无效：{problem}")
    webhook_id = request.headers["webhook-id"]
    session = db()
    try:
        result = apply_inbound(session, webhook_id, parse_body(raw), datetime.now(timezone.utc))
        session.commit()
    except InboundError as exc:
        session.rollback()  # all or nothing
        return _refused(exc.status, str(exc), exc.reason, webhook_id)
    except IntegrityError:  # a constraint another push met first; apply_inbound claims the id before this
        session.rollback()
        return _refused(409, "与同时到达的另一推送冲突，请稍后重发", Reason.WRONG_STATE, webhook_id)
    except OperationalError:  # SQLite's one writer was busy past its timeout, or the database is away
        session.rollback()
        log.warning("inbound %r: the database could not take it", webhook_id, exc_info=True)
        response = _error(503, "数据库繁忙，请稍后重发")
        response[0].headers["Retry-After"] = "5"
        return response
    return jsonify({"status": result})


def _refused(status: int, message: str, reason: Reason | None = None, webhook_id: str | None = None) -> Any:
    """A refused push, logged with who sent it: a sender's mistake, or someone probing."""
    log.warning("inbound %r from %s refused (%d): %s", webhook_id or request.headers.get("webhook-id", "")[:128],
                request.remote_addr, status, message[:300])
    return _error(status, message, reason)


def _token_ok() -> bool:
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
    tokens = [token.encode() for token in current_app.config["PULL_TOKENS"]]
    # Every token is compared, so the time taken does not tell which one nearly matched.
    matches = [hmac.compare_digest(given, token) for token in tokens]
    return bool(given) and any(matches)


@bp.get("/events")
@machine_auth("bearer-token")
def events() -> Any:
    """Our outbox, oldest first, after ``cursor``: ``{"events": [...], "next_cursor": "…", "has_more": …}``.

    With ``profile=`` (a shipped profile other than native) each event is ``{"id", "type", "rating_id",
    "body"}``, the body as a webhook in that profile carries it; an event the profile cannot express yet is
    ``{"id", "type", "rating_id", "held": [reasons]}``, with no body: pulled again from an earlier cursor once
    it is fixed, it has one. Events the profile does not send are left out; the cursor moves past them.
    """
    if not _token_ok():
        return _error(401, "须提供有效的 Bearer 令牌（HOTLINE_EVAL_PULL_TOKENS）")
    profile = request.args.get("profile", NATIVE)
    # Shipped names only: a path in a query string would let a caller have any YAML file on the host read.
    if profile not in shipped_profiles():
        return _error(400, f"profile 须为以下之一：{'、'.join(shipped_profiles())}")
    # A cursor is an outbox id we gave out: 0 to the largest id a column holds.
    cursor, limit = whole(request.args.get("cursor", "0"), most=MAX_ID), whole(request.args.get("limit", "100"),
                                                                               most=PAGE_MAX)
    if cursor is None or not limit:
        return _error(400, f"cursor 须为 0 至 {MAX_ID} 的整数，limit 须为 1 至 {PAGE_MAX} 的整数")
    rows = db().scalars(
        select(OutboxEvent).where(OutboxEvent.id > cursor).order_by(OutboxEvent.id).limit(limit + 1)
    ).all()
    page = rows[:limit]
    answer = {"next_cursor": str(page[-1].id if page else cursor), "has_more": len(rows) > limit}
    if profile == NATIVE:
        return jsonify({"events": [row.payload for row in page]} | answer)
    # Not jsonify: it sorts keys, and a profile's body keeps the profile's field order.
    return current_app.response_class(json.dumps({"events": _rendered(page, profile)} | answer, ensure_ascii=False),
                                      mimetype="application/json")


def _rendered(page: Sequence[OutboxEvent], profile: str) -> list[dict[str, Any]]:
    """The page's events in ``profile``, each body in the profile's field order (as its webhook sends it)."""
    bodies = Bodies(current_app.extensions["hotline_render_context"])
    listed: list[dict[str, Any]] = []
    for event in page:
        head: dict[str, Any] = {"id": event.event_id, "type": event.type,
                                "rating_id": event.rating.public_id if event.rating else None}
        try:
            body = bodies.body(profile, event)
        except Held as held:
            listed.append(head | {"held": list(held.reasons)})
            continue
        if body is not None:
            listed.append(head | {"body": json.loads(body.text)})
    return listed
