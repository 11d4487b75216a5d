"""The 加减分 of a table: entries added, corrected or withdrawn, never edited in place or deleted.

Seed 003 gives each unit a base of 10 points moved by entries "视情况予以加减"
(a data problem found, an innovation, a 通报 from above). A supervisor who
got one wrong corrects or withdraws it with a reason; the wrong entry stays on
record, marked, so a table sent upward can always be explained. The scheme
bounds the item as a whole (:meth:`rating_core.reports.scoring.Adjustment.points`), so
five +20 entries weigh no more than the item allows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating_core.reports.cell_text import printable
from rating_core.rules.refusals import Reason, Refused
from rating_core.store.models import FigureAdjustment

# One entry moves a unit by at most this much; the item's bounds apply to the sum (scoring_rules.yaml).
MAX_ENTRY = Decimal(20)
MAX_REASON = 1000


class AdjustmentError(Refused):
    """An entry the rules refuse; the message is for the supervisor (zh-CN)."""

    reason = Reason.INVALID


def check_entry(name: str, points: Decimal, reason: str) -> None:
    """Refuse an entry with no unit, points out of bounds or more precise than the table prints, or no reason."""
    if not name or len(name) > 256:
        raise AdjustmentError("请选择单位")
    if not points.is_finite() or abs(points) > MAX_ENTRY or points != points.quantize(Decimal("0.01")):
        raise AdjustmentError(f"加减分须为 -{MAX_ENTRY} 到 {MAX_ENTRY} 之间的数，至多两位小数")
    _check_reason(reason, "请填写加减分理由")


def _check_reason(reason: str, missing: str) -> None:
    if not reason.strip():
        raise AdjustmentError(f"{missing}（不超过{MAX_REASON}字）")
    if len(reason) > MAX_REASON:
        raise AdjustmentError(f"理由不能超过{MAX_REASON}字")
    if printable(reason) != reason:  # tab, newline and carriage return (a textarea's \r\n) are kept
        raise AdjustmentError("理由中有无法显示的控制字符，请删去后重试")


def add_entry(session: Session, period: str, dimension: str, name: str, points: Decimal, reason: str,
              at: datetime, actor: str, corrects: FigureAdjustment | None = None) -> FigureAdjustment:
    """Enter one 加减分 for a unit of the (period, dimension) table; ``corrects`` names the entry it replaces."""
    check_entry(name, points, reason)
    entry = FigureAdjustment(period=period, dimension=dimension, name=name, points=points, reason=reason.strip(),
                             entered_by=actor, entered_at=at, corrects_id=corrects.id if corrects else None)
    session.add(entry)
    session.flush()
    return entry


def _open_entry(session: Session, entry_id: int, period: str, dimension: str) -> FigureAdjustment:
    """The entry, still in force, of the table the supervisor is looking at (a page left open on another
    table must not change this one)."""
    entry = session.get(FigureAdjustment, entry_id, with_for_update=True)
    if entry is None:
        raise AdjustmentError(f"加减分记录 {entry_id} 不存在", Reason.NOT_FOUND)
    if (entry.period, entry.dimension) != (period, dimension):
        raise AdjustmentError(f"加减分记录 {entry_id} 不属于当前统计表（{period}），请刷新页面后重试")
    if entry.withdrawn_at is not None:
        raise AdjustmentError("该加减分记录已撤销或更正，不能再改", Reason.ALREADY_DONE)
    return entry


def withdraw_entry(session: Session, entry_id: int, period: str, dimension: str, reason: str, at: datetime,
                   actor: str) -> FigureAdjustment:
    """Take an entry out of the table; it stays in the history with who withdrew it, when and why."""
    _check_reason(reason, "请填写撤销理由")
    entry = _open_entry(session, entry_id, period, dimension)
    entry.withdrawn_at, entry.withdrawn_by, entry.withdrawal_reason = at, actor, reason.strip()
    return entry


def correct_entry(session: Session, entry_id: int, period: str, dimension: str, points: Decimal, reason: str,
                  at: datetime, actor: str) -> FigureAdjustment:
    """Replace an entry by a new one (same unit and table), withdrawing it with the same reason; the
    replacement's ``corrects_id`` says which it replaced."""
    entry = _open_entry(session, entry_id, period, dimension)
    check_entry(entry.name, points, reason)
    entry.withdrawn_at, entry.withdrawn_by, entry.withdrawal_reason = at, actor, reason.strip()
    return add_entry(session, entry.period, entry.dimension, entry.name, points, reason, at, actor, corrects=entry)


def history(session: Session, period: str, dimension: str) -> list[FigureAdjustment]:
    """Every entry of one table, withdrawn ones too, in the order they were made."""
    return list(session.scalars(
        select(FigureAdjustment)
        .where(FigureAdjustment.period == period, FigureAdjustment.dimension == dimension)
        .order_by(FigureAdjustment.id)
    ))


def in_force(entries: list[FigureAdjustment]) -> dict[str, list[FigureAdjustment]]:
    """The entries that count, per unit name."""
    by_unit: dict[str, list[FigureAdjustment]] = defaultdict(list)
    for entry in entries:
        if entry.withdrawn_at is None:
            by_unit[entry.name].append(entry)
    return dict(by_unit)


def statuses(entries: list[FigureAdjustment]) -> dict[int, str]:
    """Each entry's state as the history shows it: 有效 while it counts, 已更正为 +3.00 when a later entry
    replaced it, 已撤销 when it was only withdrawn."""
    replaced_by = {entry.corrects_id: entry for entry in entries if entry.corrects_id is not None}
    return {entry.id: "有效" if entry.withdrawn_at is None
            else f"已更正为 {replaced_by[entry.id].points:+.2f}" if entry.id in replaced_by else "已撤销"
            for entry in entries}
