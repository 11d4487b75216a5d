"""How long citizens' personal information is kept: 个人信息保护法 第十九条, "保存期限应当为实现处理目的所必要的
最短时间".

Part of the rules file (its ``retention:`` section), because the periods are a deployment's decision, made
with its 保密 and 档案 offices, not code's. The pass that applies them is ``rating_core.ratings.retention``.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from rating_core.rules.frozen_model import FrozenModel

# 网络安全法 第二十一条: network logs are kept no less than six months; an audit log kept shorter breaks the law.
AUDIT_LOG_FLOOR = timedelta(days=183)
_UNIT_NAMES = {"days": "天", "months": "个月", "years": "年"}


class RetentionSpan(FrozenModel):
    """A calendar span: days, or months and years counted on the calendar (the 31st less a month is the 30th)."""

    amount: int = Field(ge=1)
    unit: Literal["days", "months", "years"]

    @model_validator(mode="after")
    def _within_a_century(self) -> RetentionSpan:
        # A longer span is a typo, and one past year 1 cannot be computed at all.
        if self.shortest() > timedelta(days=100 * 365):
            raise ValueError(f"a retention span of {self.amount} {self.unit} is longer than a century")
        return self

    def before(self, now: datetime) -> datetime:
        """The moment this span before ``now``: what is older has outlived its purpose."""
        if self.unit == "days":
            return now - timedelta(days=self.amount)
        months = self.amount * (12 if self.unit == "years" else 1)
        index = now.year * 12 + now.month - 1 - months
        year, month = divmod(index, 12)
        day = min(now.day, calendar.monthrange(year, month + 1)[1])
        return now.replace(year=year, month=month + 1, day=day)

    def shortest(self) -> timedelta:
        """The least this span can be, whatever the calendar does (a month of 28 days, a year of 365)."""
        per_unit = {"days": 1, "months": 28, "years": 365}[self.unit]
        return timedelta(days=self.amount * per_unit)

    def describe(self) -> str:
        return f"{self.amount}{_UNIT_NAMES[self.unit]}"


class RetentionPolicy(FrozenModel):
    """What is deleted or made anonymous, and when; each from the moment its purpose could last end.

    - ``recordings``: voice messages and callback recordings (files; the rows keep that they were purged),
      counted from the rating or the call; appeal evidence files counted from the appeal's decision.
      Nothing of a 差评 whose callback is still open or whose appeal is undecided: its purpose has not ended.
    - ``numbers``: callers' numbers, replaced by a keyed hash (HMAC-SHA256, ``HOTLINE_EVAL_NUMBER_KEY``), so
      the malicious-rater list still recognises a listed number; again not while a callback is open.
    - ``audit_log``: entries older are deleted.
    """

    enabled: bool = True
    recordings: RetentionSpan = RetentionSpan(amount=180, unit="days")
    numbers: RetentionSpan = RetentionSpan(amount=12, unit="months")
    audit_log: RetentionSpan = RetentionSpan(amount=3, unit="years")

    @model_validator(mode="after")
    def _check(self) -> RetentionPolicy:
        if self.audit_log.shortest() < AUDIT_LOG_FLOOR:
            raise ValueError(f"retention.audit_log must be at least six months (网络安全法 第二十一条), "
                             f"got {self.audit_log.describe()}")
        return self
