"""Delivering the outbox to the platforms' webhook endpoints (Standard Webhooks), as an RQ job or by hand.

Each pass:

1. fans new outbox events out into one delivery row per subscribed endpoint
   whose profile sends that type of event;
2. takes the deliveries that are due, the oldest pending event of each rating
   and endpoint only (so a rating's events arrive in order), claims each with
   a conditional UPDATE (a lease: two workers never send the same row at once),
   renders it in the endpoint's profile (``rating_core/outbox/bodies.py``),
   signs it and POSTs it. A body the profile cannot express is not sent but
   *held* with the reasons, and the rating's later events wait behind it; it
   is rendered again every few minutes (from the rating as it now is) and
   goes once it passes. A body the same as the last one this endpoint got for
   the rating is not sent again (*unchanged*);
3. records the answer: a 2xx delivers; 410 Gone disables the endpoint; anything
   else (429, 5xx, other 4xx, a timeout, a refused connection) retries with
   exponential backoff and jitter, honouring ``Retry-After``, for three days,
   after which the delivery is dead (listed and replayable from the CLI).
   When an endpoint answers 2xx again, its other deliveries waiting in backoff
   are due at once: after an outage everything follows the first success.

The ``webhook-id`` is the event's id, the same on every retry and replay, so a
receiver that keeps the ids it has seen applies each event once.
"""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from rating_core.outbox.bodies import Bodies, Held
from rating_core.outbox.delivery_states import DeliveryStatus, delivery_move
from rating_core.outbox.profile import NATIVE
from rating_core.outbox.render import RenderContext
from rating_core.store.database import rows_changed
from rating_core.store.models import OutboxEvent, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(days=3)
FIRST_RETRY = timedelta(seconds=5)
LONGEST_WAIT = timedelta(hours=1)
LEASE = timedelta(seconds=60)  # how long a claimed delivery is ours while its request runs
REQUEST_TIMEOUT = 10.0
BATCH = 200
# How often a held delivery is rendered again: what fixes it (a case number arriving, a setting, a profile
# file) comes from outside, and nothing tells the pass that it did.
HOLD_RECHECK = timedelta(minutes=5)
# Sent or deliberately not sent: the body the platform has for the rating is the last of these.
LANDED = (DeliveryStatus.DELIVERED, DeliveryStatus.UNCHANGED)


def signature(endpoint: WebhookEndpoint, event_id: str, at: datetime, body: str) -> str:
    """``v1,…``, and a second signature with the old secret while a rotation overlaps."""
    stamp = at.astimezone(timezone.utc)  # the library reads the timestamp as UTC whatever its zone
    signatures = [Webhook(endpoint.secret).sign(event_id, stamp, body)]
    if endpoint.previous_secret and endpoint.previous_until and at < endpoint.previous_until:
        signatures.append(Webhook(endpoint.previous_secret).sign(event_id, stamp, body))
    return " ".join(signatures)


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """5 s, 10 s, 20 s … up to 1 h, each between half and all of it (jitter spreads a thundering herd)."""
    doublings = min(max(attempts - 1, 0), 20)  # 5 s × 2**20 is past the cap already; more would overflow
    wait = min(FIRST_RETRY * (2 ** doublings), LONGEST_WAIT)
    return wait * (0.5 + rng.random() / 2)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    if not value:
        return None
    try:
        return timedelta(seconds=max(0, int(value.strip())))
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value) - now, timedelta(0))
    except (TypeError, ValueError):
        return None


def fan_out(session: Session, bodies: Bodies | None = None) -> int:
    """One delivery per (new event, subscribed active endpoint whose profile sends it); the event is then
    marked fanned out."""
    bodies = bodies or Bodies(RenderContext())
    endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))).all()
    events = session.scalars(
        select(OutboxEvent).where(OutboxEvent.fanned_out.is_(False)).order_by(OutboxEvent.id).limit(5000)
    ).all()
    created = 0
    for event in events:
        for endpoint in endpoints:
            subscribed = event.type in endpoint.event_types or "*" in endpoint.event_types
            if subscribed and bodies.sends(endpoint.profile, event.type):
                session.add(WebhookDelivery(event_id=event.id, endpoint_id=endpoint.id, rating_id=event.rating_id,
                                            status=delivery_move(None, DeliveryStatus.PENDING), attempts=0,
                                            next_attempt_at=event.created_at))
                created += 1
        event.fanned_out = True
    return created


