"""What happens to a rating after the call, as policy: the 7-day default, 补充评价 and its SMS, the batch
rule, and one call, one rating. Part of the rules file's ``lifecycle:`` section (``rating_core.rules.rulebook``)."""

from __future__ import annotations

from datetime import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rating_core.rules.callback_policy import Duration
from rating_core.rules.frozen_model import FrozenModel


class DefaultRating(FrozenModel):
    """未评价 after ``after`` becomes ``level``, flagged default: never 主动评价, never a 差评 (四平 7.3)."""

    enabled: bool
    after: Duration
    level: str


class QuietHours(FrozenModel):
    """No SMS from ``start`` to ``end`` (local time); wraps midnight when ``end`` is earlier (21:00–08:00)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end at the same time")
        return self


class RateLimit(FrozenModel):
    max: int = Field(ge=1)
    within: Duration

    @field_validator("within")
    @classmethod
    def _calendar_time(cls, value: Duration) -> Duration:
        value.as_timedelta()  # refuses working days: a look-back needs a fixed span
        return value


class SmsGateway(FrozenModel):
    """The shape of the hotline's SMS gateway's HTTP API; its address and token come from the environment.

    ``body`` is a JSON template: every string in it is formatted with
    ``{number}``, ``{text}`` and ``{request_id}`` (the same on every retry of
    one SMS, so a gateway that deduplicates on it never sends twice).
    """

    body: dict[str, Any]
    success_field: str
    success_values: tuple[str, ...]
    message_id_field: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Whether the gateway drops a request whose request_id it has already sent. Only then is an
    # SMS whose fate is unknown (a timeout, a garbled answer) retried; otherwise it is never resent.
    deduplicates_request_id: bool = False


class SmsReminderPolicy(FrozenModel):
    """One SMS inviting a caller who did not rate to rate by link (补充评价), at most one per call."""

    enabled: bool = False
    delay: Duration = Duration(amount=10, unit="minutes")  # after the call ended unrated
    quiet_hours: QuietHours | None = None
    per_number: RateLimit = RateLimit(max=2, within=Duration(amount=1, unit="days"))
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_after_seconds: tuple[int, ...] = (60, 300, 900, 3600)
    # Numbers an SMS can reach: mainland mobile numbers, optionally with the country code.
    number_pattern: str = r"^(?:\+?86)?1[3-9][0-9]{9}$"
    gateway: SmsGateway | None = None

    @model_validator(mode="after")
    def _check(self) -> SmsReminderPolicy:
        if self.enabled and self.gateway is None:
            raise ValueError("supplementary.reminder is enabled but names no gateway")
        if not self.retry_after_seconds or min(self.retry_after_seconds) < 1:
            raise ValueError("retry_after_seconds must list at least one wait of a second or more")
        return self


class SupplementaryPolicy(FrozenModel):
    """补充评价: a caller who did not rate may rate by link within ``window`` of the call."""

    enabled: bool = False
    window: Duration = Duration(amount=5, unit="working_days")
    reminder: SmsReminderPolicy = SmsReminderPolicy()


class BatchRule(FrozenModel):
    """淄博: many ratings from one number are a batch; beyond ``more_than`` within ``within`` they count once."""

    enabled: bool = False
    more_than: int = Field(default=1, ge=1)
    within: Duration = Duration(amount=1, unit="days")

    @field_validator("within")
    @classmethod
    def _calendar_time(cls, value: Duration) -> Duration:
        value.as_timedelta()  # refuses working days: a look-back needs a fixed span
        return value


RATING_CHANNELS = ("dtmf", "speech", "supplementary", "default")
SecondRating = Literal["update", "refuse"]


class Lifecycle(FrozenModel):
    # A rules file without the section invents no ratings; the shipped one enables 四平's 7 days.
    default_rating: DefaultRating = DefaultRating(enabled=False, after=Duration(amount=7, unit="days"), level="basic")
    supplementary: SupplementaryPolicy = SupplementaryPolicy()
    batch: BatchRule = BatchRule()
    # One call, one rating: what a rating arriving on channel X does to a call already rated on Y.
    second_rating: dict[str, dict[str, SecondRating]] = {
        "dtmf": {"dtmf": "update", "speech": "update", "default": "update", "supplementary": "refuse"},
        "speech": {"dtmf": "update", "speech": "update", "default": "update", "supplementary": "refuse"},
        "supplementary": {"dtmf": "refuse", "speech": "refuse", "default": "update", "supplementary": "refuse"},
        "default": {"dtmf": "refuse", "speech": "refuse", "default": "refuse", "supplementary": "refuse"},
    }

    @field_validator("second_rating")
    @classmethod
    def _every_pair(cls, value: dict[str, dict[str, SecondRating]]) -> dict[str, dict[str, SecondRating]]:
        missing = [f"{new}→{old}" for new in RATING_CHANNELS for old in RATING_CHANNELS
                   if old not in value.get(new, {})]
        if missing or set(value) - set(RATING_CHANNELS):
            raise ValueError(f"second_rating must say update or refuse for every pair of channels "
                             f"{RATING_CHANNELS}; missing {missing}")
        return value

    def second(self, new_channel: str, old_channel: str) -> SecondRating:
        """What a rating on ``new_channel`` does to a call already rated on ``old_channel``."""
        return self.second_rating[new_channel][old_channel]
