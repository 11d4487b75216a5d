"""The ten counts taken from the store, the scored table, the supervisor's pages and the Excel 通报表."""

from __future__ import annotations

import io
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from rating_core.complaints.callback_tasks import (
    claim_attempt,
    record_answer,
    record_outcome,
    record_verdict,
    request_attempt,
)
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.reports.figures import PeriodError, figures_table, parse_period, trend_buckets, unit_counts
from rating_core.reports.scoring import ScoringRules, load_scoring_rules
from rating_core.store.models import AuditEntry, CallbackTask, FigureAdjustment
from web_pages import csrf, signed_in, token

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


def every_unit_ranked() -> ScoringRules:
    """The shipped schemes without their minimum of ratings: the fixtures here have a handful of calls."""
    rules = load_scoring_rules()
    return rules.model_copy(update={"schemes": {key: scheme.model_copy(update={"min_ratings": 0})
                                                for key, scheme in rules.schemes.items()}})


@pytest.fixture
def ranked_site(web_site):
    web_site.app.extensions["hotline_scoring"] = every_unit_ranked()
    return web_site


def test_the_table_adds_adjustments_and_ranks_by_score(filled: RatingStore) -> None:
    with filled.sessions.begin() as session:
        session.add(FigureAdjustment(period="2026Q4", dimension="agent", name="1001", points=Decimal("1.5"),
                                     reason="创新", entered_by="boss", entered_at=T0))
    with filled.sessions() as session:
        table = figures_table(session, parse_period("2026Q4", ZONE), "agent", "zibo-district", every_unit_ranked())
    assert [score.unit.name for score in table.ranked] == ["1002", "1001"] and table.apart == []
    agent = table.ranked[1]
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


def test_the_figures_page_shows_the_table(ranked_site) -> None:
    page = signed_in(ranked_site, "boss").get(f"/supervisor/figures?by=agent&period={quarter()}").data.decode()
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


def test_the_excel_export_is_the_通报表(ranked_site) -> None:
    from urllib.parse import quote

    response = signed_in(ranked_site, "boss").get(f"/supervisor/figures.xlsx?by=agent&period={quarter()}")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    assert quote(f"{quarter()}各坐席工号好差评评估通报表.xlsx") in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert "评估通报表" in sheet["A1"].value
    [taken] = [cell.value for cell in sheet[2] if isinstance(cell.value, datetime)]
    assert taken.tzinfo is None  # Excel has no time zones
    groups, headings = [cell.value for cell in sheet[3]], [cell.value for cell in sheet[4]]
    assert groups[:3] == ["名次", "坐席工号", "统计数"] and groups[-2:] == ["加减分说明", "综合得分"]
    assert headings[2] == "应评价数 A" and headings[12] == "总评价率 M/A" and "主动评价率名次" in headings
    row = [cell.value for cell in sheet[5]]
    assert row[:2] == [1, "1024"] and row[2:12] == [1, 1, 1, 0, 1, 1, 0, 1, 0, 0]
    # 总评价率 1/1; 好评率 1 − T/M = 1 − 1/1; 整改满意率 N3/N2 with nothing rectified yet; 加减分 the base.
    assert (row[12], row[14], row[18], row[headings.index("加减分")]) == (1.0, 0.0, "-", 10.0)
    assert sheet.cell(row=5, column=13).number_format == "0.00%"


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


def test_an_adjustment_changes_the_score(ranked_site) -> None:
    client = signed_in(ranked_site, "boss")
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
    from rating_core.reports.figure_rollups import rolled_up_counts

    period = parse_period("2026Q4", ZONE)
    with store.sessions() as session:
        return unit_counts(session, period, by), rolled_up_counts(session, period, by)


def refreshed(store: RatingStore, now: datetime, days_back: int | None = None) -> int:
    from rating_core.reports.figure_rollups import refresh

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
    from rating_core.reports.figure_rollups import daily_counts, rolled_up_counts

    refreshed(filled, T0 + timedelta(hours=3))
    period = parse_period("2026Q4", ZONE)
    with filled.sessions() as session:
        days = daily_counts(session, period)
        total = rolled_up_counts(session, period, "hotline")
    assert list(days) == [T0.date()]
    assert days[T0.date()] == {name: sum(u.counts[name] for u in total) for name in days[T0.date()]}