@dataclass
class PassResult:
    fanned_out: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0
    unchanged: int = 0
    disabled: list[str] = field(default_factory=list)


def release_held(session: Session, now: datetime) -> int:
    """Held deliveries whose wait is over go back to pending, to be rendered again when they head their queue."""
    held = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.HELD,
                                      WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.id).limit(5000)
    ).all()
    for delivery in held:
        delivery.status, delivery.next_attempt_at = delivery_move(delivery.status, DeliveryStatus.PENDING), now
    return len(held)


def _due(session: Session, now: datetime) -> list[int]:
    """Due deliveries that head their (endpoint, rating) queue, oldest first. A held delivery heads its queue
    too, so the rating's later events wait for it."""
    heads = (
        select(WebhookDelivery.endpoint_id, WebhookDelivery.rating_id,
               func.min(WebhookDelivery.event_id).label("first"))
        .where(WebhookDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.HELD)))
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.rating_id)
        .subquery()
    )
    query = (
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(heads, (heads.c.endpoint_id == WebhookDelivery.endpoint_id)
              & (heads.c.first == WebhookDelivery.event_id))
        .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now,
               WebhookEndpoint.active.is_(True))
        .order_by(WebhookDelivery.event_id)
        .limit(BATCH)
    )
    return list(session.scalars(query))


def deliver_pass(sessions: sessionmaker[Session], client: httpx.Client, now: datetime | None = None,
                 rng: random.Random | None = None, concurrency: int = 8,
                 context: RenderContext | None = None) -> PassResult:
    """Fan out, then send what is due until nothing more can go in this pass.

    The heads of different (endpoint, rating) queues are independent, so up to
    ``concurrency`` of them are in flight at once; a rating's next event is
    only taken in the next round, after its head was delivered (or found
    unchanged). ``context`` holds the deployment's codes the profiles ask for.
    """
    rng = rng or random.Random()
    result = PassResult()
    bodies = Bodies(context or RenderContext())
    with sessions.begin() as session:
        result.fanned_out = fan_out(session, bodies)
        release_held(session, now or datetime.now(timezone.utc))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook") as pool:
        while True:
            at = now or datetime.now(timezone.utc)
            with sessions() as session:
                due = _due(session, at)
            outcomes = list(pool.map(lambda delivery_id: _deliver(sessions, client, bodies, delivery_id, at, rng),
                                     due))
            for outcome in outcomes:
                if outcome == "delivered":
                    result.delivered += 1
                elif outcome in ("held", "unchanged"):
                    result.held += outcome == "held"
                    result.unchanged += outcome == "unchanged"
                elif outcome != "skipped":  # failed, dead or disabled: the attempt failed
                    result.failed += 1
                    result.dead += outcome == "dead"
                    if outcome.startswith("disabled:"):
                        result.disabled.append(outcome.removeprefix("disabled:"))
            if "delivered" not in outcomes and "unchanged" not in outcomes:
                return result


