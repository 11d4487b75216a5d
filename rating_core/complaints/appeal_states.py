"""An appeal's (申诉复核) states, the moves between them as a table, and the one check every move passes.

::

    (filed) under review ──supervisor's decision──▶ upheld (申诉成立) | rejected (申诉不成立)

Under review is no value at all (``Appeal.decision`` is NULL until a
supervisor decides), so the stored strings stay as they were; a decision is
final. The rules that go with a decision are :mod:`rating_core.complaints.appeals`.
"""

from __future__ import annotations

from enum import StrEnum

from rating_core.rules.state_moves import IllegalMove


class AppealDecision(StrEnum):
    UPHELD = "upheld"
    REJECTED = "rejected"


# As the supervisor's and the unit's pages say them; None is an appeal under review.
APPEAL_DECISION_NAMES: dict[AppealDecision | None, str] = {
    None: "复核中", AppealDecision.UPHELD: "申诉成立", AppealDecision.REJECTED: "申诉不成立",
}
APPEAL_MOVES: dict[AppealDecision | None, frozenset[AppealDecision]] = {
    None: frozenset({AppealDecision.UPHELD, AppealDecision.REJECTED}),
    AppealDecision.UPHELD: frozenset(),
    AppealDecision.REJECTED: frozenset(),
}


def appeal_move(current: str | None, to: str) -> AppealDecision:
    """The decision an appeal takes, if it may from ``current`` (None: under review)."""
    source, target = None if current is None else AppealDecision(current), AppealDecision(to)
    if target not in APPEAL_MOVES[source]:
        raise IllegalMove(f"申诉不能从“{APPEAL_DECISION_NAMES[source]}”改为“{APPEAL_DECISION_NAMES[target]}”")
    return target
