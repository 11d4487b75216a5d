"""What an AMI Originate's result means for a callback attempt.

Asterisk reports a failed Originate twice, with different precision: the
``OriginateResponse`` ``Reason`` (a control frame: 0 failed, 1 hung up,
3 no answer, 4 answered, 5 busy, 8 congestion) and the ``Hangup`` ``Cause``
of each leg (Q.850). A rejected call shows up only in the cause (Reason 0,
Cause 21), and the ``;1`` leg of a busy call says Cause 0 while the ``;2`` leg
says 17 (OBSERVED.md §2.3), so the most specific cause of any leg wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

ORIGINATE_REASONS: dict[int, str] = {
    0: "failed",
    1: "no_answer",  # AST_CONTROL_HANGUP: the far end hung up before answering
    3: "no_answer",
    4: "answered",
    5: "busy",
    8: "congestion",
}

# Q.850 causes that say more than "it did not work". Causes absent here (16
# normal clearing, 0 unknown, 31 normal unspecified…) defer to the Reason.
HANGUP_CAUSES: dict[int, str] = {
    1: "invalid_number",    # unallocated number
    3: "failed",            # no route to destination
    17: "busy",
    18: "no_answer",        # no user responding
    19: "no_answer",        # user alerting, no answer
    20: "no_answer",        # subscriber absent
    21: "rejected",
    22: "invalid_number",   # number changed
    27: "failed",           # destination out of order
    28: "invalid_number",   # invalid number format
    34: "congestion",
    38: "congestion",       # network out of order
    41: "congestion",       # temporary failure
    42: "congestion",       # switching equipment congestion
    44: "congestion",       # requested channel not available
}

# DialEnd DialStatus of the citizen's leg in agent-first mode.
DIAL_STATUSES: dict[str, str] = {
    "ANSWER": "answered",
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CANCEL": "no_answer",
    "CONGESTION": "congestion",
    "CHANUNAVAIL": "failed",
    "DONTCALL": "rejected",
    "TORTURE": "rejected",
    "INVALIDARGS": "failed",
}


def parse_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def failed_outcome(reason: int | None, causes: Iterable[int]) -> tuple[str, str | None]:
    """The outcome of an Originate that did not answer, and a note when something was not understood."""
    for cause in causes:
        if cause in HANGUP_CAUSES:
            return HANGUP_CAUSES[cause], None
    if reason is None:
        return "failed", "no OriginateResponse Reason"
    if reason in ORIGINATE_REASONS and reason != 4:
        return ORIGINATE_REASONS[reason], None
    if reason == 4:
        # "Answered" on a Failure response does not happen; do not call it answered.
        return "failed", "OriginateResponse Failure with Reason 4"
    log.warning("unknown OriginateResponse Reason %s; counting the attempt as failed", reason)
    return "failed", f"unknown OriginateResponse Reason {reason}"


def dial_status_outcome(status: str) -> tuple[str, str | None]:
    outcome = DIAL_STATUSES.get(status.upper())
    if outcome is None:
        log.warning("unknown DialStatus %r; counting the attempt as failed", status)
        return "failed", f"unknown DialStatus {status}"
    return outcome, None
