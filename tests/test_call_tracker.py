"""The dialer's call following, fed what a real Asterisk 22 sent for the five outcomes of an Originate.

``data/ami_originate_outcomes.txt`` is a copy of ``../shared/asterisk/AMI_ORIGINATE_FULL.md``, the full
blocks behind OBSERVED.md §2.3. Each case is turned back into the bytes Asterisk sent, read by
:mod:`protocols.ami` and handed to the tracker the way the dialer hands it events: no socket, no
clock, no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from callback.call_tracker import (
    CallEnded,
    CallTracker,
    CitizenAnswered,
    LiveAttempt,
    OriginateFailed,
    Step,
    outcome_of,
)
from protocols.ami import NEED_DATA, AmiParser, Banner, ConnectionClosed, Message, format_message

TRANSCRIPTS = Path(__file__).parent / "data" / "ami_originate_outcomes.txt"
FROM_ASTERISK, TO_ASTERISK, CLOSED = "<- from Asterisk", "-> to Asterisk", "RX-EOF"


@dataclass(frozen=True)
class Capture:
    """One case: Asterisk's messages in the order they came, and the Originate the capture sent."""

    messages: list[Message]
    originate: Message

    @property
    def first_leg(self) -> str:
        """The ``;1`` channel's uniqueid: what our dialer names in advance with ``ChannelId``.

        The capture's Originate named no channel, so Asterisk chose the name; the tracker is
        told it as the dialer would have told it its own.
        """
        return next(m["Uniqueid"] for m in self.messages
                    if m.name == "Newchannel" and m["Channel"].endswith(";1"))

    def index(self, name: str, **fields: str) -> int:
        return next(n for n, m in enumerate(self.messages)
                    if m.name == name and all(m.get(k) == v for k, v in fields.items()))


def wire_chunks(section: str) -> tuple[list[bytes], list[bytes]]:
    """What Asterisk sent (one ``recv()`` a chunk, ``b""`` at its close) and what the capture sent.

    The file shows each chunk as its lines without their ``\\r\\n``, the message's closing empty
    line as the blank line before the next ``# +T`` annotation; the banner alone has no empty line.
    """
    received: list[bytes] = []
    sent: list[bytes] = []
    direction = ""
    lines: list[str] = []

    def flush() -> None:
        while lines and not lines[-1]:
            lines.pop()
        if direction == FROM_ASTERISK and lines[0].startswith("Asterisk Call Manager/"):
            received.append(f"{lines[0]}\r\n".encode())
        elif direction in (FROM_ASTERISK, TO_ASTERISK):
            (received if direction == FROM_ASTERISK else sent).append(("\r\n".join(lines) + "\r\n\r\n").encode())
        lines.clear()

    for line in section.split("\n"):
        if line.startswith("# +"):
            flush()
            direction = line.split("s ", 1)[1]
            if direction.startswith(CLOSED):
                received.append(b"")
        elif line != "```":
            lines.append(line)
    flush()
    return received, sent


def read_captures() -> dict[str, Capture]:
    text = TRANSCRIPTS.read_text(encoding="utf-8")
    captures = {}
    for section in text.split("\n## ")[1:]:
        name, _, body = section.partition("\n")
        received, sent = wire_chunks(body)
        parser = AmiParser()
        events = []
        for chunk in received:
            parser.receive_data(chunk)
            while (event := parser.next_event()) is not NEED_DATA:
                events.append(event)
                if isinstance(event, ConnectionClosed):
                    break
        assert isinstance(events[0], Banner) and events[-1] == ConnectionClosed(truncated=False)
        ours = AmiParser(expect_banner=False)
        ours.receive_data(b"".join(sent))
        originate = next(m for m in ours.events() if isinstance(m, Message) and m.get("Action") == "Originate")
        captures[name] = Capture([e for e in events if isinstance(e, Message)], originate)
    return captures


CAPTURES = read_captures()
# What each case came to in tests/test_dialer.py on the simulated Asterisk: the outcome and the cause kept.
OUTCOMES = {"answer": ("answered", 16), "busy": ("busy", 17), "noanswer": ("no_answer", 19),
            "reject": ("rejected", 21), "congest": ("congestion", 34)}
REASONS = {"answer": 4, "busy": 5, "noanswer": 3, "reject": 0, "congest": 8}


def following(capture: Capture, mode: str = "automated") -> tuple[CallTracker, LiveAttempt]:
    """A tracker told that the capture's Originate was sent (before any of its events came)."""
    tracker = CallTracker()
    attempt = LiveAttempt(1, 1, capture.first_leg, capture.originate["ActionID"], mode, response_deadline=30.0)
    tracker.follow(attempt)
    return tracker, attempt


