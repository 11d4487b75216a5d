"""The strict Content-Security-Policy in a real browser: every role's main pages load without a single violation,
and what they do by script still works (htmx's reveal, the charts, the print button, the citizen's stars).

Chromium reports each refusal both on the console and as a ``securitypolicyviolation`` event; the test listens
for both, page by page.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, Page, expect

from rating_core.reports.scoring import load_scoring_rules
from test_web_browser import CHROMIUM, browser, sign_in, site_url  # noqa: F401  (fixtures, shared)

pytestmark = [pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                 reason="`make test` installs Debian's chromium"),
              pytest.mark.parametrize("engine", ["sqlite"], indirect=True)]

# Runs before each page's own scripts (Playwright injects it outside the page's CSP): it records every
# violation, and stands in for the print dialog, which a headless browser cannot show.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline") + " at "
                           + event.sourceFile + ":" + event.lineNumber);
});
window.__printed = 0;
window.print = function () { window.__printed += 1; };
"""


@dataclass
class Watched:
    page: Page
    url: str
    console: list[str] = field(default_factory=list)
    seen: dict[str, list[str]] = field(default_factory=dict)

    def visit(self, path: str, status: int = 200) -> None:
        response = self.page.goto(self.url + path)
        assert response is not None and response.status == status, (path, response and response.status)
        self.check(path)

    def check(self, where: str) -> None:
        """The violations on the page now showing, filed under ``where``."""
        self.page.wait_for_load_state("load")
        found = self.page.evaluate("window.__violations || []")
        if found:
            self.seen[where] = found

    def assert_clean(self) -> None:
        assert self.seen == {} and self.console == []


@pytest.fixture
def watched(browser: Browser, site_url: str) -> Iterator[Watched]:  # noqa: F811
    context = browser.new_context(locale="zh-CN")
    context.add_init_script(WATCH)
    page = context.new_page()
    watched = Watched(page, site_url)
    page.on("console", lambda message: watched.console.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: watched.console.append(f"page error: {error}"))
    yield watched
    context.close()


