"""The ten counts taken from the store, the scored table, the supervisor's pages and the Excel 通报表."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from rating_core.call_events import CallStarted, RatingGiven
from rating_core.callback_tasks import claim_attempt, record_answer, record_outcome, record_verdict, request_attempt
from rating_core.figures import PeriodError, figures_table, parse_period, unit_counts
from rating_core.models import CallbackTask, FigureAdjustment
from rating_core.scoring import load_scoring_rules
from rating_core.store import RatingStore
from web_pages import signed_in, token

ZONE = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=ZONE)  # a Friday morning, in 2026Q4
_ids = iter(range(10**6))


def call(store: RatingStore, agent: str, level: str | None, *, channel: str = "dtmf", hotline: str = "12345",
         at: datetime = T0) -> int | None:
    n = next(_ids)
    uid = f"1795316400.{n}"
    # Distinct numbers: one number's many ratings would be a batch (tests/test_adoption.py).
    events = [CallStarted(uniqueid=uid, hotline=hotline, at=at, caller_number=f"138{n:08d}", agent_id=agent,
                          queue="社保咨询", unit="市人社局")]
    if level:
        events.append(RatingGiven(uid, level, channel, at + timedelta(seconds=5)))
    store.apply(events)
    with store.sessions() as session:
        return session.query(CallbackTask.id).order_by(CallbackTask.id.desc()).limit(1).scalar()


def handle(store: RatingStore, rules, task_id: int, *, verdict: str, satisfied: bool | None = None) -> None:
    """Reach the caller, enter the verdict, and (for a fix) re-ask satisfaction, as the loop does."""
    policy = rules.callback
    at = T0 + timedelta(minutes=10)
    with store.sessions.begin() as session:
        first = request_attempt(session, policy, task_id, at, "t").attempt_id
        claim_attempt(session, first, at, "x")
        record_outcome(session, policy, first, "answered", at, "dialer")
        record_verdict(session, policy, task_id, verdict, at, "agent:2001", "已核实")
        if satisfied is not None:
            again = request_attempt(session, policy, task_id, at, "t").attempt_id
            claim_attempt(session, again, at, "x")
            record_answer(session, again, "satisfied", satisfied, "1" if satisfied else "2", "u", at, "ivr")


@pytest.fixture
def filled(store: RatingStore, rules) -> RatingStore:
    """Agent 1001: a good active rating, a default rating, an unrated call, and three 差评 (one not adopted,
    one handled with a satisfied caller, one handled and not satisfied). Agent 1002: one active good rating."""
    call(store, "1001", "satisfied")
    call(store, "1001", "basic", channel="default")
    call(store, "1001", None)
    wrong = call(store, "1001", "dissatisfied")
    happy = call(store, "1001", "very_dissatisfied")
    unhappy = call(store, "1001", "dissatisfied")
    handle(store, rules, wrong, verdict="not_adopted")
    handle(store, rules, happy, verdict="immediate_fix", satisfied=True)
    handle(store, rules, unhappy, verdict="explained", satisfied=False)
    call(store, "1002", "very_satisfied")
    call(store, "1002", "very_satisfied", at=T0 - timedelta(days=120))  # last quarter: not counted
    return store


def test_the_ten_counts_come_from_the_store(filled: RatingStore) -> None:
    with filled.sessions() as session:
        got = {u.name: u.counts for u in unit_counts(session, parse_period("2026Q4", ZONE), "agent")}
    # The 差评 found 误评 is stored and counted in D and B only, not in M or P.
    assert got["1001"] == {"A": 6, "M": 4, "P": 3, "I": 1, "D": 3, "T": 2, "B": 1, "N1": 3, "N2": 2, "N3": 1}
    assert got["1002"] == {"A": 1, "M": 1, "P": 1, "I": 1, "D": 0, "T": 0, "B": 0, "N1": 0, "N2": 0, "N3": 0}


def test_the_table_adds_adjustments_and_ranks_by_score(filled: RatingStore) -> None:
    with filled.sessions.begin() as session:
        session.add(FigureAdjustment(period="2026Q4", dimension="agent", name="1001", points=Decimal("1.5"),
                                     reason="创新", entered_by="boss", entered_at=T0))
    with filled.sessions() as session:
        table = figures_table(session, parse_period("2026Q4", ZONE), "agent", "zibo-district", load_scoring_rules())
    assert [score.unit.name for score in table] == ["1002", "1001"]
    agent = table[1]
    # 1001: M/A 4/6 × 40 = 26.67; (1 − 2/4) × 20 = 10; I/P 1/3 × 20 = 6.67; P/M 75 % is second → 9.5;
    # deduction (3 − 3/3 − 2/2 − 1/2) ÷ 3 × 100 = 16.67; 加减分 10 + 1.5. Total 47.67.
    assert agent.adjustment_points == Decimal("11.5")
    assert f"{agent.total:.2f}" == "47.67"


@pytest.mark.parametrize("text", ["2026Q5", "2026-13", "last quarter", "2026-11-15..2026-11-01"])
def test_an_unreadable_period_is_refused_in_chinese(text: str) -> None:
    with pytest.raises(PeriodError, match="时段"):
        parse_period(text, ZONE)


# -- the supervisor's pages ------------------------------------------------------------------------

def quarter() -> str:
    now = datetime.now(timezone.utc).astimezone(ZONE)
    return f"{now.year}Q{(now.month - 1) // 3 + 1}"


def test_the_figures_page_shows_the_table(web_site) -> None:
    page = signed_in(web_site, "boss").get(f"/supervisor/figures?by=agent&period={quarter()}").data.decode()
    assert 'data-unit="1024"' in page and "综合得分" in page and 'id="score-chart"' in page


@pytest.mark.parametrize(("query", "message"), [("period=2026Q9", "无法识别的时段"), ("by=planet", "未知的统计维度"),
                                                ("scheme=x", "未知的计分规则"), ("hotline=110", "未知的热线")])
def test_bad_figures_queries_get_a_chinese_400(web_site, query: str, message: str) -> None:
    response = signed_in(web_site, "boss").get(f"/supervisor/figures?{query}")
    assert response.status_code == 400 and message in response.data.decode()


def test_agents_and_units_cannot_read_the_figures(web_site) -> None:
    for username in ("agent", "unit"):
        assert signed_in(web_site, username).get("/supervisor/figures").status_code == 403
        assert signed_in(web_site, username).get("/supervisor/figures.xlsx").status_code == 403


def test_the_excel_export_is_the_通报表(web_site) -> None:
    response = signed_in(web_site, "boss").get(f"/supervisor/figures.xlsx?by=agent&period={quarter()}")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert "评估通报表" in sheet["A1"].value
    assert sheet["B2"].value.tzinfo is None  # Excel has no time zones
    headings = [cell.value for cell in sheet[3]]
    assert headings[:4] == ["序号", "坐席工号", "人口数", "季度应评价数 A"] and headings[-2:] == ["加减分", "综合得分"]
    row = [cell.value for cell in sheet[4]]
    assert row[1] == "1024" and row[3:13] == [1, 1, 1, 0, 1, 1, 0, 1, 0, 0]
    # 总评价率 1/1; 好评率 1 − T/M = 1 − 1/1; 整改满意率 N3/N2 with nothing rectified yet; 加减分 the base.
    assert (row[13], row[15], row[19], row[20]) == (1.0, 0.0, "-", 10.0)
    assert sheet.cell(row=4, column=14).number_format == "0.00%"


@pytest.mark.parametrize(("points", "reason", "message"), [("abc", "x", "加减分须为"), ("25", "x", "加减分须为"),
                                                           ("1.234", "x", "加减分须为"), ("2", "", "请填写加减分理由")])
def test_a_bad_adjustment_is_refused_and_nothing_stored(web_site, points: str, reason: str, message: str) -> None:
    client = signed_in(web_site, "boss")
    page = client.get(f"/supervisor/figures?by=agent&period={quarter()}").data.decode()
    response = client.post(f"/supervisor/figures/adjustments?by=agent&period={quarter()}", follow_redirects=True,
                           data={"name": "1024", "points": points, "reason": reason,
                                 "csrf_token": token(page)})
    assert message in response.data.decode()
    with web_site.store.sessions() as session:
        assert session.query(FigureAdjustment).count() == 0


def test_an_adjustment_changes_the_score(web_site) -> None:
    client = signed_in(web_site, "boss")
    url = f"/supervisor/figures?by=agent&period={quarter()}"
    page = client.get(url).data.decode()
    before = re.search(r'data-unit="1024">.*?class="score"><strong>([\d.]+)<', page, re.S)[1]
    client.post(f"/supervisor/figures/adjustments?by=agent&period={quarter()}",
                data={"name": "1024", "points": "-2.5", "reason": "数据不真实", "csrf_token": token(page)})
    after = re.search(r'data-unit="1024">.*?class="score"><strong>([\d.]+)<', client.get(url).data.decode(), re.S)[1]
    assert Decimal(before) - Decimal(after) == Decimal("2.5")


def test_overdue_and_escalated_tasks_are_listed(web_site) -> None:
    with web_site.store.sessions.begin() as session:
        task = session.get(CallbackTask, web_site.task_id)
        task.verify_by = datetime.now(timezone.utc) - timedelta(hours=1)
    page = signed_in(web_site, "boss").get("/supervisor/overdue").data.decode()
    assert "#1" in page and "已超期" in page


# -- the daily rollups ------------------------------------------------------------------------------


def both_ways(store: RatingStore, by: str) -> tuple[list, list]:
    from rating_core.figure_rollups import rolled_up_counts

    period = parse_period("2026Q4", ZONE)
    with store.sessions() as session:
        return unit_counts(session, period, by), rolled_up_counts(session, period, by)


def refreshed(store: RatingStore, now: datetime, days_back: int | None = None) -> int:
    from rating_core.figure_rollups import refresh

    with store.sessions.begin() as session:
        return refresh(session, ZONE, now, days_back=days_back)


@pytest.mark.parametrize("by", ["hotline", "unit", "queue", "agent"])
def test_the_rollups_give_the_same_counts_as_the_calls(filled: RatingStore, by: str) -> None:
    assert refreshed(filled, T0 + timedelta(hours=1)) > 0
    live, rolled = both_ways(filled, by)
    assert rolled == live and live


def test_the_rollups_follow_later_changes_and_cost_nothing_when_idle(filled: RatingStore, rules) -> None:
    refreshed(filled, T0 + timedelta(hours=3))
    # Nothing changed (and no call began within the hour of slack before the watermark): nothing rebuilt.
    assert refreshed(filled, T0 + timedelta(hours=4)) == 0
    # Later: a new 差评 is handled, and an old task's caller answers the re-ask (days after the call).
    later = T0 + timedelta(days=3)
    task_id = call(filled, "1002", "dissatisfied", at=later)
    handle(filled, rules, task_id, verdict="immediate_fix", satisfied=True)
    assert refreshed(filled, later + timedelta(hours=1)) >= 1
    live, rolled = both_ways(filled, "agent")
    assert rolled == live
    assert {u.name: u.counts["N3"] for u in rolled}["1002"] == 1


def test_a_late_replayed_call_needs_the_nightly_rebuild(filled: RatingStore) -> None:
    refreshed(filled, T0 + timedelta(days=10))
    call(filled, "1003", "satisfied", at=T0 - timedelta(days=1))  # a journal replayed long after the call
    refreshed(filled, T0 + timedelta(days=10, minutes=1))
    live, rolled = both_ways(filled, "agent")
    assert "1003" in {u.name for u in live} and "1003" not in {u.name for u in rolled}
    refreshed(filled, T0 + timedelta(days=10, minutes=2), days_back=14)
    assert both_ways(filled, "agent")[1] == both_ways(filled, "agent")[0]


def test_daily_counts_add_up_to_the_period(filled: RatingStore) -> None:
    from rating_core.figure_rollups import daily_counts, rolled_up_counts

    refreshed(filled, T0 + timedelta(hours=3))
    period = parse_period("2026Q4", ZONE)
    with filled.sessions() as session:
        days = daily_counts(session, period)
        total = rolled_up_counts(session, period, "hotline")
    assert list(days) == [T0.date()]
    assert days[T0.date()] == {name: sum(u.counts[name] for u in total) for name in days[T0.date()]}