def feed(tracker: CallTracker, messages: list[Message]) -> list[Step]:
    return [step for message in messages if (step := tracker.handle(message)) is not None]


def test_the_transcripts_hold_the_five_cases_each_with_its_originate() -> None:
    assert sorted(CAPTURES) == sorted(OUTCOMES)
    assert {name: c.originate["ActionID"] for name, c in CAPTURES.items()} == {
        "answer": "cb-answer", "busy": "cb-busy", "noanswer": "cb-noanswer", "reject": "cb-reject",
        "congest": "cb-congest"}
    assert CAPTURES["answer"].first_leg == "1795317034.70"


@pytest.mark.parametrize("case", sorted(OUTCOMES))
def test_each_observed_outcome_is_what_the_attempt_came_to(case: str) -> None:
    capture = CAPTURES[case]
    tracker, attempt = following(capture)
    steps = feed(tracker, capture.messages)
    end = outcome_of(attempt)
    assert (end.outcome, end.cause) == OUTCOMES[case]
    assert end.reason == REASONS[case] and end.detail is None
    if case == "answer":
        # Noted answered at the OriginateResponse; ended by the first leg's Hangup, not the second's.
        assert steps == [CitizenAnswered(attempt), CallEnded(attempt)]
        assert end.cause_text == "Normal Clearing"
    else:
        assert steps == [OriginateFailed(attempt)]


@pytest.mark.parametrize("case", sorted(OUTCOMES))
def test_wherever_the_originate_response_comes_the_outcome_is_the_same(case: str) -> None:
    """OBSERVED.md §2.3: the OriginateResponse drifts among the channel events from run to run."""
    capture = CAPTURES[case]
    messages = list(capture.messages)
    response = messages.pop(capture.index("OriginateResponse"))
    # An answered call's first leg hangs up seconds after the answer: the response comes before that.
    last = capture.index("Hangup", Uniqueid=capture.first_leg) if case == "answer" else len(messages)
    for position in range(last + 1):
        tracker, attempt = following(capture)
        feed(tracker, messages[:position] + [response] + messages[position:])
        assert (outcome_of(attempt).outcome, outcome_of(attempt).cause) == OUTCOMES[case], position


def test_other_calls_events_are_not_taken_for_ours() -> None:
    tracker, attempt = following(CAPTURES["answer"])
    for case in ("busy", "noanswer", "reject", "congest"):
        assert feed(tracker, CAPTURES[case].messages) == []
    assert (attempt.reason, attempt.causes, attempt.answered) == (None, [], False)


def test_events_after_the_dialer_began_writing_the_outcome_change_nothing() -> None:
    capture = CAPTURES["busy"]
    tracker, attempt = following(capture)
    at = capture.index("OriginateResponse")
    assert feed(tracker, capture.messages[:at + 1]) == [OriginateFailed(attempt)]
    attempt.finishing = True
    assert feed(tracker, capture.messages[at + 1:]) == []
    # What the dialer writes is what was in before it began: here the Reason alone, the Hangups unseen.
    assert attempt.causes == [] and (outcome_of(attempt).outcome, outcome_of(attempt).cause) == ("busy", None)


def test_an_attempt_without_an_originate_response_by_its_deadline_is_overdue() -> None:
    capture = CAPTURES["noanswer"]
    tracker, attempt = following(capture)
    assert list(tracker.overdue(29.9)) == []
    assert list(tracker.overdue(30.0)) == [attempt]
    feed(tracker, capture.messages)
    assert list(tracker.overdue(60.0)) == []


def status(uniqueid: str, state: int) -> Message:
    """A ``Status`` list entry for a channel that is still up (only the fields the tracker reads)."""
    return Message((("Event", "Status"), ("Uniqueid", uniqueid), ("ChannelState", str(state))))


def test_a_call_whose_events_were_lost_is_followed_on_when_found_up() -> None:
    # The connection dropped after the first event; on reconnecting, Status finds the call answered.
    capture = CAPTURES["answer"]
    tracker, attempt = following(capture)
    feed(tracker, capture.messages[:1])
    tracker.still_up(attempt, [status(capture.first_leg, 6)], response_deadline=60.0)
    assert attempt.answered and attempt.response_deadline == 60.0
    hangup = capture.index("Hangup", Uniqueid=capture.first_leg)
    assert feed(tracker, capture.messages[hangup:]) == [CallEnded(attempt)]
    assert outcome_of(attempt).outcome == "answered"


