"""Quality listening: a repeatable, stratified random sample of recorded calls, and the scores given to them.

Strata are any of hotline, agent and level (the rating's, or 未评价): up to
``per_stratum`` calls are drawn from each, so a quiet agent or a rare level is
heard as surely as a busy one. The draw uses its own seed, stored with the
sample, so anyone can check that the calls were not picked by hand.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from rating_core.reports.figures import Period
from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.rulebook import Rules
from rating_core.store.models import Call, QualityItem, QualitySample

STRATA = {"hotline": "热线", "agent": "坐席", "level": "评价等级"}
MAX_PER_STRATUM = 50
UNRATED = "未评价"


class QualityError(Refused):
    """A sample or score the rules do not allow (zh-CN message)."""

    reason = Reason.INVALID


def _stratum(call: Call, strata: tuple[str, ...], rules: Rules) -> str:
    parts = {
        "hotline": call.hotline,
        "agent": call.agent_id or "—",
        "level": rules.level(call.rating.level).name if call.rating else UNRATED,
    }
    return " / ".join(parts[name] for name in strata)


def draw_sample(session: Session, rules: Rules, period: Period, strata: tuple[str, ...], per_stratum: int,
                seed: int, actor: str, at: datetime) -> QualitySample:
    if not strata or set(strata) - set(STRATA):
        raise QualityError(f"分层须为{'、'.join(STRATA.values())}中的一项或几项")
    if not 1 <= per_stratum <= MAX_PER_STRATUM:
        raise QualityError(f"每层抽取数须在1到{MAX_PER_STRATUM}之间")
    calls = session.scalars(
        select(Call).options(joinedload(Call.rating))
        .where(Call.started_at >= period.start, Call.started_at < period.end, Call.recording_file.is_not(None))
        .order_by(Call.id)
    ).unique().all()
    if not calls:
        raise QualityError("该时段没有带录音的来电")
    groups: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        groups[_stratum(call, strata, rules)].append(call)
    rng = random.Random(seed)
    sample = QualitySample(period=period.label, strata=",".join(strata), per_stratum=per_stratum, seed=seed,
                           created_by=actor, created_at=at)
    for stratum in sorted(groups):
        members = groups[stratum]
        for call in rng.sample(members, min(per_stratum, len(members))):
            sample.items.append(QualityItem(call_id=call.id, stratum=stratum))
    session.add(sample)
    session.flush()
    return sample


def score_item(session: Session, item_id: int, score: int, comment: str, actor: str, at: datetime) -> QualityItem:
    item = session.get(QualityItem, item_id)
    if item is None:
        raise QualityError(f"抽检记录 {item_id} 不存在", Reason.NOT_FOUND)
    if not 0 <= score <= 100:
        raise QualityError("评分须为0到100的整数")
    if len(comment) > 2000:
        raise QualityError("评语不超过2000字")
    item.score, item.comment, item.scored_by, item.scored_at = score, comment.strip() or None, actor, at
    return item