# -- what a supervisor reads on the figures page ----------------------------------------------------


def test_headings_legend_and_rule_are_in_chinese_and_follow_the_dimension(ranked_site) -> None:
    client = signed_in(ranked_site, "boss")
    page = client.get(f"/supervisor/figures?by=agent&period={quarter()}").data.decode()
    head = re.sub(r"<[^>]+>", " ", re.search(r'<table id="figures">.*?</thead>', page, re.S)[0])
    assert "总评价率得分" in head and "主动评价率名次" in head and not re.search(r"[a-z_]{4,}", head), head
    legend = re.search(r'<section id="legend">.*?</section>', page, re.S)[0]
    assert "N3 整改满意数" in legend and "N2 中市民在处理完毕之后的回访里表示满意的" in legend
    assert "1 − T/M" in legend and "第一名 10 分" in legend  # 附件1: agents are ranked against each other
    units = client.get(f"/supervisor/figures?by=unit&period={quarter()}").data.decode()
    rule = re.search(r'<ol id="scheme-rules">.*?</ol>', units, re.S)[0]
    assert "按排名" not in rule and "合计在 0 至 20 分之间" in rule  # 附件2, the departments' rule
    assert "淄博市各区县" not in re.search(r'<select name="scheme">.*?</select>', units, re.S)[0]


def test_a_scheme_for_another_dimension_is_refused_in_chinese(ranked_site) -> None:
    response = signed_in(ranked_site, "boss").get("/supervisor/figures?by=unit&scheme=zibo-district")
    assert response.status_code == 400 and "不适用于按承办单位统计" in response.data.decode()


@pytest.mark.parametrize(("query", "message"), [
    ("kind=month&month=2026-13", "日期不存在"),
    ("kind=range&from=2026-11-15&to=2026-11-01", "结束日期早于开始日期"),
    ("kind=range&from=2026-11-15&to=", "请填写开始和结束日期"),
    ("kind=range&from=2025-01-01&to=2026-11-01", "超过一年"),
    ("kind=quarter&year=2026&quarter=5", "请选择年份和季度"),
    ("period=2026-02-30..2026-03-01", "日期不存在"),
])
def test_the_period_picker_explains_a_bad_choice_on_the_page_itself(ranked_site, query: str, message: str) -> None:
    response = signed_in(ranked_site, "boss").get(f"/supervisor/figures?by=agent&{query}")
    page = response.data.decode()
    assert response.status_code == 400 and message in page
    assert 'id="period-picker"' in page and "month must be" not in page  # the form again, no Python words


@pytest.mark.parametrize(("query", "period"), [("kind=quarter&year=2026&quarter=4", "2026Q4"),
                                                ("kind=month&month=2026-11", "2026-11"),
                                                ("kind=range&from=2026-11-01&to=2026-11-15", "2026-11-01..2026-11-15")])
def test_the_period_picker_chooses_quarter_month_or_range(ranked_site, query: str, period: str) -> None:
    response = signed_in(ranked_site, "boss").get(f"/supervisor/figures?by=agent&{query}")
    assert response.status_code == 200 and f"好差评评估通报 · {period}" in response.data.decode()


def test_unnamed_units_and_units_with_few_ratings_are_listed_apart(web_site) -> None:
    web_site.store.apply([CallStarted(uniqueid="1795316400.77", hotline="12345", at=datetime.now(timezone.utc),
                                      caller_number="13900000077")])  # no agent on the channel
    page = signed_in(web_site, "boss").get(f"/supervisor/figures?by=agent&period={quarter()}").data.decode()
    ranked = re.search(r'<table id="figures">.*?</table>', page, re.S)
    assert ranked is None  # one rated call each: nobody has the 10 ratings a place needs
    apart = re.search(r'<table id="apart-units">.*?</table>', page, re.S)[0]
    assert 'data-apart="1024"' in apart and "评价数 1 条，少于 10 条" in apart
    assert 'data-apart="（未填写）"' in apart and "来电未记录坐席工号，无法归属" in apart


