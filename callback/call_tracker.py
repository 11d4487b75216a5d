"""Following the dialer's calls without any I/O: AMI messages in, what to do about each attempt out.

The dialer tells the tracker of each Originate before sending it (its events
may overtake the response), and feeds it every AMI event. The tracker finds
the attempt an event belongs to (an ``OriginateResponse`` by its ActionID,
channel events by the attempt's ChannelId in their ``Linkedid``, ``Uniqueid``
or ``DestLinkedid``), keeps what decides the outcome (the Reason, each leg's
Hangup cause, the citizen leg's DialStatus), and says when the dialer must act:

* :class:`CitizenAnswered`: the citizen is on the line; note it now, the call goes on.
* :class:`OriginateFailed`: the call never came up; end the attempt once its
  causes are in, since they may trail the ``OriginateResponse`` by a few
  milliseconds (OBSERVED.md §2.3: the order is not stable between runs).
* :class:`CallEnded`: the answered call is over; end the attempt now.

:func:`outcome_of` then says what the attempt came to. Nothing here reads a
clock, a socket or the store: times come in as arguments, so the following is
tested on a real Asterisk's transcripts, without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from callback.call_outcomes import HANGUP_CAUSES, dial_status_outcome, failed_outcome, parse_int
from protocols.ami import Message

ANSWERED_REASON = 4  # OriginateResponse Reason: AST_CONTROL_ANSWER
CHANNEL_UP = "6"  # Status ChannelState of an answered channel
# Causes that say only that the call ended; any other cause of a leg says more (OBSERVED.md §2.3).
PLAIN_CAUSES = (0, 16)


def other_channel_id(channel_id: str) -> str:
    """The ``OtherChannelId`` of an attempt: the second leg of a Local channel pair."""
    return f"{channel_id}-2"


@dataclass
class LiveAttempt:
    """What is known of one call the dialer placed, until its outcome is written.

    ``response_deadline`` is on the dialer's clock: past it with no
    OriginateResponse, the call is looked up. ``finishing`` is set by the
    dialer once it writes the outcome; events after that are not followed.
    """

    attempt_id: int
    task_id: int
    channel_id: str
    action_id: str
    mode: str
    response_deadline: float
    answered: bool = False
    reason: int | None = None
    causes: list[tuple[str, int, str]] = field(default_factory=list)
    citizen_status: str | None = None
    finishing: bool = False

    @property
    def legs(self) -> tuple[str, str]:
        """The uniqueids of the two channels the Originate itself creates."""
        return self.channel_id, other_channel_id(self.channel_id)


@dataclass(frozen=True)
class CitizenAnswered:
    """The citizen is on the line: note it now; the call goes on."""

    attempt: LiveAttempt


@dataclass(frozen=True)
class OriginateFailed:
    """The call never came up: end the attempt once the Hangup causes trailing the response are in."""

    attempt: LiveAttempt


@dataclass(frozen=True)
class CallEnded:
    """The answered call's first leg hung up: end the attempt now."""

    attempt: LiveAttempt