def test_the_watch_sees_a_violation_so_a_clean_run_means_something(watched: Watched) -> None:
    watched.visit("/login")
    watched.page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.__ran = true";
        document.body.appendChild(script);
        document.body.insertAdjacentHTML("beforeend", '<p style="color: red">x</p>');
    }""")
    watched.check("/login, after an inline script")
    assert watched.page.evaluate("window.__ran === undefined")
    assert any("script-src" in line for line in watched.seen["/login, after an inline script"])
    assert any("Content Security Policy" in line for line in watched.console)


def test_signed_out_pages_and_the_citizens_rating_page(watched: Watched, web_site) -> None:
    from web_pages import unrated_link

    watched.visit("/login")
    watched.visit("/no/such/page", status=404)
    _uid, path = unrated_link(web_site)
    watched.visit(path)
    page = watched.page
    expect(page.locator("#tags")).to_be_hidden()  # rate.js: reasons only for a 差评
    page.locator('label[for="level-dissatisfied"]').click()
    expect(page.locator("#chosen")).to_have_text("2星 不满意")
    expect(page.locator("#tags")).to_be_visible()
    watched.check(path + " after choosing")
    watched.assert_clean()


def test_an_agents_pages(watched: Watched, web_site) -> None:
    page = watched.page
    sign_in(page, watched.url, "agent", web_site.password)
    watched.check("/agent/ (queue)")
    expect(page.locator('tr[data-task="1"]')).to_contain_text("138****5678")
    watched.visit("/agent/tasks/1")
    # htmx, with eval off and no injected style, still swaps in the revealed number.
    page.get_by_role("button", name="显示完整号码").click()
    expect(page.locator("#number")).to_contain_text("13812345678")
    watched.check("/agent/tasks/1 after the reveal")
    played = page.evaluate("""async () => {
        const audio = document.querySelector('#voice');
        await audio.play();
        return {error: audio.error && audio.error.code};
    }""")
    assert played["error"] is None
    page.get_by_label("核实结论").select_option("immediate_fix")  # a 报告单 needs a verdict
    page.get_by_label("核实情况").fill("窗口确有推诿，已当场纠正")
    page.get_by_role("button", name="保存核实结论").click()
    expect(page.get_by_role("status")).to_contain_text("核实结论已保存")
    watched.check("/agent/tasks/1 after the verdict")
    watched.visit("/agent/tasks/1/report")
    page.get_by_role("button", name="打印").click()
    assert page.evaluate("window.__printed") == 1
    page.emulate_media(media="print")  # report.css: the nav is not printed
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "none"
    watched.assert_clean()


def test_a_supervisors_pages(watched: Watched, web_site) -> None:
    shipped = load_scoring_rules()  # one rated call is too few for a place: rank every unit, so a chart is drawn
    web_site.app.extensions["hotline_scoring"] = shipped.model_copy(update={"schemes": {
        key: scheme.model_copy(update={"min_ratings": 0}) for key, scheme in shipped.schemes.items()}})
    page = watched.page
    sign_in(page, watched.url, "boss", web_site.password)
    watched.check("/agent/ (queue)")
    watched.visit("/agent/tasks/1")
    watched.visit("/supervisor/figures?by=agent")
    page.wait_for_function("() => window.scoreChart !== undefined && window.trendChart !== undefined")
    drawn = page.evaluate("""() => ({bars: window.scoreChart.data.datasets[0].data.length,
                                      width: document.querySelector('#score-chart').width})""")
    assert drawn["bars"] == 1 and drawn["width"] > 0
    page.get_by_label("按").select_option("month")  # figures.js: the picker shows the month's field
    expect(page.get_by_label("月份")).to_be_visible()
    watched.check("/supervisor/figures after drawing")
    for path in ("/supervisor/overdue", "/supervisor/appeals", "/supervisor/batches"):
        watched.visit(path)
    watched.visit("/supervisor/blocked")
    page.get_by_label("电话号码").fill("13912345678")
    page.get_by_label("理由").fill("骚扰电话")
    page.get_by_role("button", name="加入名单").click()
    expect(page.locator("#blocked")).to_contain_text("139****5678")
    page.get_by_role("button", name="移出").click()
    expect(page.get_by_role("status")).to_contain_text("已移出恶意评价名单")
    watched.check("/supervisor/blocked after a removal")
    watched.visit("/supervisor/quality")
    page.get_by_role("button", name="随机抽取").click()
    expect(page).to_have_url(re.compile(r"/supervisor/quality/\d+$"))
    watched.check("a quality sample")
    watched.assert_clean()


def test_a_units_pages(watched: Watched, web_site) -> None:
    page = watched.page
    sign_in(page, watched.url, "unit", web_site.password)
    watched.check("/unit/")
    watched.visit(f"/unit/tasks/{web_site.task_id}")
    page.get_by_label("申诉理由").fill("当日窗口签到记录显示该工作人员未离岗")
    page.get_by_role("button", name="提出申诉").click()
    expect(page.locator("#appeal-reason")).to_have_css("white-space", "pre-wrap")  # site.css, not a style=
    watched.check("/unit/tasks/1 after the appeal")
    watched.assert_clean()


def test_an_admins_pages(watched: Watched, web_site) -> None:
    page = watched.page
    sign_in(page, watched.url, "admin", web_site.password)
    watched.check("after signing in")
    watched.visit("/admin/users")
    watched.visit("/admin/audit")
    watched.visit("/admin/webhooks")
    page.get_by_label("地址").fill("https://platform.example.gov.cn/hooks/rating")
    page.locator('input[name="events"]').first.check()
    page.get_by_role("button", name="添加推送地址").click()
    row = page.locator("#endpoints tbody tr").first
    expect(row).to_contain_text("platform.example.gov.cn")
    assert row.locator("form.inline").first.evaluate("form => getComputedStyle(form).display") == "inline"
    watched.check("/admin/webhooks with an endpoint")
    watched.assert_clean()
