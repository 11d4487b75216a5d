"""补充评价: a caller who did not rate rates later, through the link in one SMS.

Seeds 000 and 001 give the window: 5 working days "自办事当日起". Periods
counted in days leave out their first day (民法典 201), so the window closes
at the end of the fifth working day after the day of the call.

The reminder is planned in the transaction that ends an unrated call (so no
unrated call is forgotten and no scan over the calls is needed), and sent
later by :mod:`delivery.sms`. Its link is short, because an SMS is
70 Chinese characters: ``{public_url}/r/{code}{tag}``. ``code`` is 8 random
characters kept on the reminder row, which binds the link to its call and
holds its expiry and its single use; ``tag`` is an HMAC-SHA256 of the code
under the deployment's secret, cut to 96 bits (RFC 2104 allows truncation to
half the hash). itsdangerous, which Flask uses, cannot shorten its
signatures, hence the few lines here. A forged or altered link fails the tag
before the store is asked anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating_core.complaints.callback_tasks import load_calendar
from rating_core.ratings.reminder_states import ReminderStatus, reminder_move
from rating_core.rules.callback_policy import Duration
from rating_core.rules.lifecycle_policy import QuietHours
from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.rulebook import Rules
from rating_core.rules.working_days import WorkingCalendar, add_duration
from rating_core.store.batch_lookups import blocked_reason
from rating_core.store.models import Call, SmsReminder

log = logging.getLogger(__name__)

CODE_CHARS = 8
TAG_BYTES = 12
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{%d}" % (CODE_CHARS + 16))
SOURCE = "sms"
# The longest a citizen may write on the page (the platform's field is of this size).
MAX_TEXT = 500


class SupplementaryRefused(Refused):
    """The rating cannot be taken as filled in; the message is for the citizen (zh-CN)."""

    reason = Reason.INVALID


class LinkRefused(SupplementaryRefused):
    """The link itself cannot be used: forged, unknown, or (``gone``) spent, expired, or its call rated."""

    reason = Reason.NOT_FOUND

    def __init__(self, message: str, reason: Reason | None = None, *, gone: bool = False) -> None:
        super().__init__(message, reason)
        self.gone = gone


def window_end(started_at: datetime, window: Duration, calendar: WorkingCalendar, zone: ZoneInfo) -> datetime:
    """When the 补充评价 window of a call that started at ``started_at`` closes."""
    if window.unit != "working_days":
        return add_duration(started_at, window, calendar, zone)
    # Whole working days from the next day on, to the end of the last one.
    day, left = started_at.astimezone(zone).date(), int(window.amount)
    while left:
        day += timedelta(days=1)
        left -= calendar.is_working_day(day)
    return datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(started_at.tzinfo)


def outside_quiet_hours(moment: datetime, quiet: QuietHours | None, zone: ZoneInfo) -> datetime:
    """``moment``, or the end of the quiet hours it falls in (they may wrap midnight: 21:00–08:00)."""
    if quiet is None:
        return moment
    local = moment.astimezone(zone)
    clock = local.time()
    wraps = quiet.end <= quiet.start
    inside = (clock >= quiet.start or clock < quiet.end) if wraps else quiet.start <= clock < quiet.end
    if not inside:
        return moment
    day = local.date() + timedelta(days=1) if wraps and clock >= quiet.start else local.date()
    return datetime.combine(day, quiet.end, zone).astimezone(moment.tzinfo)


def _tag(code: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), b"sms-link:" + code.encode(), hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(digest).decode()


def link_token(code: str, secret: str) -> str:
    """The path part of a reminder's link."""
    return code + _tag(code, secret)


def new_code() -> str:
    return secrets.token_urlsafe(6)  # 48 random bits, 8 characters


