"""The callback policy: deadlines, calling hours, retries and the dialer's settings.

Part of the rules file (its ``callback:`` section), because a deployment sets
these by regulation, not by code: 四平 gives 48 hours to verify a 差评, Liaoning
"1 working day"; one centre calls 08:30–18:00, another only in the morning.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import time, timedelta
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rating_core.rules.frozen_model import FrozenModel

# Attempt outcomes the dialer reports; each may have its own retry spacing.
ATTEMPT_OUTCOMES = (
    "answered",
    "busy",
    "no_answer",
    "rejected",
    "congestion",
    "failed",
    "invalid_number",
    "unknown",
)
# Outcomes after which dialling the same number again is pointless.
FINAL_OUTCOMES = frozenset({"answered", "invalid_number"})
# The four outcomes of a verification (SPEC §3.3), as the report form names them.
VERDICTS = {
    "immediate_fix": "情况清楚、诉求合理，立行立改",
    "deadline_fix": "情况复杂，说明理由、建立台账、限期整改",
    "explained": "缺乏法定依据，解释说明",
    "not_adopted": "误评或恶意评价，不予采纳",
}
# What an automated callback asks; the citizen answers each yes or no.
QUESTIONS = {"identity": "是否本人", "resolved": "问题是否已解决", "satisfied": "对处理结果是否满意"}


class Duration(FrozenModel):
    """A legal time limit: calendar hours or days, or working days on the official calendar."""

    amount: float = Field(gt=0)
    unit: Literal["minutes", "hours", "days", "working_days"]

    def as_timedelta(self) -> timedelta:
        """Minutes, hours or days as a plain span; working days need the calendar (``working_days.add_duration``)."""
        if self.unit == "working_days":
            raise ValueError("working days have no fixed length")
        return timedelta(**{self.unit: self.amount})

    def describe(self) -> str:
        names = {"minutes": "分钟", "hours": "小时", "days": "天", "working_days": "个工作日"}
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        return f"{amount}{names[self.unit]}"


class CallingWindow(FrozenModel):
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> CallingWindow:
        if self.end <= self.start:
            raise ValueError(f"calling window {self.start}–{self.end} ends before it starts")
        return self


class Leg(FrozenModel):
    """Where an answered callback leg goes in the dialplan."""

    context: str
    exten: str
    priority: int = 1


class DialerSettings(FrozenModel):
    """How the dialer turns a task into an AMI Originate."""

    # Simultaneous callbacks this deployment may place (its trunk lines).
    max_channels: int = Field(ge=1, le=1000)
    # Dial strings are templates: {number} is the citizen, {agent} the callback agent.
    citizen_dial_string: str
    agent_dial_string: str
    # Caller ID shown to the citizen: the hotline's own number.
    caller_id: str
    ring_timeout_seconds: int = Field(ge=5, le=300)
    # An attempt with no OriginateResponse by then is looked up by its ChannelId.
    response_timeout_seconds: int = Field(ge=5, le=3600)
    agent_first: Leg
    automated: Leg
    # Where the dialplan's MixMonitor writes an answered callback ({task} and {attempt} are the
    # store's ids, as CALLBACK_TASK / CALLBACK_ATTEMPT); kept on the attempt. None: not recorded.
    recording_file: str | None = None
    # Numbers the dialer accepts: digits, optionally a leading +.
    number_pattern: str = r"^\+?[0-9]{3,20}$"

    @field_validator("citizen_dial_string", "agent_dial_string")
    @classmethod
    def _has_placeholder(cls, value: str, info: ValidationInfo) -> str:
        placeholder = {"citizen_dial_string": "{number}", "agent_dial_string": "{agent}"}[info.field_name or ""]
        if placeholder not in value:
            raise ValueError(f"{info.field_name} must contain {placeholder}")
        return value

    @field_validator("number_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value)
        return value

    def valid_number(self, number: str | None) -> bool:
        return bool(number) and re.fullmatch(self.number_pattern, number or "") is not None


class CallbackPolicy(FrozenModel):
    timezone: str = "Asia/Shanghai"
    # agent_first: ring a callback agent, then bridge to the citizen;
    # automated: a verification IVR calls the citizen over FastAGI.
    mode: Literal["agent_first", "automated"]
    verify_within: Duration
    escalate_before_deadline: Duration
    rectify_within: Duration
    appeal_file_within: Duration
    appeal_review_within: Duration
    calling_days: Literal["working_days", "every_day"]
    calling_windows: tuple[CallingWindow, ...] = Field(min_length=1)
    max_attempts: int = Field(ge=1, le=50)
    # Minutes to wait before the next attempt, per outcome of the last one.
    retry_after_minutes: dict[str, int]
    dialer: DialerSettings

    @field_validator("retry_after_minutes")
    @classmethod
    def _every_retryable_outcome(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(ATTEMPT_OUTCOMES))
        if unknown:
            raise ValueError(f"retry_after_minutes names unknown outcomes {unknown}")
        missing = sorted(set(ATTEMPT_OUTCOMES) - FINAL_OUTCOMES - set(value))
        if missing:
            raise ValueError(f"retry_after_minutes lacks outcomes {missing}")
        if any(minutes < 1 for minutes in value.values()):
            raise ValueError("retry spacing must be at least one minute")
        return value

    @model_validator(mode="after")
    def _windows_do_not_overlap(self) -> CallbackPolicy:
        windows = sorted(self.calling_windows, key=lambda w: w.start)
        for earlier, later in zip(windows, windows[1:]):
            if later.start < earlier.end:
                raise ValueError("calling windows overlap")
        return self

    @property
    def version(self) -> str:
        """A fingerprint of the deadline rules; tasks computed under another one are recomputed."""
        deadlines = self.model_dump(
            mode="json",
            include={"timezone", "verify_within", "escalate_before_deadline", "appeal_file_within",
                     "appeal_review_within", "rectify_within"},
        )
        return hashlib.sha256(json.dumps(deadlines, sort_keys=True).encode()).hexdigest()[:16]
