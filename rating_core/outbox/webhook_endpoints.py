"""Webhook endpoints: who receives which events, in which profile, signed with which secret; rotating it;
replaying deliveries."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating_core.outbox.delivery_states import DeliveryStatus, delivery_move
from rating_core.outbox.outbox import EVENT_TYPES
from rating_core.outbox.profile import ProfileError, load_profile, shipped_profiles
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
        raise EndpointError("签名密钥须为 whsec_ 后接 base64 编码（不填则自动生成一个）") from None
    if len(decoded) < 24:
        raise EndpointError("签名密钥须至少含 24 个随机字节")
    return secret


def profile_reference(given: str) -> str:
    """What an endpoint stores for the profile it was given: a shipped name, or a profile file's absolute path
    (every process that delivers must see the file there). The profile is loaded first, so a broken one is
    refused now rather than holding every delivery later."""
    try:
        load_profile(given)
    except ProfileError as exc:
        raise EndpointError(f"报文格式“{given}”无法使用：{exc}") from None
    return given if given in shipped_profiles() else str(Path(given).resolve())


def add_endpoint(session: Session, url: str, events: list[str], at: datetime, *, profile: str,
                 secret: str | None = None) -> WebhookEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise EndpointError(f"推送地址须为 http(s) 网址：{url!r}")
    unknown = sorted(set(events) - set(EVENT_TYPES) - {"*"})
    if not events or unknown:
        raise EndpointError(f"请选择事件类型{('（未知：' + '、'.join(unknown) + '）') if unknown else ''}；"
                            f"可选：{'、'.join(EVENT_TYPES)}，或 * 表示全部")
    endpoint = WebhookEndpoint(url=url, secret=check_secret(secret) if secret else new_secret(),
                               event_types=sorted(set(events)), profile=profile_reference(profile), active=True,
                               created_at=at)
    session.add(endpoint)
    session.flush()
    return endpoint


def set_profile(session: Session, endpoint_id: int, profile: str) -> WebhookEndpoint:
    """Send in another profile from now on: what is waiting (held ones too) is rendered in it when it goes."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise EndpointError(f"没有编号为 {endpoint_id} 的推送地址")
    endpoint.profile = profile_reference(profile)
    return endpoint


def rotate_secret(session: Session, endpoint_id: int, at: datetime, overlap: timedelta,
                  secret: str | None = None) -> WebhookEndpoint:
    """A new secret at once; the old one still signs (as a second signature) until the overlap ends."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise EndpointError(f"没有编号为 {endpoint_id} 的推送地址")
    endpoint.previous_secret, endpoint.previous_until = endpoint.secret, at + overlap
    endpoint.secret = check_secret(secret) if secret else new_secret()
    return endpoint


def replay(session: Session, *, event_id: str | None = None, dead: bool = False, now: datetime) -> int:
    """Send again: one event (to every endpoint it went to) or every dead delivery. The webhook-id stays.

    A held delivery replayed is rendered again at once (and held again if it still cannot be expressed)."""
    query = select(WebhookDelivery)
    if event_id:
        query = query.join(OutboxEvent).where(OutboxEvent.event_id == event_id)
    if dead:
        query = query.where(WebhookDelivery.status == DeliveryStatus.DEAD)
    count = 0
    for delivery in session.scalars(query):
        delivery.status, delivery.next_attempt_at = delivery_move(delivery.status, DeliveryStatus.PENDING), now
        delivery.attempts, delivery.first_attempt_at, delivery.delivered_at = 0, None, None
        delivery.held_reasons = None
        count += 1
    return count
