"""Sending the 补充评价 SMS through the hotline's gateway: one per unrated call, never two.

The reminder rows are planned by the store when an unrated call ends
(:mod:`rating_core.ratings.supplementary`); a pass here sends the due ones:

1. a row whose sender died mid-request (its lease ran out while ``sending``)
   may or may not have gone out: it is retried only if the gateway drops a
   repeated request id, else it is marked ``unknown`` and never resent;
2. each due row is checked again (rated meanwhile? window closed? number
   blocked? too many SMS to this number lately? quiet hours?), claimed with
   one conditional UPDATE, and committed as ``sending`` before the request;
3. the gateway's answer decides: accepted → ``sent``; refused outright (4xx,
   a failure code) → ``failed``; not accepted (connection refused, 429, 5xx)
   → retried with backoff up to ``max_attempts``; unknown fate (a timeout
   after the request went out, a garbled 2xx, a 504) → retried only where
   the gateway deduplicates, else ``unknown``.

The request id is the same on every retry of one SMS. The gateway's address
and token come from the environment, never the rules file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from rating_core.ratings.reminder_states import ReminderStatus, reminder_move
from rating_core.ratings.supplementary import link_token, outside_quiet_hours, sms_text, why_not_now
from rating_core.rules.lifecycle_policy import SmsGateway, SmsReminderPolicy
from rating_core.rules.privacy import mask_phone
from rating_core.rules.rulebook import Rules
from rating_core.rules.settings import Settings
from rating_core.store.database import rows_changed
from rating_core.store.models import SmsReminder

log = logging.getLogger(__name__)

BATCH = 200
# Beyond the request's own timeout, how long a claimed row stays ours.
LEASE_MARGIN = timedelta(seconds=30)
# Statuses that mean an SMS went, or may have gone, to the number: what the rate limit counts.
COUNTED = (ReminderStatus.SENDING, ReminderStatus.SENT, ReminderStatus.UNKNOWN)


@dataclass(frozen=True)
class SmsSettings:
    """Where the gateway is and how the links are made."""

    url: str
    token: str | None
    public_url: str
    secret: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsSettings | None:
        """None (no SMS is sent) unless the gateway, the public address and the secret key are all set."""
        if not (settings.sms_url and settings.public_url and settings.secret_key):
            return None
        return cls(settings.sms_url, settings.sms_token, settings.public_url.rstrip("/"), settings.secret_key)


@dataclass(frozen=True)
class GatewayAnswer:
    """What one request to the gateway came to: sent, retry (not sent), unknown (may have gone) or failed."""

    kind: str
    detail: str
    message_id: str | None = None


def read_answer(gateway: SmsGateway, status: int, body: bytes) -> GatewayAnswer:
    """Classify the gateway's HTTP answer (no I/O, so every case is tested without a server)."""
    if status == 504:  # a proxy gave up waiting for a gateway that may have sent it
        return GatewayAnswer("unknown", "HTTP 504")
    if status == 429 or status >= 500:
        return GatewayAnswer("retry", f"HTTP {status}")
    if status >= 400:
        return GatewayAnswer("failed", f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
    if not 200 <= status < 300:
        return GatewayAnswer("unknown", f"HTTP {status}")
    try:
        document = json.loads(body)
    except ValueError:
        return GatewayAnswer("unknown", f"HTTP {status} with a body that is not JSON: {body[:120]!r}")
    if not isinstance(document, dict) or gateway.success_field not in document:
        return GatewayAnswer("unknown", f"HTTP {status} without {gateway.success_field!r}: {body[:120]!r}")
    code = str(document[gateway.success_field])
    if code not in gateway.success_values:
        message = next((str(document[k]) for k in ("message", "msg", "Message") if k in document), "")
        return GatewayAnswer("failed", f"gateway refused: {code} {message}".strip()[:256])
    message_id = document.get(gateway.message_id_field) if gateway.message_id_field else None
    return GatewayAnswer("sent", "accepted", None if message_id is None else str(message_id)[:128])


def request_body(gateway: SmsGateway, number: str, text: str, request_id: str) -> Any:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.format(number=number, text=text, request_id=request_id)
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value

    return fill(gateway.body)


def post(client: httpx.Client, settings: SmsSettings, gateway: SmsGateway, body: Any) -> GatewayAnswer:
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    try:
        response = client.post(settings.url, json=body, headers=headers, timeout=gateway.timeout_seconds)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing reached the gateway
        return GatewayAnswer("retry", f"{type(exc).__name__}: {exc}")
    except httpx.HTTPError as exc:  # the request may have reached it: a read timeout, a cut connection
        return GatewayAnswer("unknown", f"{type(exc).__name__}: {exc}")
    return read_answer(gateway, response.status_code, response.content)


@dataclass
class PassResult:
    sent: int = 0
    retrying: int = 0
    unknown: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0

    def count(self, status: str) -> None:
        """Count a reminder by the status a send left it in (pending: it will be retried)."""
        name = "retrying" if status == ReminderStatus.PENDING else status
        setattr(self, name, getattr(self, name) + 1)


def send_due(sessions: sessionmaker[Session], rules: Rules, client: httpx.Client, settings: SmsSettings | None,
             now: datetime) -> PassResult:
    """One pass: recover abandoned sends, then send what is due. Safe to run from two places."""
    result = PassResult()
    policy = rules.lifecycle.supplementary.reminder
    if not policy.enabled or policy.gateway is None:
        return result
    if settings is None:
        log.warning("SMS reminders are due but HOTLINE_EVAL_SMS_URL, HOTLINE_EVAL_PUBLIC_URL or "
                    "HOTLINE_EVAL_SECRET_KEY is not set: nothing sent")
        return result
    with sessions.begin() as session:
        _recover_abandoned(session, policy.gateway, now, result)
    with sessions() as session:
        due = session.scalars(select(SmsReminder.id).where(
            SmsReminder.status == ReminderStatus.PENDING, SmsReminder.next_attempt_at <= now)
            .order_by(SmsReminder.next_attempt_at, SmsReminder.id).limit(BATCH)).all()
    for reminder_id in due:
        _send_one(sessions, rules, client, settings, reminder_id, now, result)
    return result


def _recover_abandoned(session: Session, gateway: SmsGateway, now: datetime, result: PassResult) -> None:
    for reminder in session.scalars(select(SmsReminder).where(
            SmsReminder.status == ReminderStatus.SENDING, SmsReminder.lease_until < now).with_for_update()):
        if gateway.deduplicates_request_id:
            reminder.status, reminder.next_attempt_at = reminder_move(reminder.status, ReminderStatus.PENDING), now
            reminder.last_error = "发送中断，网关按请求编号去重，重试"
        else:
            reminder.status, reminder.next_attempt_at = reminder_move(reminder.status, ReminderStatus.UNKNOWN), None
            reminder.status_reason = "发送中断，无法确认是否送达，不再重发"
            result.unknown += 1
        log.warning("SMS reminder %s: its sender stopped mid-request; now %s", reminder.id, reminder.status)


def _send_one(sessions: sessionmaker[Session], rules: Rules, client: httpx.Client, settings: SmsSettings,
              reminder_id: int, now: datetime, result: PassResult) -> None:
    policy = rules.lifecycle.supplementary.reminder
    gateway = policy.gateway
    assert gateway is not None
    zone = ZoneInfo(rules.callback.timezone)
    with sessions.begin() as session:
        reminder = session.get(SmsReminder, reminder_id, with_for_update=True)
        if reminder is None or reminder.status != ReminderStatus.PENDING:
            return  # another pass took it
        why_not = why_not_now(session, rules, reminder, now) or _over_rate_limit(session, rules, reminder, now)
        if why_not is not None:
            reminder.status = reminder_move(reminder.status, ReminderStatus.SKIPPED)
            reminder.status_reason, reminder.next_attempt_at = why_not, None
            log.info("SMS reminder %s for call %s not sent: %s", reminder.id, reminder.call.uniqueid, why_not)
            result.skipped += 1
            return
        allowed = outside_quiet_hours(now, policy.quiet_hours, zone)
        if allowed > now:
            reminder.next_attempt_at = allowed
            result.deferred += 1
            return
        claimed = session.execute(
            update(SmsReminder).where(SmsReminder.id == reminder.id, SmsReminder.status == ReminderStatus.PENDING)
            .values(status=reminder_move(reminder.status, ReminderStatus.SENDING), attempts=SmsReminder.attempts + 1,
                    claimed_at=reminder.claimed_at or now,
                    lease_until=now + timedelta(seconds=gateway.timeout_seconds) + LEASE_MARGIN)
            .execution_options(synchronize_session=False))
        if rows_changed(claimed) != 1:
            return
        text = sms_text(rules, reminder, f"{settings.public_url}/r/{link_token(reminder.code, settings.secret)}")
        body = request_body(gateway, reminder.number, text, f"sms-{reminder.id}")
        attempt, uid, number = reminder.attempts + 1, reminder.call.uniqueid, reminder.number
    answer = post(client, settings, gateway, body)
    with sessions.begin() as session:
        reminder = session.get(SmsReminder, reminder_id, with_for_update=True)
        assert reminder is not None
        _record(reminder, answer, policy, attempt, now, zone)
        result.count(reminder.status)
    log.log(logging.INFO if answer.kind == "sent" else logging.WARNING,
            "SMS reminder %s for call %s to %s, attempt %d: %s (%s)",
            reminder_id, uid, mask_phone(number), attempt, answer.kind, answer.detail)


def _record(reminder: SmsReminder, answer: GatewayAnswer, policy: SmsReminderPolicy, attempt: int, now: datetime,
            zone: ZoneInfo) -> None:
    """Put the gateway's answer on the row: sent, retried later, unknown (never resent) or failed."""
    gateway = policy.gateway
    assert gateway is not None
    reminder.lease_until = None
    reminder.last_error = None if answer.kind == "sent" else answer.detail[:512]
    kind = answer.kind
    if kind == "unknown" and gateway.deduplicates_request_id:
        kind = "retry"  # the same request id again cannot make a second SMS
    if kind == "retry" and attempt >= policy.max_attempts:
        reminder.status, reminder.status_reason = (_answered(ReminderStatus.FAILED), f"{attempt}次发送均未成功")
        reminder.next_attempt_at = None
        return
    if kind == "sent":
        reminder.status, reminder.sent_at, reminder.next_attempt_at = _answered(ReminderStatus.SENT), now, None
        reminder.gateway_message_id = answer.message_id
    elif kind == "retry":
        waits = policy.retry_after_seconds
        wait = timedelta(seconds=waits[min(attempt, len(waits)) - 1])
        reminder.status = _answered(ReminderStatus.PENDING)
        reminder.next_attempt_at = outside_quiet_hours(now + wait, policy.quiet_hours, zone)
    elif kind == "unknown":
        reminder.status, reminder.next_attempt_at = _answered(ReminderStatus.UNKNOWN), None
        reminder.status_reason = "网关未确认，可能已送达，不再重发"
    else:
        reminder.status, reminder.next_attempt_at = _answered(ReminderStatus.FAILED), None
        reminder.status_reason = "短信网关拒绝发送"


def _answered(status: ReminderStatus) -> ReminderStatus:
    """The move the gateway's answer makes, from the ``sending`` this sender claimed. A row whose lease ran
    out meanwhile (recovered by another pass) still takes the answer, as it always has: it knows more."""
    return reminder_move(ReminderStatus.SENDING, status)


def _over_rate_limit(session: Session, rules: Rules, reminder: SmsReminder, now: datetime) -> str | None:
    if reminder.attempts:  # a retry of an SMS already counted
        return None
    limit = rules.lifecycle.supplementary.reminder.per_number
    recent = session.scalar(select(func.count(SmsReminder.id)).where(
        SmsReminder.number == reminder.number, SmsReminder.id != reminder.id, SmsReminder.status.in_(COUNTED),
        SmsReminder.claimed_at >= now - limit.within.as_timedelta()))
    if recent is not None and recent >= limit.max:
        return f"同一号码{limit.within.describe()}内已发送{recent}条短信，达到上限"
    return None
