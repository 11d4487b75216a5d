"""The rating rules, loaded from YAML and checked once at start-up.

Rules are data (``rules.yaml``): a hotline centre changes keys, prompts, tags
or retry counts by editing a file, not code. Validation happens here so that a
bad rules file stops the service at start-up with a clear message instead of
failing in the middle of a call.
"""

from __future__ import annotations

import copy
import os
import string
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from rating_core.rules.callback_policy import CallbackPolicy
from rating_core.rules.frozen_model import FrozenModel
from rating_core.rules.lifecycle_policy import Lifecycle
from rating_core.rules.promises import PromiseError, TimeLimitWording, promised_prompts
from rating_core.rules.retention_policy import RetentionPolicy
from rating_core.rules.yaml_file import read_yaml

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.yaml")

# Prompt names the evaluation flow plays; every hotline must define them all.
PROMPT_NAMES = (
    "menu",
    "invalid",
    "no_input",
    "tag_menu",
    "voice_invite",
    "thanks",
    "thanks_negative",
    "goodbye",
    # the automated callback (callback-verify)
    "verify_greeting",
    "verify_rated",
    "verify_identity",
    "verify_resolved",
    "verify_rectified",
    "verify_satisfaction",
    "verify_not_you",
    "verify_followup",
    "verify_thanks",
    "verify_unavailable",
)
# Prompts a hotline that hears speech plays besides: the menu that invites speech, and the re-ask.
SPEECH_PROMPT_NAMES = ("speech_menu", "speech_retry")
DTMF_KEYS = frozenset("0123456789*#")
SMS_FIELDS = frozenset({"name", "month", "day", "deadline", "link"})


class RulesError(ValueError):
    """The rules file is missing, malformed or inconsistent."""


class Level(FrozenModel):
    code: str
    name: str
    stars: int = Field(ge=1, le=5)
    score: float = Field(ge=0)
    negative: bool


class ReasonTag(FrozenModel):
    key: str
    code: str
    name: str


class MenuPolicy(FrozenModel):
    timeout_ms: int = Field(gt=0, le=60_000)
    plays: int = Field(ge=1, le=10)
    invalid_replays: int = Field(ge=0, le=10)
    max_repeats: int = Field(default=3, ge=0, le=10)


class VoiceMessagePolicy(FrozenModel):
    """The 差评 voice message, recorded by Asterisk's Record() application."""

    enabled: bool
    max_seconds: int = Field(gt=0, le=600)
    silence_seconds: int = Field(gt=0, le=60)
    min_seconds: float = Field(ge=0)
    end_key: Literal["#", "*"]  # the two keys Record() can end on (its ``t`` option picks ``*``)
    beep: bool
    format: Literal["wav", "sln", "ulaw", "alaw", "gsm", "wav49"]  # formats whose length the IVR can tell
    directory: str = Field(pattern=r"^/")  # a path on the Asterisk host
    # A Vosk model (speech_models/catalog.yaml) that writes the message down after the call; None: audio only.
    transcript_model: str | None = None


class VerificationScript(FrozenModel):
    """The automated callback's yes/no questions, and where the spoken dates (三月, 十五日) live."""

    menu: MenuPolicy
    yes_key: str
    no_key: str
    date_sound_dir: str

    @model_validator(mode="after")
    def _check(self) -> VerificationScript:
        if self.yes_key == self.no_key or not {self.yes_key, self.no_key} <= DTMF_KEYS:
            raise ValueError(f"verification yes/no keys must be two distinct DTMF keys, "
                             f"got {self.yes_key!r}, {self.no_key!r}")
        return self

    def date_sounds(self, month: int, day: int) -> tuple[str, str]:
        return f"{self.date_sound_dir}/month_{month}", f"{self.date_sound_dir}/day_{day}"


