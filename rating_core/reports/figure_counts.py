"""The ten counts of seed 003's table, each defined once: its name, what it counts, and its SQL condition.

Seed 003 names the counts (A 应评价数 … N3 整改满意数) and the rates made of
them, but not the population each counts. Here every count is the count it
is part of, narrowed by one condition of its own, and the SQL condition of a
count is its parent's AND its own. So the relations the rates need (I ≤ P ≤
M ≤ A, T + B = D, N1 ≤ D, N3 ≤ N2 ≤ T) hold by construction, and a rate
such as 整改满意率 N3/N2 can never pass 100 %.

A count is taken over calls ⟕ their rating ⟕ its callback task, one row per
call started in the period. The page's legend, the 通报表's headings and notes,
and the queries all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import ColumnElement, and_, exists, or_, true

from rating_core.store.models import CallbackAttempt, CallbackTask, Rating

COUNT_NAMES = ("A", "M", "P", "I", "D", "T", "B", "N1", "N2", "N3")


@dataclass(frozen=True)
class Count:
    code: str
    name: str  # the annex's heading
    population: str  # what is counted, as the legend says it (zh-CN)
    part_of: tuple[str, ...]  # the counts this one narrows (all of them at once); none for A, every call


COUNTS = (
    Count("A", "应评价数", "时段内开始、转入满意度评价的来电", ()),
    Count("M", "总评价数", "A 中被采纳的评价：来电人给出的，或到期未评默认的", ("A",)),
    Count("P", "主动评价数", "M 中来电人自己给出的（不含默认评价；同一号码的批量评价只计一次）", ("M",)),
    Count("I", "主动好评数", "P 中不是差评的", ("P",)),
    Count("D", "差评总数", "A 中的全部差评，含未被采纳的", ("A",)),
    Count("T", "有效差评数", "既在 D 中又在 M 中：被采纳的差评", ("D", "M")),
    Count("B", "无效差评数", "D 中未被采纳的差评（误评、恶意评价、申诉成立、恶意评价名单号码）", ("D",)),
    Count("N1", "差评回复数", "D 中已回访接通或已填写核实结论的", ("D",)),
    Count("N2", "差评整改数", "T 中处理完毕的：立行立改、解释说明、限期整改已完成，或回访中市民确认问题已解决", ("T",)),
    Count("N3", "整改满意数", "N2 中市民在处理完毕之后的回访里表示满意的", ("N2",)),
)
BY_CODE = {count.code: count for count in COUNTS}
assert tuple(BY_CODE) == COUNT_NAMES, "the counts are listed in the annex's column order"


def _own_conditions() -> dict[str, ColumnElement[bool]]:
    """What each count adds to the count it is part of (SQL over calls ⟕ ratings ⟕ callback tasks)."""
    answered = exists().where(CallbackAttempt.task_id == CallbackTask.id, CallbackAttempt.outcome == "answered")
    return {
        "A": true(),
        "M": Rating.is_adopted.is_(True),
        "P": and_(Rating.is_active.is_(True), Rating.batch_of_id.is_(None)),
        "I": Rating.is_negative.is_(False),
        "D": Rating.is_negative.is_(True),
        "T": true(),  # D ∩ M says it all
        "B": Rating.is_adopted.is_(False),
        "N1": or_(CallbackTask.verified_at.is_not(None), answered),
        "N2": or_(CallbackTask.rectified_at.is_not(None), CallbackTask.citizen_resolved.is_(True)),
        # The answer is the one given after the handling: a rectification clears an earlier answer.
        "N3": CallbackTask.citizen_satisfied.is_(True),
    }


@cache
def conditions() -> dict[str, ColumnElement[bool]]:
    """Each count's whole condition: its own AND every condition of the counts it is part of."""
    own = _own_conditions()
    whole: dict[str, ColumnElement[bool]] = {}
    for count in COUNTS:  # parents come first in the table
        whole[count.code] = and_(*(whole[parent] for parent in count.part_of), own[count.code])
    return whole


def ancestors(code: str) -> set[str]:
    """Every count ``code`` is part of, directly or through another: each is at least as large."""
    found: set[str] = set()
    for parent in BY_CODE[code].part_of:
        found |= {parent} | ancestors(parent)
    return found


def subset_pairs() -> list[tuple[str, str]]:
    """(part, whole) for every count and each count it is part of."""
    return [(count.code, whole) for count in COUNTS for whole in sorted(ancestors(count.code), key=COUNT_NAMES.index)]

