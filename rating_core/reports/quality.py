"""Quality listening: a repeatable, stratified random sample of recorded calls, and the scores given to them.

Strata are any of hotline, agent and level (the rating's, or 未评价): up to
``per_stratum`` calls are drawn from each, so a quiet agent or a rare level is
heard as surely as a busy one. The draw uses its own seed, stored with the
sample, so anyone can check that the calls were not picked by hand.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from rating_core.reports.figures import Period
from rating_core.rules.frozen_model import FrozenModel
from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.rulebook import Rules
from rating_core.rules.yaml_file import read_yaml
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
    item.item_scores = None  # a total alone; score_by_rubric sets the items after
    return item


# -- the scoring rubric (评分细则) -------------------------------------------------------------------

DEFAULT_RUBRIC_FILE = Path(__file__).with_name("quality_rubric.yaml")


class RubricError(ValueError):
    """The rubric file cannot be read or is not a rubric (weights not adding up to 100, a code twice…)."""


class RubricItem(FrozenModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    name: str = Field(min_length=1, max_length=32)
    weight: int = Field(gt=0, le=100)
    hint: str = ""


class QualityRubric(FrozenModel):
    """What a sampled call is scored on: each item from 0 to its weight; the weights add up to 100."""

    items: tuple[RubricItem, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _adds_up(self) -> QualityRubric:
        codes = [item.code for item in self.items]
        if len(set(codes)) != len(codes):
            raise ValueError(f"item codes must differ: {codes}")
        total = sum(item.weight for item in self.items)
        if total != 100:
            raise ValueError(f"the weights must add up to 100, not {total}")
        return self


def load_quality_rubric(path: str | os.PathLike[str] | None = None) -> QualityRubric:
    """``path``, else the shipped rubric (rating_core/reports/quality_rubric.yaml)."""
    chosen = Path(path or DEFAULT_RUBRIC_FILE)
    document = read_yaml(chosen, RubricError, "quality rubric")
    try:
        return QualityRubric.model_validate(document)
    except ValidationError as exc:
        raise RubricError(f"invalid quality rubric {chosen}: {exc}") from exc


def score_by_rubric(session: Session, rubric: QualityRubric, item_id: int, given: Mapping[str, str | int | None],
                    comment: str, actor: str, at: datetime) -> QualityItem:
    """Score a sampled call item by item (``given``: code → score, 0 to the item's weight); the total is their
    sum, and the items are kept with the names and weights they were scored by."""
    parts: list[dict[str, Any]] = []
    for entry in rubric.items:
        value = given.get(entry.code)
        text = str(value).strip() if value is not None else ""
        if not text:
            raise QualityError(f"请为“{entry.name}”评分")
        if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= entry.weight:
            raise QualityError(f"“{entry.name}”的得分须为0到{entry.weight}的整数")
        parts.append({"code": entry.code, "name": entry.name, "weight": entry.weight, "score": int(text)})
    item = score_item(session, item_id, sum(part["score"] for part in parts), comment, actor, at)
    item.item_scores = parts
    return item
