"""The one refusal of every state machine: a move its table has no arrow for.

Each record with states (a callback task and its attempts, an SMS reminder, a
webhook delivery, an appeal, a voice message's transcript) keeps its states as
an enum, its moves as a table and the function that moves it side by side, in
the lowest layer that uses them. The refusal they share lives here, below them
all, so a view or a job catches one class whatever the record.
"""

from __future__ import annotations

from rating_core.rules.refusals import Reason, Refused


class IllegalMove(Refused):
    """A move the state machine has no arrow for: a bug, or a record changed under the mover's feet."""

    reason = Reason.WRONG_STATE
