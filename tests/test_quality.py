"""Quality listening: a repeatable stratified draw from the store, scores, and the supervisor's pages."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.reports.figures import parse_period
from rating_core.reports.quality import QualityError, draw_sample, score_item
from rating_core.store.models import AuditEntry, QualityItem
from web_pages import csrf, signed_in

ZONE = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=ZONE)
Q4 = parse_period("2026Q4", ZONE)


@pytest.fixture
def recorded(store: RatingStore) -> RatingStore:
    """Agent 1001: 6 satisfied and 1 dissatisfied recorded call; agent 1002: 2 satisfied; one call unrecorded."""
    plan = [("1001", "satisfied")] * 6 + [("1001", "dissatisfied"), ("1002", "satisfied"), ("1002", "satisfied")]
    for n, (agent, level) in enumerate(plan):
        uid = f"1795316400.{n}"
        store.apply([CallStarted(uniqueid=uid, hotline="12345", at=T0 + timedelta(minutes=n), agent_id=agent,
                                 recording_file=f"/var/spool/asterisk/monitor/{uid}.wav"),
                     RatingGiven(uid, level, "dtmf", T0 + timedelta(minutes=n))])
    store.apply([CallStarted(uniqueid="1795316400.99", hotline="12345", at=T0, agent_id="1003")])
    return store


def draw(store: RatingStore, rules, strata=("agent", "level"), per_stratum=2, seed=7) -> list[tuple[str, int]]:
    with store.sessions.begin() as session:
        sample = draw_sample(session, rules, Q4, strata, per_stratum, seed, "boss", T0)
        return [(item.stratum, item.call_id) for item in sample.items]


def test_each_stratum_gets_its_share_and_unrecorded_calls_none(recorded, rules) -> None:
    items = draw(recorded, rules)
    assert Counter(stratum for stratum, _ in items) == {"1001 / 满意": 2, "1001 / 不满意": 1, "1002 / 满意": 2}
    assert len({call_id for _, call_id in items}) == 5


def test_the_same_seed_draws_the_same_calls(recorded, rules) -> None:
    assert draw(recorded, rules, seed=11) == draw(recorded, rules, seed=11)
    # Six calls in "1001 / 满意", two drawn: different seeds pick different pairs.
    pairs = {frozenset(c for stratum, c in draw(recorded, rules, seed=s) if stratum == "1001 / 满意") for s in range(8)}
    assert len(pairs) > 1


@pytest.mark.parametrize(("strata", "per", "message"), [((), 2, "分层须为"), (("colour",), 2, "分层须为"),
                                                       (("agent",), 0, "每层抽取数"), (("agent",), 51, "每层抽取数")])
def test_bad_draws_are_refused(recorded, rules, strata, per, message) -> None:
    with pytest.raises(QualityError, match=message):
        draw(recorded, rules, strata=strata, per_stratum=per)


def test_scores_are_0_to_100(recorded, rules) -> None:
    draw(recorded, rules)
    with recorded.sessions.begin() as session:
        item_id = session.scalars(select(QualityItem.id)).first()
        score_item(session, item_id, 85, "  用语规范  ", "boss", T0)
        assert (session.get(QualityItem, item_id).score, session.get(QualityItem, item_id).comment) == (85, "用语规范")
    with pytest.raises(QualityError, match="0到100"), recorded.sessions.begin() as session:
        score_item(session, item_id, 101, "", "boss", T0)


def test_a_supervisor_draws_listens_and_scores(web_site) -> None:
    boss = signed_in(web_site, "boss")
    token = csrf(boss, "/supervisor/quality")
    now = datetime.now(timezone.utc).astimezone(ZONE)
    period = f"{now.year}Q{(now.month - 1) // 3 + 1}"
    page = boss.post("/supervisor/quality", follow_redirects=True, data={
        "period": period, "strata": ["hotline", "level"], "per_stratum": "3", "csrf_token": token}).data.decode()
    assert "已抽取 1 条录音" in page and "12345 / 非常不满意" in page
    item_id = int(re.search(r'data-item="(\d+)"', page)[1])
    audio = boss.get(f"/supervisor/quality/items/{item_id}/recording")
    assert audio.status_code == 200 and audio.data[:4] == b"RIFF"
    parts = {"part_attitude": "25", "part_accuracy": "20", "part_procedure": "12", "part_wording": "15"}
    total_alone = boss.post(f"/supervisor/quality/items/{item_id}/score", follow_redirects=True,
                            data={"score": "72", "csrf_token": token}).data.decode()
    assert "请为“服务态度”评分" in total_alone  # the rubric is not optional
    bad = boss.post(f"/supervisor/quality/items/{item_id}/score", follow_redirects=True,
                    data={**parts, "part_accuracy": "abc", "csrf_token": token}).data.decode()
    assert "“业务解答准确”的得分须为0到30的整数" in bad
    good = boss.post(f"/supervisor/quality/items/{item_id}/score", follow_redirects=True,
                     data={**parts, "comment": "未主动告知办理时限", "csrf_token": token}).data.decode()
    assert "评分已保存" in good and '<strong class="score">72</strong>' in good
    with web_site.store.sessions() as session:
        played = session.scalars(select(AuditEntry.target).where(AuditEntry.action == "play_recording")).all()
    assert played == ["call:1795316400.1:recording"]
    assert signed_in(web_site, "agent").get("/supervisor/quality").status_code == 403
    admin = signed_in(web_site, "admin")
    assert admin.post("/supervisor/quality", data={"period": period, "csrf_token": token}).status_code in (400, 403)