class SpeechLanguage(FrozenModel):
    """A language callers may say their rating in: its Vosk model and the phrases for each level.

    ``digits`` are the spoken menu keys ("一" means key 1, whatever level key 1 is).
    """

    model: str
    levels: dict[str, tuple[str, ...]]
    digits: dict[str, tuple[str, ...]] = {}


class ReadBack(FrozenModel):
    """Which spoken levels are read back for the caller to confirm before they are stored.

    Recognition can mishear a 差评 as a 好评 ("不满意" holds "满意", "불만족" holds "만족"), and no confidence
    threshold rules that out, so the safe default reads back every positive level heard; ``below_confidence``
    trades that safety for speed on the ones heard clearly. A level the caller does not confirm is not stored:
    the key menu asks again.
    """

    levels: Literal["none", "positive", "all"] = "positive"
    below_confidence: float | None = Field(default=None, ge=0.0, le=1.0)  # None: whatever the confidence
    yes_key: str = "1"
    no_key: str = "2"
    menu: MenuPolicy = MenuPolicy(timeout_ms=5000, plays=2, invalid_replays=1)

    @model_validator(mode="after")
    def _check(self) -> ReadBack:
        if self.yes_key == self.no_key or not {self.yes_key, self.no_key} <= DTMF_KEYS:
            raise ValueError(f"read_back yes/no keys must be two distinct DTMF keys, "
                             f"got {self.yes_key!r}, {self.no_key!r}")
        return self

    def applies(self, level: Level, confidence: float) -> bool:
        """Whether ``level``, heard with ``confidence``, is read back."""
        if self.levels == "none" or (self.levels == "positive" and level.negative):
            return False
        return self.below_confidence is None or confidence < self.below_confidence

    def prompts(self, levels: tuple[Level, ...]) -> list[str]:
        """The prompts that read the levels back (``confirm_<level>``)."""
        return [f"confirm_{level.code}" for level in levels
                if self.levels == "all" or (self.levels == "positive" and not level.negative)]


class SpeechPolicy(FrozenModel):
    """Whether and how a hotline listens for a spoken rating; ``language: null`` means keys only."""

    language: str | None = None
    min_confidence: float = Field(default=0.6, ge=0.0, le=1.0)
    # At most a minute: a rating is a word, and the FastAGI server gives EXEC AudioSocket two minutes to
    # answer before it takes the peer for gone (ivr/reply_bounds.py).
    listen_seconds: float = Field(default=6.0, gt=0, le=60)
    # Quiet after a whole phrase that ends the listening at once; Vosk's own end of speech
    # (the model's rule2 trailing silence, 0.5 s) still ends it when this does not.
    end_silence_seconds: float = Field(default=0.15, gt=0)
    retries: int = Field(default=1, ge=0)  # re-asks after speech that was not understood
    # With --speech-recordings: RECORD FILE's s=, whole seconds of silence that end the recording, counted from
    # its start (a caller quiet this long after the prompt gets the key menu) or from the end of speech.
    recording_silence_seconds: int = Field(default=2, ge=1, le=10)
    read_back: ReadBack = ReadBack()


