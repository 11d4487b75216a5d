"""The web tool in a real browser: Debian's headless Chromium driven by Playwright, as an agent works a 差评."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select
from werkzeug.serving import make_server

from rating_core.store.models import AuditEntry, CallbackTask

CHROMIUM = "/usr/bin/chromium"
# As root in a container, without a sandbox; the rest keeps Chromium off the (closed) network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="`make test` installs Debian's chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site_url(web_site) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, web_site.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def sign_in(page: Page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_an_agent_opens_a_task_plays_the_message_and_records_the_outcome(browser: Browser, site_url: str,
                                                                          web_site) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))

    sign_in(page, site_url, "agent", web_site.password)
    expect(page).to_have_url(f"{site_url}/agent/")
    row = page.locator('tr[data-task="1"]')
    expect(row).to_contain_text("138****5678")
    expect(row).to_contain_text("非常不满意")
    row.get_by_role("link", name="#1").click()

    # Reveal the number (htmx, with the CSRF header): an audited action.
    page.get_by_role("button", name="显示完整号码").click()
    expect(page.locator("#number")).to_contain_text("13812345678")

    # The caller's voice message plays in the browser.
    played = page.evaluate("""async () => {
        const audio = document.querySelector('#voice');
        await audio.play();
        await new Promise(resolve => setTimeout(resolve, 400));
        return {duration: audio.duration, time: audio.currentTime, error: audio.error && audio.error.code};
    }""")
    assert played["error"] is None and played["duration"] == pytest.approx(1.0, abs=0.05)
    assert played["time"] > 0

    # The verification: 限期整改 with what was found; script in the note stays text.
    page.get_by_label("核实结论").select_option("deadline_fix")
    page.get_by_label("核实情况").fill("涉及多部门，已建立台账<script>alert(1)</script>")
    page.get_by_role("button", name="保存核实结论").click()
    expect(page.get_by_role("status")).to_contain_text("核实结论已保存")
    expect(page.locator("h1")).to_contain_text("限期整改中")
    expect(page.locator(".verdict-note")).to_contain_text("<script>alert(1)</script>")

    page.get_by_label("整改情况").fill("已补办并电话告知")
    page.get_by_role("button", name="整改完成，回访满意度").click()
    expect(page.locator("h1")).to_contain_text("待回访满意度")

    # The 报告单 prints on A4 across the page's width, with what was done and by whom, and no nav.
    page.goto(f"{site_url}/agent/tasks/{web_site.task_id}/report")
    expect(page.locator("#report")).to_contain_text("已补办并电话告知")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi, as the print preview lays it out
    laid_out = page.evaluate("""() => ({sheet: document.querySelector('#report').getBoundingClientRect().width,
                                        page: document.documentElement.clientWidth,
                                        header: getComputedStyle(document.querySelector('header')).display})""")
    assert laid_out["header"] == "none" and laid_out["sheet"] > 0.9 * laid_out["page"], laid_out
    pdf = page.pdf(prefer_css_page_size=True)
    box = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert box and [round(float(side) * 25.4 / 72) for side in box.groups()] == [210, 297], "not A4 (mm)"
    assert errors == []

    with web_site.store.sessions() as session:
        task = session.get(CallbackTask, web_site.task_id)
        assert (task.verdict, task.state) == ("deadline_fix", "rectified")
        assert task.rectify_by is not None and task.rectified_at is not None
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.username == "agent")).all()
    assert {"login", "reveal_number", "play_recording"} <= set(actions)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_an_agents_day_finds_a_caller_by_number_claims_the_task_and_records_a_verdict(browser: Browser,
                                                                                       site_url: str,
                                                                                       web_site) -> None:
    """A caller rings back about their 差评: the agent finds it among the team's tasks by part of the number."""
    from datetime import datetime, timedelta, timezone

    from rating_core.complaints.callback_tasks import claim_attempt, record_outcome, request_attempt
    from rating_core.events.call_events import CallStarted, RatingGiven

    at = datetime.now(timezone.utc) - timedelta(hours=3)
    for n in range(60):  # more than a page of the team's tasks
        uid = f"1796100000.{n}"
        web_site.store.apply([CallStarted(uniqueid=uid, hotline="12345", at=at, caller_number=f"1390000{n:04d}",
                                          agent_id="3003", case_number=f"GD2026{n:06d}"),
                              RatingGiven(uid, "dissatisfied", "dtmf", at)])
    # The automated callback reached this caller earlier: the task waits for an agent's verdict.
    policy = web_site.store.rules.callback
    with web_site.store.sessions.begin() as session:
        task_id = session.scalars(select(CallbackTask.id).where(CallbackTask.number == "13900000042")).one()
        attempt_id = request_attempt(session, policy, task_id, at, "system:rq").attempt_id
        assert attempt_id is not None and claim_attempt(session, attempt_id, at, "Local/13900000042@callback-out")
        record_outcome(session, policy, attempt_id, "answered", at + timedelta(minutes=2), "dialer")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, site_url, "agent", web_site.password)
    expect(page.locator("#pages")).to_contain_text("第 1 / 2 页")

    page.get_by_label("查找").fill("0000042")
    page.get_by_role("button", name="查询").click()
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("139****0042")
    assert "q=0000042" in page.url  # a link a supervisor can be sent
    rows.first.get_by_role("link").click()

    expect(page.locator("#assignment")).to_contain_text("尚无人认领")
    page.get_by_role("button", name="认领").click()
    expect(page.get_by_role("status")).to_contain_text("已认领该任务")
    expect(page.locator("#assignment")).to_contain_text("由坐席 2001 认领")

    page.get_by_label("核实结论").select_option("explained")
    page.get_by_label("核实情况").fill("已向市民解释办理流程")
    page.get_by_role("button", name="保存核实结论").click()
    expect(page.get_by_role("status")).to_contain_text("核实结论已保存")
    assert errors == []

    with web_site.store.sessions() as session:
        task = session.scalars(select(CallbackTask).where(CallbackTask.number == "13900000042")).one()
        assert (task.assigned_agent, task.verdict, task.verdict_note) == ("2001", "explained", "已向市民解释办理流程")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_verdict_without_a_note_shows_the_reason_and_saves_nothing(browser: Browser, site_url: str,
                                                                    web_site) -> None:
    page = browser.new_page()
    sign_in(page, site_url, "agent", web_site.password)
    page.goto(f"{site_url}/agent/tasks/1")
    page.get_by_label("核实结论").select_option("explained")
    # The browser would refuse an empty required field; remove that to see what the server says.
    page.evaluate("document.querySelector('#note').removeAttribute('required')")
    page.get_by_role("button", name="保存核实结论").click()
    expect(page.locator(".errors")).to_contain_text("请填写核实情况说明")
    with web_site.store.sessions() as session:
        assert session.get(CallbackTask, web_site.task_id).verdict is None


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_rated_agent_cannot_open_the_task(browser: Browser, site_url: str, web_site) -> None:
    page = browser.new_page()
    sign_in(page, site_url, "rated", web_site.password)
    response = page.goto(f"{site_url}/agent/tasks/1")
    assert response is not None and response.status == 403
    expect(page.locator("body")).to_contain_text("非当事人")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_supervisor_reads_the_figures_with_a_chart_and_exports_them(browser: Browser, site_url: str,
                                                                      web_site, tmp_path) -> None:
    import io

    from openpyxl import load_workbook

    from rating_core.reports.scoring import load_scoring_rules

    shipped = load_scoring_rules()  # one rated call is too few for a place: rank every unit here
    web_site.app.extensions["hotline_scoring"] = shipped.model_copy(update={"schemes": {
        key: scheme.model_copy(update={"min_ratings": 0}) for key, scheme in shipped.schemes.items()}})
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, site_url, "boss", web_site.password)
    page.get_by_role("link", name="统计通报").click()
    page.get_by_label("维度").select_option("agent")
    page.get_by_role("button", name="查看").click()
    expect(page.locator('tr[data-unit="1024"] .score')).to_have_text(re.compile(r"^\d+\.\d\d$"))
    # Chart.js drew the scores: one bar per row of the table, on a canvas with pixels. The chart script runs
    # at the end of the page, after the table is already visible: wait for it.
    page.wait_for_function("() => window.scoreChart !== undefined")
    drawn = page.evaluate("""() => ({bars: window.scoreChart.data.datasets[0].data.length,
                                      rows: document.querySelectorAll('#figures tbody tr').length,
                                      width: document.querySelector('#score-chart').width,
                                      trend: window.trendChart.data.labels})""")
    assert drawn["bars"] == drawn["rows"] == 1 and drawn["width"] > 0
    assert drawn["trend"] and all("–" in label for label in drawn["trend"])  # a quarter: calendar weeks
    with page.expect_download() as download_info:
        page.get_by_role("link", name="导出 Excel 通报表").click()
    assert download_info.value.suggested_filename.endswith("坐席工号好差评评估通报表.xlsx")
    saved = tmp_path / "figures.xlsx"
    download_info.value.save_as(saved)
    sheet = load_workbook(io.BytesIO(saved.read_bytes())).active
    assert "1024" in [cell.value for cell in sheet["B"]]
    # The picker: a month, its field shown and the quarter's hidden; the page reads that month.
    page.get_by_label("按").select_option("month")
    expect(page.get_by_label("月份")).to_be_visible()
    expect(page.get_by_label("季度", exact=True)).to_be_hidden()
    page.get_by_label("月份").fill("2026-11")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("h1")).to_have_text("好差评评估通报 · 2026-11")
    # A range that ends before it begins: the page says so in Chinese and keeps the form.
    page.get_by_label("按").select_option("range")
    page.get_by_label("自").fill("2026-11-15")
    page.get_by_label("至").fill("2026-11-01")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("#query-error")).to_contain_text("结束日期早于开始日期")
    expect(page.get_by_label("自")).to_have_value("2026-11-15")
    assert errors == []


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_gsm_voice_message_plays_in_the_browser(browser: Browser, site_url: str, web_site) -> None:
    """Asterisk's wav49 (GSM in WAV) does not play in Chromium as it is; the tool serves a PCM copy."""
    import subprocess

    from rating_core.store.models import CallbackTask as Task

    gsm = web_site.voice_file.with_name("gsm-message.wav")
    subprocess.run(["sox", str(web_site.voice_file), "-e", "gsm-full-rate", str(gsm)], check=True)
    with web_site.store.sessions.begin() as session:
        session.get(Task, web_site.task_id).rating.voice_message_file = str(gsm)
    page = browser.new_page()
    sign_in(page, site_url, "agent", web_site.password)
    page.goto(f"{site_url}/agent/tasks/1")
    played = page.evaluate("""async () => {
        const audio = document.querySelector('#voice');
        await audio.play();
        await new Promise(resolve => setTimeout(resolve, 300));
        return {duration: audio.duration, time: audio.currentTime, error: audio.error && audio.error.code};
    }""")
    assert played["error"] is None and played["duration"] == pytest.approx(1.0, abs=0.05) and played["time"] > 0


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_citizen_rates_by_the_sms_link_on_a_phone(browser: Browser, site_url: str, web_site) -> None:
    """The 补充评价 page at a phone's viewport, with touch: stars, the reasons for a 差评, one submission."""
    from rating_core.store.models import Call, Rating
    from web_pages import unrated_link

    uid, path = unrated_link(web_site)
    context = browser.new_context(viewport={"width": 375, "height": 667}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site_url + path)
    expect(page.locator("h1")).to_contain_text("12345政务服务便民热线")
    expect(page.locator(".call")).to_contain_text("138****9999")
    # Fits the phone: no sideways scrolling, and stars big enough for a thumb.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    star = page.locator('label[for="level-dissatisfied"]').bounding_box()
    assert star is not None and star["width"] >= 44 and star["height"] >= 44

    expect(page.locator("#tags")).to_be_hidden()  # reasons only for a 差评
    page.locator('label[for="level-satisfied"]').tap()
    expect(page.locator("#chosen")).to_have_text("4星 满意")
    expect(page.locator("#tags")).to_be_hidden()
    page.locator('label[for="level-dissatisfied"]').tap()
    expect(page.locator("#chosen")).to_have_text("2星 不满意")
    expect(page.locator("#tags")).to_be_visible()
    page.get_by_role("button", name="提交评价").tap()
    expect(page.get_by_role("alert")).to_have_text("请选择不满意的原因，或写下您的意见")
    expect(page.locator("#tags")).to_be_visible()  # the choice survived the refusal
    page.get_by_label("办事效率低").tap()
    page.get_by_label("您的意见（选填）").fill("等了很久没人处理")
    page.get_by_role("button", name="提交评价").tap()
    expect(page.get_by_role("status")).to_have_text("您的评价“不满意”已提交。")
    page.go_back()
    page.reload()
    expect(page.get_by_role("alert")).to_have_text("该链接已使用过，感谢您的评价")
    assert errors == []
    context.close()

    with web_site.store.sessions() as session:
        given = session.scalars(select(Rating).join(Call).where(Call.uniqueid == uid)).one()
        assert (given.level, given.channel, given.reason_tags) == ("dissatisfied", "supplementary", ["inefficient"])
        assert given.reason_text == "等了很久没人处理" and given.callback_task is not None


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_unit_appeals_with_an_evidence_file_and_follows_its_progress(browser: Browser, site_url: str, web_site,
                                                                       tmp_path) -> None:
    evidence = tmp_path / "窗口签到记录.pdf"
    evidence.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, site_url, "unit", web_site.password)
    page.locator(f'tr[data-task="{web_site.task_id}"]').get_by_role("link", name=f"#{web_site.task_id}").click()
    expect(page.locator("body")).not_to_contain_text("5678")  # a unit never sees the caller's number

    page.get_by_label("申诉理由").fill("当日窗口签到记录显示该工作人员未离岗，不存在推诿")
    page.get_by_label("证明材料").set_input_files(str(evidence))
    page.get_by_role("button", name="提出申诉").click()
    expect(page.locator("#appeal-progress")).to_contain_text("复核中")
    expect(page.get_by_role("link", name="窗口签到记录.pdf")).to_be_visible()
    assert errors == []

    stored = list((tmp_path / "evidence").rglob("*"))
    files = [path for path in stored if path.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == evidence.read_bytes()
    assert files[0].name != evidence.name  # stored by a name of our own, never the user's