def plan_reminder(session: Session, rules: Rules, call: Call, at: datetime) -> SmsReminder | None:
    """The SMS for a call that ended unrated, if the deployment sends them; skipped rows say why not.

    Called once per call, when its end is first applied (a replayed end is not);
    the unique key on ``call_id`` refuses a second row all the same.
    """
    policy = rules.lifecycle.supplementary
    if not (policy.enabled and policy.reminder.enabled) or call.rating is not None or not call.caller_number:
        return None
    if call.hotline not in rules.hotlines:
        return None
    zone = ZoneInfo(rules.callback.timezone)
    reminder = SmsReminder(
        call=call, number=call.caller_number, code=new_code(), status=reminder_move(None, ReminderStatus.PENDING),
        created_at=at, attempts=0,
        next_attempt_at=outside_quiet_hours(add_duration(at, policy.reminder.delay, WorkingCalendar(), zone),
                                            policy.reminder.quiet_hours, zone),
        expires_at=window_end(call.started_at, policy.window, load_calendar(session), zone),
    )
    why_not = _why_no_sms(session, rules, call.caller_number)
    if why_not is not None:
        # Born skipped rather than moved there: the row is not stored yet.
        reminder.status = reminder_move(None, ReminderStatus.SKIPPED)
        reminder.status_reason, reminder.next_attempt_at = why_not, None
    session.add(reminder)
    return reminder


def _why_no_sms(session: Session, rules: Rules, number: str) -> str | None:
    if re.fullmatch(rules.lifecycle.supplementary.reminder.number_pattern, number) is None:
        return "非手机号码，无法发送短信"
    return blocked_reason(session, number)


def why_not_now(session: Session, rules: Rules, reminder: SmsReminder, now: datetime) -> str | None:
    """Why a due reminder must not go out after all (checked again just before each send)."""
    call = reminder.call
    if call.rating is not None:
        return "已评价，无需提醒"
    if now >= reminder.expires_at:
        return "补充评价期限已过"
    return _why_no_sms(session, rules, reminder.number)


def last_day(expires_at: datetime, zone: ZoneInfo) -> str:
    """The last day a link works, as the SMS and the page say it ("11月27日")."""
    day = (expires_at - timedelta(seconds=1)).astimezone(zone)
    return f"{day.month}月{day.day}日"


def sms_text(rules: Rules, reminder: SmsReminder, link: str) -> str:
    hotline = rules.hotline(reminder.call.hotline)
    zone = ZoneInfo(rules.callback.timezone)
    called = reminder.call.started_at.astimezone(zone)
    assert hotline.sms_reminder is not None  # the rules refuse reminders without a text
    return hotline.sms_reminder.format(name=hotline.name, month=called.month, day=called.day,
                                       deadline=last_day(reminder.expires_at, zone), link=link)


def reminder_of(session: Session, token: str, secret: str, *, lock: bool = False) -> SmsReminder:
    """The reminder a link names; a forged, altered or unknown link is refused."""
    if not TOKEN_PATTERN.fullmatch(token or ""):
        raise LinkRefused("链接不完整或有误，请核对短信中的链接")
    code, tag = token[:CODE_CHARS], token[CODE_CHARS:]
    if not hmac.compare_digest(tag, _tag(code, secret)):
        log.warning("supplementary link refused: bad signature for code %r", code)
        raise LinkRefused("链接无效，请核对短信中的链接")
    query = select(SmsReminder).where(SmsReminder.code == code)
    reminder = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if reminder is None:
        log.warning("supplementary link refused: signed code %r has no reminder", code)
        raise LinkRefused("链接无效，请核对短信中的链接")
    return reminder


def check_usable(rules: Rules, reminder: SmsReminder, now: datetime) -> None:
    """Refuse a link that expired, was used, or whose call may not be rated again by this channel."""
    zone = ZoneInfo(rules.callback.timezone)
    if reminder.used_at is not None:
        raise LinkRefused("该链接已使用过，感谢您的评价", Reason.ALREADY_DONE, gone=True)
    if reminder.status not in (ReminderStatus.SENT, ReminderStatus.UNKNOWN):
        raise LinkRefused("链接无效，请核对短信中的链接")
    if now >= reminder.expires_at:
        raise LinkRefused(f"补充评价已于{last_day(reminder.expires_at, zone)}截止，感谢您的关注",
                          Reason.TOO_LATE, gone=True)
    rating = reminder.call.rating
    if rating is not None and rules.lifecycle.second("supplementary", rating.channel) == "refuse":
        raise LinkRefused("该次来电已评价，无需重复评价", Reason.ALREADY_DONE, gone=True)