class HotlineProfile(FrozenModel):
    """Everything the IVR needs to know about one hotline."""

    code: str
    name: str
    keys: dict[str, str]
    repeat_key: str
    menu: MenuPolicy
    tag_menu: MenuPolicy
    voice_message: VoiceMessagePolicy
    verification: VerificationScript
    sound_dir: str
    prompts: dict[str, str]
    tags: tuple[ReasonTag, ...]
    # espeak-ng voice for the placeholder prompts; cmn-latn-pinyin is fed pinyin (ivr/prompts.py).
    prompt_voice: str = "cmn-latn-pinyin"
    speech: SpeechPolicy = SpeechPolicy()
    # The 补充评价 SMS: {name} the hotline, {month}/{day} the call, {deadline} the window's last day, {link}.
    sms_reminder: str | None = None

    @model_validator(mode="after")
    def _check(self) -> HotlineProfile:
        needed = PROMPT_NAMES + (SPEECH_PROMPT_NAMES if self.speech.language else ())
        missing = [name for name in needed if name not in self.prompts]
        if missing:
            raise ValueError(f"prompts missing: {', '.join(missing)}")
        used = set(self.keys) | {self.repeat_key}
        bad = sorted(k for k in used if k not in DTMF_KEYS)
        if bad or len(self.keys) + 1 != len(used):
            raise ValueError(f"menu keys must be distinct DTMF keys, got {sorted(used)}")
        tag_keys = [t.key for t in self.tags]
        if len(set(tag_keys)) != len(tag_keys) or not set(tag_keys) <= DTMF_KEYS:
            raise ValueError(f"tag keys must be distinct DTMF keys, got {tag_keys}")
        if len({t.code for t in self.tags}) != len(self.tags):
            raise ValueError("tag codes must be distinct")
        if self.sms_reminder is not None:
            fields = {name for _, name, _, _ in string.Formatter().parse(self.sms_reminder) if name is not None}
            if "link" not in fields or fields - SMS_FIELDS:
                raise ValueError(f"sms_reminder must contain {{link}} and only {sorted(SMS_FIELDS)}, "
                                 f"got {sorted(fields)}")
        return self

    def sound(self, prompt: str) -> str:
        """The Asterisk sound name (no extension) of a prompt."""
        return f"{self.sound_dir}/{prompt}"

    def tag_for_key(self, key: str) -> ReasonTag | None:
        return next((t for t in self.tags if t.key == key), None)

    @property
    def tag_keys(self) -> str:
        return "".join(t.key for t in self.tags)