def test_a_units_adjustment_is_bounded_as_a_whole(filled: RatingStore) -> None:
    """Five +20 entries are one 加减分 item of at most base 10 + 20 (附件1) or 20 in all (附件2)."""
    with filled.sessions.begin() as session:
        for n in range(5):
            session.add(FigureAdjustment(period="2026Q4", dimension="agent", name="1001", points=Decimal(20),
                                         reason=f"第{n + 1}条", entered_by="boss", entered_at=T0))
    with filled.sessions() as session:
        for scheme, most in (("zibo-district", Decimal(30)), ("zibo-department", Decimal(20))):
            table = figures_table(session, parse_period("2026Q4", ZONE), "agent", scheme, every_unit_ranked())
            score = next(s for s in table.ranked if s.unit.name == "1001")
            assert score.unit.adjustment == Decimal(100) and score.adjustment_points == most
            assert table.reasons("1001").count("+20.00") == 5


def adjustment_rows(client, url: str) -> dict[str, str]:
    page = client.get(url).data.decode()
    rows = re.findall(r'<tr data-entry="(\d+)" class="([^"]*)">(.*?)</tr>', page, re.S)
    return {entry: re.sub(r"<[^>]+>|\s+", " ", body) + (" [struck]" if "withdrawn" in cls else "")
            for entry, cls, body in rows}


def score_of(client, url: str, unit: str = "1024") -> Decimal:
    page = client.get(url).data.decode()
    return Decimal(re.search(rf'data-unit="{unit}">.*?class="score"><strong>([\d.-]+)<', page, re.S)[1])


def test_an_adjustment_is_corrected_or_withdrawn_with_its_reason_kept(ranked_site) -> None:
    client = signed_in(ranked_site, "boss")
    url = f"/supervisor/figures?by=agent&period={quarter()}"
    action = f"/supervisor/figures/adjustments%s?by=agent&period={quarter()}"
    base = score_of(client, url)
    client.post(action % "", data={"name": "1024", "points": "-5", "reason": "数据不真实",
                                   "csrf_token": csrf(client, url)})
    [first] = adjustment_rows(client, url)
    assert score_of(client, url) == base - 5
    client.post(action % f"/{first}/correct", data={"points": "-2", "reason": "核实后只有一次",
                                                     "csrf_token": csrf(client, url)})
    rows = adjustment_rows(client, url)
    assert score_of(client, url) == base - 2 and len(rows) == 2
    assert "已更正为 -2.00。理由：核实后只有一次" in rows[first] and rows[first].endswith("[struck]")
    second = next(entry for entry in rows if entry != first)
    assert f"更正第 {first} 号记录" in rows[second]
    refused = client.post(action % f"/{second}/withdraw", data={"reason": " ", "csrf_token": csrf(client, url)},
                          follow_redirects=True)
    assert "请填写撤销理由" in refused.data.decode() and score_of(client, url) == base - 2
    client.post(action % f"/{second}/withdraw", data={"reason": "误录", "csrf_token": csrf(client, url)})
    assert score_of(client, url) == base and "已撤销。理由：误录" in adjustment_rows(client, url)[second]
    again = client.post(action % f"/{second}/withdraw", data={"reason": "再撤", "csrf_token": csrf(client, url)},
                        follow_redirects=True)
    assert "已撤销或更正，不能再改" in again.data.decode()
    with ranked_site.store.sessions() as session:
        assert session.query(FigureAdjustment).count() == 2  # nothing deleted
        actions = [entry.action for entry in session.query(AuditEntry).order_by(AuditEntry.id)]
    assert [a for a in actions if a.startswith("adjustment_")] == [
        "adjustment_added", "adjustment_corrected", "adjustment_withdrawn"]


def test_a_missing_entry_cannot_be_withdrawn(ranked_site) -> None:
    client = signed_in(ranked_site, "boss")
    url = f"/supervisor/figures?by=agent&period={quarter()}"
    response = client.post(f"/supervisor/figures/adjustments/999/withdraw?by=agent&period={quarter()}",
                           data={"reason": "x", "csrf_token": csrf(client, url)}, follow_redirects=True)
    assert response.status_code == 200 and "加减分记录 999 不存在" in response.data.decode()