def _deliver(sessions: sessionmaker[Session], client: httpx.Client, bodies: Bodies, delivery_id: int,
             now: datetime, rng: random.Random) -> str:
    """Send one delivery: ``delivered``, ``failed``, ``dead``, ``disabled:<url>``, ``held``, ``unchanged`` or
    ``skipped``."""
    with sessions.begin() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return "skipped"
        claimed = rows_changed(session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == DeliveryStatus.PENDING,
                   WebhookDelivery.next_attempt_at == delivery.next_attempt_at)
            .values(next_attempt_at=now + LEASE)
        ))
        if claimed != 1:
            return "skipped"  # another worker has it
        endpoint, event = delivery.endpoint, delivery.event
        try:
            body = bodies.body(endpoint.profile, event)
        except Held as held:
            reasons = "\n".join(held.reasons)
            # A recheck finding the reasons it left (release_held keeps them) has nothing new to say: thousands
            # held for want of one setting would otherwise repeat a warning each every HOLD_RECHECK.
            level = logging.DEBUG if delivery.held_reasons == reasons else logging.WARNING
            delivery.status, delivery.held_reasons = delivery_move(delivery.status, DeliveryStatus.HELD), reasons
            delivery.next_attempt_at = now + HOLD_RECHECK
            log.log(level, "webhooks: event %s (%s) to %s held (profile %s): %s", event.event_id, event.type,
                    endpoint.url, endpoint.profile, held)
            return "held"
        if body is None:  # the endpoint's profile changed since fan-out and no longer sends this type
            log.info("webhooks: event %s (%s) is not sent to %s: profile %s does not send it", event.event_id,
                     event.type, endpoint.url, endpoint.profile)
            session.delete(delivery)
            return "skipped"
        delivery.held_reasons = None
        if endpoint.profile != NATIVE and body.digest == _last_landed_digest(session, delivery):
            delivery.status = delivery_move(delivery.status, DeliveryStatus.UNCHANGED)
            delivery.body_digest, delivery.next_attempt_at = body.digest, now
            return "unchanged"
        url, event_id = endpoint.url, event.event_id
        headers = {"content-type": "application/json; charset=utf-8", "webhook-id": event_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signature(endpoint, event_id, now, body.text)}
    status: int | None = None
    error: str | None = None
    wait: timedelta | None = None
    try:
        response = client.post(url, content=body.text.encode("utf-8"), headers=headers, timeout=REQUEST_TIMEOUT)
        status = response.status_code
        wait = retry_after(response.headers.get("retry-after"), now)
        if not 200 <= status < 300:
            error = f"HTTP {status}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:512]
    with sessions.begin() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.attempts += 1
        delivery.first_attempt_at = delivery.first_attempt_at or now
        delivery.last_status, delivery.last_error = status, error
        if error is None:
            delivery.status, delivery.delivered_at = _answered(DeliveryStatus.DELIVERED), now
            delivery.body_digest = body.digest
            # The endpoint is back: what waits in backoff for it need not wait any longer.
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == delivery.endpoint_id,
                       WebhookDelivery.status == DeliveryStatus.PENDING,
                       WebhookDelivery.attempts > 0, WebhookDelivery.next_attempt_at > now + LEASE)
                .values(next_attempt_at=now)
            )
            return "delivered"
        if status == 410:
            endpoint = delivery.endpoint
            endpoint.active = False
            endpoint.disabled_reason = f"410 Gone at {now.isoformat()}"
            delivery.next_attempt_at = now
            log.warning("webhooks: %s answered 410 Gone; endpoint disabled", endpoint.url)
            return f"disabled:{endpoint.url}"
        delay = max(backoff(delivery.attempts, rng), min(wait or timedelta(0), LONGEST_WAIT))
        if now + delay - delivery.first_attempt_at > RETRY_WINDOW:
            delivery.status = _answered(DeliveryStatus.DEAD)
            log.error("webhooks: event %s to %s is dead after %d attempts: %s",
                      delivery.event.event_id, delivery.endpoint.url, delivery.attempts, error)
        else:
            delivery.next_attempt_at = now + delay
            log.info("webhooks: event %s to %s failed (%s); retry in %s",
                     delivery.event.event_id, delivery.endpoint.url, error, delay)
            return "failed"
    return "dead"


def _last_landed_digest(session: Session, delivery: WebhookDelivery) -> str | None:
    """The digest of the body this endpoint last got (or was found to have) for the rating, before this event."""
    return session.scalars(
        select(WebhookDelivery.body_digest)
        .where(WebhookDelivery.endpoint_id == delivery.endpoint_id, WebhookDelivery.rating_id == delivery.rating_id,
               WebhookDelivery.event_id < delivery.event_id, WebhookDelivery.status.in_(LANDED))
        .order_by(WebhookDelivery.event_id.desc()).limit(1)
    ).first()


def _answered(status: DeliveryStatus) -> DeliveryStatus:
    """The move an endpoint's answer makes, from the ``pending`` this worker claimed. A delivery replayed or
    taken by another worker meanwhile (its lease ran out) still takes the answer, as it always has."""
    return delivery_move(DeliveryStatus.PENDING, status)