class Rules(FrozenModel):
    levels: tuple[Level, ...]
    hotlines: dict[str, HotlineProfile]
    callback: CallbackPolicy
    lifecycle: Lifecycle = Lifecycle()
    # A rules file without the section gets the shipped periods: the law sets no "keep for ever" default.
    retention: RetentionPolicy = RetentionPolicy()
    speech_languages: dict[str, SpeechLanguage] = {}

    @model_validator(mode="after")
    def _check(self) -> Rules:
        codes = [level.code for level in self.levels]
        if len(set(codes)) != len(codes):
            raise ValueError("level codes must be distinct")
        for hotline in self.hotlines.values():
            unknown = sorted(set(hotline.keys.values()) - set(codes))
            if unknown:
                raise ValueError(f"hotline {hotline.code}: keys name unknown levels {unknown}")
            if hotline.speech.language:
                self._check_speech(hotline, codes)
        default = self.lifecycle.default_rating.level
        if self.lifecycle.default_rating.enabled and (
                default not in codes or next(lv for lv in self.levels if lv.code == default).negative):
            raise ValueError(f"lifecycle.default_rating.level must be a known level that is not a 差评, "
                             f"got {default!r}")
        if self.lifecycle.supplementary.reminder.enabled:
            silent = sorted(code for code, hotline in self.hotlines.items() if hotline.sms_reminder is None)
            if silent:
                raise ValueError(f"SMS reminders are enabled but hotlines {silent} have no sms_reminder text")
        # The batch rule and the SMS limit compare numbers within their look-back; a number hashed inside it
        # would no longer match its own newer calls, so numbers must outlive both.
        lookback = max(self.lifecycle.batch.within.as_timedelta(),
                       self.lifecycle.supplementary.reminder.per_number.within.as_timedelta())
        if self.retention.numbers.shortest() <= lookback:
            raise ValueError(f"retention.numbers ({self.retention.numbers.describe()}) must be longer than the batch "
                             f"rule's and the SMS limit's look-back ({lookback})")
        return self

    def _check_speech(self, hotline: HotlineProfile, codes: list[str]) -> None:
        language = self.speech_languages.get(hotline.speech.language or "")
        if language is None:
            raise ValueError(f"hotline {hotline.code}: unknown speech language {hotline.speech.language!r} "
                             f"(known: {', '.join(self.speech_languages) or 'none'})")
        unknown = sorted(set(language.levels) - set(codes))
        if unknown:
            raise ValueError(f"speech language {hotline.speech.language}: phrases for unknown levels {unknown}")
        missing = [name for name in hotline.speech.read_back.prompts(self.levels) if name not in hotline.prompts]
        if missing:
            raise ValueError(f"hotline {hotline.code}: speech.read_back needs prompts {', '.join(missing)}")
        phrases = self.speech_phrases(hotline)
        said = [p for words in language.levels.values() for p in words] + [
            p for key, words in language.digits.items() if key in hotline.keys for p in words]
        if len(said) != len(phrases):
            raise ValueError(f"speech language {hotline.speech.language}: a phrase is given for two answers")

    def speech_phrases(self, hotline: HotlineProfile) -> dict[str, str]:
        """What a caller of ``hotline`` may say, each phrase with the code of the level it means."""
        language = self.speech_languages.get(hotline.speech.language or "")
        if language is None:
            return {}
        phrases = {phrase: level for level, words in language.levels.items() for phrase in words}
        phrases |= {phrase: hotline.keys[key] for key, words in language.digits.items()
                    if key in hotline.keys for phrase in words}
        return phrases

    @cached_property
    def _levels_by_code(self) -> dict[str, Level]:
        return {level.code: level for level in self.levels}

    def level(self, code: str) -> Level:
        try:
            return self._levels_by_code[code]
        except KeyError:
            raise KeyError(f"unknown rating level {code!r}") from None

    def hotline(self, code: str) -> HotlineProfile:
        try:
            return self.hotlines[code]
        except KeyError:
            raise KeyError(f"unknown hotline {code!r}; known: {', '.join(self.hotlines)}") from None

    def level_for_key(self, hotline: HotlineProfile, key: str) -> Level | None:
        code = hotline.keys.get(key)
        return self.level(code) if code is not None else None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_rules(document: dict[str, Any]) -> Rules:
    """Build :class:`Rules` from a parsed YAML document."""
    if not isinstance(document, dict):
        raise RulesError("the rules file must be a mapping")
    defaults = document.get("defaults") or {}
    hotlines = document.get("hotlines") or {}
    if not hotlines:
        raise RulesError("the rules file defines no hotline")
    try:
        # The policy first: the prompts say its time limit.
        policy = CallbackPolicy.model_validate(document.get("callback"))
        wordings = {str(voice): TimeLimitWording.model_validate(wording)
                    for voice, wording in (document.get("time_limit_wording") or {}).items()}
        profiles = {}
        for code, section in hotlines.items():
            code = str(code)
            merged = _merge(defaults, section or {})
            merged["code"] = code
            merged["sound_dir"] = str(merged.get("sound_dir", "")).format(hotline=code)
            if isinstance(merged.get("prompts"), dict):
                voice = merged.get("prompt_voice", HotlineProfile.model_fields["prompt_voice"].default)
                merged["prompts"] = promised_prompts(code, merged["prompts"], str(voice), policy.verify_within,
                                                     wordings)
            profiles[code] = merged
        return Rules.model_validate(
            {"levels": document.get("levels"), "hotlines": profiles, "callback": policy,
             "lifecycle": document.get("lifecycle") or {}, "retention": document.get("retention") or {},
             "speech_languages": document.get("speech_languages") or {}}
        )
    except ValidationError as exc:
        raise RulesError(f"invalid rules: {exc}") from exc
    except PromiseError as exc:
        raise RulesError(str(exc)) from None


def load_rules(path: str | os.PathLike[str] | None = None) -> Rules:
    """Load the rules file: ``path`` (``Settings.rules_file``, ``$HOTLINE_EVAL_RULES``), else the shipped one."""
    return parse_rules(read_yaml(Path(path or DEFAULT_RULES_FILE), RulesError, "rules file"))