@pytest.mark.parametrize(("period", "today", "first", "last", "count"), [
    # 2026Q4 seen on Friday 20 November: calendar weeks from Monday, the first cut at 1 October (a Thursday),
    # none after today.
    ("2026Q4", date(2026, 11, 20), ("10/1–10/4", date(2026, 10, 1), date(2026, 10, 4)),
     ("11/16–11/20", date(2026, 11, 16), date(2026, 11, 20)), 8),
    ("2026-11", date(2026, 12, 6), ("11月1日", date(2026, 11, 1), date(2026, 11, 1)),
     ("11月30日", date(2026, 11, 30), date(2026, 11, 30)), 30),
    ("2026-01-15..2026-12-31", date(2026, 12, 6), ("2026年1月", date(2026, 1, 15), date(2026, 1, 31)),
     ("2026年12月", date(2026, 12, 1), date(2026, 12, 6)), 12),
    ("2027Q1", date(2026, 12, 6), None, None, 0),
])
def test_trend_buckets_are_calendar_weeks_or_months_and_stop_today(period: str, today: date, first, last,
                                                                     count: int) -> None:
    buckets = trend_buckets(parse_period(period, ZONE), today)
    assert len(buckets) == count
    if count:
        assert (buckets[0].label, buckets[0].first, buckets[0].last) == first
        assert (buckets[-1].label, buckets[-1].first, buckets[-1].last) == last
        if period == "2026Q4":
            assert all(bucket.first.weekday() == 0 for bucket in buckets[1:])  # every week after the first: Monday
            assert all(bucket.last.weekday() == 6 for bucket in buckets[:-1])  # …to Sunday; the last ends today
        assert all(later.first == earlier.last + timedelta(days=1) for earlier, later in zip(buckets, buckets[1:]))


def test_an_entry_is_changed_only_from_its_own_table(ranked_site) -> None:
    """A page left open on last month's table cannot withdraw this quarter's entry, nor enter one for a unit
    the table does not have; a period typed with spaces files its entries under the period itself."""
    client = signed_in(ranked_site, "boss")
    url = f"/supervisor/figures?by=agent&period={quarter()}"
    client.post(f"/supervisor/figures/adjustments?by=agent&period=%20{quarter()}%20",
                data={"name": "1024", "points": "1", "reason": "宣传推动", "csrf_token": csrf(client, url)})
    [entry] = adjustment_rows(client, url)
    other = client.post(f"/supervisor/figures/adjustments/{entry}/withdraw?by=unit&period={quarter()}",
                        data={"reason": "x", "csrf_token": csrf(client, url)}, follow_redirects=True)
    assert "不属于当前统计表" in other.data.decode()
    bogus = client.post(f"/supervisor/figures/adjustments?by=agent&period={quarter()}", follow_redirects=True,
                        data={"name": "9999", "points": "1", "reason": "x", "csrf_token": csrf(client, url)})
    assert "不在该时段的统计表中" in bogus.data.decode()
    with ranked_site.store.sessions() as session:
        entries = session.query(FigureAdjustment).all()
    assert [(e.period, e.withdrawn_at) for e in entries] == [(quarter(), None)]


def test_control_characters_in_a_reason_are_refused_and_names_from_outside_do_not_break_the_workbook(
        ranked_site) -> None:
    client = signed_in(ranked_site, "boss")
    url = f"/supervisor/figures?by=agent&period={quarter()}"
    refused = client.post(f"/supervisor/figures/adjustments?by=agent&period={quarter()}", follow_redirects=True,
                          data={"name": "1024", "points": "1", "reason": "粘贴来的\x0b文字",
                                "csrf_token": csrf(client, url)})
    assert "控制字符" in refused.data.decode()
    lines = client.post(f"/supervisor/figures/adjustments?by=agent&period={quarter()}", follow_redirects=True,
                        data={"name": "1024", "points": "1", "reason": "第一行\r\n第二行",  # as a textarea sends it
                              "csrf_token": csrf(client, url)})
    assert "已为 1024 记入加减分 +1.00" in lines.data.decode()
    ranked_site.store.apply([CallStarted(uniqueid="1795316400.88", hotline="12345", at=datetime.now(timezone.utc),
                                         caller_number="13900000088", agent_id="10\x0b25"),
                             RatingGiven("1795316400.88", "satisfied", "dtmf", datetime.now(timezone.utc))])
    response = client.get(f"/supervisor/figures.xlsx?by=agent&period={quarter()}")
    assert response.status_code == 200
    names = [cell.value for cell in load_workbook(io.BytesIO(response.data)).active["B"]]
    assert "1025" in names  # the control character dropped, the rest kept
