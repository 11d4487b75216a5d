"""The post-call evaluation, as the hotline's prompt script.

    1. Read who and what is being rated from the channel variables.
    2. Rating menu: 非常满意 1 … 非常不满意 5, ``*`` repeats; a key interrupts the
       prompt. Wrong key: "输入有误" and the menu again. Silence: the menu again,
       then 未评价. The rating is on disk the moment the key is read, before the
       caller hears another word.
       Where the hotline hears speech, the menu first invites the caller to
       say the rating; speech not understood is re-asked, then keys take over.
    3. For a 差评: the reason-tag menu, then an optional voice message.
    4. Thanks, and hang up.

Keys, prompts, counts and tags come from the hotline's rules; this module
decides only the order of things.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ivr.agi_session import AgiSession, ChannelHungUp, CommandFailed
from ivr.menus import HotlineScript
from ivr.rating_writer import RatingWriter
from ivr.speech_listener import Heard, RatingListener
from rating_core.events.call_events import (
    CallEnded,
    CallStarted,
    RatingGiven,
    ReasonGiven,
    VoiceMessageRecorded,
    utcnow,
)
from rating_core.rules.metrics import RATINGS
from rating_core.rules.privacy import mask_phone
from rating_core.rules.rulebook import HotlineProfile, Level, Rules, VoiceMessagePolicy
from speech_models.grammar import Understood

log = logging.getLogger(__name__)

# Channel variables the hotline's dialplan sets before sending the caller here.
CHANNEL_VARIABLES = {
    "agent_id": "EVAL_AGENT",
    "queue": "EVAL_QUEUE",
    "case_number": "EVAL_CASE",
    "unit": "EVAL_UNIT",
    "linkedid": "EVAL_LINKEDID",
}
HOTLINE_VARIABLE = "EVAL_HOTLINE"
# Without these the rating cannot be attributed; the others are often legitimately empty
# (no work order yet, a matter not transferred to a unit).
EXPECTED_VARIABLES = ("EVAL_AGENT", "EVAL_QUEUE")
# A uniqueid names the voice message's file; Asterisk's are digits and a dot, but the name is the caller's to set.
_UNSAFE_IN_A_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class CallFacts:
    uniqueid: str
    hotline: str | None
    caller_number: str | None
    channel: str | None
    values: dict[str, str | None] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


async def read_call_facts(agi: AgiSession) -> CallFacts:
    """Who called, which hotline, and the agent/queue/case/unit the dialplan passed."""
    env = agi.env
    hotline = env.query.get("hotline") or await agi.get_variable(HOTLINE_VARIABLE)
    facts = CallFacts(
        uniqueid=env.uniqueid or f"unknown-{id(agi)}",
        hotline=hotline,
        caller_number=env.get("callerid"),
        channel=env.get("channel"),
    )
    for name, variable in CHANNEL_VARIABLES.items():
        value = await agi.get_variable(variable)
        facts.values[name] = value or None
        if not value and variable in EXPECTED_VARIABLES:
            facts.missing.append(variable)
    # The service call's recording, when the dialplan passes it (?recording=${MIXMONITOR_FILENAME}).
    facts.values["recording_file"] = env.query.get("recording") or None
    if not facts.values["linkedid"]:
        # After Queue(…,c) the caller's own channel still carries the original call's linkedid.
        facts.values["linkedid"] = await agi.get_full_variable("${CHANNEL(linkedid)}")
    return facts


async def evaluate(agi: AgiSession, rules: Rules, writer: RatingWriter, speech: RatingListener | None = None) -> str:
    """Run one evaluation call; return why it ended. Never raises for a call-level problem."""
    facts = await read_call_facts(agi)
    context = f"call {facts.uniqueid} ({facts.channel}, caller {mask_phone(facts.caller_number)})"
    profile = rules.hotlines.get(facts.hotline or "")
    await writer.submit(  # handed over: on disk before the rating, which is waited for
        CallStarted(
            uniqueid=facts.uniqueid,
            hotline=facts.hotline or "unknown",
            at=utcnow(),
            caller_number=facts.caller_number,
            channel=facts.channel,
            variables={"agi_request": agi.env.variables.get("agi_request", "")},
            **facts.values,
        )
    )
    if facts.missing:
        log.warning("%s: channel variables not set: %s", context, ", ".join(facts.missing))
    if profile is None:
        log.error("%s: unknown hotline %r (known: %s); ending without evaluation",
                  context, facts.hotline, ", ".join(rules.hotlines))
        await writer.finish(CallEnded(facts.uniqueid, "unknown_hotline", utcnow()))
        return "unknown_hotline"

    flow = EvaluationFlow(agi, rules, profile, writer, facts.uniqueid, speech)
    end_reason = "error"
    try:
        end_reason = await flow.run_to_the_end(context, "caller_hangup")
    finally:
        # One write says how far the caller got and why the call ended (the flow's own
        # progress writes are only those that must survive a crash: the rating and what follows).
        # Every event of the call is on disk before the socket closes, and in the store too unless it is down.
        await writer.finish(CallEnded(facts.uniqueid, end_reason, utcnow(), flow.progress, flow.menu_plays))
    return end_reason


class EvaluationFlow(HotlineScript):
    def __init__(self, agi: AgiSession, rules: Rules, profile: HotlineProfile, writer: RatingWriter, uniqueid: str,
                 speech: RatingListener | None = None):
        super().__init__(agi, profile, uniqueid)
        self.rules = rules
        self.writer = writer
        self.speech = speech if speech is not None and speech.hears(profile) else None
        self.zone = ZoneInfo(rules.callback.timezone)

    @property
    def menu_plays(self) -> int:
        return self.plays["menu"] + self.plays["speech_menu"]

    async def run(self) -> str:
        await self.agi.answer()
        level = await self.ask_for_rating()
        if level is None:
            await self.say("goodbye")
            await self.agi.hangup()
            return self.gave_up_because
        if level.negative:
            await self.ask_for_reason()
            await self.take_voice_message()
            await self.say("thanks_negative")
        else:
            await self.say("thanks")
        self.progress = "thanks"
        await self.agi.hangup()
        return "completed"

    # -- the rating menu ----------------------------------------------------------

    async def ask_for_rating(self) -> Level | None:
        self.progress = "menu"
        pressed: str | None = None
        if self.speech is not None:
            answer = await self.ask_by_voice()
            if isinstance(answer, Level):
                return answer
            pressed = answer
        key = await self.menu(self.profile.menu, "menu", accepted=set(self.profile.keys), pending=pressed)
        if key is None:
            return None
        return await self.rated(key, "dtmf")

    async def ask_by_voice(self) -> Level | str | None:
        """Say it or press it. Returns the level, or a key that is no rating (the key menu takes it as
        its first press: "输入有误" for a wrong key, the menu again for ``*``), or None for the key menu.
        Speech not understood is asked again, then the key menu takes over."""
        assert self.speech is not None
        prompt = "speech_menu"
        for _ in range(self.profile.speech.retries + 1):
            self.plays[prompt] += 1
            key = await self.say(prompt, interruptible=True)
            if key is not None:
                return await self.rated(key, "dtmf") if key in self.profile.keys else key
            heard = await self.speech.listen(self.agi, self.profile, self.uniqueid)
            if heard.key is not None:
                return await self.rated(heard.key, "dtmf") if heard.key in self.profile.keys else heard.key
            if heard.level is not None:
                return await self.spoken(heard)
            if heard.unavailable or heard.silent:
                return None  # no listening, or nothing said: the key menu
            prompt = "speech_retry"
        return None

    async def spoken(self, heard: Heard) -> Level | None:
        """A level heard in speech: stored at once, or first read back where the hotline's policy says so
        ("您的评价是满意，确认请按1，重新评价请按2"); one the caller does not confirm is not stored, and
        the key menu asks again (None)."""
        assert heard.level is not None and heard.understood is not None
        read_back = self.profile.speech.read_back
        if read_back.applies(self.rules.level(heard.level), heard.understood.confidence):
            if heard.hung_up:
                log.warning("call %s: heard %s (%r, confidence %.2f) as the caller hung up; not confirmed, not stored",
                            self.uniqueid, heard.level, heard.understood.text, heard.understood.confidence)
                raise ChannelHungUp("caller hung up before confirming the spoken rating")
            self.progress = "read_back"
            key = await self.menu(read_back.menu, f"confirm_{heard.level}",
                                  accepted={read_back.yes_key, read_back.no_key})
            confirmed = key == read_back.yes_key
            log.info("call %s: read back %s (%r, confidence %.2f): %s", self.uniqueid, heard.level,
                     heard.understood.text, heard.understood.confidence,
                     "confirmed" if confirmed else "rating again" if key else "no answer; rating again by key")
            if not confirmed:
                self.progress = "menu"
                return None
        level = await self.rated(heard.level, "speech", heard.understood)
        if heard.hung_up:
            raise ChannelHungUp("caller hung up right after rating")
        return level

    async def rated(self, key_or_level: str, channel: str, understood: Understood | None = None) -> Level:
        """Store the rating the moment it is known (a key, or a level heard in speech, with what was heard)."""
        level = (self.rules.level_for_key(self.profile, key_or_level) if channel == "dtmf"
                 else self.rules.level(key_or_level))
        assert level is not None
        await self.writer.write(RatingGiven(  # on disk before the caller hears another word
            self.uniqueid, level.code, channel, utcnow(), heard=understood.text if understood else None,
            confidence=understood.confidence if understood else None))
        RATINGS.labels(self.profile.code, level.code, channel).inc()
        self.progress = "rated"
        return level

    async def ask_for_reason(self) -> None:
        key = await self.menu(self.profile.tag_menu, "tag_menu", accepted=set(self.profile.tag_keys))
        tag = self.profile.tag_for_key(key) if key else None
        if tag is None:
            return
        await self.writer.write(ReasonGiven(self.uniqueid, (tag.code,), utcnow()))
        self.progress = "reason"

    # -- the voice message --------------------------------------------------------

    async def take_voice_message(self) -> None:
        policy = self.profile.voice_message
        if not policy.enabled:
            return
        if await self.say("voice_invite", interruptible=True) == policy.end_key:
            return  # the caller skipped the message
        path = voice_message_path(policy, self.profile.code, self.uniqueid, datetime.now(self.zone))
        try:
            recording = await self.agi.record(path, policy.format, silence_s=policy.silence_seconds,
                                              max_s=policy.max_seconds, options=record_options(policy))
        except CommandFailed as exc:
            log.error("call %s: voice message not recorded into %s.%s: %s", self.uniqueid, path, policy.format, exc)
            return
        if recording.seconds >= policy.min_seconds:
            await self.writer.write(
                VoiceMessageRecorded(self.uniqueid, f"{path}.{policy.format}", round(recording.seconds, 2), utcnow())
            )
            self.progress = "voice_message"
        if recording.ended_by == "hangup":
            raise ChannelHungUp("caller hung up while leaving a voice message")


def voice_message_path(policy: VoiceMessagePolicy, hotline: str, uniqueid: str, now: datetime) -> str:
    """Where Asterisk writes a call's message, without the format: ``<directory>/<hotline>/<day>/<uniqueid>``.

    The day is the hotline's local date (Beijing), as the people who look for a day's messages count days.
    """
    name = _UNSAFE_IN_A_FILENAME.sub("_", uniqueid)
    return f"{policy.directory.rstrip('/')}/{hotline}/{now.strftime('%Y%m%d')}/{name}"


def record_options(policy: VoiceMessagePolicy) -> str:
    """Record()'s options: ``k`` keeps what a caller said before hanging up (Record deletes it otherwise),
    ``q`` leaves out the beep, ``t`` ends on ``*`` instead of ``#``."""
    return "k" + ("" if policy.beep else "q") + ("t" if policy.end_key == "*" else "")
