"""The platform's side door: signed events pushed in, and our events pulled out by cursor.

Machines, not people: no session or CSRF. The inbound endpoint accepts only
Standard Webhooks signed with ``HOTLINE_EVAL_INBOUND_SECRET`` (and, while it
is being rotated, ``HOTLINE_EVAL_INBOUND_SECRET_PREVIOUS``) within the
library's five-minute window; the pull API takes a bearer token from
``HOTLINE_EVAL_PULL_TOKENS`` (comma-separated), compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from rating_core.ratings.inbound import InboundError, apply_inbound
from rating_core.rules.refusals import Reason
from rating_core.store.models import OutboxEvent
from web.context import csrf, db

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)
PAGE_MAX = 500


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
        return _error(503, "inbound events are not configured (HOTLINE_EVAL_INBOUND_SECRET)")
    raw = request.get_data(cache=False)
    headers = dict(request.headers)
    problem = "no secret"
    for secret in secrets_:
        try:
            Webhook(secret).verify(raw, headers, json_parse=False)
            break
        except (WebhookVerificationError, ValueError) as exc:  # a malformed header is a ValueError
            problem = str(exc) or type(exc).__name__
    else:
        return _error(401, f"signature not accepted: {problem}")
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "body is not JSON")
    session = db()
    try:
        result = apply_inbound(session, request.headers["webhook-id"], body, datetime.now(timezone.utc))
    except InboundError as exc:
        session.rollback()  # all or nothing
        return _error(exc.status, str(exc), exc.reason)
    session.commit()
    return jsonify({"status": result})


def _token_ok() -> bool:
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
    tokens = [token.encode() for token in current_app.config["PULL_TOKENS"]]
    # Every token is compared, so the time taken does not tell which one nearly matched.
    matches = [hmac.compare_digest(given, token) for token in tokens]
    return bool(given) and any(matches)


@bp.get("/events")
@machine_auth("bearer-token")
def events() -> Any:
    """Our outbox, oldest first, after ``cursor``: ``{"events": [...], "next_cursor": "…", "has_more": …}``."""
    if not _token_ok():
        return _error(401, "a valid bearer token is required (HOTLINE_EVAL_PULL_TOKENS)")
    cursor = request.args.get("cursor", "0")
    limit = request.args.get("limit", "100")
    if not cursor.isdigit() or not limit.isdigit() or not 1 <= int(limit) <= PAGE_MAX:
        return _error(400, f"cursor must be a whole number and limit 1–{PAGE_MAX}")
    rows = db().scalars(
        select(OutboxEvent).where(OutboxEvent.id > int(cursor)).order_by(OutboxEvent.id).limit(int(limit) + 1)
    ).all()
    page = rows[: int(limit)]
    return jsonify({"events": [row.payload for row in page],
                    "next_cursor": str(page[-1].id) if page else cursor, "has_more": len(rows) > int(limit)})