Step = CitizenAnswered | OriginateFailed | CallEnded


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to, as the store records it."""

    outcome: str
    detail: str | None
    reason: int | None
    cause: int | None
    cause_text: str | None


class CallTracker:
    """The attempts the dialer is following, by ChannelId and by ActionID."""

    def __init__(self) -> None:
        self.live: dict[str, LiveAttempt] = {}
        self._by_action: dict[str, str] = {}

    def follow(self, attempt: LiveAttempt) -> None:
        """Follow an attempt: one about to be originated, or one found in flight after a reconnect."""
        self.live[attempt.channel_id] = attempt
        self._by_action[attempt.action_id] = attempt.channel_id

    def forget(self, attempt: LiveAttempt) -> None:
        self.live.pop(attempt.channel_id, None)
        self._by_action.pop(attempt.action_id, None)

    def get(self, channel_id: str) -> LiveAttempt | None:
        return self.live.get(channel_id)

    def find(self, message: Message) -> LiveAttempt | None:
        """The attempt an AMI event belongs to, if it is one of ours."""
        if message.name == "OriginateResponse":
            channel_id = self._by_action.get(message.action_id or "")
            return self.live.get(channel_id) if channel_id else None
        for key in ("Linkedid", "Uniqueid", "DestLinkedid"):
            value = message.get(key)
            if value and value in self.live:
                return self.live[value]
        return None

    def handle(self, message: Message) -> Step | None:
        """Take in one AMI event; say what the dialer must do now, if anything."""
        attempt = self.find(message)
        if attempt is None or attempt.finishing:
            return None
        name = message.name
        if name == "OriginateResponse":
            attempt.reason = parse_int(message.get("Reason"))
            if message.get("Response") == "Success" and attempt.reason == ANSWERED_REASON:
                attempt.answered = True
                # Agent-first: the agent answered; the citizen is dialled next, and DialEnd says how that went.
                return CitizenAnswered(attempt) if attempt.mode == "automated" else None
            return OriginateFailed(attempt)
        if name == "Hangup":
            cause = parse_int(message.get("Cause"))
            if cause is not None:
                attempt.causes.append((message.get("Uniqueid") or "", cause, message.get("Cause-txt") or ""))
            if attempt.answered and message.get("Uniqueid") == attempt.channel_id:
                return CallEnded(attempt)
            return None
        if name == "DialEnd" and attempt.mode == "agent_first" and message.get("DestUniqueid") not in attempt.legs:
            attempt.citizen_status = message.get("DialStatus") or ""
            if attempt.citizen_status == "ANSWER":
                return CitizenAnswered(attempt)
        return None

    def overdue(self, now: float) -> Iterator[LiveAttempt]:
        """Attempts with no OriginateResponse by ``now``: is the call still there?

        Checked one at a time as the caller goes on, so an attempt that ends
        while an earlier one is looked up is passed over.
        """
        for attempt in list(self.live.values()):
            if not attempt.finishing and attempt.reason is None and now >= attempt.response_deadline:
                yield attempt

    @staticmethod
    def still_up(attempt: LiveAttempt, status: Iterable[Message], response_deadline: float) -> None:
        """A ``Status`` lookup found the call: follow it on, until its Hangup ends it."""
        attempt.answered = attempt.answered or any(m.get("ChannelState") == CHANNEL_UP for m in status)
        attempt.response_deadline = response_deadline

    @staticmethod
    def outcome_known(attempt: LiveAttempt) -> bool:
        """Whether a call that is gone, its end unseen, still has a known outcome.

        It has if what matters was seen: the failure's Reason, or that the citizen answered.
        """
        citizen_answered = attempt.answered and (attempt.mode == "automated" or attempt.citizen_status == "ANSWER")
        return (attempt.reason is not None and not attempt.answered) or citizen_answered


def outcome_of(attempt: LiveAttempt) -> Outcome:
    """What an attempt came to, from everything seen of it; the most specific leg's cause is the one kept."""
    outcome, detail = _outcome(attempt)
    first = attempt.causes[0][1] if attempt.causes else None
    cause = next((c for _, c, _ in attempt.causes if c not in PLAIN_CAUSES), first)
    cause_text = next((t for _, c, t in attempt.causes if c == cause), None)
    return Outcome(outcome, detail, attempt.reason, cause, cause_text)


def _outcome(attempt: LiveAttempt) -> tuple[str, str | None]:
    causes = [c for _, c, _ in attempt.causes]
    if attempt.mode == "automated":
        return ("answered", None) if attempt.answered else failed_outcome(attempt.reason, causes)
    if not attempt.answered:
        agent_outcome, _ = failed_outcome(attempt.reason, causes)
        return "failed", f"坐席未接通（{agent_outcome}）"
    if attempt.citizen_status is None:
        return "failed", "坐席接听后未接通市民"
    if attempt.citizen_status != "ANSWER":
        # The citizen leg's cause is more precise than DialStatus (a rejection reads NOANSWER).
        citizen_causes = [c for uid, c, _ in attempt.causes if uid not in attempt.legs and c in HANGUP_CAUSES]
        if citizen_causes:
            return HANGUP_CAUSES[citizen_causes[0]], None
    return dial_status_outcome(attempt.citizen_status)
