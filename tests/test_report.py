"""The 核查整改情况报告单 from the record: the rectification record, the re-ask's answer, the Word file (SQLite and
PostgreSQL).

The store's part first (what :func:`build_report` says for each course a 差评 can take, and migration 0016's
records from the events of before), then the web tool's page, task page and Word file.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from docx import Document
from docx.enum.text import WD_LINE_SPACING
from docx.oxml.ns import qn
from docx.shared import Pt
from sqlalchemy import delete, select

from rating_core.complaints.callback_tasks import (
    TaskRuleError,
    claim_attempt,
    mark_rectified,
    record_answer,
    record_outcome,
    record_verdict,
    request_attempt,
)
from rating_core.complaints.verification_report import Report, build_report
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.store.migrate import downgrade, upgrade
from rating_core.store.models import CallbackTask, Rectification
from web.downloads import attachment
from web_pages import form_keys, signed_in

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday, in the morning window
_ids = iter(range(10**6))


def rate(store: RatingStore) -> int:
    uid = f"1795316500.{next(_ids)}"
    store.apply([
        CallStarted(uniqueid=uid, hotline="12345", at=T0, caller_number="13800000000", agent_id="1024",
                    case_number="GD20261120009"),
        RatingGiven(uid, "very_dissatisfied", "dtmf", T0 + timedelta(seconds=5)),
    ])
    with store.sessions() as session:
        return session.scalars(select(CallbackTask.id).order_by(CallbackTask.id.desc())).first()


def call(store: RatingStore, rules: Rules, task_id: int, at: datetime,
         answers: tuple[tuple[str, bool], ...] = ()) -> int:
    """One callback, answered, with the keys the citizen pressed; its attempt id."""
    with store.sessions.begin() as session:
        attempt = request_attempt(session, rules.callback, task_id, at, "system:rq").attempt_id
        assert attempt is not None
        claim_attempt(session, attempt, at, "Local/13800000000@callback-out")
    with store.sessions.begin() as session:
        for n, (question, answer) in enumerate(answers, 1):
            record_answer(session, attempt, question, answer, "1" if answer else "2", f"cb.{attempt}",
                          at + timedelta(seconds=20 * n), "system:callback-ivr")
        record_outcome(session, rules.callback, attempt, "answered", at + timedelta(minutes=2), "dialer")
    return attempt


def verdict(store: RatingStore, rules: Rules, task_id: int, kind: str, at: datetime, note: str,
            done: str | None = None) -> None:
    with store.sessions.begin() as session:
        record_verdict(session, rules.callback, task_id, kind, at, "agent:2001", note, done=done,
                       actor_name="李四")


def report(store: RatingStore, rules: Rules, task_id: int) -> Report:
    with store.sessions() as session:
        return build_report(session.get(CallbackTask, task_id), rules, verifier="李四", organisation="12345热线",
                            addressee="局行风办", today=T0 + timedelta(days=3))


def handling(found: Report) -> str:
    return dict(found.sections)["二、整改情况"]


def rectifications(store: RatingStore, task_id: int) -> list[tuple]:
    with store.sessions() as session:
        return [(r.kind, r.what, r.actor, r.actor_name, r.at, r.late) for r in session.scalars(
            select(Rectification).where(Rectification.task_id == task_id).order_by(Rectification.id))]


def test_an_answer_on_the_verification_call_is_not_the_answer_to_the_re_ask(store, rules) -> None:
    task_id = rate(store)
    # The automated verification call: it is them, solved they say, but not satisfied; then it is explained.
    call(store, rules, task_id, T0 + timedelta(minutes=1),
         (("identity", True), ("resolved", True), ("satisfied", False)))
    verdict(store, rules, task_id, "explained", T0 + timedelta(hours=1), "市民所询事项无法定依据",
            "已向市民解释相关政策规定")
    with store.sessions() as session:
        assert session.get(CallbackTask, task_id).citizen_satisfied is None
    before = handling(report(store, rules, task_id))
    assert "不满意" not in before and "满意度正在回访，结果待回访后补报" in before
    assert "已向市民解释相关政策规定" in before

    call(store, rules, task_id, T0 + timedelta(hours=2), (("satisfied", True),))  # the re-ask, purpose satisfaction
    after = handling(report(store, rules, task_id))
    assert "11月20日11时回访评价人，其对我们的解释说明表示理解和满意。" in after and "不满意" not in after


def test_a_citizen_still_not_satisfied_after_the_fix_is_reported_so(store, rules) -> None:
    task_id = rate(store)
    call(store, rules, task_id, T0 + timedelta(minutes=1))
    verdict(store, rules, task_id, "immediate_fix", T0 + timedelta(hours=1), "窗口确有推诿", "已协调窗口当场办结")
    call(store, rules, task_id, T0 + timedelta(hours=2), (("satisfied", False),))
    assert "其对我们的整改措施表示不满意" in handling(report(store, rules, task_id))


def test_the_finding_says_经核实_once(store, rules) -> None:
    task_id = rate(store)
    call(store, rules, task_id, T0 + timedelta(minutes=1))
    verdict(store, rules, task_id, "immediate_fix", T0 + timedelta(hours=1), "经核实，窗口人员确有推诿",
            "已协调窗口当场办结")
    found = report(store, rules, task_id)
    whole = "".join([found.opening, *(text for section in found.sections for text in section)])
    assert whole.count("经核实") == 1
    assert dict(found.sections)["一、核实情况"] == "经核实，该评价情况清楚、诉求合理。窗口人员确有推诿。"
    assert "立行立改，由李四同志于11月20日10时完成整改：已协调窗口当场办结。" in handling(found)


def test_one_note_for_an_immediate_fix_is_quoted_once_as_what_was_done(store, rules) -> None:
    task_id = rate(store)
    call(store, rules, task_id, T0 + timedelta(minutes=1))
    verdict(store, rules, task_id, "immediate_fix", T0 + timedelta(hours=1), "已协调窗口当场办结")
    found = report(store, rules, task_id)
    assert dict(found.sections)["一、核实情况"] == "经核实，该评价情况清楚、诉求合理。"
    assert "完成整改：已协调窗口当场办结。" in handling(found)
    assert rectifications(store, task_id) == [
        ("immediate_fix", "已协调窗口当场办结", "agent:2001", "李四", T0 + timedelta(hours=1), False)]


def test_what_a_deadline_fix_did_is_a_record_of_its_own_and_the_latest_is_reported(store, rules) -> None:
    task_id = rate(store)
    call(store, rules, task_id, T0 + timedelta(minutes=1))
    verdict(store, rules, task_id, "deadline_fix", T0 + timedelta(hours=1), "涉及多部门，已建立台账")
    assert rectifications(store, task_id) == []
    assert handling(report(store, rules, task_id)) == (
        "根据核实情况，我单位已说明理由、建立台账、限期整改（整改期限为12月5日10时），整改完成后将向评价人反馈。")
    done = T0 + timedelta(days=3)
    with store.sessions.begin() as session:
        mark_rectified(session, rules.callback, task_id, done, "unit:市人社局", "已为市民补办社保转移手续",
                       actor_name="王五")
    assert rectifications(store, task_id) == [
        ("deadline_fix", "已为市民补办社保转移手续", "unit:市人社局", "王五", done, False)]
    first = report(store, rules, task_id)
    assert "由王五同志于11月23日9时报告整改完成：已为市民补办社保转移手续。" in handling(first)
    assert first.due == "2026年11月28日"

    # Still not satisfied: verified again and fixed at once; both records kept, the latest reported.
    call(store, rules, task_id, done + timedelta(hours=1), (("satisfied", False),))
    verdict(store, rules, task_id, "immediate_fix", done + timedelta(hours=2), "补办后仍有材料未退还",
            "已将材料当面退还")
    assert [r[1] for r in rectifications(store, task_id)] == ["已为市民补办社保转移手续", "已将材料当面退还"]
    second = handling(report(store, rules, task_id))
    assert "已将材料当面退还" in second and "补办社保转移" not in second
    assert "不满意" not in second  # the answer was about the first fix


def test_what_was_done_is_entered_only_for_the_verdicts_that_finish_at_once(store, rules) -> None:
    task_id = rate(store)
    call(store, rules, task_id, T0 + timedelta(minutes=1))
    with pytest.raises(TaskRuleError, match="整改完成后填写"):
        verdict(store, rules, task_id, "deadline_fix", T0 + timedelta(hours=1), "建立台账", "已整改")
    assert rectifications(store, task_id) == []


def test_a_report_still_builds_for_a_task_handled_before_records_were_kept(store, rules) -> None:
    task_id = rate(store)
    call(store, rules, task_id, T0 + timedelta(minutes=1))
    verdict(store, rules, task_id, "deadline_fix", T0 + timedelta(hours=1), "建立台账")
    with store.sessions.begin() as session:
        mark_rectified(session, rules.callback, task_id, T0 + timedelta(days=1), "agent:2001", "已补办")
        session.execute(delete(Rectification))
    assert handling(report(store, rules, task_id)) == (
        "根据核实情况，我单位说明理由、建立台账、限期整改（整改期限为12月5日10时），于11月21日9时报告整改完成。"
        "评价人对整改措施的满意度正在回访，结果待回访后补报。")


def test_the_migration_makes_records_from_the_events_of_before(store, rules) -> None:
    fixed, deadline, verified_again = rate(store), rate(store), rate(store)
    for task_id in (fixed, deadline, verified_again):
        call(store, rules, task_id, T0 + timedelta(minutes=1))
    verdict(store, rules, fixed, "explained", T0 + timedelta(hours=1), "已解释政策")
    verdict(store, rules, deadline, "deadline_fix", T0 + timedelta(hours=1), "建立台账")
    late = T0 + timedelta(days=20)  # past the 15 days
    with store.sessions.begin() as session:
        mark_rectified(session, rules.callback, deadline, late, "unit:市人社局", "已补办")
    verdict(store, rules, verified_again, "immediate_fix", T0 + timedelta(hours=1), "当场办结")
    call(store, rules, verified_again, T0 + timedelta(hours=2), (("satisfied", False),))
    verdict(store, rules, verified_again, "explained", T0 + timedelta(hours=3), "已再次解释")

    downgrade(store.engine, "0015")
    upgrade(store.engine)
    assert rectifications(store, fixed) == [
        ("explained", "已解释政策", "agent:2001", None, T0 + timedelta(hours=1), False)]
    assert rectifications(store, deadline) == [("deadline_fix", "已补办", "unit:市人社局", None, late, True)]
    # The first verdict's note was overwritten by the second: only the second is known.
    assert rectifications(store, verified_again) == [
        ("explained", "已再次解释", "agent:2001", None, T0 + timedelta(hours=3), False)]


# -- the web tool ---------------------------------------------------------------------------------------------


def post(client, path: str, **data: str):
    page = client.get("/agent/tasks/1")
    return client.post(path, data={**form_keys(page.data), **data})


def test_the_task_page_and_the_report_show_what_was_done_by_whom(web_site) -> None:
    client = signed_in(web_site, "agent")
    assert post(client, "/agent/tasks/1/verdict", verdict="deadline_fix",
                note="涉及多部门，已建立台账").status_code == 302
    assert post(client, "/agent/tasks/1/rectified", note="已为市民补办社保转移手续").status_code == 302
    page = client.get("/agent/tasks/1").data.decode()
    records = page[page.index('id="rectifications"'):]
    assert "已为市民补办社保转移手续" in records and "agent用户（坐席 2001）" in records and "限期整改" in records
    shown = client.get("/agent/tasks/1/report").data.decode()
    assert "由agent用户同志于" in shown and "报告整改完成：已为市民补办社保转移手续。" in shown
    # The A4 print rules are this page's own stylesheet (the CSP admits no inline <style>).
    assert 'href="/static/report.css"' in shown and 'class="report-sheet"' in shown
    assert "@page { size: A4; margin: 37mm 26mm 35mm 28mm; }" in client.get("/static/report.css").data.decode()


def test_the_word_report_is_a4_in_the_公文_style_with_a_chinese_filename(web_site) -> None:
    client = signed_in(web_site, "agent")
    assert post(client, "/agent/tasks/1/verdict", verdict="immediate_fix", note="窗口确有推诿",
                done="已协调窗口当场办结").status_code == 302
    word = client.get("/agent/tasks/1/report.docx")
    assert word.status_code == 200
    assert word.headers["Content-Disposition"] == (
        "attachment; filename=\"report-1.docx\"; filename*=UTF-8''"
        + quote("核查整改情况报告单-GD20261120001.docx", safe=""))
    document = Document(io.BytesIO(word.data))
    section = document.sections[0]
    assert (round(section.page_width.cm, 1), round(section.page_height.cm, 1)) == (21.0, 29.7)
    assert [round(m.cm, 1) for m in (section.top_margin, section.bottom_margin, section.left_margin,
                                     section.right_margin)] == [3.7, 3.5, 2.8, 2.6]

    def east_asia(r_pr) -> tuple[str | None, str | None]:
        fonts = r_pr.rFonts
        return fonts.get(qn("w:eastAsia")), fonts.get(qn("w:ascii"))

    normal = document.styles["Normal"]
    assert east_asia(normal.element.rPr) == ("仿宋_GB2312", "仿宋_GB2312") and normal.font.size == Pt(16)
    assert normal.paragraph_format.line_spacing_rule == WD_LINE_SPACING.EXACTLY
    assert normal.paragraph_format.line_spacing == Pt(28)
    paragraphs = document.paragraphs
    title = paragraphs[0].runs[0]
    assert title.text == "政务服务差评事项核查整改情况报告单" and title.font.size == Pt(22)
    assert east_asia(title._element.rPr) == ("方正小标宋简体", "方正小标宋简体")
    heading = next(p for p in paragraphs if p.text == "一、核实情况")
    assert east_asia(heading.runs[0]._element.rPr) == ("黑体", "黑体") and heading.runs[0].font.size == Pt(16)
    body = next(p for p in paragraphs if p.text.startswith("经核实"))
    assert body.runs[0]._element.rPr is None  # the body is set by the Normal style: 仿宋_GB2312
    assert body.paragraph_format.first_line_indent == Pt(32)
    assert body._p.pPr.ind.get(qn("w:firstLineChars")) == "200"
    assert any("完成整改：已协调窗口当场办结。" in p.text for p in paragraphs)


def test_a_download_name_is_percent_encoded_and_cannot_name_a_folder() -> None:
    assert attachment("报告单-GD/2026 1.docx", "report-1.docx") == (
        "attachment; filename=\"report-1.docx\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%E5%8D%95-GD_2026%201.docx")
    assert attachment("a.xlsx", 'fig"ures.xlsx') == "attachment; filename=\"fig_ures.xlsx\"; filename*=UTF-8''a.xlsx"
