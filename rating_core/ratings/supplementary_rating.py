"""The 补充评价 page: what it shows for a link, and the rating the citizen gives there (once)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session

from rating_core.events.call_events import RatingGiven, ReasonGiven
from rating_core.ratings.intake import RatingRefused, apply_event
from rating_core.ratings.supplementary import (
    MAX_TEXT,
    SOURCE,
    LinkRefused,
    SupplementaryRefused,
    check_usable,
    last_day,
    reminder_of,
)
from rating_core.rules.privacy import mask_phone
from rating_core.rules.refusals import Reason
from rating_core.rules.rulebook import HotlineProfile, Rules
from rating_core.store.database import rows_changed
from rating_core.store.models import Rating, SmsReminder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RatingPage:
    """What the mobile page shows for a valid link."""

    hotline: HotlineProfile
    called: str  # local: "11月20日 09:30"
    last_day: str
    masked_number: str


def rating_page(session: Session, rules: Rules, token: str, secret: str, now: datetime) -> RatingPage:
    reminder = reminder_of(session, token, secret)
    check_usable(rules, reminder, now)
    call = reminder.call
    zone = ZoneInfo(rules.callback.timezone)
    called = call.started_at.astimezone(zone)
    return RatingPage(rules.hotline(call.hotline), f"{called.month}月{called.day}日 {called:%H:%M}",
                      last_day(reminder.expires_at, zone), mask_phone(call.caller_number))


def give_supplementary(session: Session, rules: Rules, token: str, secret: str, level: str,
                       tags: list[str], text: str, now: datetime) -> Rating:
    """Store the citizen's rating from the page, once, in the caller's transaction; refusals say why."""
    reminder = reminder_of(session, token, secret, lock=True)
    check_usable(rules, reminder, now)
    hotline = rules.hotline(reminder.call.hotline)
    try:
        chosen = rules.level(level)
    except KeyError:
        raise SupplementaryRefused("请选择1至5星的评价") from None
    known = {tag.code for tag in hotline.tags}
    if set(tags) - known:
        raise SupplementaryRefused("所选原因不存在，请刷新页面后重新选择")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise SupplementaryRefused(f"意见请不要超过{MAX_TEXT}字")
    if chosen.negative and not (tags or text):
        raise SupplementaryRefused("请选择不满意的原因，或写下您的意见")
    # The link is spent by this one UPDATE; a second submission racing this one finds it spent.
    spent = session.execute(update(SmsReminder).where(SmsReminder.id == reminder.id, SmsReminder.used_at.is_(None))
                            .values(used_at=now).execution_options(synchronize_session=False))
    if rows_changed(spent) != 1:
        raise LinkRefused("该链接已使用过，感谢您的评价", Reason.ALREADY_DONE, gone=True)
    uid = reminder.call.uniqueid
    try:
        apply_event(session, rules, RatingGiven(uid, chosen.code, "supplementary", now, source=SOURCE))
    except RatingRefused as exc:
        raise LinkRefused("该次来电已评价，无需重复评价", Reason.ALREADY_DONE, gone=True) from exc
    if tags or text:
        ordered = tuple(tag.code for tag in hotline.tags if tag.code in tags)
        apply_event(session, rules, ReasonGiven(uid, ordered, now, text=text or None, source=SOURCE))
    log.info("supplementary rating %s for call %s by SMS link %s", chosen.code, uid, reminder.code)
    rating = reminder.call.rating
    assert rating is not None
    return rating
