"""Webhook endpoints: who receives which events, signed with which secret; rotating it; replaying deliveries."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating_core.outbox.delivery_states import DeliveryStatus, delivery_move
from rating_core.outbox.outbox import EVENT_TYPES
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import OutboxEvent, WebhookDelivery, WebhookEndpoint

SECRET_PREFIX = "whsec_"


class EndpointError(Refused):
    """An endpoint that cannot be set up as asked."""

    reason = Reason.INVALID


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise EndpointError("the secret must be whsec_ followed by base64 "
                            "(hotline-eval makes one if none is given)") from None
    if len(decoded) < 24:
        raise EndpointError("the secret must hold at least 24 random bytes")
    return secret


def add_endpoint(session: Session, url: str, events: list[str], at: datetime,
                 secret: str | None = None) -> WebhookEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise EndpointError(f"not an http(s) URL: {url!r}")
    unknown = sorted(set(events) - set(EVENT_TYPES) - {"*"})
    if not events or unknown:
        raise EndpointError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)} (or *)")
    endpoint = WebhookEndpoint(url=url, secret=check_secret(secret) if secret else new_secret(),
                               event_types=sorted(set(events)), active=True, created_at=at)
    session.add(endpoint)
    session.flush()
    return endpoint


def rotate_secret(session: Session, endpoint_id: int, at: datetime, overlap: timedelta,
                  secret: str | None = None) -> WebhookEndpoint:
    """A new secret at once; the old one still signs (as a second signature) until the overlap ends."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise EndpointError(f"no webhook endpoint {endpoint_id}")
    endpoint.previous_secret, endpoint.previous_until = endpoint.secret, at + overlap
    endpoint.secret = check_secret(secret) if secret else new_secret()
    return endpoint


def replay(session: Session, *, event_id: str | None = None, dead: bool = False, now: datetime) -> int:
    """Send again: one event (to every endpoint it went to) or every dead delivery. The webhook-id stays."""
    query = select(WebhookDelivery)
    if event_id:
        query = query.join(OutboxEvent).where(OutboxEvent.event_id == event_id)
    if dead:
        query = query.where(WebhookDelivery.status == DeliveryStatus.DEAD)
    count = 0
    for delivery in session.scalars(query):
        delivery.status, delivery.next_attempt_at = delivery_move(delivery.status, DeliveryStatus.PENDING), now
        delivery.attempts, delivery.first_attempt_at, delivery.delivered_at = 0, None, None
        count += 1
    return count