def test_a_call_gone_with_its_end_unseen_is_known_only_if_its_reason_or_answer_was_seen() -> None:
    capture = CAPTURES["busy"]
    tracker, attempt = following(capture)
    feed(tracker, capture.messages[:capture.index("OriginateResponse")])
    assert not CallTracker.outcome_known(attempt)       # the dialer records it "unknown"
    feed(tracker, capture.messages[capture.index("OriginateResponse"):][:1])
    assert CallTracker.outcome_known(attempt) and outcome_of(attempt).outcome == "busy"
    answered = LiveAttempt(2, 2, "cb-2", "cb-2-a", "agent_first", 0.0, answered=True, citizen_status="ANSWER")
    agent_only = LiveAttempt(3, 3, "cb-3", "cb-3-a", "agent_first", 0.0, answered=True)
    assert CallTracker.outcome_known(answered) and not CallTracker.outcome_known(agent_only)


# Agent-first calls were not captured on the real Asterisk: these events follow the simulator's shape.
AGENT, CITIZEN = "cb-7-1-abc", "1795317050.90"


def event(*fields: tuple[str, str]) -> Message:
    parser = AmiParser(expect_banner=False)
    parser.receive_data(format_message(fields))
    (message,) = parser.events()
    assert isinstance(message, Message)
    return message


def agent_answered() -> Message:
    return event(("Event", "OriginateResponse"), ("ActionID", f"{AGENT}-a"), ("Response", "Success"),
                 ("Reason", "4"), ("Uniqueid", AGENT))


def citizen_dial_end(status: str) -> Message:
    return event(("Event", "DialEnd"), ("Uniqueid", AGENT), ("Linkedid", AGENT), ("DestUniqueid", CITIZEN),
                 ("DestLinkedid", AGENT), ("DialStatus", status))


def hangup(uniqueid: str, cause: int, text: str) -> Message:
    return event(("Event", "Hangup"), ("Uniqueid", uniqueid), ("Linkedid", AGENT), ("Cause", str(cause)),
                 ("Cause-txt", text))


def agent_first() -> tuple[CallTracker, LiveAttempt]:
    tracker = CallTracker()
    attempt = LiveAttempt(7, 7, AGENT, f"{AGENT}-a", "agent_first", 30.0)
    tracker.follow(attempt)
    return tracker, attempt


def test_agent_first_notes_the_citizen_answering_not_the_agent() -> None:
    tracker, attempt = agent_first()
    assert feed(tracker, [agent_answered()]) == []
    assert feed(tracker, [citizen_dial_end("ANSWER")]) == [CitizenAnswered(attempt)]
    assert feed(tracker, [hangup(CITIZEN, 16, "Normal Clearing"), hangup(AGENT, 16, "Normal Clearing")]) == [
        CallEnded(attempt)]
    assert outcome_of(attempt).outcome == "answered"


@pytest.mark.parametrize(("events", "outcome", "detail"), [
    # A rejection reads NOANSWER in DialStatus: the citizen leg's cause says more.
    (lambda: [agent_answered(), citizen_dial_end("NOANSWER"), hangup(CITIZEN, 21, "Call Rejected"),
              hangup(AGENT, 16, "Normal Clearing")], "rejected", None),
    (lambda: [agent_answered(), citizen_dial_end("BUSY"), hangup(AGENT, 16, "Normal Clearing")], "busy", None),
    (lambda: [agent_answered(), hangup(AGENT, 16, "Normal Clearing")], "failed", "坐席接听后未接通市民"),
])
def test_agent_first_outcomes_are_the_citizens(events, outcome: str, detail: str | None) -> None:
    tracker, attempt = agent_first()
    steps = feed(tracker, events())
    assert steps[-1] == CallEnded(attempt)
    assert (outcome_of(attempt).outcome, outcome_of(attempt).detail) == (outcome, detail)


def test_an_agent_who_does_not_answer_fails_the_attempt_saying_why() -> None:
    tracker, attempt = agent_first()
    busy = event(("Event", "OriginateResponse"), ("ActionID", f"{AGENT}-a"), ("Response", "Failure"),
                 ("Reason", "5"), ("Uniqueid", "<unknown>"))
    assert feed(tracker, [busy, hangup(f"{AGENT}-2", 17, "User busy")]) == [OriginateFailed(attempt)]
    assert (outcome_of(attempt).outcome, outcome_of(attempt).detail) == ("failed", "坐席未接通（busy）")
