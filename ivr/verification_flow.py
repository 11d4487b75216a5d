"""The automated callback to a citizen who gave a 差评, as the hotline's script.

    1. Which callback this is: ``?task=&attempt=`` in the AGI URL, else the
       channel variables CALLBACK_TASK / CALLBACK_ATTEMPT the dialer set.
    2. "您好，这里是12345热线回访。您于 三月 十五日 对12345热线的服务给予了不满意
       评价……"; when re-asking after rectification, "您反映的问题已经办理完毕。"
    3. 是否本人 — no: apologise and end; a supervisor takes the task over.
    4. First contact only: 问题是否已解决 — no: "工作人员将尽快与您联系", end.
    5. 对处理结果是否满意 (整改满意) — yes closes the task; no goes to a supervisor.

Each answer is stored the moment its key is read, so a hang-up keeps what was
said. Keys and prompts come from the hotline's rules; what each answer does to
the task is decided in :mod:`rating_core.complaints.callback_tasks`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from ivr.agi_session import AgiSession, ChannelHungUp, ConnectionLost
from ivr.menus import HotlineScript
from ivr.rating_writer import RatingWriter
from rating_core.complaints.callback_tasks import VerificationCall
from rating_core.events.call_events import CallbackAnswered, CallbackCallEnded, utcnow
from rating_core.rules.rulebook import HotlineProfile, Rules

log = logging.getLogger(__name__)

TASK_VARIABLE = "CALLBACK_TASK"
ATTEMPT_VARIABLE = "CALLBACK_ATTEMPT"
HOTLINE_VARIABLE = "CALLBACK_HOTLINE"

Lookup = Callable[[int, int], Awaitable[VerificationCall | None]]


async def read_ids(agi: AgiSession) -> tuple[int, int] | None:
    task = agi.env.query.get("task") or await agi.get_variable(TASK_VARIABLE)
    attempt = agi.env.query.get("attempt") or await agi.get_variable(ATTEMPT_VARIABLE)
    try:
        return int(task or ""), int(attempt or "")
    except ValueError:
        return None


async def verify(agi: AgiSession, rules: Rules, writer: RatingWriter, lookup: Lookup) -> str:
    """Run one automated callback; return why it ended. Never raises for a call-level problem."""
    uniqueid = agi.env.uniqueid or f"unknown-{id(agi)}"
    ids = await read_ids(agi)
    context = f"callback {uniqueid} ({agi.env.get('channel')}, task/attempt {ids})"
    callback: VerificationCall | None = None
    if ids is None:
        log.error("%s: no usable task and attempt ids (request %s)", context, agi.env.variables.get("agi_request"))
    else:
        try:
            callback = await lookup(*ids)
        except Exception as exc:  # the store is down or slow: apologise rather than leave the citizen in silence
            log.error("%s: cannot read the callback task: %s: %s", context, type(exc).__name__, exc)
        else:
            if callback is None:
                log.error("%s: the store has no such task and attempt", context)
    if callback is None:
        await _apologise(agi, rules, await agi.get_variable(HOTLINE_VARIABLE), context)
        return "unknown_callback"
    profile = rules.hotlines.get(callback.hotline)
    if profile is None:
        log.error("%s: unknown hotline %r", context, callback.hotline)
        await agi.hangup()
        return "unknown_hotline"

    flow = VerificationFlow(agi, rules, profile, writer, uniqueid, callback)
    end_reason = "error"
    try:
        end_reason = await flow.run_to_the_end(context, "citizen_hangup")
    finally:
        await writer.finish(CallbackCallEnded(uniqueid, callback.attempt_id, end_reason, utcnow(), flow.progress))
    return end_reason


async def _apologise(agi: AgiSession, rules: Rules, hotline: str | None, context: str) -> None:
    """The callback cannot go on: say so in the hotline's voice if we know which, and hang up."""
    profile = rules.hotlines.get(hotline or "")
    try:
        if profile is not None:
            await Apology(agi, profile, agi.env.uniqueid or "").run()
        else:
            await agi.hangup()
    except (ChannelHungUp, ConnectionLost) as exc:
        log.info("%s: ended while apologising: %s", context, exc)


class Apology(HotlineScript):
    """The whole script when a callback cannot go on: the hotline's apology, then hang up."""

    async def run(self) -> str:
        await self.agi.answer()
        await self.say("verify_unavailable")
        await self.agi.hangup()
        return "apologised"


class VerificationFlow(HotlineScript):
    def __init__(self, agi: AgiSession, rules: Rules, profile: HotlineProfile, writer: RatingWriter, uniqueid: str,
                 callback: VerificationCall) -> None:
        super().__init__(agi, profile, uniqueid)
        self.writer = writer
        self.callback = callback
        self.script = profile.verification
        self.zone = ZoneInfo(rules.callback.timezone)

    async def run(self) -> str:
        await self.agi.answer()
        await self.introduce()
        identity = await self.ask("identity", "verify_identity")
        if identity is None:
            return await self.end("verify_followup", self.gave_up_because)
        if not identity:
            return await self.end("verify_not_you", "completed")
        if self.callback.purpose == "verify":
            resolved = await self.ask("resolved", "verify_resolved")
            if resolved is None:
                return await self.end("verify_followup", self.gave_up_because)
            if not resolved:
                return await self.end("verify_followup", "completed")
        satisfied = await self.ask("satisfied", "verify_satisfaction")
        if satisfied is None:
            return await self.end("verify_followup", self.gave_up_because)
        return await self.end("verify_thanks" if satisfied else "verify_followup", "completed")

    async def introduce(self) -> None:
        """您于X月X日对…热线的服务给予了不满意评价 (and, on a re-ask, that the matter was handled)."""
        rated_on = self.callback.rated_at.astimezone(self.zone)
        month, day = self.script.date_sounds(rated_on.month, rated_on.day)
        await self.say("verify_greeting")
        await self.play(month)
        await self.play(day)
        await self.say("verify_rated")
        if self.callback.purpose == "satisfaction":
            await self.say("verify_rectified")
        self.progress = "introduced"

    async def ask(self, question: str, prompt: str) -> bool | None:
        """A yes/no question; the answer is on disk before anything else is played."""
        key = await self.menu(self.script.menu, prompt, accepted={self.script.yes_key, self.script.no_key})
        if key is None:
            return None
        answer = key == self.script.yes_key
        await self.writer.write(  # the journal: durable, and no database in the way
            CallbackAnswered(self.uniqueid, self.callback.attempt_id, question, answer, key, utcnow())
        )
        self.progress = question
        return answer

    async def end(self, prompt: str, reason: str) -> str:
        await self.say(prompt)
        await self.agi.hangup()
        return reason
