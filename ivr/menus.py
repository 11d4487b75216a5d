"""What every script here does on a call: play a hotline's prompts and read one-key menus.

The evaluation and the automated callback differ in what they ask, not in how
a menu behaves: a key interrupts the prompt, a wrong key gets "输入有误" and
the menu again, silence gets the menu again, and both give up per the rules.
"""

from __future__ import annotations

import abc
import logging
from collections import Counter

from ivr.agi_session import AgiSession, ChannelHungUp, CommandFailed, ConnectionLost
from rating_core.rules.rulebook import HotlineProfile, MenuPolicy

log = logging.getLogger(__name__)

ANY_KEY = "0123456789*#"


class HotlineScript(abc.ABC):
    def __init__(self, agi: AgiSession, profile: HotlineProfile, uniqueid: str) -> None:
        self.agi = agi
        self.profile = profile
        self.uniqueid = uniqueid
        self.plays: Counter[str] = Counter()  # how often each menu was played
        self.gave_up_because = "no_input"  # why the last menu ended without a key
        self.progress = "connected"  # how far the call got, for the log and the store

    @abc.abstractmethod
    async def run(self) -> str:
        """The script itself; returns why the call ended."""

    async def run_to_the_end(self, context: str, hangup_reason: str) -> str:
        """Run the script and say why the call ended; never raises for a call-level problem."""
        try:
            return await self.run()
        except ChannelHungUp:
            log.info("%s: hung up at %s", context, self.progress)
            return hangup_reason
        except ConnectionLost as exc:
            log.error("%s: lost Asterisk at %s: %s", context, self.progress, exc)
            return "connection_lost"
        except Exception:
            log.exception("%s: script failed at %s", context, self.progress)
            return "error"

    async def menu(self, policy: MenuPolicy, prompt: str, accepted: set[str], *,
                   pending: str | None = None) -> str | None:
        """Play a one-key menu until an accepted key, or give up (None) per the policy.

        ``pending`` is a key the caller already pressed (during an earlier prompt): the menu takes it as
        the first choice, so a wrong key gets "输入有误" and counts, wherever it was pressed.
        """
        silent = invalid = repeats = 0
        # A key pressed during "输入有误" counts as the next choice too.
        while True:
            if pending is None:
                self.plays[prompt] += 1
                key = await self.agi.get_data(self.profile.sound(prompt), policy.timeout_ms, 1)
            else:
                key, pending = pending, None
            if key in accepted:
                return key
            if key is None:
                silent += 1
                if silent >= policy.plays:
                    self.gave_up_because = "no_input"
                    return None
                pending = await self.say("no_input", interruptible=True)
            elif key == self.profile.repeat_key and repeats < policy.max_repeats:
                repeats += 1
            else:
                invalid += 1
                if invalid > policy.invalid_replays:
                    self.gave_up_because = "invalid_input"
                    await self.say("invalid")
                    return None
                pending = await self.say("invalid", interruptible=True)

    async def say(self, prompt: str, *, interruptible: bool = False) -> str | None:
        """Play a prompt; with ``interruptible``, return the menu key that cut it short."""
        return await self.play(self.profile.sound(prompt), interruptible=interruptible)

    async def play(self, sound: str, *, interruptible: bool = False) -> str | None:
        try:
            return await self.agi.stream_file(sound, ANY_KEY if interruptible else "")
        except CommandFailed as exc:
            # A missing sound file must not end the call: the caller can still press keys.
            log.error("call %s: sound %s not played: %s", self.uniqueid, sound, exc)
            return None
