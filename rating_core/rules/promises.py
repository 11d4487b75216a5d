"""What a prompt promises a 差评 caller ("四十八小时内回访") said from the callback policy, never typed apart.

A prompt writes ``{callback_within}`` where the policy's ``verify_within``
is to be said, in the prompt voice's own words (``time_limit_wording`` in
the rules file). A time limit typed out literally in any prompt is compared
with the policy and refused if it differs, because a centre types a promise
the way it speaks, and one that says 48 hours while the policy says one
working day is a promise broken on every call.
"""

from __future__ import annotations

import re
import string
import unicodedata
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from rating_core.rules.callback_policy import Duration

# The one placeholder a prompt may hold: the callback policy's verify_within, said in the prompt's language
# ("四十八小时内", "48시간 안에"), so that what a 差评 caller is promised is what the callback loop keeps.
CALLBACK_WITHIN = "callback_within"
# A time limit written out in a prompt: a number (digits, or Chinese or Sino-Korean words), a unit, then
# "within". It is looked for in every prompt, whatever the wording data says, because a centre types a
# promise the way it speaks, not the way the wording builds one.
LIMIT_UNITS = {"分钟": "minutes", "小时": "hours", "个小时": "hours", "天": "days", "日": "days",
               "工作日": "working_days", "个工作日": "working_days",
               "분": "minutes", "시간": "hours", "일": "days", "영업일": "working_days"}
STATED_LIMIT = re.compile(
    # Not a day of a month (3月15日内) and not the tail of a longer number.
    r"(?<![月0-9.])"
    r"(?P<amount>[0-9]+(?:\.[0-9]+)?\s?|[零〇一二两三四五六七八九十百千]+|[영일이삼사오육칠팔구십백천]+)"
    r"(?P<unit>" + "|".join(sorted(LIMIT_UNITS, key=len, reverse=True)) + r")"
    r"(?=\s*(?:以内|之内|内|안에|이내|내))"
)
NUMERAL_DIGITS = {**{c: i for i, c in enumerate("零一二三四五六七八九")}, "〇": 0, "两": 2,
                  **{c: i for i, c in enumerate("영일이삼사오육칠팔구")}}
NUMERAL_PLACES = {"十": 10, "百": 100, "千": 1000, "십": 10, "백": 100, "천": 1000}


class PromiseError(ValueError):
    """A prompt that would promise what the policy does not say; the message names the prompt."""


class TimeLimitWording(BaseModel):
    """How the prompts of one prompt voice say a time limit, per unit: "{amount}小时内", "{amount}시간 안에".

    Data, so that a centre words a promise, or adds a language, in the rules file rather than in code.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    language: str  # named when a prompt is refused (zh-CN, ko)
    # chinese: in words (四十八, 两), since the pinyin voice reads a run of digits one by one ("四八");
    # digits: as written (48), for a voice that reads numbers itself.
    numerals: Literal["chinese", "digits"]
    minutes: str
    hours: str
    days: str
    working_days: str

    @model_validator(mode="after")
    def _check(self) -> TimeLimitWording:
        for unit in ("minutes", "hours", "days", "working_days"):
            fields = {name for _, name, _, _ in string.Formatter().parse(getattr(self, unit)) if name is not None}
            if fields != {"amount"}:
                raise ValueError(f"time limit wording for {unit} must contain {{amount}} and nothing else in braces")
        return self

    def say(self, limit: Duration) -> str:
        """``limit`` in this language: 48 hours is "四十八小时内" or "48시간 안에"."""
        whole = float(limit.amount).is_integer()
        if self.numerals == "chinese":
            if not whole:
                raise ValueError(f"{limit.describe()} is not a whole number of {limit.unit} to say in words")
            amount = chinese_count(int(limit.amount))
        else:
            amount = str(int(limit.amount)) if whole else str(limit.amount)
        return getattr(self, limit.unit).format(amount=amount)


def chinese_count(n: int) -> str:
    """A count in Chinese words, as said before a measure word: 两, 十五, 四十八, 一百零五."""
    if not 0 < n < 10_000:
        raise ValueError(f"{n} is not a count from 1 to 9999")
    if n == 2:
        return "两"  # 两个工作日, 两小时: never 二 alone before a measure word
    digits, places = "零一二三四五六七八九", ("", "十", "百", "千")
    words, zero = "", False
    for place, digit in reversed(list(enumerate(int(d) for d in reversed(str(n))))):
        if digit == 0:
            zero = bool(words)
            continue
        words += ("零" if zero else "") + digits[digit] + places[place]
        zero = False
    return words[1:] if words.startswith("一十") else words  # 十五, not 一十五


def numeral_value(text: str) -> float:
    """The number a prompt writes: "48", "四十八", "两", "사십팔"."""
    try:
        return float(text)
    except ValueError:
        pass
    total = current = 0
    for ch in text:
        if ch in NUMERAL_PLACES:
            total += (current or 1) * NUMERAL_PLACES[ch]
            current = 0
        else:
            current = NUMERAL_DIGITS[ch]
    return total + current


def _same_limit(amount: float, unit: str, limit: Duration) -> bool:
    """Whether "``amount`` ``unit``" is ``limit``: 两天 is 48 hours, but a working day is no number of hours."""
    if "working_days" in (unit, limit.unit):
        return unit == limit.unit and amount == limit.amount
    return timedelta(**{unit: amount}) == limit.as_timedelta()


def promised_prompts(hotline: str, prompts: dict[str, Any], voice: str, limit: Duration,
                     wordings: dict[str, TimeLimitWording]) -> dict[str, Any]:
    """The prompts with ``{callback_within}`` said from the policy; refuses a time limit written out that is not it.

    Done as the rules load, so the service never starts with a promise the callback loop does not keep, and
    ``prompts build`` synthesises what the policy says.
    """
    wording = wordings.get(voice)
    language = wording.language if wording else voice
    filled = dict(prompts)
    for name, text in prompts.items():
        if not isinstance(text, str):
            continue  # the profile's validation names it
        where = f"hotline {hotline}, prompt {name} ({language})"
        # NFKC first: a fullwidth "４８小时" is the same promise as "48小时".
        for stated in STATED_LIMIT.finditer(unicodedata.normalize("NFKC", text)):
            if not _same_limit(numeral_value(stated["amount"].strip()), LIMIT_UNITS[stated["unit"]], limit):
                raise PromiseError(f"{where} promises “{stated[0]}”, but the callback policy's verify_within is "
                                 f"{limit.describe()}; write {{{CALLBACK_WITHIN}}} to say the policy's limit")
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
        except ValueError as exc:
            raise PromiseError(f"{where}: {exc} (braces hold only {{{CALLBACK_WITHIN}}})") from None
        if fields - {CALLBACK_WITHIN}:
            raise PromiseError(f"{where}: unknown placeholder(s) {sorted(fields - {CALLBACK_WITHIN})}; "
                             f"the one known is {{{CALLBACK_WITHIN}}}")
        if not fields:
            continue
        if wording is None:
            raise PromiseError(f"{where} says {{{CALLBACK_WITHIN}}}, but time_limit_wording has nothing for "
                             f"prompt voice {voice!r} (known: {', '.join(wordings) or 'none'})")
        try:
            filled[name] = text.format(**{CALLBACK_WITHIN: wording.say(limit)})
        except ValueError as exc:
            raise PromiseError(f"{where}: cannot say the callback policy's verify_within: {exc}") from None
    return filled
